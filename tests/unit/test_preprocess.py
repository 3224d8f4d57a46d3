"""Preprocessing: resampling, crop, flip, normalisation, the study HDF5, exclusions, the group import."""

import h5py
import hdf5plugin
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
import torch.nn.functional as F

from osteoloc.io.group_h5 import export_group_h5
from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.preprocess.exclusions import TooManyExclusions
from osteoloc.preprocess.geometry import crop_offset, mask_crop, preprocess_hip, resample_crop, to_crop, to_resampled
from osteoloc.preprocess.stages import import_group_study, preprocess_study
from osteoloc.names import TARGETS
from helpers import (BAD_COHORT_SHAPE, BAD_COHORT_SPACING, PREPROCESS_SETTINGS, bad_cohort, load_study, make_cohort,
                     matched_rows, radiograph_points_mm, synthetic_pixels, write_dicom)

SETTINGS = PREPROCESS_SETTINGS
SHAPE, SPACING = BAD_COHORT_SHAPE, BAD_COHORT_SPACING  # the bad cohort's radiographs


# --- transforms ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("out_shape", [(60, 88), (150, 220), (600, 880)])  # down 5x, down 2x, up 2x
def test_resample_crop_equals_torch_antialiased_interpolate(out_shape):
    image = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    full = F.interpolate(torch.from_numpy(image)[None, None], size=out_shape, mode="bilinear",
                         antialias=True, align_corners=False)[0, 0].numpy()
    scale = SHAPE[0] / out_shape[0]
    for x0, y0 in [(0, 0), (7, 3), (out_shape[1] - 40, out_shape[0] - 40)]:
        crop = resample_crop(image, scale, (x0, y0), 40)
        np.testing.assert_allclose(crop, full[y0:y0 + 40, x0:x0 + 40], atol=1e-5)


def test_crop_offset_centres_and_shifts_inside():
    assert crop_offset((50.7, 60.2), (200, 300), 48) == (26, 36)
    assert crop_offset((5.0, 190.0), (200, 300), 48) == (0, 152)  # at the border: shifted inside
    with pytest.raises(ValueError, match="smaller than the 48 px crop"):
        crop_offset((20, 20), (40, 300), 48)


def test_points_follow_the_pixels_through_resample_crop_and_flip():
    """A bright dot at a landmark lands on the same crop pixel as the transformed landmark, both sides."""
    points_mm = radiograph_points_mm(SHAPE, SPACING)
    points_px = points_mm / SPACING
    for side, hip in (("right", points_px[:80]), ("left", points_px[80:])):
        pixels = np.zeros(SHAPE, np.float32)
        pixels += np.random.default_rng(1).random(SHAPE).astype(np.float32) * 0.01
        x, y = np.round(hip[15]).astype(int)
        pixels[y - 1:y + 2, x - 1:x + 2] = 100.0  # a 3x3 source blob centred on point 15
        hip = hip.copy()
        hip[15] = (x, y)
        crop = preprocess_hip(pixels, (SPACING, SPACING), hip, side, 80, 0.8)
        peak_y, peak_x = np.unravel_index(np.argmax(crop.image), crop.image.shape)
        px, py = crop.contour[15]
        assert abs(px - peak_x) <= 0.5 and abs(py - peak_y) <= 0.5, (side, (px, py), (peak_x, peak_y))
        # lateral is on the crop's left for both sides (the head circle is medial of point 13)
        assert crop.contour[13, 0] < crop.head_circle[0]


def test_flip_maps_x_to_s_minus_1_minus_x():
    points = np.array([[10.0, 5.0], [0.0, 0.0]])
    np.testing.assert_allclose(to_crop(points, (2, 1), "left", 48), [[47 - 8, 4], [49, -1]])
    np.testing.assert_allclose(to_crop(points, (2, 1), "right", 48), [[8, 4], [-2, -1]])


