"""The option names of each program agree in every place they are written: the manual pages
(man/kaminaric.1, man/kaminaris.1), the README's option table, `--help` of both binaries and the
parser's table in src/options.cpp. Each name is compared with whether it takes a value
(`host=<host>`) or is a flag (`ws`), per program (a `client` row of the README belongs to
kaminaric only)."""

import os
import re
import subprocess
import sys

SOURCE = os.environ.get("KAMINARI_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BINARIES = {"kaminaric": os.environ.get("KAMINARIC", "kaminaric"),
            "kaminaris": os.environ.get("KAMINARIS", "kaminaris")}
SIDE = {"kaminaric": "client", "kaminaris": "server"}


def read(rel):
    with open(os.path.join(SOURCE, rel), encoding="utf-8") as f:
        return f.read()


def option_name(word):
    """`host=<host>` -> `host=`, `mask=skip|fixed` -> `mask=`, `ws` -> `ws`."""
    word = word.strip()
    return word[:word.index("=") + 1] if "=" in word else word


def from_man(text):
    """The word after each .TP in the OPTIONS section: `.BI host= host` -> `host=`."""
    section = re.search(r"^\.SH OPTIONS\n(.*?)^\.SH ", text, re.S | re.M)
    assert section, "no .SH OPTIONS section"
    names = set()
    lines = section.group(1).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == ".TP" and i + 1 < len(lines):
            tag = lines[i + 1].split()
            assert len(tag) >= 2 and tag[0] in (".B", ".BI", ".BR"), f"odd .TP tag: {lines[i + 1]}"
            names.add(option_name(tag[1].replace("\\-", "-").strip('"')))
    return names


def from_readme(text, side):
    """Rows of the table under '## Options': `| `host=<host>` | both, with `ws` | ... |`."""
    section = re.search(r"^## Options\n(.*?)^## ", text, re.S | re.M)
    assert section, "no '## Options' section"
    names = set()
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 3 or cells[0] in ("option", "") or set(cells[0]) <= set("-"):
            continue
        program = cells[1].split(",")[0].strip()
        assert program in ("both", "client", "server"), f"odd program cell: {line}"
        if program not in ("both", side):
            continue
        for code in re.findall(r"`([^`]+)`", cells[0]):
            names.add(option_name(code.replace("\\|", "|")))
    return names


def from_help(text):
    """Lines of --help indented by exactly two spaces after 'options:' up to the SIP003 note."""
    block = text.split("\noptions:", 1)[1].split("\nSIP003", 1)[0]
    return {option_name(m.group(1)) for m in re.finditer(r"^  (\S+)", block, re.M)}


def from_parser(text, side):
    """`{"host", false, side::both},` entries of known_options in src/options.cpp."""
    names = set()
    for name, flag, where in re.findall(r'\{"([a-z0-9_]+)", (true|false), side::(\w+)\}', text):
        if where in ("both", side):
            names.add(name if flag == "true" else name + "=")
    return names


def differences(sources):
    """Lines naming each option that some source has and another lacks."""
    every = set().union(*sources.values())
    out = []
    for name in sorted(every):
        missing = [src for src, names in sources.items() if name not in names]
        if missing:
            out.append(f"'{name}' is missing from: {', '.join(missing)}")
    return out


def collect(prog):
    helptext = subprocess.run([BINARIES[prog], "--help"], capture_output=True, text=True,
                              timeout=10, check=True).stdout
    return {
        f"man/{prog}.1": from_man(read(f"man/{prog}.1")),
        "README.md option table": from_readme(read("README.md"), SIDE[prog]),
        f"{prog} --help": from_help(helptext),
        "src/options.cpp": from_parser(read("src/options.cpp"), SIDE[prog]),
    }


def main():
    failed = 0
    for prog in ("kaminaric", "kaminaris"):
        sources = collect(prog)
        # A parser that finds nothing would make every source agree: each must find them all.
        for src, names in sources.items():
            if len(names) < 10:
                print(f"FAIL {prog}: only {len(names)} options found in {src}: {sorted(names)}")
                failed += 1
        # The comparison itself must notice a dropped or renamed option.
        probe = dict(sources)
        probe["probe"] = (sources[f"man/{prog}.1"] - {"ws"}) | {"wss"}
        found = differences(probe)
        if not any("'ws'" in d for d in found) or not any("'wss'" in d for d in found):
            print(f"FAIL {prog}: the comparison missed a dropped/added option: {found}")
            failed += 1
        diff = differences(sources)
        if diff:
            failed += 1
            print(f"FAIL {prog}: the option names disagree")
            for line in diff:
                print(f"     {line}")
        else:
            print(f"ok   {prog}: {len(sources['src/options.cpp'])} options, the same in "
                  f"{', '.join(sources)}")
    print(f"{failed} failures")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
