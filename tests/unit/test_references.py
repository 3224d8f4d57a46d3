"""Expert references (osteoloc.cohort.references) drawn in the radiograph's grid and mapped through the
landmarks' resampling, crop and flip into `/truth/masks`, so the pointing game and the energy inside
the region run on real data. Inputs come from a small phantom cohort generated once."""

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import RULE_SETTINGS, Variant, load_study, mirror, run_sharded

from osteoloc.report.ablation import ablation_table, seed_level_values
from osteoloc.io.dicom import read_dicom
from osteoloc.io.pts import read_hip_points
from osteoloc.io.truth_h5 import TruthFile
from osteoloc.explain.metrics import Scoring, localisation_table
from osteoloc.io.shard_folder import read_plan
from osteoloc.io.study_h5 import HipBatch
from osteoloc.preprocess.stages import preprocess_study, write_shard_plan
from osteoloc.cohort.references import ExpertReferences, ExpertReferenceError
from osteoloc.report.tables import true_localisation_table
from osteoloc.names import SHORT_NAMES, TARGETS

SETTINGS = dict(crop_size=64, spacing_mm=1.4, max_excluded_fraction=1.0,
                groups={"osteo_fem_sup": [13, 78, 14, 15], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [67],
                        "osteo_acet_inf": [71]})
PHANTOM = {"seed": 5, "subjects": 5, "prevalence": {t: 0.6 for t in TARGETS}, "broken_fraction": 0.0,
           "split_pts_fraction": 0.0, "missing_fraction": 0.0,
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 0, "jpeg2000": 0, "jpegls": 0, "jpeg_lossless": 0}}}
HEADER = "subject,visit,side,target,kind,unit,x,y,x2,y2,mask_path\n"


@pytest.fixture(scope="module")
def phantom(phantom_study):
    """The phantom cohort and its study with the phantom's truth masks: {dir, manifest, study}."""
    return phantom_study(PHANTOM, SETTINGS, truth=True)


def run(phantom, references, out, **extra):
    """Preprocess the phantom with the references CSV `references`: (exclusions, study)."""
    preprocess_study(phantom["dir"] / "manifest.csv", phantom["dir"] / "labels.csv", out / "study.h5",
                     out / "excl.csv", references_path=references, **SETTINGS, **extra)
    return pd.read_csv(out / "excl.csv", keep_default_na=False), load_study(out / "study.h5")


def row_of(study, subject, side):
    rows = np.flatnonzero((study.meta.subject == subject) & (study.meta.side == side))
    assert len(rows) == 1
    return int(rows[0])


def radiograph(phantom, i):
    """(row of the manifest, Radiograph, {side: (80, 2) source px points}) of manifest row i."""
    row = phantom["manifest"].iloc[i]
    image = read_dicom(phantom["dir"] / row.image_path)
    points, problems = read_hip_points(phantom["dir"] / row.points_path, image.pixels.shape, image.spacing)
    assert not problems
    return row, image, points


def write_csv(path, lines):
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


# --- mapping: the same resampling, crop and flip as the landmarks ------------------------------------------
def test_the_phantom_truth_as_mask_files_gives_the_phantom_truth_study(phantom, tmp_path):
    """Every lesion of truth.h5 written out as a mask file (PNG and NPY, one file per hip and target):
    `/truth/masks` equals the study made from truth.h5 itself, right and left hips alike."""
    lines = []
    with TruthFile(phantom["dir"] / "truth.h5") as truth:
        for k, row in enumerate(phantom["manifest"].itertuples()):
            stem = row.image_path.rsplit("/", 1)[-1].removesuffix(".dcm")
            for side in ("right", "left"):
                for t, target in enumerate(TARGETS):
                    mask = truth.masks(stem, side)[t]
                    if not mask.any():
                        continue
                    if (k + t) % 2:
                        name = f"{stem}_{side}_{t}.png"
                        Image.fromarray(mask * 255).save(tmp_path / name)
                    else:
                        name = f"{stem}_{side}_{t}.npy"
                        np.save(tmp_path / name, mask.astype(bool))
                    spelled = target if t % 2 else SHORT_NAMES[target]  # full and short names both work
                    lines.append(f"{row.subject},{row.visit},{side},{spelled},mask,,,,,,{name}")
    assert len(lines) >= 6 and {"right", "left"} <= {line.split(",")[2] for line in lines}
    table, study = run(phantom, write_csv(tmp_path / "references.csv", lines), tmp_path)
    assert table.empty
    assert study.layers["lesions"].shape == phantom["study"].layers["lesions"].shape
    assert study.layers["lesions"].any()
    np.testing.assert_array_equal(study.layers["lesions"], phantom["study"].layers["lesions"])


