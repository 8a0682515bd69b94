# `cmake --install` and `cpack -G DEB`: both binaries, their manual pages, the systemd template
# units, example configurations and the Debian copyright/changelog, under GNUInstallDirs.
#
#   <prefix>/bin/kaminaric, kaminaris
#   <prefix>/share/man/man1/kaminaric.1.gz, kaminaris.1.gz
#   <prefix>/lib/systemd/system/kaminaric@.service, kaminaris@.service   (KAMINARI_SYSTEMD_UNITDIR)
#   <prefix>/share/doc/kaminari/examples/client.conf, server.conf
#   <prefix>/share/doc/kaminari/copyright, changelog.gz
#
# Nothing goes to /etc: the units read /etc/kaminari/<instance>.conf, which the administrator
# writes (from the examples).

include(GNUInstallDirs)

set(KAMINARI_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the systemd units go: relative to the install prefix (systemd reads both \
/usr/lib/systemd/system and /usr/local/lib/systemd/system), or absolute")

# Directories the install creates (share/doc/kaminari/examples, ...) get 0755 (less what the
# umask takes away; the package's are set to 0755 before packaging, see below).
set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
    GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

install(TARGETS kaminaric kaminaris RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Compressed at build time with gzip -9n (no name, no time stamp: the same bytes on every build),
# as Debian policy wants manual pages and changelogs.
find_program(KAMINARI_GZIP gzip REQUIRED)
set(kaminari_gz_files)
foreach(src man/kaminaric.1 man/kaminaris.1 packaging/changelog)
    get_filename_component(name ${src} NAME)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/dist/${name}.gz)
    add_custom_command(OUTPUT ${out}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/dist
        COMMAND ${KAMINARI_GZIP} -9nc ${PROJECT_SOURCE_DIR}/${src} > ${out}
        DEPENDS ${PROJECT_SOURCE_DIR}/${src} VERBATIM)
    list(APPEND kaminari_gz_files ${out})
endforeach()
add_custom_target(kaminari_dist ALL DEPENDS ${kaminari_gz_files})
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/dist/kaminaric.1.gz
              ${CMAKE_CURRENT_BINARY_DIR}/dist/kaminaris.1.gz
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES packaging/copyright ${CMAKE_CURRENT_BINARY_DIR}/dist/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES etc/kaminari/client.conf etc/kaminari/server.conf
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# The units name the installed binaries by absolute path, and the prefix is only known when the
# install runs (cpack installs under /usr whatever this build was configured with), so they are
# written from their templates at install time, into a directory of their own per destination
# (installs to different places may run at once) that is removed again.
install(CODE "
    set(prefix \"\${CMAKE_INSTALL_PREFIX}\")
    set(KAMINARI_FULL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
    set(KAMINARI_EXAMPLES_DIR \"${CMAKE_INSTALL_DOCDIR}/examples\")
    set(unitdir \"${KAMINARI_SYSTEMD_UNITDIR}\")
    foreach(var KAMINARI_FULL_BINDIR KAMINARI_EXAMPLES_DIR unitdir)
        if(NOT IS_ABSOLUTE \"\${\${var}}\")
            set(\${var} \"\${prefix}/\${\${var}}\")
        endif()
    endforeach()
    string(MD5 key \"\$ENV{DESTDIR}|\${prefix}\")
    set(staging \"${CMAKE_CURRENT_BINARY_DIR}/dist/units-\${key}\")
    foreach(app kaminaric kaminaris)
        configure_file(\"${PROJECT_SOURCE_DIR}/systemd/\${app}@.service.in\"
                       \"\${staging}/\${app}@.service\" @ONLY)
        file(INSTALL DESTINATION \"\${unitdir}\" TYPE FILE
             PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
             FILES \"\${staging}/\${app}@.service\")
    endforeach()
    file(REMOVE_RECURSE \"\${staging}\")
")

# The Debian changelog names the version that is packaged.
file(STRINGS packaging/changelog kaminari_changelog_head LIMIT_COUNT 1)
if(NOT kaminari_changelog_head MATCHES "^kaminari \\(${PROJECT_VERSION}\\) ")
    message(WARNING "packaging/changelog starts with '${kaminari_changelog_head}', not version "
                    "${PROJECT_VERSION}: add an entry for it")
endif()

# cpack -G DEB (in the build directory): kaminari_<version>_<arch>.deb for Debian 12, installed
# under /usr, with Depends computed by dpkg-shlibdeps from the libraries the binaries link.
# No maintainer scripts: installing creates no user, enables and starts no service.
set(CPACK_PACKAGE_NAME kaminari)
set(CPACK_PACKAGE_VENDOR "The kaminari (C++) authors")
set(KAMINARI_DEB_MAINTAINER
    "kaminari maintainers <maintainers@users.noreply.r-seed-2595f622.example>"
    CACHE STRING "Maintainer field of the .deb: 'Name <email>'")
set(CPACK_PACKAGE_CONTACT "${KAMINARI_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${KAMINARI_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "websocket/TLS tunnel for TCP, usable as a SIP003 plugin")
# The summary above is the first line of Description; this is the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "kaminaric accepts plain TCP and carries it to kaminaris over TCP, websocket,
TLS or websocket over TLS (wss); kaminaris hands it on as plain TCP to its
target. Both run standalone, under systemd (template units kaminaric@.service
and kaminaris@.service reading /etc/kaminari/<instance>.conf), or as
shadowsocks SIP003 plugins. A C++20 port of kaminari.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS ${CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS})
# mkdir() applies the umask to those: set 0755 on the staged directories before packaging.
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/cpack_directory_modes.cmake)
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