def test_to_resampled_keeps_image_edges():
    np.testing.assert_allclose(to_resampled([[-0.5, 99.5]], 2.0), [[-0.5, 49.5]], rtol=0, atol=1e-9)


# --- a cohort with every kind of trouble --------------------------------------------------------------
def test_each_bad_input_becomes_an_exclusion_with_a_reason(processed):
    table = pd.read_csv(processed["exclusions"], keep_default_na=False)
    assert list(table.columns) == ["stage", "subject", "visit", "side", "file", "reason"]
    for subject, (stage, side, fragment) in processed["expected"].items():
        rows = table[table.subject == subject]
        assert len(rows), f"{subject} not excluded"
        assert set(rows.stage) == {stage}, (subject, rows)
        sides = {"both": {"right", "left"}}.get(side, {side})
        assert set(rows.side) == sides, (subject, rows)
        assert rows.reason.str.contains(fragment).all() or rows.file.str.contains(fragment).all(), rows
    assert (table.reason.str.len() > 0).all()
    assert not table.file.str.contains("/").any()  # file names only, no folders


def test_good_and_partly_good_radiographs_are_kept(processed):
    study = load_study(processed["study"])
    kept = set(zip(study.meta.subject, study.meta.side))
    assert processed["kept"] == len(study) == 8 * 2 + 3 + 2  # good + one side of outside, insane, junk + nospacing
    assert {("S-outside", "left"), ("S-insane", "right"), ("S-junk", "left"), ("S-nospacing", "right"),
            ("S-nospacing", "left")} <= kept
    assert ("S-junk", "right") not in kept


def test_manifest_spacing_fallback_gives_the_same_crop_as_the_header(processed):
    study = load_study(processed["study"])
    meta = study.meta
    fallback = meta.index[(meta.subject == "S-nospacing") & (meta.side == "right")][0]
    header = meta.index[(meta.subject == "S-junk") & (meta.side == "left")][0]  # same pixels and points
    np.testing.assert_allclose(study.source_spacing[fallback], [SPACING, SPACING])
    left = meta.index[(meta.subject == "S-nospacing") & (meta.side == "left")][0]
    np.testing.assert_allclose(study.contour[left], study.contour[header], atol=1e-4)
    np.testing.assert_allclose(study.images[left], study.images[header], atol=1e-5)


def test_study_h5_schema(processed):
    with h5py.File(processed["study"], "r") as h5:
        n, S = h5["images"].shape[0], SETTINGS["crop_size"]
        expect = {"images": ((n, S, S), np.float32), "grades": ((n, 4), np.int8), "labels": ((n, 4), np.int8),
                  "landmarks/contour": ((n, 80, 2), np.float32), "landmarks/contour_manual": ((n, 80, 2), np.float32),
                  "landmarks/groups": ((n, 4, 4, 2), np.float32), "landmarks/valid": ((n, 4, 4), np.bool_),
                  "meta/source_spacing": ((n, 2), np.float32), "meta/crop_offset": ((n, 2), np.float32),
                  "meta/head_circle": ((n, 3), np.float32), "meta/intensity": ((n, 2), np.float32)}
        for name, (shape, dtype) in expect.items():
            assert h5[name].shape == shape and h5[name].dtype == dtype, name
        assert h5["images"].chunks == (1, S, S)
        for name in ("subject", "visit", "side", "cohort", "source"):
            assert h5[f"meta/{name}"].shape == (n,) and h5[f"meta/{name}"].dtype.kind == "O"
        assert list(h5.attrs["targets"]) == list(TARGETS)
        assert h5.attrs["crop_size"] == S and h5.attrs["spacing_mm"] == pytest.approx(0.8)
        assert "truth" not in h5
        assert np.isnan(h5["landmarks/contour_manual"][()]).all()
    study = load_study(processed["study"])
    # labels follow grades; normalisation used the crop's own percentiles
    np.testing.assert_array_equal(study.labels, np.where(study.grades < 0, -1, study.grades > 0))
    for image in study.images[:4]:
        p5, p95 = np.percentile(image, [5, 95])
        assert p5 == pytest.approx(0, abs=1e-5) and p95 == pytest.approx(1, abs=1e-5)
    assert set(study.meta.source) >= {"00000_T00_APO.dcm"}
    # head circle sits near the crop centre unless shifted at a border
    assert np.all(np.abs(study.head_circle[:, :2] - SETTINGS["crop_size"] / 2) < 2)