def test_references_on_a_mirrored_radiograph_are_flipped_back_with_it(phantom, tmp_path):
    """References drawn on a radiograph stored mirrored (the right hip on the image's right) follow it
    when preprocess.accept_mirrored flips it back: the masks of the unmirrored phantom's truth."""
    v = Variant(phantom, tmp_path)
    i = v.row(per_hip=False)
    row = v.manifest.iloc[i]
    stem = row.image_path.rsplit("/", 1)[-1].removesuffix(".dcm")
    lines = []
    with TruthFile(phantom["dir"] / "truth.h5") as truth:
        for side in ("right", "left"):
            for t in np.flatnonzero(truth.masks(stem, side).any(axis=(1, 2))):
                np.save(tmp_path / f"{side}{t}.npy", truth.masks(stem, side)[t][:, ::-1])  # on the mirrored image
                lines.append(f"{row.subject},{row.visit},{side},{TARGETS[t]},mask,px,,,,,{side}{t}.npy")
    assert {"right", "left"} <= {line.split(",")[2] for line in lines}
    mirror(v, i)
    table, study = v.run(references_path=write_csv(tmp_path / "references.csv", lines), accept_mirrored=True)
    assert list(table.stage) == ["mirrored"]
    ours, theirs = v.rows_of(study, i), v.rows_of(phantom["study"], i)
    for side in ("right", "left"):
        assert study.layers["lesions"][ours[side]].any()
        np.testing.assert_array_equal(study.layers["lesions"][ours[side]], phantom["study"].layers["lesions"][theirs[side]])


