"""Fixtures every test folder shares, and the rule that no test may skip where every tool is installed.

tests/unit: the library on small inputs, no snakemake (`make test-fast`). tests/workflow: tests that run
snakemake or a local SLURM. Workflow tests that need CI's small study (experiments/ci.yaml) get it built once
per session (`ci_study`; one build shared by the pytest-xdist workers through a file lock) and work on a copy
(`ci_copy`), so the phantom, preprocessing and trained models are not rebuilt by every test.
"""

import fcntl
import os
import shutil
import traceback
from pathlib import Path

import pandas as pd
import pytest
from workflow_copy import CI_CONFIG, copy_study, copy_workflow, snakemake

from osteoloc.cohort.phantom.cohort import make_cohort
from helpers import INTEGRITY_PHANTOM, INTEGRITY_SETTINGS, PREPROCESS_SETTINGS, bad_cohort, load_study
from osteoloc.preprocess.stages import preprocess_study

HERE = Path(__file__).resolve().parent
WILD_DATA = HERE.parents[1] / "shared" / "data" / "wild"
# Set by .ci/run, where every system package is installed: a skipped test is then a failed one.
NO_SKIPS = "OSTEOLOC_NO_SKIPS"


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE / "workflow" in Path(item.fspath).parents:
            item.add_marker(pytest.mark.workflow)
    # Order (the same in every worker, as xdist requires; `make test` keeps it: --no-loadscope-reorder):
    # the first test that needs CI's study, so that it builds while the other worker runs the unit tests;
    # then the unit tests; then the SLURM group, the longest serial stretch, started early; then the rest.
    first = [next((item for item in items if "ci_study" in item.fixturenames), None)]
    first = [item for item in first if item is not None]
    slurm = [item for item in items if _group(item) == "slurm" and item not in first]
    unit = [item for item in items if HERE / "unit" in Path(item.fspath).parents and item not in first]
    rest = [item for item in items if item not in first + slurm + unit]
    items[:] = first + unit + slurm + rest


def _group(item):
    marker = item.get_closest_marker("xdist_group")
    return (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(NO_SKIPS) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {NO_SKIPS}=1 says every test must run here: {reason}"


def _shared_folder(tmp_path_factory):
    """A folder all pytest-xdist workers of this run see (the run's base temp folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def ci_study(tmp_path_factory):
    """A copy of the workflow that has run CI's small study to completion (every rule, local executor).

    Shared by every test of the session: read it, or dry-run snakemake on it, but change nothing (use
    `ci_copy` to change things). Built once per run; pytest-xdist workers wait for the first one's build.
    """
    shared = _shared_folder(tmp_path_factory)
    study, failed = shared / "ci_study", shared / "ci_study.failed"
    with open(shared / "ci_study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"CI's study failed to build earlier in this run:\n{failed.read_text()}")
        if not (shared / "ci_study.built").exists():
            try:
                shutil.rmtree(study, ignore_errors=True)
                copy_workflow(study)
                snakemake(study, "--cores", "2", "--configfile", CI_CONFIG, timeout=1800)
            except BaseException:
                failed.write_text(traceback.format_exc())
                raise
            (shared / "ci_study.built").touch()
    return study


@pytest.fixture
def ci_copy(ci_study, tmp_path):
    """`ci_copy(without=())`: a private copy of the built CI study; `without` names folders under results/
    left out (their jobs run again), e.g. workflow_copy.TRAINED for the phantom, preprocessing and splits only."""
    count = iter(range(100))

    def make(without=()):
        return copy_study(ci_study, tmp_path / f"ci_study{next(count)}", without=without)

    return make


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """`phantom_cohort(config)`: the folder of a phantom cohort generated with `config`, one per config and
    session. Tests read it; those that change files copy it first."""
    made = {}

    def make(config):
        key = repr(sorted(config.items()))
        if key not in made:
            made[key] = tmp_path_factory.mktemp("phantom") / "cohort"
            make_cohort(config, made[key])
        return made[key]

    return make


@pytest.fixture(scope="session")
def phantom_study(phantom_cohort, tmp_path_factory):
    """`phantom_study(config, settings, truth=False)`: {dir, manifest, study} of the phantom cohort of `config`
    and its study preprocessed with `settings` (with the phantom's truth masks when `truth`). The untouched
    cohort must pass every check. One per arguments and session; tests read it or copy `dir` first."""
    made = {}

    def make(config, settings, truth=False):
        key = repr((sorted(config.items()), sorted(settings.items()), truth))
        if key not in made:
            folder = phantom_cohort(config)
            out = tmp_path_factory.mktemp("phantom_study")
            preprocess_study(folder / "manifest.csv", folder / "labels.csv", out / "study.h5", out / "excl.csv",
                             truth_path=folder / "truth.h5" if truth else None, **settings)
            assert pd.read_csv(out / "excl.csv").empty, "the untouched phantom cohort must pass every check"
            made[key] = dict(dir=folder, manifest=pd.read_csv(folder / "manifest.csv", keep_default_na=False),
                             study=load_study(out / "study.h5"))
        return made[key]

    return make


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cohort")
    manifest, labels, expected = bad_cohort(tmp_path)
    study, exclusions = tmp_path / "study.h5", tmp_path / "exclusions.csv"
    kept = preprocess_study(manifest, labels, study, exclusions, **PREPROCESS_SETTINGS)
    return dict(dir=tmp_path, manifest=manifest, labels=labels, study=study, exclusions=exclusions, kept=kept,
                expected=expected)


@pytest.fixture(scope="module")
def integrity_phantom(phantom_study):
    """The untouched phantom cohort of the input-integrity tests and its study: {dir, manifest (DataFrame),
    study} (helpers.INTEGRITY_PHANTOM, preprocessed with helpers.INTEGRITY_SETTINGS)."""
    return phantom_study(INTEGRITY_PHANTOM, INTEGRITY_SETTINGS)


@pytest.fixture(scope="session")
def wild_data():
    """The optional real files beside the repository (../shared/data/wild); tests skip, saying so, without."""
    if not WILD_DATA.is_dir():
        pytest.skip(f"{WILD_DATA} not present (real files beside the repository, not shipped with it)")
    return WILD_DATA
