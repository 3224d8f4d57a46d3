"""The config is refused at parse time, naming the problem: a misspelt top-level section (which would run the
study on the defaults) and a path that the chosen cohort source reads but the config leaves empty (which
used to end in a MissingInputException with a blank file list)."""

import pytest
from workflow_copy import copy_workflow, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("config") / "study")


def _dry_run(workdir, tmp_path, text):
    (tmp_path / "study.yaml").write_text(text)
    proc = snakemake(workdir, "-n", "--cores", "1", "--configfile", tmp_path / "study.yaml", check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_misspelt_section_is_refused_by_name(workdir, tmp_path):
    code, out = _dry_run(workdir, tmp_path, "preproces:\n  crop_size: 64\ntrian:\n  epochs: 2\n")
    assert code != 0
    assert "unknown config section(s) 'preproces', 'trian'" in out, out[-2000:]


@pytest.mark.parametrize("source, given, missing", [
    ("manifest", "", "cohort.manifest, cohort.labels"),
    ("manifest", "  manifest: m.csv\n", "cohort.labels"),
    ("group_hdf5", "  labels: l.csv\n", "cohort.group_hdf5, cohort.points_dir"),
])
def test_a_path_the_source_needs_is_named_when_missing(workdir, tmp_path, source, given, missing):
    code, out = _dry_run(workdir, tmp_path, f"cohort:\n  source: {source}\n{given}")
    assert code != 0
    assert f"cohort.source is '{source}', which reads {missing}" in out, out[-2000:]
    assert "MissingInputException" not in out