@pytest.mark.parametrize("side", ["right", "left"])
def test_points_and_boxes_in_mm_and_px_land_on_the_mapped_landmarks(phantom, tmp_path, side):
    """A point on landmark 71 (acet_inf's group) and a box of +-4 mm around landmark 13 (fem_sup's first)
    land where the study puts those landmarks; the same box in mm and in px gives the same mask. With
    truth.h5 also given, the references replace its lesion masks (every hip without a reference is
    empty, although the phantom has lesions there)."""
    row, image, points = radiograph(phantom, 1)
    col_mm, row_mm = image.spacing[1], image.spacing[0]
    hip = points[side]
    x71, y71 = map(float, hip[71])
    x13, y13 = map(float, hip[13])
    box_px = (x13 - 4 / col_mm, y13 - 4 / row_mm, x13 + 4 / col_mm, y13 + 4 / row_mm)
    box_mm = (box_px[0] * col_mm, box_px[1] * row_mm, box_px[2] * col_mm, box_px[3] * row_mm)
    box_px = tuple(float(v / s) for v, s in zip(box_mm, (col_mm, row_mm) * 2))  # as the reader divides
    fmt = ",".join(["{:.17g}"] * 4)
    lines = [f"{row.subject},{row.visit},{side},osteo_acet_inf,point,px,{x71!r},{y71!r},,,",
             f"{row.subject},{row.visit},{side},acet_sup,point,mm,{x71 * col_mm!r},{y71 * row_mm!r},,,",
             f"{row.subject},{row.visit},{side},fem_sup,box,px," + fmt.format(*box_px) + ",",
             f"{row.subject},{row.visit},{side},fem_inf,box,mm," + fmt.format(*box_mm) + ","]
    # acet_sup and fem_inf sit on other targets' landmarks on purpose: no distance note wanted here
    table, study = run(phantom, write_csv(tmp_path / "references.csv", lines), tmp_path,
                       truth_path=phantom["dir"] / "truth.h5", references_max_distance_mm=500.0)
    assert table.empty
    r = row_of(study, row.subject, side)
    masks = study.layers["lesions"][r]
    # the point: the crop pixel(s) covering the one source pixel, within a pixel of the mapped landmark 71
    ys, xs = np.nonzero(masks[3])
    assert 1 <= len(xs) <= 4
    landmark = study.contour[r, 71]
    assert np.abs(xs - landmark[0]).max() <= 1.0 and np.abs(ys - landmark[1]).max() <= 1.0
    np.testing.assert_array_equal(masks[2], masks[3])  # the same point in mm
    # the box: centred on the mapped landmark 13, +-4 mm = +-2.9 crop pixels
    ys, xs = np.nonzero(masks[0])
    centre = study.contour[r, 13]
    assert abs(xs.mean() - centre[0]) <= 1.0 and abs(ys.mean() - centre[1]) <= 1.0
    assert abs((xs.max() - xs.min()) - 8 / 1.4) <= 1.5 and abs((ys.max() - ys.min()) - 8 / 1.4) <= 1.5
    np.testing.assert_array_equal(masks[1], masks[0])  # the same box in mm
    others = np.ones(len(study.layers["lesions"]), bool)
    others[r] = False
    assert not study.layers["lesions"][others].any()  # truth.h5's lesions are replaced, not added
    assert phantom["study"].layers["lesions"][others].any()


def test_a_hip_without_a_reference_gets_nan_pointing_and_energy(phantom, tmp_path):
    row, image, points = radiograph(phantom, 0)
    x, y = points["right"][71]
    lines = [f"{row.subject},{row.visit},R,acet_inf,point,px,{x},{y},,,"]
    _, study = run(phantom, write_csv(tmp_path / "references.csv", lines), tmp_path)
    r = row_of(study, row.subject, "right")
    n, size = len(study.layers["lesions"]), SETTINGS["crop_size"]
    maps = np.zeros((n, 4, size, size), np.float32)
    px, py = np.round(study.contour[:, 71]).astype(int).T
    maps[np.arange(n), :, np.clip(py, 0, size - 1), np.clip(px, 0, size - 1)] = 1.0  # a peak on landmark 71
    batch = HipBatch(rows=np.arange(n), groups=study.groups, valid=study.valid, layers={"lesions": study.layers["lesions"]})
    values = localisation_table(maps, batch, Scoring(tolerance_px=1.5))
    defined = np.isfinite(values["pointing_hit"])
    assert defined[r, 3] and defined.sum() == 1  # only the one hip and target with a reference
    assert values["pointing_hit"][r, 3] == 1.0
    assert np.isfinite(values["energy_in_mask"]).sum() == 1
    assert np.isnan(values["energy_in_mask"][:, :3]).all()


