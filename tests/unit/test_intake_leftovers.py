"""Last round's leftovers, on the phantom's files: a person in a split is a cohort and an id (the same id in
two cohorts is two people, each in one split, its rows found by both); two hips whose head centres are
implausibly close are no pelvis; the labels are checked before BoneFinder runs."""


import numpy as np
import pandas as pd
import pytest

from helpers import copy_phantom

from osteoloc.cohort.landmarks import DEFAULT_GROUPS, AnatomyLimits, LandmarkError, check_pair, head_circle
from osteoloc.io.pts import read_hip_points
from osteoloc.io.study_h5 import StudyFile
from osteoloc.io.errors import InputCheckFailed
from osteoloc.cohort.stages import check_labels
from osteoloc.preprocess.sources import check_points
from osteoloc.preprocess.stages import preprocess_study
from osteoloc.train.splits import check_split, make_split, read_split
from osteoloc.train.stages import split_stage

PHANTOM = {"subjects": 8, "seed": 6, "broken_fraction": 0, "spacing_mm": [1.0, 1.0], "oai_fraction": 0.5,
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 0, "jpeg2000": 0}}}


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort(PHANTOM)  # tests/conftest.py: one per config and session


@pytest.fixture
def cohort(phantom, tmp_path):
    return copy_phantom(phantom, tmp_path / "cohort")


# --- splits: cohort + id ------------------------------------------------------------------------------
def test_the_same_id_in_two_cohorts_is_two_people():
    subjects = ["001", "001", "001", "002", "003", "004"]
    cohorts = ["CHECK", "CHECK", "OAI", "OAI", "CHECK", ""]
    split = make_split(subjects, (0.5, 0.25, 0.25), seed=1, cohorts=cohorts)
    assert len(split) == 5 and list(split.columns) == ["cohort", "subject", "split"]
    assert split.loc[split["subject"] == "001", "cohort"].tolist() == ["CHECK", "OAI"]
    assert (split.loc[split["subject"] != "001", "cohort"] == "").all()  # only shared ids carry a cohort
    # each person in one split, the two "001" in different ones: no leak
    apart = pd.DataFrame({"cohort": ["CHECK", "OAI", "", "", ""], "subject": ["001", "001", "002", "003", "004"],
                          "split": ["train", "test", "train", "val", "train"]})
    assert check_split(apart, subjects, cohorts=cohorts)["split"].tolist() == ["train", "test", "train", "val", "train"]
    with pytest.raises(ValueError, match=r"subject '001' is in cohorts \['CHECK', 'OAI'\] of the study: give the "
                                         r"split a cohort column"):
        check_split(apart.drop(columns="cohort"), subjects, cohorts=cohorts)
    with pytest.raises(ValueError, match=r"1 subject\(s\) in more than one split, e.g. \['001 \(CHECK\)'\]"):
        check_split(pd.concat([apart, apart.iloc[[0]].assign(split="val")]), subjects, cohorts=cohorts)
    # ids unique to one cohort: the table is the familiar subject,split
    assert list(make_split(["A", "B"], (0.5, 0.5, 0.0), cohorts=["CHECK", "OAI"]).columns) == ["subject", "split"]


