"""Rule check_inputs through snakemake on CI's study pointed at a small manifest cohort: a label column the
table lacks stops the study in check_inputs, with the column named in its log, before any preprocessing job;
mapped to the user's own names (a wide Excel sheet) the same study preprocesses to the long CSV's grades.
With a BoneFinder command, the label table is checked (rule check_labels) before any BoneFinder job."""

import sys

import numpy as np
import pandas as pd
import pytest
from workflow_copy import CI_CONFIG, copy_workflow, snakemake, write_override

from helpers import make_cohort
from osteoloc.io.labels import hip_key, read_labels
from osteoloc.io.study_h5 import StudyFile
from osteoloc.names import SIDES, TARGETS

pytestmark = pytest.mark.workflow
STUDY = "results/preprocess/study.h5"  # the preprocessing's end: every shard job is upstream of it


def test_a_bad_label_column_stops_the_study_before_any_shard(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    manifest, long_labels = make_cohort(tmp_path / "cohort", 4, seed=2)
    labels = tmp_path / "cohort" / "renamed.csv"
    pd.read_csv(long_labels, dtype=str).rename(columns={"osteo_acet_sup": "ost_as"}).to_csv(labels, index=False)
    cohort = {"source": "manifest", "manifest": str(manifest), "labels": str(labels)}
    (tmp_path / "bad").mkdir()
    override = write_override(tmp_path / "bad", {"cohort": cohort})
    # --keep-going: snakemake would start every job that does not depend on the failed one
    failed = snakemake(workdir, STUDY, "--cores", "2", "--keep-going", "--configfile", CI_CONFIG, override,
                       check=False)
    assert failed.returncode != 0
    results = workdir / "results"
    log = (results / "logs" / "preprocess" / "check_inputs.log").read_text()
    assert "renamed.csv: label CSV lacks column(s) 'osteo_acet_sup'" in log
    assert "Error in rule check_inputs" in failed.stdout + failed.stderr
    shards = results / "preprocess" / "shards"  # holds only the content-digest cache the workflow's parse writes
    assert not (shards / "plan.json").exists()  # no plan
    assert not [p for p in shards.glob("*") if p.is_dir()]  # no shard job started
    assert not list((results / "logs" / "preprocess").glob("shard_*.log"))
    assert not (results / "preprocess" / "input_check.csv").exists()

    # The same grades in the user's wide sheet under their own names: mapped, the study runs
    long = pd.read_csv(long_labels, dtype=str)
    wide = long.pivot(index=["subject", "visit"], columns="side", values=list(TARGETS))
    wide.columns = [f"G_{t}_{side[0].upper()}" for t, side in wide.columns]
    wide = wide.reset_index().rename(columns={"subject": "Patient", "visit": "Time point"})
    excel = tmp_path / "cohort" / "grades.xlsx"
    wide.to_excel(excel, sheet_name="OARSI", index=False)
    names = {"subject": "Patient", "visit": "Time point",
             **{f"{t}_{side}": f"G_{t}_{side[0].upper()}" for t in TARGETS for side in SIDES}}
    cohort |= {"labels": str(excel), "labels_layout": "wide", "label_columns": names}
    (tmp_path / "good").mkdir()
    override = write_override(tmp_path / "good", {"cohort": cohort})
    snakemake(workdir, STUDY, "--cores", "2", "--configfile", CI_CONFIG, override)
    check = pd.read_csv(results / "preprocess" / "input_check.csv")
    assert list(check["status"]) == ["ok"] * 4
    expected = read_labels(long_labels).grades
    with StudyFile(results / "preprocess" / "study.h5") as study:
        rows = study.read(["grades", "subject", "visit", "side"])
    assert len(rows.grades) == 8
    for grades, subject, visit, side in zip(rows.grades, rows.subject, rows.visit, rows.side):
        np.testing.assert_array_equal(grades, expected[hip_key(subject, visit, side)])


def test_labels_are_checked_before_any_bonefinder_job(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    manifest, labels = make_cohort(tmp_path / "cohort", 2, seed=3)
    coded = pd.read_csv(labels, dtype=str)
    coded.assign(side=coded["side"].map({"right": "1", "left": "2"})).to_csv(labels, index=False)
    points = pd.read_csv(manifest)["points_path"].iloc[0]
    known = tmp_path / "cohort" / points
    command = f"{sys.executable} -c \"import shutil, sys; shutil.copy('{known}', sys.argv[2])\" {{image}} {{points}}"
    cohort = {"source": "manifest", "manifest": str(manifest), "labels": str(labels),
              "bonefinder": {"command": command}}
    (tmp_path / "bad").mkdir()
    failed = snakemake(workdir, "bonefinder", "--cores", "1", "--keep-going", "--configfile", CI_CONFIG,
                       write_override(tmp_path / "bad", {"cohort": cohort}), check=False)
    assert failed.returncode != 0 and "Error in rule check_labels" in failed.stdout + failed.stderr
    results = workdir / "results"
    log = (results / "logs" / "preprocess" / "check_labels.log").read_text()
    assert "not one label row is usable" in log and "unknown side '1'" in log and "cohort.side_codes" in log
    assert not (results / "cohort" / "bonefinder").exists()  # no plan, no BoneFinder job
    (tmp_path / "good").mkdir()
    cohort["side_codes"] = {1: "right", 2: "left"}
    snakemake(workdir, "bonefinder", "--cores", "1", "--configfile", CI_CONFIG,
              write_override(tmp_path / "good", {"cohort": cohort}))
    assert len(pd.read_csv(results / "cohort" / "bonefinder" / "manifest.csv")) == 2
    assert pd.read_csv(results / "preprocess" / "label_check.csv").empty
