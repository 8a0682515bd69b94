"""`cmake --install` of this build: exactly the expected files, with the expected modes, the
systemd units naming the installed binaries, manual pages that render without a warning.
Installs twice: with --prefix into a temporary directory, and with DESTDIR and prefix /usr (as
cpack does), whose units must then name /usr/bin."""

import gzip
import os
import shutil
import stat
import subprocess
import sys
import tempfile

BUILD = os.environ["KAMINARI_BUILD_DIR"]
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")

EXPECTED = {
    "bin/kaminaric": 0o755,
    "bin/kaminaris": 0o755,
    "share/man/man1/kaminaric.1.gz": 0o644,
    "share/man/man1/kaminaris.1.gz": 0o644,
    "lib/systemd/system/kaminaric@.service": 0o644,
    "lib/systemd/system/kaminaris@.service": 0o644,
    "share/doc/kaminari/copyright": 0o644,
    "share/doc/kaminari/changelog.gz": 0o644,
    "share/doc/kaminari/examples/client.conf": 0o644,
    "share/doc/kaminari/examples/server.conf": 0o644,
}

passed = failed = 0


def check(name, fn, *args):
    global passed, failed
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
        failed += 1
        print(f"FAIL {name}: {e}", flush=True)
        return
    passed += 1
    print(f"ok   {name}", flush=True)


def install(prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", prefix], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, f"cmake --install failed:\n{r.stdout}{r.stderr}"


def tree(root):
    """{relative path: mode} of every file, and every directory's mode."""
    files, dirs = {}, {}
    for d, subdirs, names in os.walk(root):
        for s in subdirs:
            dirs[os.path.relpath(os.path.join(d, s), root)] = stat.S_IMODE(
                os.lstat(os.path.join(d, s)).st_mode)
        for n in names:
            p = os.path.join(d, n)
            files[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return files, dirs


def exactly_the_expected_files(root):
    files, dirs = tree(root)
    extra = sorted(set(files) - set(EXPECTED))
    missing = sorted(set(EXPECTED) - set(files))
    assert not extra and not missing, f"extra: {extra}; missing: {missing}"
    wrong = {p: oct(m) for p, m in files.items() if m != EXPECTED[p]}
    assert not wrong, f"modes: {wrong}"
    odd_dirs = {p: oct(m) for p, m in dirs.items() if m != 0o755}
    assert not odd_dirs, f"directory modes: {odd_dirs}"


def binaries_run(root):
    for prog in ("kaminaric", "kaminaris"):
        r = subprocess.run([os.path.join(root, "bin", prog), "--version"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith(prog + " "), r


def man_pages_name_the_version(root):
    """The .TH line of each page names the version the binary prints."""
    for prog in ("kaminaric", "kaminaris"):
        version = subprocess.run([os.path.join(root, "bin", prog), "--version"],
                                 capture_output=True, text=True, timeout=10).stdout.split()[-1]
        with gzip.open(os.path.join(root, f"share/man/man1/{prog}.1.gz"), "rt") as f:
            th = next(line for line in f if line.startswith(".TH "))
        assert f'"kaminari {version}"' in th, f"{prog}.1: {th.strip()} (binary: {version})"


def units_name(root, prefix):
    for prog in ("kaminaric", "kaminaris"):
        with open(os.path.join(root, f"lib/systemd/system/{prog}@.service")) as f:
            unit = f.read()
        want = f"ExecStart={prefix}/bin/{prog} ${{LOCAL}} ${{REMOTE}} ${{OPTIONS}}"
        assert want in unit.splitlines(), f"no line {want!r} in {prog}@.service:\n{unit}"
        assert f"{prefix}/share/doc/kaminari/examples/" in unit, "examples path"
        assert "@" + "KAMINARI" not in unit, "unsubstituted template variable"


def man_pages_render(root):
    if not shutil.which("groff"):
        raise AssertionError("groff is missing (scripts/setup.sh test installs groff-base)")
    for prog in ("kaminaric", "kaminaris"):
        with gzip.open(os.path.join(root, f"share/man/man1/{prog}.1.gz")) as f:
            src = f.read()
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=src,
                           capture_output=True, timeout=30)
        assert r.returncode == 0 and not r.stderr, f"{prog}.1: {r.stderr.decode()}"
        r = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou"], input=src,
                           capture_output=True, timeout=30)
        text = r.stdout.decode()
        for section in ("NAME", "SYNOPSIS", "OPTIONS", "SIP003 PLUGIN MODE", "SIGNALS",
                        "EXIT STATUS", "EXAMPLES"):
            assert section in text, f"{prog}.1 has no {section} section"


def only_usr(destdir):
    top = sorted(os.listdir(destdir))
    assert top == ["usr"], f"top-level entries: {top}"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "prefix")
        install(prefix)
        check("--prefix: exactly the expected files and modes", exactly_the_expected_files,
              prefix)
        check("--prefix: the installed binaries run", binaries_run, prefix)
        check("--prefix: the units name <prefix>/bin", units_name, prefix, prefix)
        check("the manual pages render without a groff warning", man_pages_render, prefix)
        check("the manual pages name the binaries' version", man_pages_name_the_version, prefix)

        destdir = os.path.join(tmp, "destdir")
        install("/usr", destdir)
        check("DESTDIR + /usr: exactly the expected files under /usr",
              exactly_the_expected_files, os.path.join(destdir, "usr"))
        check("DESTDIR + /usr: the units name /usr/bin", units_name,
              os.path.join(destdir, "usr"), "/usr")
        check("DESTDIR: nothing outside /usr", only_usr, destdir)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