def test_true_localisation_counts_the_hips_that_carry_a_reference():
    """Pooled over seeds: n_images counts the positive images with a reference, n_positive all of them; the
    ablation table's n_hips the hips with a reference per run."""
    rows = []
    for seed in (0, 1):
        for model in ("baseline", "prior"):
            for image in range(6):
                has_reference = image < 2
                rows.append({"model": model, "seed": seed, "row": image, "target": TARGETS[0], "label": 1,
                             "com_distance": 1.0, "peak_distance": 1.0, "spread": 1.0,
                             "pointing_hit": float(image % 2) if has_reference else np.nan,
                             "energy_in_mask": 0.25 if has_reference else np.nan})
    metrics = pd.DataFrame(rows)
    table = true_localisation_table(metrics).set_index(["target", "model"])
    row = table.loc[(TARGETS[0], "prior")]
    assert row["n_images"] == 4 and row["n_positive"] == 12
    assert row["pointing_game"] == pytest.approx(0.5, abs=1e-9)
    assert row["energy_in_mask"] == pytest.approx(0.25, abs=1e-6)
    assert table.loc[(TARGETS[1], "prior"), "n_images"] == 0
    # the ablation table: per run the 2 hips with a reference, the distances over all 6
    predictions = metrics[["model", "seed", "row", "target", "label"]].assign(prob=0.5)
    predictions.loc[predictions["row"] < 3, "label"] = 0
    ablation = ablation_table(seed_level_values(predictions, metrics), ["baseline", "prior"]).set_index(
        ["metric", "arm"])
    assert ablation.loc[("pointing_hit", "prior"), "n_hips"] == 2
    assert ablation.loc[("energy_in_mask", "baseline"), "mean"] == pytest.approx(0.25, abs=1e-6)
    assert ablation.loc[("spread", "prior"), "n_hips"] == 6


# --- nothing silently dropped: bad rows stop the run, unused references are notes ----------------------------
@pytest.mark.parametrize("line, problem", [
    ("S1,V00,right,fem_middle,point,px,1,2,,,", "unknown target 'fem_middle'"),
    ("S1,V00,right,fem_sup,circle,px,1,2,,,", "unknown kind 'circle'"),
    ("S1,V00,right,fem_sup,point,cm,1,2,,,", "unit 'cm' for a point (mm or px)"),
    ("S1,V00,right,fem_sup,point,,1,2,,,", "unit '' for a point"),
    ("S1,V00,right,fem_sup,point,mm,1,,,,", "y is empty"),
    ('S1,V00,right,fem_sup,box,mm,1,2,"3,5",4,', "x2 '3,5' is not a coordinate (a comma as decimal separator"),
    ("S1,V00,right,fem_sup,point,mm,12 mm,2,,,", "x '12 mm' is not a coordinate (a unit or other text"),
    ("S1,V00,right,fem_sup,point,px,1,2,3,4,", "a point takes x, y, but x2, y2 given"),
    ("S1,V00,right,fem_sup,mask,,,,,,nowhere.png", "mask file nowhere.png not found"),
    ("S1,V00,right,fem_sup,mask,mm,,,,,m.png", "unit 'mm' for a mask"),
    ("S1,V00,middle,fem_sup,point,px,1,2,,,", "unknown side 'middle'"),
])
def test_a_bad_row_names_the_file_and_the_line(tmp_path, line, problem):
    path = write_csv(tmp_path / "references.csv", ["S1,V00,left,fem_sup,point,px,1,2,,,", line])
    with pytest.raises(ExpertReferenceError, match=re.escape(f"references.csv: line 3: {problem}")):
        ExpertReferences(path)


def test_a_semicolon_file_names_the_file(tmp_path):
    path = tmp_path / "references.csv"
    path.write_text(HEADER.replace(",", ";") + "S1;V00;left;fem_sup;point;px;1;2;;;\n")
    with pytest.raises(ValueError, match="references.csv: references CSV is separated by ';'"):
        ExpertReferences(path)


@pytest.mark.parametrize("kind", ["box outside", "mask size", "empty mask"])
def test_what_needs_the_radiograph_stops_preprocessing_naming_the_line(phantom, tmp_path, kind):
    row, image, _ = radiograph(phantom, 2)
    rows, cols = image.pixels.shape
    if kind == "box outside":  # pixels given as millimetres: 1.5 x the image
        line = f"{row.subject},{row.visit},left,fem_sup,box,mm,10,10,{cols},{rows},"
        problem = "box (10, 10, "
    else:
        np.save(tmp_path / "m.npy", np.ones((rows, cols - (kind == "mask size")), bool) * (kind == "mask size"))
        line = f"{row.subject},{row.visit},left,fem_sup,mask,px,,,,,m.npy"
        problem = f"mask file m.npy is {cols - 1} x {rows} px" if kind == "mask size" else "mask file m.npy is empty"
    path = write_csv(tmp_path / "references.csv", [line])
    with pytest.raises(ExpertReferenceError, match=re.escape(f"references.csv: line 2: {problem}")):
        run(phantom, path, tmp_path)


