# CPACK_PRE_BUILD_SCRIPTS: runs after cpack installed the package's files into its staging
# directory. The directories there were made under the caller's umask (0700 with umask 077,
# which lintian flags and dpkg would create on the target as is): give every one 0755.
file(GLOB_RECURSE kaminari_staged LIST_DIRECTORIES true "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*")
foreach(path "${CPACK_TEMPORARY_INSTALL_DIRECTORY}" ${kaminari_staged})
    if(IS_DIRECTORY "${path}" AND NOT IS_SYMLINK "${path}")
        file(CHMOD "${path}" DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
             GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
    endif()
endforeach()