def test_a_source_gives_the_same_rows_for_any_split_of_its_units(processed):
    """Work units asked for in pieces (as shards will) give the whole study's records and exclusions, in
    order: the duplicate-row decision does not depend on which rows are asked for."""
    from osteoloc.preprocess.exclusions import Exclusion
    from osteoloc.preprocess.sources import ManifestSource

    def key(item):
        if isinstance(item, Exclusion):
            return tuple(item)
        return item.subject, item.side, item.image.tobytes(), item.contour.tobytes()

    manifest = pd.read_csv(processed["manifest"])
    pd.concat([manifest, manifest.iloc[[0]]], ignore_index=True).to_csv(processed["dir"] / "dup.csv", index=False)
    settings = {k: SETTINGS[k] for k in ("crop_size", "spacing_mm", "groups")}
    with ManifestSource(processed["dir"] / "dup.csv", processed["labels"], **settings) as source:
        whole = [key(item) for item in source.hips()]
        units = list(source.units)
        pieces = [key(item) for part in (units[:5], units[5:11], units[11:]) for item in source.hips(part)]
        last = [key(item) for item in source.hips(units[-1:])]
    assert pieces == whole
    assert last == [("dicom", "CHECK-00000", "T00", "", "00000_T00_APO.dcm",
                     "duplicate manifest row for this subject and visit (the first one is used)")]
    assert sum(len(k) == 4 for k in whole) == processed["kept"]  # records (4-tuples), exclusions have 6 fields


def test_no_patient_identifier_reaches_any_output(processed):
    for path in (processed["study"], processed["exclusions"]):
        data = path.read_bytes()
        for identifier in (b"Doe", b"Jane", b"PID-12345", b"19500101"):
            assert identifier not in data, (path.name, identifier)


def test_too_many_exclusions_fail_loudly_without_a_study(tmp_path):
    manifest, labels, _ = bad_cohort(tmp_path)
    with pytest.raises(TooManyExclusions, match="max_excluded_fraction"):
        preprocess_study(manifest, labels, tmp_path / "study.h5", tmp_path / "excl.csv",
                         **{**SETTINGS, "max_excluded_fraction": 0.1})
    assert not (tmp_path / "study.h5").exists()
    assert len(pd.read_csv(tmp_path / "excl.csv")) >= 8
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # no temporary file left


def test_crop_at_the_image_border(tmp_path):
    """A head near the image corner: the crop shifts inside, points keep their true place in it."""
    shape = (200, 300)
    points_mm = radiograph_points_mm(shape, SPACING)
    points_px = points_mm / SPACING
    pixels = synthetic_pixels(shape, points_px).astype(np.float32)
    hip = points_px[:80].copy()
    hip -= hip[[13, 78, *range(14, 22)]].mean(axis=0) - [12, 15]  # head centre ~ 12 px from the corner
    crop = preprocess_hip(pixels, (SPACING, SPACING), hip, "right", 48, 0.8)
    assert crop.offset == (0, 0)
    np.testing.assert_allclose(crop.contour, to_resampled(hip, 2.0), atol=1e-9)
    assert crop.head_circle[0] < 24 and crop.head_circle[1] < 24