def test_unused_references_are_notes_and_the_hips_stay(phantom, tmp_path):
    """A hip that is not in the manifest, and a box that falls outside the hip crop after mapping: each a
    `references` row in the exclusions table; every hip is kept."""
    row, image, points = radiograph(phantom, 3)
    far = points["right"][71] + [0, 60 / image.spacing[0]]  # 60 mm below the teardrop: outside the 90 mm crop
    lines = ["NOBODY,V00,left,fem_sup,point,px,5,5,,,",
             f"{row.subject},{row.visit},right,acet_inf,box,px,{far[0]},{far[1]},{far[0] + 2},{far[1] + 2},",
             f"{row.subject},{row.visit},right,fem_inf,point,px,{points['right'][20][0]},{points['right'][20][1]},,,"]
    table, study = run(phantom, write_csv(tmp_path / "references.csv", lines), tmp_path)
    assert len(study.meta) == len(phantom["study"].meta)
    assert list(table.stage) == ["references"] * 3
    outside, far = table[table.subject == row.subject].itertuples()
    assert (outside.side, outside.file) == ("right", "references.csv")
    assert "acet_inf (line 3) lies outside the hip crop" in outside.reason
    assert (far.side, far.file) == ("right", "references.csv")  # and far from the teardrop tip, its group
    assert "acet_inf (line 3) lies 60 mm from its target's landmark group" in far.reason
    unmatched = table[table.subject == "NOBODY"].iloc[0]
    assert unmatched.side == "left" and "(line 2) for a hip with no radiograph in the manifest" in unmatched.reason
    masks = study.layers["lesions"][row_of(study, row.subject, "right")]
    assert not masks[3].any() and masks[1].any()


def test_shards_give_the_same_study_and_list_the_mask_files_as_inputs(phantom, tmp_path):
    row, image, points = radiograph(phantom, 1)
    mask = np.zeros(image.pixels.shape, np.uint8)
    x, y = np.round(points["left"][67]).astype(int)
    mask[y - 3:y + 4, x - 3:x + 4] = 1
    Image.fromarray(mask).save(tmp_path / "acet_sup.png")
    first = phantom["manifest"].iloc[0]
    lines = [f"{row.subject},{row.visit},left,acet_sup,mask,,,,,,acet_sup.png",
             f"{first.subject},{first.visit},right,fem_sup,point,px,{300},{200},,,"]
    references = write_csv(tmp_path / "references.csv", lines)
    inputs = {"manifest": phantom["dir"] / "manifest.csv", "labels": phantom["dir"] / "labels.csv",
              "references": str(references)}
    write_shard_plan("manifest", inputs, 1, tmp_path / "plan.json")
    plan = read_plan(tmp_path / "plan.json")["units"]
    assert [any(f.endswith("acet_sup.png") for f in unit["files"]) for unit in plan] == [i == 1 for i in range(len(plan))]
    _, whole = run(phantom, references, tmp_path)
    assert whole.layers["lesions"][row_of(whole, row.subject, "left"), 2].any()
    settings = dict(RULE_SETTINGS, **{k: SETTINGS[k] for k in ("crop_size", "spacing_mm", "groups")},
                    max_excluded_fraction=1.0)
    for shard_size in (1, 3):
        out = tmp_path / f"size{shard_size}"
        run_sharded(inputs, shard_size, out, settings)
        sharded = load_study(out / "study.h5")
        np.testing.assert_array_equal(sharded.layers["lesions"], whole.layers["lesions"])
        np.testing.assert_array_equal(sharded.images, whole.images)
