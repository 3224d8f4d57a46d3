"""Partial reruns on the tiny study: after a completed run, each config or code change makes `snakemake -n`
plan exactly the jobs that depend on it. Proven with dry runs, so the completed run is never altered.

"What follows a rule" is measured by snakemake itself: `-n --forcerun RULE` plans RULE's jobs and every job
downstream of them, which is what a change to RULE's inputs must rerun.
"""

import os
from pathlib import Path

import pytest
from workflow_copy import CI_CONFIG, copy_study, copy_workflow, planned, script_rules, snakemake, write_override

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def completed_study(ci_study, tmp_path_factory):
    """A copy of the session's completed CI study: tests here append to files and put them back."""
    return copy_study(ci_study, tmp_path_factory.mktemp("reruns") / "study")


def _rules(jobs):
    return {rule for rule, _ in jobs}


def _job_set(jobs):
    return {(rule, tuple(sorted(wildcards.items()))) for rule, wildcards in jobs}


def _planned_with_appended(workdir, path, extra):
    """The jobs `snakemake -n` plans on `workdir` while `path` has `extra` bytes appended; then the file is
    put back exactly (content and mtime), so the completed study stays complete."""
    original, stat = path.read_bytes(), path.stat()
    try:
        path.write_bytes(original + extra)
        return planned(workdir, "--cores", "1", "--configfile", CI_CONFIG)
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _summary_plans(workdir, *args):
    """{output: plan} from `snakemake --summary` (plan: "no update", "update pending", ...)."""
    out = snakemake(workdir, "--summary", *args).stdout
    lines = [line.split("\t") for line in out.splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    assert header[0] == "output_file" and header[-1] == "plan", header
    return {row[0]: row[-1] for row in rows}


def test_completed_study_reruns_nothing(completed_study):
    assert planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG) == []
    for change in ("input", "code"):  # (`--list-changes params` lists one output per job in 9.27.1)
        listed = snakemake(completed_study, "--list-changes", change, "--configfile", CI_CONFIG).stdout
        assert listed.strip() == "", f"--list-changes {change} after a completed run:\n{listed}"
    plans = _summary_plans(completed_study, "--configfile", CI_CONFIG)
    assert plans, "--summary listed no outputs"
    pending = {output: plan for output, plan in plans.items() if plan != "no update"}
    assert not pending, f"--summary plans work after a completed run: {pending}"


def test_prior_hyperparameter_reruns_only_prior_jobs_and_what_follows(completed_study, tmp_path):
    """A second plateau radius in the prior's grid: only the new grid points, the selection, and the prior
    model's training, Grad-CAM and the report run; preprocessing, splits, the baseline and paper B are
    reused, and so are the grid points already trained."""
    override = write_override(tmp_path, {"train": {"prior": {"grid": {"radius": [3.0, 5.0]}}}})
    jobs = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, override)
    rules = _rules(jobs)
    assert {"train_grid_point", "select_prior_round", "select_prior", "train"} <= rules
    # Everything planned follows the grid search (that includes paper B's report, which compares with the
    # prior model's Grad-CAM), and nothing upstream of it or beside it is.
    after_grid = planned(
        completed_study, "--cores", "1", "--configfile", CI_CONFIG, override, "--forcerun", "train_grid_point"
    )
    assert _job_set(jobs) <= _job_set(after_grid), f"unrelated jobs: {_job_set(jobs) - _job_set(after_grid)}"
    assert not rules & {"phantom_cohort", "preprocess", "split", "segment_patches", "segment_train"}
    for rule, wildcards in jobs:
        if rule in ("train", "explain"):
            assert wildcards["model"] == "prior", f"{rule} {wildcards} reruns although it has no prior"
        if rule == "train_grid_point":
            assert "_r5_" in wildcards["point"], f"grid point {wildcards['point']} was already trained"
            assert not (completed_study / "results" / "grid" / wildcards["point"]).exists()


def test_a_dry_run_says_how_many_grid_point_jobs_a_grid_change_adds(tmp_path):
    """The CI grid (lambda 0.5, 1) grown by a third lambda, with the first two points' runs finished: the run says
    1 of 3 first-round jobs, 2 done, and that the extension round's jobs appear only after its checkpoint."""
    workdir = copy_workflow(tmp_path / "study")
    for point in ("lam0.5_r3_sig9", "lam1_r3_sig9", "lam2_r1_sig9"):  # the last: a point of no grid asked for
        (workdir / "results" / "grid" / point).mkdir(parents=True)
        (workdir / "results" / "grid" / point / "best.pt").write_bytes(b"")
    override = write_override(tmp_path, {"train": {"prior": {"grid": {"lambda": [0.5, 1.0, 1.5]}}}})
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", CI_CONFIG, override)
    out = proc.stdout + proc.stderr
    assert "train: 1 of 3 grid-point jobs of the first selection round to run (2 have best.pt" in out, out[-3000:]
    assert "1 other point trained before" in out and "appear only after it has run" in out