def test_truth_masks_follow_the_image(tmp_path):
    manifest, labels = make_cohort(tmp_path, 2, shape=SHAPE, spacing=SPACING)
    points_px = radiograph_points_mm(SHAPE, SPACING, seed=0) / SPACING
    bits = np.zeros(SHAPE, np.uint8)
    for side_index, hip in enumerate((points_px[:80], points_px[80:])):
        x, y = np.round(hip[71]).astype(int)  # the acet_inf target (t = 3) at point 71
        bits[y - 3:y + 4, x - 3:x + 4] |= np.uint8(1 << (4 * side_index + 3))
    with h5py.File(tmp_path / "truth.h5", "w") as h5:
        h5["masks/00000_T00_APO"] = bits
    preprocess_study(manifest, labels, tmp_path / "study.h5", tmp_path / "excl.csv",
                     truth_path=tmp_path / "truth.h5", **SETTINGS)
    study = load_study(tmp_path / "study.h5")
    assert study.layers["lesions"].shape == (4, 4, 80, 80) and study.layers["lesions"].dtype == np.uint8
    for row in (0, 1):  # subject 0, right then left
        masks = study.layers["lesions"][row]
        assert masks[:3].sum() == 0 and masks[3].sum() > 0
        ys, xs = np.nonzero(masks[3])
        px, py = study.groups[row, 3, 0]
        assert abs(xs.mean() - px) < 1.0 and abs(ys.mean() - py) < 1.0
    assert study.layers["lesions"][2:].sum() == 0  # subject 1 has no mask in the truth file


def test_mask_crop_keeps_lesions_smaller_than_a_crop_pixel():
    mask = np.zeros((100, 100), np.uint8)
    mask[41:43, 57:59] = 1  # 2 x 2 source pixels
    down = mask_crop(mask, 4.0, (0, 0), 20)  # 4x downsampling: one crop pixel
    assert down.sum() == 1 and down[10, 14] == 1
    up = mask_crop(mask, 0.5, (100, 70), 40)  # 2x upsampling: a 4 x 4 block, where the pixels went
    ys, xs = np.nonzero(up)
    assert up.sum() == 16 and xs.mean() == pytest.approx(to_resampled([[57.5, 41.5]], 0.5)[0, 0] - 100)
    assert ys.mean() == pytest.approx(to_resampled([[57.5, 41.5]], 0.5)[0, 1] - 70)


def test_streaming_writer_batches(tmp_path):
    manifest, labels = make_cohort(tmp_path, 40, shape=(200, 300), spacing=SPACING)  # 80 hips > batch of 64
    preprocess_study(manifest, labels, tmp_path / "study.h5", tmp_path / "excl.csv", **SETTINGS)
    study = load_study(tmp_path / "study.h5")
    assert len(study) == 80
    assert list(study.meta.subject[:4]) == ["CHECK-00000", "CHECK-00000", "CHECK-00001", "CHECK-00001"]
    assert list(study.meta.side[:2]) == ["right", "left"]
    assert not np.isnan(study.images).any()


def test_group_hdf5_import_reproduces_the_crop(tmp_path, processed):
    ours = load_study(processed["study"])
    export_group_h5(ours, tmp_path / "group.h5")
    with h5py.File(tmp_path / "group.h5", "r") as h5:  # really Blosc2-compressed, as the group's release
        image = h5[f"scans/{ours.meta.subject[0]}/{ours.meta.visit[0]}/{ours.meta.side[0]}/image"]
        assert str(hdf5plugin.Blosc2.filter_id) in image._filters
    imported = tmp_path / "imported.h5"
    import_group_study(tmp_path / "group.h5", processed["dir"], processed["labels"], imported,
                       tmp_path / "excl.csv", groups=DEFAULT_GROUPS, max_excluded_fraction=0.9,
                       spacing_mm=0.8, crop_size=80)
    theirs = load_study(imported)
    a, b = matched_rows(ours, theirs)
    np.testing.assert_allclose(theirs.contour[b], ours.contour[a], atol=1e-3)
    np.testing.assert_allclose(theirs.groups[b], ours.groups[a], atol=1e-3)
    np.testing.assert_array_equal(theirs.valid[b], ours.valid[a])
    np.testing.assert_allclose(theirs.head_circle[b], ours.head_circle[a], atol=1e-3)
    np.testing.assert_allclose(theirs.images[b], ours.images[a], atol=1e-6)
    np.testing.assert_array_equal(theirs.grades[b], ours.grades[a])
    assert (theirs.meta.source[b].to_numpy() == ours.meta.source[a].to_numpy()).all()
    with pytest.raises(ValueError, match="crop_size"):
        import_group_study(tmp_path / "group.h5", processed["dir"], processed["labels"], imported,
                           tmp_path / "excl.csv", groups=DEFAULT_GROUPS, max_excluded_fraction=0.9, crop_size=224)


