"""The cohort rules through snakemake: phantom_shard jobs and their gather phantom_cohort on CI's study, the
DICOM transfer syntaxes it asks for, the bonefinder rule with a fake command, and the counterfactual twins
the gather adds when cue.twins is on."""

import sys

import pandas as pd
import pydicom
import pytest
import yaml
from workflow_copy import CI_CONFIG, REPO, TRAINED, copy_study, snakemake, unwritable_syntaxes, write_override

from osteoloc.io.pts import read_pts
from osteoloc.cohort.phantom.cohort import BROKEN_KINDS, TWIN_IMAGES, TWIN_MANIFEST
from osteoloc.cohort.phantom.dicom import TRANSFER_SYNTAXES

pytestmark = pytest.mark.workflow
SYNTAX_NAMES = {uid: name for name, (uid, _) in TRANSFER_SYNTAXES.items()}


@pytest.fixture(scope="module")
def workdir(ci_study, tmp_path_factory):
    """A copy of the session's CI study (its phantom_cohort ran there); the tests below change its cohort."""
    return copy_study(ci_study, tmp_path_factory.mktemp("cohort_wf") / "study", without=TRAINED)


def test_phantom_cohort_rule_on_ci_study(workdir):
    snakemake(workdir, "phantom_cohort", "--cores", "1", "--configfile", CI_CONFIG)
    cohort = workdir / "results" / "cohort"
    manifest = pd.read_csv(cohort / "manifest.csv")
    assert len(manifest) == 20 and manifest["subject"].is_unique
    assert set(pd.read_csv(cohort / "broken.csv")["kind"]) == set(BROKEN_KINDS)
    assert (cohort / "truth.h5").exists() and (cohort / "labels.csv").exists()
    assert (workdir / "results" / "logs" / "cohort" / "phantom_cohort.log").read_text().strip()
    # CI's 20 subjects at 8 per shard: three shard jobs, whose temporary folders are gone after the gather
    shard_logs = sorted((workdir / "results" / "logs" / "cohort").glob("phantom_shard_*.log"))
    assert [p.name for p in shard_logs] == [f"phantom_shard_{k}.log" for k in range(3)]
    assert not any((cohort / "shards").glob("*"))
    assert all((cohort / path).exists() for path in manifest["image_path"])
    # twins off (the default): no twin files
    assert not (cohort / TWIN_MANIFEST).exists() and not (cohort / TWIN_IMAGES).exists()
    # a second run has nothing to do
    again = snakemake(workdir, "phantom_cohort", "--cores", "1", "--configfile", CI_CONFIG)
    assert "Nothing to be done" in again.stdout + again.stderr


def _written_syntaxes(workdir):
    """The transfer syntax names of the cohort's radiographs (a truncated one keeps its header)."""
    cohort = workdir / "results" / "cohort"
    paths = pd.read_csv(cohort / "manifest.csv")["image_path"]
    return {SYNTAX_NAMES[pydicom.dcmread(cohort / p, stop_before_pixels=True).file_meta.TransferSyntaxUID]
            for p in paths}


def _asked_syntaxes(config_path):
    weights = yaml.safe_load(config_path.read_text())["cohort"]["phantom"]["dicom"]["transfer_syntax"]
    return {name for name, weight in weights.items() if float(weight) > 0}


def test_ci_study_writes_every_transfer_syntax_it_asks_for(ci_study):
    """Every syntax of the study's config (on a machine without dcmtk: those pydicom writes) is in the cohort."""
    assert _written_syntaxes(ci_study) == _asked_syntaxes(ci_study / CI_CONFIG)


@pytest.mark.skipif(bool(unwritable_syntaxes()), reason=f"dcmtk not installed: the CI study was built without "
                    f"{', '.join(unwritable_syntaxes())} (tools/system-packages.sh installs dcmtk)")
def test_ci_study_has_the_dcmtk_syntaxes(ci_study):
    """With dcmtk the CI study is experiments/ci.yaml as written: JPEG-LS and JPEG Lossless files included."""
    assert _asked_syntaxes(ci_study / CI_CONFIG) == _asked_syntaxes(REPO / CI_CONFIG)
    assert {"jpegls", "jpeg_lossless"} <= _written_syntaxes(ci_study)


def test_bonefinder_rule_runs_the_configured_command(workdir, tmp_path):
    cohort = workdir / "results" / "cohort"
    manifest = pd.read_csv(cohort / "manifest.csv")
    known = cohort / manifest["manual_points_path"].iloc[0]
    command = f"{sys.executable} -c \"import shutil, sys; shutil.copy('{known}', sys.argv[2])\" {{image}} {{points}}"
    override = write_override(tmp_path, {"cohort": {"bonefinder": {"command": command}}})
    snakemake(workdir, "bonefinder", "--cores", "1", "--configfile", CI_CONFIG, override)
    out = pd.read_csv(cohort / "bonefinder" / "manifest.csv")
    assert list(out["subject"]) == list(manifest["subject"])
    for row in out.itertuples():
        assert (cohort / "bonefinder" / row.points_path).exists()
    assert read_pts(cohort / "bonefinder" / out["points_path"].iloc[-1]).shape == (160, 2)


def test_twins_on_the_gather_writes_them_as_declared_outputs(workdir, tmp_path):
    # last in this file: it regenerates the cohort with the cue on
    cue = {"cohort": {"phantom": {"cue": {"enabled": True, "twins": True}}}}
    snakemake(workdir, "phantom_cohort", "--cores", "2", "--configfile", CI_CONFIG, write_override(tmp_path, cue))
    cohort = workdir / "results" / "cohort"
    manifest = pd.read_csv(cohort / "manifest.csv")
    twins = pd.read_csv(cohort / TWIN_MANIFEST)
    assert len(twins) == len(manifest) == 20
    assert list(twins["subject"]) == list(manifest["subject"])
    assert list(twins["points_path"]) == list(manifest["points_path"])
    assert all((cohort / path).exists() for path in twins["image_path"])
    assert not any((cohort / "shards").glob("*"))