def test_report_option_reruns_only_the_report(completed_study, tmp_path):
    override = write_override(tmp_path, {"report": {"tables": {"decimals": 2}}})
    rules = _rules(planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, override))
    assert "report_tables" in rules
    # paper B's tables are formatted with the same decimals, so its report rule is part of "the report"
    assert rules <= {"report_tables", "report_summary", "segment_report", "all"}, f"beyond the report: {sorted(rules)}"
    plans = _summary_plans(completed_study, "--configfile", CI_CONFIG, override)
    pending = sorted(output for output, plan in plans.items() if plan != "no update")
    assert pending, "--summary plans no update"
    assert all("/report/" in output for output in pending), pending


def test_target_spacing_reruns_everything_downstream_of_preprocessing(completed_study, tmp_path):
    override = write_override(tmp_path, {"preprocess": {"spacing_mm": 1.2}})
    jobs = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, override)
    # every shard job and all that follows them (the preprocess gather included)
    downstream = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, "--forcerun", "preprocess_shard")
    assert "phantom_cohort" not in _rules(jobs), "the cohort does not depend on the pixel spacing"
    assert {"preprocess", "train", "explain", "report_tables"} <= _rules(jobs)
    assert _job_set(jobs) == _job_set(downstream)


LIBRARY_MODULE = ("report", "stats.py")  # statistics of the report: imported by report scripts only


def test_editing_library_code_reruns_the_rules_that_use_it(completed_study):
    """Editing src/osteoloc/report/stats.py plans exactly the rules whose scripts import it, and what follows."""
    from osteoloc.provenance import PACKAGE_ROOT, library_sources

    module = completed_study / "src" / "osteoloc" / Path(*LIBRARY_MODULE)
    # Rules the study defines (report_ablation exists only when arms are configured).
    defined = set(snakemake(completed_study, "--list-rules", "--configfile", CI_CONFIG).stdout.split())
    users = sorted(
        rule
        for script, rules in script_rules(completed_study).items()
        for rule in rules
        if rule in defined and any(Path(p).parts[-3:] == ("osteoloc", *LIBRARY_MODULE)
               for p in library_sources(completed_study / "scripts" / f"{script}.py"))
    )
    assert users, f"no rule's script imports osteoloc/{'/'.join(LIBRARY_MODULE)}"
    expected = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG, "--forcerun", *users)

    jobs = _planned_with_appended(completed_study, module, b"\n# a comment added by test_reruns\n")
    assert set(users) <= _rules(jobs)
    assert _job_set(jobs) == _job_set(expected)
    assert "preprocess" not in _rules(jobs) and "train" not in _rules(jobs)
    assert planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG) == [], "not restored"


def test_a_changed_input_file_reruns_only_its_shard_and_what_follows(completed_study):
    """A radiograph's points file rewritten (a user's fix) reruns the one preprocess_shard job
    that reads it, then the exclusions table, the gather and what follows them; no other shard."""
    from osteoloc.io.shard_folder import read_shard_plan

    plan = read_shard_plan(completed_study / "results" / "preprocess" / "shards" / "plan.json")
    assert len(plan) >= 2, "experiments/ci.yaml should cut the cohort into several shards"
    fixed = next(completed_study / f for f in plan[1] if f.endswith(".pts") and (completed_study / f).is_file())
    # new content, as a fix writes (snakemake ignores a newer mtime when a small file's checksum is
    # unchanged): a trailing blank line, which the .pts reader accepts
    jobs = _planned_with_appended(completed_study, fixed, b"\n")
    shards = [wildcards["shard"] for rule, wildcards in jobs if rule == "preprocess_shard"]
    assert shards == ["1"], f"planned shards {shards} for a file of shard 1"
    expected = planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG,
                       "--forcerun", "preprocess_exclusions", "preprocess")
    # The grid's selection rounds hang on a checkpoint whose later rounds a dry run guesses differently
    # from one plan to the next; every other job must match exactly.
    grid_rounds = {"train_grid_point", "select_prior_round"}

    def settled(plan):
        return {job for job in _job_set(plan) if job[0] not in grid_rounds}

    assert settled(jobs) - {("preprocess_shard", (("shard", "1"),))} == settled(expected)
    assert {"preprocess_exclusions", "preprocess", "split", "train", "explain"} <= _rules(jobs)
    assert not _rules(jobs) & {"phantom_shard", "phantom_cohort", "preprocess_plan"}
    assert planned(completed_study, "--cores", "1", "--configfile", CI_CONFIG) == [], "not restored"