def test_an_unforeseen_error_is_recorded_not_raised(tmp_path, monkeypatch):
    import osteoloc.preprocess.sources as pre

    manifest, labels = make_cohort(tmp_path, 3, shape=SHAPE, spacing=SPACING)
    real = pre.read_hip_points

    def flaky(path, *args):
        if "00001" in str(path):
            raise RuntimeError("simulated bug")
        return real(path, *args)

    monkeypatch.setattr(pre, "read_hip_points", flaky)
    kept = preprocess_study(manifest, labels, tmp_path / "study.h5", tmp_path / "excl.csv", **SETTINGS)
    table = pd.read_csv(tmp_path / "excl.csv", keep_default_na=False)
    assert kept == 4
    assert table.stage.tolist() == ["error"] and "RuntimeError: simulated bug" in table.reason[0]
    assert table.subject[0] == "CHECK-00001" and table.side[0] == ""


def test_duplicate_manifest_rows_and_empty_points_path(tmp_path):
    manifest_path, labels = make_cohort(tmp_path, 3, shape=SHAPE, spacing=SPACING)
    manifest = pd.read_csv(manifest_path)
    manifest = pd.concat([manifest, manifest.iloc[[0]]], ignore_index=True)
    manifest.loc[1, "points_path"] = ""
    manifest.to_csv(manifest_path, index=False)
    kept = preprocess_study(manifest_path, labels, tmp_path / "study.h5", tmp_path / "excl.csv", **SETTINGS)
    table = pd.read_csv(tmp_path / "excl.csv", keep_default_na=False)
    assert kept == 4 and len(load_study(tmp_path / "study.h5", images=False)) == 4
    duplicate = table[table.reason.str.contains("duplicate manifest row")]
    assert duplicate.subject.tolist() == ["CHECK-00000"]
    empty = table[table.subject == "CHECK-00001"]
    assert sorted(empty.side) == ["left", "right"] and (empty.reason == "no points_path given").all()


def test_monochrome1_radiograph_gives_the_same_crop_as_monochrome2(tmp_path):
    manifest_path, labels = make_cohort(tmp_path, 1, shape=SHAPE, spacing=SPACING)
    plain = tmp_path / "00000_T00_APO.dcm"
    pixels = pydicom.dcmread(plain).pixel_array
    write_dicom(tmp_path / "inverted.dcm", pixels.max() - pixels, spacing=SPACING, photometric="MONOCHROME1")
    (tmp_path / "inverted.pts").write_bytes((tmp_path / "00000_T00_APO.pts").read_bytes())
    manifest = pd.read_csv(manifest_path)
    manifest.loc[1] = ["inverted.dcm", "CHECK-00001", "T00", "CHECK", "inverted.pts"]
    manifest.to_csv(manifest_path, index=False)
    label_rows = pd.read_csv(labels).assign(subject="CHECK-00001")
    pd.concat([pd.read_csv(labels), label_rows]).to_csv(labels, index=False)
    preprocess_study(manifest_path, labels, tmp_path / "study.h5", tmp_path / "excl.csv", **SETTINGS)
    study = load_study(tmp_path / "study.h5")
    assert len(study) == 4
    np.testing.assert_allclose(study.images[2:], study.images[:2], atol=1e-4)
