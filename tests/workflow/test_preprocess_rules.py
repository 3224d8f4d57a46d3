"""The preprocessing rules on CI's phantom study: the study file against the phantom's truth, the exclusions,
Figure 1, the group HDF5 source (the library: tests/unit/test_preprocess.py)."""

import h5py
import numpy as np
import pandas as pd
from helpers import matched_rows
from workflow_copy import CI_CONFIG, TRAINED, copy_workflow, snakemake, write_override

from osteoloc.cohort.landmarks import FEMORAL_HEAD, fit_circle, target_groups
from osteoloc.io.group_h5 import export_group_h5
from osteoloc.io.pts import read_pts
from helpers import load_study
from osteoloc.names import TARGETS


def test_workflow_preprocess_and_figure1_on_the_ci_phantom(ci_study):
    """The rules on experiments/ci.yaml: HDF5 checked against the phantom's truth, every broken input
    excluded with its reason, both sides in the same orientation, Figure 1 written."""
    results = ci_study / "results"
    study = load_study(results / "preprocess" / "study.h5")
    spacing = study.attrs["spacing_mm"]
    assert study.layers.get("lesions") is not None and len(study) > 0
    assert not np.isnan(study.contour_manual).any()  # the phantom's exact points, as manual points
    # lesions of graded targets lie at their target group (exact points): within a lesion's protrusion
    for i in range(len(study)):
        groups, _ = target_groups(study.contour_manual[i], study.group_indices)
        for t in range(len(TARGETS)):
            if study.grades[i, t] > 0:
                ys, xs = np.nonzero(study.layers["lesions"][i, t])
                assert len(xs), (i, t)
                distance = np.nanmin(np.linalg.norm(groups[t] - [xs.mean(), ys.mean()], axis=1)) * spacing
                assert distance < 8.0, (study.meta.iloc[i].to_dict(), TARGETS[t], distance)
    # every crop looks like a right hip: lateral sourcil end and head-neck junction left of the head centre
    assert (study.contour_manual[:, 67, 0] < study.head_circle[:, 0]).all()
    assert (study.contour_manual[:, 13, 0] < study.head_circle[:, 0]).all()
    right = study.images[study.meta.side == "right"].mean(axis=0)
    left = study.images[study.meta.side == "left"].mean(axis=0)
    assert np.corrcoef(right.ravel(), left.ravel())[0, 1] > 0.7
    assert np.corrcoef(right.ravel(), left.ravel())[0, 1] > np.corrcoef(right.ravel(), left[:, ::-1].ravel())[0, 1]
    # each broken input of the phantom is in the exclusions table
    broken = pd.read_csv(results / "cohort" / "broken.csv", keep_default_na=False)
    excluded = pd.read_csv(results / "preprocess" / "exclusions.csv", keep_default_na=False)
    for row in broken.itertuples():
        sides = [row.side] if row.side else ["", "right", "left"]
        rows = excluded[(excluded.subject == row.subject) & excluded.side.isin(sides)]
        assert len(rows), f"broken input {row.kind} of {row.subject} not excluded"
    assert (results / "report" / "figures" / "figure1.png").stat().st_size > 0
    assert (results / "report" / "figures" / "figure1.pdf").stat().st_size > 0




def test_workflow_group_hdf5_source_gives_the_same_study(ci_study, tmp_path):
    """`cohort.source: group_hdf5`: the preprocess rule imports the group's layout (written here from the
    phantom study) plus the phantom's .pts files, and reproduces the phantom study's rows."""
    cohort = ci_study / "results" / "cohort"
    ours = load_study(ci_study / "results" / "preprocess" / "study.h5")
    export_group_h5(ours, tmp_path / "group.h5")
    override = write_override(tmp_path, {"cohort": {
        "source": "group_hdf5", "group_hdf5": str(tmp_path / "group.h5"),
        "points_dir": str(cohort / "points" / "auto"), "labels": str(cohort / "labels.csv")}})
    workdir = copy_workflow(tmp_path / "wf")
    snakemake(workdir, "preprocess", "--cores", "1", "--configfile", CI_CONFIG, override)
    theirs = load_study(workdir / "results" / "preprocess" / "study.h5")
    a, b = matched_rows(ours, theirs)
    np.testing.assert_allclose(theirs.contour[b], ours.contour[a], atol=1e-3)
    np.testing.assert_allclose(theirs.images[b], ours.images[a], atol=1e-6)
    np.testing.assert_array_equal(theirs.labels[b], ours.labels[a])
    assert theirs.attrs["imported_from"] == "group_hdf5"




