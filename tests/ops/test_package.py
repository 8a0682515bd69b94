"""The Debian package, end to end (root only; CI runs as root): `cpack -G DEB` builds it from
this build tree; its control fields, Depends (from the linked shared libraries), contents and
maintainer scripts (none) are checked; lintian reports no error; `dpkg -i` installs it; the
loopback demo (kaminaris + kaminaric, 32 MiB through ws, byte-exact) runs against the installed
/usr/bin binaries; the installed units verify; `dpkg --purge` removes it and no file of the
package is left. Exit status 77 (CTest: skipped) when not root."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ["KAMINARI_BUILD_DIR"]
VERSION = os.environ["KAMINARI_VERSION"]
CPACK = os.environ.get("CPACK_COMMAND", "cpack")
SKIP = 77

EXPECTED_FILES = {
    "/usr/bin/kaminaric", "/usr/bin/kaminaris",
    "/usr/share/man/man1/kaminaric.1.gz", "/usr/share/man/man1/kaminaris.1.gz",
    "/usr/lib/systemd/system/kaminaric@.service", "/usr/lib/systemd/system/kaminaris@.service",
    "/usr/share/doc/kaminari/copyright", "/usr/share/doc/kaminari/changelog.gz",
    "/usr/share/doc/kaminari/examples/client.conf",
    "/usr/share/doc/kaminari/examples/server.conf",
}

passed = failed = 0


def check(name, fn, *args):
    global passed, failed
    try:
        result = fn(*args)
    except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
        failed += 1
        print(f"FAIL {name}: {e}", flush=True)
        return None
    passed += 1
    print(f"ok   {name}", flush=True)
    return result


def sh(argv, timeout=300, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def installed():
    r = sh(["dpkg-query", "-W", "-f=${Status}", "kaminari"], check=False)
    return r.returncode == 0 and "installed" in r.stdout.split()


def build_package(out):
    # Under a strict umask: the package's directories must still be 0755.
    sh([CPACK, "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", out],
       timeout=600, cwd=BUILD, preexec_fn=lambda: os.umask(0o077))
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    assert len(debs) == 1, f"cpack made {debs}"
    return os.path.join(out, debs[0])


def control_fields(deb):
    fields = {}
    for key in ("Package", "Version", "Architecture", "Maintainer", "Depends", "Section",
                "Priority", "Description"):
        fields[key] = sh(["dpkg-deb", "-f", deb, key]).stdout.strip()
    arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
    assert fields["Package"] == "kaminari", fields
    assert fields["Version"] == VERSION, fields
    assert fields["Architecture"] == arch, fields
    assert re.fullmatch(r".+ <[^@\s]+@[^@\s]+>", fields["Maintainer"]), fields
    assert fields["Section"] == "net" and fields["Priority"] == "optional", fields
    assert fields["Description"].splitlines()[0].strip(), fields
    print(f"     Depends: {fields['Depends']}", flush=True)


def depends_cover_needed_libraries(deb, tmp):
    """Every shared library the binaries need (ELF NEEDED) belongs to a package in Depends."""
    root = os.path.join(tmp, "extract")
    sh(["dpkg-deb", "-x", deb, root])
    depends = sh(["dpkg-deb", "-f", deb, "Depends"]).stdout
    depended = {d.split()[0].split(":")[0] for d in depends.replace("|", ",").split(",") if d}
    needed = set()
    for prog in ("kaminaric", "kaminaris"):
        dyn = sh(["readelf", "-d", os.path.join(root, "usr/bin", prog)]).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn))
    assert {"libssl.so.3", "libc.so.6"} <= needed, needed
    for lib in sorted(needed):
        owners = sh(["dpkg", "-S", f"*/{lib}"]).stdout
        pkgs = {line.split(":")[0] for line in owners.splitlines() if ":" in line}
        assert pkgs & depended, f"{lib} (from {sorted(pkgs)}) not covered by Depends: {depends}"
    print(f"     NEEDED: {', '.join(sorted(needed))}", flush=True)


def contents(deb):
    listing = sh(["dpkg-deb", "-c", deb]).stdout.splitlines()
    files, dirs = set(), set()
    for line in listing:
        perms, owner, _size, _date, _time, path = line.split(None, 5)
        path = path.split(" -> ")[0].lstrip(".").rstrip("/") or "/"
        assert owner == "root/root", line
        assert perms in ("drwxr-xr-x", "-rw-r--r--", "-rwxr-xr-x"), line
        (dirs if perms.startswith("d") else files).add(path)
    assert files == EXPECTED_FILES, (f"extra: {sorted(files - EXPECTED_FILES)}; "
                                     f"missing: {sorted(EXPECTED_FILES - files)}")
    assert not any(p.startswith(("/etc", "/var", "/usr/local", "/opt")) for p in dirs), dirs


def no_maintainer_scripts(deb):
    with tempfile.TemporaryDirectory() as ctl:
        sh(["dpkg-deb", "-e", deb, ctl])
        names = sorted(os.listdir(ctl))
    assert names == ["control", "md5sums"], f"control members: {names}"


def lintian_clean(deb):
    r = sh(["lintian", "--tag-display-limit", "0", "--display-info", deb], check=False, timeout=600)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    for line in lines:
        print(f"     lintian: {line}", flush=True)
    errors = [line for line in lines if line.startswith("E:")]
    assert not errors, f"{len(errors)} lintian errors"
    assert r.returncode in (0, 1) and "internal error" not in r.stderr.lower(), r.stderr


def files_installed(paths):
    missing = sorted(p for p in EXPECTED_FILES if p not in paths or not os.path.isfile(p))
    assert not missing, f"not installed: {missing}"


def demo_against_installed():
    env = dict(os.environ, KAMINARIC="/usr/bin/kaminaric", KAMINARIS="/usr/bin/kaminaris",
               KAMINARI_DEMO_BYTES=str(32 << 20))
    r = sh([sys.executable, os.path.join(HERE, "installed_demo.py")], timeout=180, env=env,
           check=False)
    print(r.stdout, end="", flush=True)
    assert r.returncode == 0, f"demo failed:\n{r.stdout}{r.stderr}"


def installed_units_verify():
    for prog in ("kaminaric", "kaminaris"):
        r = sh(["systemd-analyze", "verify", f"/usr/lib/systemd/system/{prog}@.service"],
               check=False, timeout=60)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 0 and not out, f"{prog}@.service: {out}"
    assert sh(["man", "-w", "kaminaris"], check=False).stdout.strip() == \
        "/usr/share/man/man1/kaminaris.1.gz"


def owned_by_other_package(path):
    r = sh(["dpkg-query", "-S", path], check=False)
    owners = set()
    for line in r.stdout.splitlines():
        pkgs, _, p = line.partition(": ")
        if p == path:
            owners |= {x.strip() for x in pkgs.split(",")}
    return bool(owners - {"kaminari"})


def purge_leaves_nothing(paths):
    sh(["dpkg", "--purge", "kaminari"], timeout=120)
    assert not installed(), "still installed after purge"
    status = sh(["dpkg-query", "-W", "-f=${Status}", "kaminari"], check=False).stdout
    assert "config-files" not in status, status
    left = []
    for p in paths:
        if os.path.lexists(p) and not (os.path.isdir(p) and owned_by_other_package(p)):
            left.append(p)
    assert not left, f"left behind: {left}"
    info = [f for f in os.listdir("/var/lib/dpkg/info") if f.startswith("kaminari.")]
    assert not info, f"dpkg database leftovers: {info}"
    assert not os.path.exists("/etc/kaminari"), "/etc/kaminari exists"


def main():
    if os.geteuid() != 0:
        print("skipped: installing a package needs root (CI runs as root)")
        sys.exit(SKIP)
    for tool in ("dpkg", "dpkg-shlibdeps", "lintian", "systemd-analyze", "readelf", "man"):
        if not shutil.which(tool):
            print(f"FAIL {tool} is missing (bash scripts/setup.sh test installs it)")
            sys.exit(1)
    if installed() or os.path.lexists("/usr/bin/kaminaric") or \
            os.path.lexists("/usr/bin/kaminaris"):
        # Not ours to overwrite or purge.
        print("FAIL kaminari is already installed in /usr/bin: remove it (dpkg --purge "
              "kaminari) and run again")
        sys.exit(1)
    with tempfile.TemporaryDirectory() as tmp:
        deb = check("cpack -G DEB builds one package", build_package, os.path.join(tmp, "out"))
        if deb is None:
            sys.exit(1)
        print(f"     {os.path.basename(deb)}", flush=True)
        check("control fields (package, version, arch, maintainer, section)", control_fields,
              deb)
        check("Depends covers every NEEDED shared library", depends_cover_needed_libraries, deb,
              tmp)
        check("contents: exactly the expected files, owned by root, modes 0755/0644", contents,
              deb)
        check("no maintainer scripts, no conffiles", no_maintainer_scripts, deb)
        check("lintian: no errors", lintian_clean, deb)
        try:
            sh(["dpkg", "-i", deb], timeout=120)
            paths = sh(["dpkg", "-L", "kaminari"]).stdout.split()
            paths = [p for p in paths if p not in ("/.", "/")]
            check("dpkg -i installed every expected file", files_installed, paths)
            check("demo: 32 MiB through the installed binaries, byte-exact",
                  demo_against_installed)
            check("installed units verify, man finds the page", installed_units_verify)
            check("dpkg --purge leaves no file of the package", purge_leaves_nothing, paths)
        finally:
            if installed():
                sh(["dpkg", "--purge", "kaminari"], check=False, timeout=120)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
