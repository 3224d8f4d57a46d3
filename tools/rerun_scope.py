"""Print, as a Markdown table, the library files each rule's code provenance tracks: the osteoloc modules its
script imports, directly or through others (`osteoloc.provenance.library_sources`). Editing one of them
reruns that rule's jobs and what follows them; editing any other file reruns none of them.

    PYTHONPATH=src python tools/rerun_scope.py            # every rule with a script:
    PYTHONPATH=src python tools/rerun_scope.py --rules    # the other way round: file -> rules

Rule -> script is read from workflow/rules/*.smk. A rule that adds modules for some studies only
(`library_code(script, REFERENCES_CODE)`: the expert references reader when cohort.references is set) is
marked; its row shows what a study without them tracks.
"""

import argparse
import re
import sys
from pathlib import Path

from osteoloc.provenance import PACKAGE_ROOT, library_sources

REPO = Path(__file__).resolve().parents[1]
RULE = re.compile(r"^\s*(?:rule|checkpoint) (\w+):")
SCRIPT = re.compile(r"""^\s*["'](?:\.\./)*scripts/(\w+\.py)["']""")
OPTIONAL_CODE = re.compile(r"library_code\(\s*\"[\w.]+\",\s*(\w+)\s*\)")


def _optional_modules(text, name):
    """The osteoloc modules the .smk list `name` may hold (the quoted module names of its assignment)."""
    m = re.search(rf"^{name} = (.*?)\n(?=\S)", text, re.S | re.M)
    return re.findall(r"[\"'](osteoloc[\w.]*)[\"']", m.group(1)) if m else [name]


def rule_scripts(rules_dir=REPO / "workflow" / "rules"):
    """{rule: (script file name, osteoloc modules it adds for some studies)} from the .smk files, in file order."""
    found = {}
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        text = smk.read_text()
        rule, optional = None, []
        for line in text.splitlines():
            if m := RULE.match(line):
                rule, optional = m.group(1), []
            elif (m := OPTIONAL_CODE.search(line)) and rule:
                optional += _optional_modules(text, m.group(1))
            elif (m := SCRIPT.match(line)) and rule:
                found[rule] = (m.group(1), optional)
    return found


def tracked(script):
    """The library files `script` tracks, relative to src/osteoloc, package __init__ files left out."""
    return [Path(p).relative_to(PACKAGE_ROOT).as_posix() for p in library_sources(REPO / "scripts" / script)
            if Path(p).name != "__init__.py"]


def rule_table(scripts):
    lines = ["| rule | script | files | library files tracked (src/osteoloc/; `__init__.py` files left out) |",
             "|---|---|---|---|"]
    for rule, (script, optional) in scripts.items():
        files = tracked(script)
        mark = f" (+ {', '.join(optional)} when the study uses it)" if optional else ""
        lines.append(f"| {rule}{mark} | {script} | {len(files)} | {', '.join(files)} |")
    return "\n".join(lines)


def file_table(scripts):
    users = {}
    for rule, (script, _) in scripts.items():
        for path in tracked(script):
            users.setdefault(path, []).append(rule)
    lines = ["| library file | rules whose jobs rerun when it changes |", "|---|---|"]
    lines += [f"| {path} | {', '.join(rules)} |" for path, rules in sorted(users.items())]
    untracked = sorted(p.relative_to(PACKAGE_ROOT).as_posix() for p in PACKAGE_ROOT.rglob("*.py")
                       if p.name != "__init__.py" and p.relative_to(PACKAGE_ROOT).as_posix() not in users)
    lines += [f"| {path} | (none) |" for path in untracked]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", action="store_true", help="one row per library file: the rules it reruns")
    args = parser.parse_args(argv)
    scripts = rule_scripts()
    print(file_table(scripts) if args.rules else rule_table(scripts))


if __name__ == "__main__":
    sys.exit(main())