def test_workflow_landmarks_match_the_generator_within_one_pixel(ci_study):
    """The HDF5's target groups and head radius against the phantom generator's own records, mapped
    independently of the pipeline: generator mm -> source pixels -> target spacing -> crop -> flip."""
    results = ci_study / "results"
    study = load_study(results / "preprocess" / "study.h5", images=False)
    spacing_mm = study.attrs["spacing_mm"]
    size = study.attrs["crop_size"]
    checked = 0
    with h5py.File(results / "cohort" / "truth.h5", "r") as truth:
        for i, hip in study.meta.iterrows():
            record = truth["params"][hip.source.removesuffix(".dcm")].attrs
            side = 0 if hip.side == "right" else 1
            exact_mm = read_pts(results / "cohort" / record["exact_points_path"])[80 * side:80 * (side + 1)]
            source_px = exact_mm / record["spacing_mm"]
            scale = spacing_mm / record["spacing_mm"]
            crop = (source_px + 0.5) / scale - 0.5 - study.crop_offset[i]
            if hip.side == "left":
                crop[:, 0] = size - 1 - crop[:, 0]
            for t, target in enumerate(TARGETS):
                indices = study.group_indices[target]
                expected = crop[indices]
                stored = study.groups[i, t, :len(indices)]
                # groups come from the automatic points: compare the manual contour, which is the exact set
                np.testing.assert_allclose(study.contour_manual[i][indices], expected, atol=1.0)
                assert np.isfinite(stored).all()
            # the head circle of the exact points has the generator's radius
            _, _, radius = fit_circle(study.contour_manual[i][FEMORAL_HEAD])
            assert abs(radius - record["head_radius_mm"][side] / spacing_mm) < 1.0, hip.to_dict()
            checked += 1
    assert checked == len(study) > 0


def test_workflow_exclusions_table_survives_a_refused_excluded_share(ci_copy, tmp_path):
    """A threshold no cohort meets: the pre-flight check foresees the gather's refusal and stops the run before
    any shard job, naming the share and the limit; the exclusions table (written by its own rule before)
    stays with a reason on every row; restored afterwards. (The gather's own refusal, TooManyExclusions,
    when a run gets there: tests/unit/test_shards.py.)"""
    ci_workflow = ci_copy(without=TRAINED)
    results = ci_workflow / "results" / "preprocess"
    before = (results / "exclusions.csv").read_text()
    override = write_override(tmp_path, {"preprocess": {"max_excluded_fraction": 0.0}})
    failed = snakemake(ci_workflow, "preprocess", "--cores", "1", "--configfile", CI_CONFIG, override, check=False)
    try:
        assert failed.returncode != 0
        assert "Error in rule check_inputs" in failed.stdout + failed.stderr
        log = (ci_workflow / "results" / "logs" / "preprocess" / "check_inputs.log").read_text()
        assert "would be excluded, more than preprocess.max_excluded_fraction = 0.0%" in log
        assert "Error in rule preprocess_shard" not in failed.stdout + failed.stderr
        assert (results / "exclusions.csv").read_text() == before  # not rerun (its inputs did not change)
        table = pd.read_csv(results / "exclusions.csv", keep_default_na=False)
        assert len(table) and (table.reason.str.len() > 0).all()
    finally:
        snakemake(ci_workflow, "figure_landmarks", "--cores", "1", "--configfile", CI_CONFIG)
    assert (results / "study.h5").exists()
