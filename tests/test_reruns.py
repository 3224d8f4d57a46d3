"""Partial reruns on the tiny study: after a completed run, each config or code change makes `snakemake -n`
plan exactly the jobs that depend on it. Proven with dry runs, so the completed run is never altered.

"What follows a rule" is measured by snakemake itself: `-n --forcerun RULE` plans RULE's jobs and every job
downstream of them, which is what a change to RULE's inputs must rerun.
"""

import os
from pathlib import Path

import pytest
from workflow_copy import CI_CONFIG, completed_study, planned, script_rules, snakemake, write_override  # noqa: F401

pytestmark = pytest.mark.workflow


def _rules(jobs):
    return {rule for rule, _ in jobs}


def _job_set(jobs):
    return {(rule, tuple(sorted(wildcards.items()))) for rule, wildcards in jobs}


def test_completed_study_reruns_nothing(completed_study):
    assert planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG) == []
    changes = snakemake(completed_study, "--list-changes", "params", "--configfile", CI_CONFIG)
    assert changes.stdout.strip() == "", f"params changes after a completed run:\n{changes.stdout}"
    summary = snakemake(completed_study, "--summary", "--configfile", CI_CONFIG).stdout
    rows = [line.split("\t") for line in summary.splitlines()[1:] if line.strip()]
    assert rows, "--summary listed no outputs"
    assert all(row[-1] == "-" for row in rows), "--summary plans work:\n" + "\n".join(
        "\t".join(r) for r in rows if r[-1] != "-"
    )


def test_prior_hyperparameter_reruns_only_prior_jobs_and_what_follows(completed_study, tmp_path):
    """A third prior weight in the grid: only its new grid points, the selection, and the prior model's
    training, Grad-CAM and the report run; preprocessing, splits, the baseline and paper B are reused."""
    override = write_override(tmp_path, {"train": {"prior": {"grid": {"lambda": [0.5, 1.0, 2.0]}}}})
    jobs = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, override)
    rules = _rules(jobs)
    assert {"train_grid_point", "select_prior_round", "select_prior", "train"} <= rules
    allowed = {"train_grid_point", "select_prior_round", "select_prior", "figure_grid", "train", "explain",
               "report_tables", "report_figures", "report_summary", "all"}
    assert rules <= allowed, f"unrelated rules rerun: {sorted(rules - allowed)}"
    for rule, wildcards in jobs:
        if rule in ("train", "explain"):
            assert wildcards["model"] == "prior", f"{rule} {wildcards} reruns although it has no prior"
        if rule == "train_grid_point":
            assert wildcards["point"].startswith("lam2"), f"grid point {wildcards['point']} was already done"


def test_report_option_reruns_only_the_report(completed_study, tmp_path):
    override = write_override(tmp_path, {"report": {"tables": {"decimals": 2}}})
    rules = _rules(planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, override))
    assert "report_tables" in rules
    assert rules <= {"report_tables", "report_summary", "all"}, f"beyond the report: {sorted(rules)}"
    changed = snakemake(completed_study, "--list-changes", "params", "--configfile", CI_CONFIG, override).stdout
    assert changed.strip(), "--list-changes params lists no output"
    assert all("/report/" in line for line in changed.split()), changed


def test_target_spacing_reruns_everything_downstream_of_preprocessing(completed_study, tmp_path):
    override = write_override(tmp_path, {"preprocess": {"spacing_mm": 1.2}})
    jobs = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, override)
    downstream = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, "--forcerun", "preprocess")
    assert "phantom_cohort" not in _rules(jobs), "the cohort does not depend on the pixel spacing"
    assert {"preprocess", "train", "explain", "report_tables"} <= _rules(jobs)
    assert _job_set(jobs) == _job_set(downstream)


LIBRARY_MODULE = "stats.py"  # statistics of the report: imported by report scripts only


def test_editing_library_code_reruns_the_rules_that_use_it(completed_study):
    """Editing src/osteoloc/stats.py plans exactly the rules whose scripts import it, and what follows."""
    from osteoloc.provenance import library_sources

    module = completed_study / "src" / "osteoloc" / LIBRARY_MODULE
    users = sorted(
        rule
        for script, rules in script_rules(completed_study).items()
        for rule in rules
        if any(Path(p).name == LIBRARY_MODULE and Path(p).parent.name == "osteoloc"
               for p in library_sources(completed_study / "scripts" / f"{script}.py"))
    )
    assert users, f"no rule's script imports osteoloc/{LIBRARY_MODULE}"
    expected = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, "--forcerun", *users)

    original, stat = module.read_bytes(), module.stat()
    try:
        module.write_bytes(original + b"\n# a comment added by test_reruns\n")
        jobs = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG)
    finally:  # put the completed run back exactly: content and mtime
        module.write_bytes(original)
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert set(users) <= _rules(jobs)
    assert _job_set(jobs) == _job_set(expected)
    assert "preprocess" not in _rules(jobs) and "train" not in _rules(jobs)
    assert planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG) == [], "not restored"
