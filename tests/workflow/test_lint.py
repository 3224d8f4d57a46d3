"""`snakemake --lint` is clean except for findings docs/cluster.md justifies; snakefmt formats every file.

The justified findings are listed in docs/cluster.md under "Lint findings we keep", one `- "<title>"` line
each; any other finding fails the test, and so does a justification that no longer matches a finding.
"""

import functools
import re
import subprocess
from pathlib import Path

import pytest
from workflow_copy import REPO, SNAKEMAKE, run_env

SNAKEFMT = str(Path(SNAKEMAKE).with_name("snakefmt"))
DOC = REPO / "docs" / "cluster.md"
_LINT_TARGET = re.compile(r"^Lints for (rule|snakefile) (\S+?):?(?: \(|$)")
_LINT_TITLE = re.compile(r"^    \* (.+?):$")


def _snakemake_files():
    return [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


@functools.cache
def _lint_findings(configfile):
    """[(kind, name, title)] of `snakemake --lint` on the given study."""
    proc = subprocess.run(
        [SNAKEMAKE, "--lint", "--configfile", configfile],
        cwd=REPO, env=run_env(REPO), capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    findings, target = [], None
    for line in out.splitlines():
        if m := _LINT_TARGET.match(line):
            target = (m.group(1), m.group(2))
        elif (m := _LINT_TITLE.match(line)) and target:
            findings.append((*target, m.group(1)))
    if proc.returncode != 0 and not findings:
        raise AssertionError(f"snakemake --lint failed without lints:\n{out[-5000:]}")
    return tuple(findings)


def _justified_titles():
    text = DOC.read_text()
    section = text.split("## Lint findings we keep", 1)
    assert len(section) == 2, "docs/cluster.md lacks the section '## Lint findings we keep'"
    body = section[1].split("\n## ", 1)[0]
    return set(re.findall(r'^- "(.+?)"', body, flags=re.M))


@pytest.mark.parametrize("configfile", ["config.yaml", "experiments/ci.yaml"])
def test_lint_findings_are_all_justified(configfile):
    findings = _lint_findings(configfile)
    justified = _justified_titles()
    unjustified = sorted({f"{kind} {name}: {title}" for kind, name, title in findings if title not in justified})
    assert not unjustified, "lints neither fixed nor justified in docs/cluster.md:\n" + "\n".join(unjustified)


def test_every_justification_still_matches_a_finding():
    titles = {title for _, _, title in _lint_findings("config.yaml")}
    stale = _justified_titles() - titles
    assert not stale, f"docs/cluster.md justifies lints snakemake no longer reports: {sorted(stale)}"


@pytest.mark.parametrize("path", _snakemake_files(), ids=lambda p: p.name)
def test_snakefmt_check(path):
    proc = subprocess.run([SNAKEFMT, "--check", "--diff", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{path.relative_to(REPO)} is not formatted by snakefmt:\n{proc.stdout}{proc.stderr}"
