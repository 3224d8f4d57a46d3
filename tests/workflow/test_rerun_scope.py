"""Rerun scope that matches meaning, on a small CI study with a (fake) BoneFinder: after the cohort and the
preprocessing have run, editing how expert references or study arms are read plans none of the phantom,
BoneFinder or preprocessing jobs of a study without references; editing code those jobs do use plans them.
Dry runs only: the completed run is put back exactly after each edit.
"""

import os
import sys

import pytest
from workflow_copy import CI_CONFIG, copy_workflow, planned, snakemake, write_override

pytestmark = pytest.mark.workflow

COHORT_RULES = {"phantom_shard", "phantom_cohort", "bonefinder_plan", "bonefinder_shard", "bonefinder"}
PREPROCESS_RULES = {"preprocess_plan", "preprocess_shard", "preprocess_exclusions", "preprocess"}
# BoneFinder stand-in: copies the phantom's automatic points of the radiograph (images/<stem>.dcm).
FAKE_BONEFINDER = (f"{sys.executable} -c \"import pathlib, shutil, sys; image = pathlib.Path(sys.argv[1]); "
                   "shutil.copy(image.parent.parent / 'points' / 'auto' / (image.stem + '.pts'), sys.argv[2])\" "
                   "{image} {points}")


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    """A copy of the workflow with the phantom, BoneFinder and the preprocessing run (4 subjects, 2 shards
    of each; none of the DICOM syntaxes only dcmtk writes, so no system package is needed)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("scope") / "study")
    override = write_override(workdir, {
        "cohort": {"phantom": {"subjects": 4, "shard_subjects": 2,
                               "dicom": {"transfer_syntax": {"jpegls": 0, "jpeg_lossless": 0}}},
                   "bonefinder": {"command": FAKE_BONEFINDER}},
        "preprocess": {"shard_size": 2, "max_excluded_fraction": 1.0}})  # every broken kind in 4 subjects
    args = ("--cores", "2", "--configfile", CI_CONFIG, override)
    snakemake(workdir, "preprocess", *args)
    return workdir, args


def _planned_rules_with_edits(workdir, args, *modules):
    """Rules `snakemake -n preprocess` plans while each src/osteoloc/<module> has a comment appended; the
    files are put back exactly (content and mtime) afterwards."""
    paths = [workdir / "src" / "osteoloc" / module for module in modules]
    originals = [(path.read_bytes(), path.stat()) for path in paths]
    try:
        for path, (original, _) in zip(paths, originals):
            path.write_bytes(original + b"\n# a comment added by test_rerun_scope\n")
        return {rule for rule, _ in planned(workdir, "preprocess", *args)}
    finally:
        for path, (original, stat) in zip(paths, originals):
            path.write_bytes(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_editing_what_the_study_does_not_use_reruns_nothing_of_the_cohort(preprocessed):
    """How expert references and study arms are read: neither is code of a study without references."""
    workdir, args = preprocessed
    assert _planned_rules_with_edits(workdir, args, "cohort/references.py", "train/arms.py") == set()


@pytest.mark.parametrize("module, expected, spared", [
    # the check and the plan (a checkpoint) run it too: a dry run cannot look past the rerun checkpoint, so
    # the shard jobs are planned once it has run (they track this file: see tools/rerun_scope.py)
    ("preprocess/sources.py", {"check_inputs", "preprocess_plan", "preprocess_exclusions", "preprocess"},
     COHORT_RULES),
    ("cohort/bonefinder.py", {"bonefinder_shard"}, {"phantom_shard", "phantom_cohort"}),
    # the shard plan's maker: the BoneFinder plan is the cohort's own (cohort.stages), not the preprocessing's
    ("preprocess/shards.py", {"preprocess_plan", "preprocess_exclusions", "preprocess"},
     COHORT_RULES | {"check_inputs"}),
])
def test_editing_code_the_jobs_use_reruns_them(preprocessed, module, expected, spared):
    """The same check can fail: code these jobs run does plan them, and only the jobs that run it (and
    what follows them)."""
    workdir, args = preprocessed
    rules = _planned_rules_with_edits(workdir, args, module)
    assert expected <= rules, f"editing {module} plans {sorted(rules)}"
    assert not rules & spared, f"editing {module} also plans {sorted(rules & spared)}"