def test_a_split_of_the_phantom_with_a_shared_id_finds_each_persons_rows(cohort, tmp_path):
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(cohort / "labels.csv", dtype=str, keep_default_na=False)
    check_id = manifest.loc[manifest["cohort"] == "CHECK", "subject"].iloc[0]
    oai_id = manifest.loc[manifest["cohort"] == "OAI", "subject"].iloc[0]
    renamed = {check_id: "SAME-1", oai_id: "SAME-1"}  # two people, one id, two cohorts
    manifest.assign(subject=manifest["subject"].replace(renamed)).to_csv(cohort / "manifest.csv", index=False)
    labels.assign(subject=labels["subject"].replace(renamed)).to_csv(cohort / "labels.csv", index=False)
    study = tmp_path / "study.h5"
    preprocess_study(cohort / "manifest.csv", cohort / "labels.csv", study, tmp_path / "exclusions.csv",
                     crop_size=64, spacing_mm=1.0, groups=DEFAULT_GROUPS, max_excluded_fraction=0.5)
    split_path = tmp_path / "split.csv"
    seeds = [split_stage(study, split_path, fractions=(0.5, 0.25, 0.25), seed=seed) for seed in range(6)]
    assert all(len(split) == PHANTOM["subjects"] for split in seeds)  # 8 people, not 7
    apart = next(s for s in seeds if s.loc[s["subject"] == "SAME-1", "split"].nunique() == 2)
    apart.to_csv(split_path, index=False)
    read = read_split(split_path)
    assert set(read.loc[read["subject"] == "SAME-1", "cohort"]) == {"CHECK", "OAI"}
    with StudyFile(study) as file:
        meta = file.meta(("subject", "cohort"))
        for which in ("train", "val", "test"):
            rows = file.rows_in_split(read, which)
            chosen = read[read["split"] == which]
            wanted = set(chosen.loc[chosen["subject"] == "SAME-1", "cohort"])
            same = meta.iloc[rows]
            assert set(same.loc[same["subject"] == "SAME-1", "cohort"]) == wanted
        assert len(np.concatenate([file.rows_in_split(read, w) for w in ("train", "val", "test")])) == len(meta)


# --- two hips too close to be a pelvis ---------------------------------------------------------------
def test_head_centres_closer_than_the_limit_are_no_pelvis(phantom):
    manifest = pd.read_csv(phantom / "manifest.csv", dtype=str, keep_default_na=False)
    row = manifest.iloc[0]
    points, problems = read_hip_points(phantom / row["points_path"], (240, 360), (1.0, 1.0))
    assert not problems
    right, left = points["right"], points["left"]
    check_pair(right, left, (1.0, 1.0))  # the phantom's pelvis as drawn
    (rx, ry, rr), (lx, ly, _) = head_circle(right), head_circle(left)
    near = left - (lx - rx - 30.0, ly - ry)  # the left hip's points 30 mm from the right head's centre
    assert 30.0 > max(rr, head_circle(near)[2])  # not inside one head circle: only the new limit catches it
    with pytest.raises(LandmarkError, match=r"head centres 30.0 mm apart, under the 40 mm of two hips of one pelvis "
                                            r"\(preprocess.anatomy.hip_distance_min_mm\)") as err:
        check_pair(right, near, (1.0, 1.0))
    assert err.value.scale == "small"
    failures, _ = check_points({"right": right, "left": near}, {}, (240, 360), (1.0, 1.0), "px")
    assert set(failures) == {"right", "left"} and failures["left"].startswith("head centres 30.0 mm apart")
    check_pair(right, near, (1.0, 1.0), AnatomyLimits(hip_distance_min_mm=25.0))  # a setting
    with pytest.raises(ValueError, match="hip_distance_min_mm .* must be below hip_distance_max_mm"):
        AnatomyLimits.of({"hip_distance_min_mm": 400})


# --- the labels before BoneFinder ------------------------------------------------------------------------
def test_labels_are_checked_as_the_preprocessing_reads_them(cohort, tmp_path):
    labels = pd.read_csv(cohort / "labels.csv", dtype=str, keep_default_na=False)
    table = tmp_path / "label_check.csv"
    assert check_labels(cohort / "labels.csv", {}, table) == 2 * PHANTOM["subjects"]
    assert pd.read_csv(table).empty
    labels.assign(side=labels["side"].str[0].str.lower().map({"r": "1", "l": "2"})).to_csv(cohort / "labels.csv",
                                                                                            index=False)
    with pytest.raises(InputCheckFailed, match=r"not one label row is usable \(label table: 16 row\(s\) refused: "
                                               r"label row: unknown side '1' .*before BoneFinder runs"):
        check_labels(cohort / "labels.csv", {}, table)
    assert check_labels(cohort / "labels.csv", {"side_codes": {1: "right", 2: "left"}}, table) == 16
    labels.drop(columns="osteo_fem_sup").to_csv(cohort / "labels.csv", index=False)
    with pytest.raises(ValueError, match="lacks column.*osteo_fem_sup"):
        check_labels(cohort / "labels.csv", {}, table)
