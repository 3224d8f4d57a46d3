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
from osteoloc.io.pts import write_pts
from osteoloc.io.study_h5 import load_study
from osteoloc.cohort.landmarks import DEFAULT_GROUPS, target_groups
from osteoloc.preprocess.exclusions import TooManyExclusions
from osteoloc.preprocess.geometry import crop_offset, mask_crop, preprocess_hip, resample_crop, to_crop, to_resampled
from osteoloc.preprocess.stages import import_group_study, preprocess_study
from osteoloc.names import TARGETS
from helpers import make_cohort, radiograph_points_mm, synthetic_pixels, write_dicom, write_labels

SETTINGS = dict(crop_size=80, spacing_mm=0.8, groups=DEFAULT_GROUPS, max_excluded_fraction=0.9)
SHAPE, SPACING = (300, 440), 0.4


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
    assert to_resampled([[-0.5, 99.5]], 2.0).tolist() == [[-0.5, 49.5]]


# --- a cohort with every kind of trouble --------------------------------------------------------------
def _bad_cohort(tmp_path):
    """make_cohort's 8 good radiographs, then one of each problem; returns (manifest, labels, expected)."""
    manifest_path, labels_path = make_cohort(tmp_path, 8, shape=SHAPE, spacing=SPACING)
    manifest = pd.read_csv(manifest_path)
    labels = pd.read_csv(labels_path)
    points_mm = radiograph_points_mm(SHAPE, SPACING, seed=99)
    pixels = synthetic_pixels(SHAPE, points_mm / SPACING)
    extra_rows, extra_labels = [], []

    def marked():
        # each radiograph its own pixel data (else they are duplicates of each other): one corner pixel
        # differs, far from the left hip's crop, which test_manifest_spacing_fallback compares
        copy = pixels.copy()
        copy[0, 0] = (int(pixels[0, 0]) + 1 + len(extra_rows)) % 4096
        return copy

    def add(stem, subject, labelled=True, **dicom):
        write_dicom(tmp_path / f"{stem}.dcm", marked(), spacing=dicom.pop("spacing", SPACING), **dicom)
        extra_rows.append(dict(image_path=f"{stem}.dcm", subject=subject, visit="T00", cohort="CHECK",
                               points_path=f"{stem}.pts"))
        if labelled:
            extra_labels.extend([("CHECK", subject, "T00", side, 0, 1, 0, 1) for side in ("right", "left")])

    # truncated DICOM
    add("trunc", "S-trunc")
    data = (tmp_path / "trunc.dcm").read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(data[: len(data) // 2])
    write_pts(points_mm, tmp_path / "trunc.pts")
    # missing .pts
    add("nopts", "S-nopts")
    # points outside the image (right hip pushed beyond the left edge)
    add("outside", "S-outside")
    shifted = points_mm.copy()
    shifted[:80, 0] -= 200
    write_pts(shifted, tmp_path / "outside.pts")
    # failed sanity check: left hip's numbering scrambled (trochanter point far away)
    add("insane", "S-insane")
    scrambled = points_mm.copy()
    scrambled[80 + 30, 0] = 1.0  # a left-hip trochanter point at the image's far left edge
    write_pts(scrambled, tmp_path / "insane.pts")
    # no label rows at all
    add("nolabel", "S-nolabel", labelled=False)
    write_pts(points_mm, tmp_path / "nolabel.pts")
    # colour image
    add("colour", "S-colour", photometric="RGB")
    write_pts(points_mm, tmp_path / "colour.pts")
    # junk grade in one target of the right hip
    add("junk", "S-junk", labelled=False)
    write_pts(points_mm, tmp_path / "junk.pts")
    extra_labels += [("CHECK", "S-junk", "T00", "right", 0, "x", 0, 1), ("CHECK", "S-junk", "T00", "left", 0, 0, 0, 0)]
    # labels but no radiograph
    extra_labels.append(("CHECK", "S-ghost", "T00", "left", 0, 0, 0, 0))
    # spacing only in the manifest (points then in pixels)
    write_dicom(tmp_path / "nospacing.dcm", marked(), spacing=None)
    write_pts(points_mm / SPACING, tmp_path / "nospacing.pts")
    extra_rows.append(dict(image_path="nospacing.dcm", subject="S-nospacing", visit="T00", cohort="CHECK",
                           points_path="nospacing.pts", spacing=SPACING))
    extra_labels.extend([("CHECK", "S-nospacing", "T00", side, 1, 1, 1, 1) for side in ("right", "left")])

    manifest = pd.concat([manifest, pd.DataFrame(extra_rows)], ignore_index=True)
    manifest.to_csv(manifest_path, index=False)
    label_rows = [tuple(r) for r in labels[["cohort", "subject", "visit", "side", *TARGETS]].itertuples(index=False)]
    write_labels(labels_path, label_rows + extra_labels)
    expected = {  # subject -> (stage, side, reason fragment)
        "S-trunc": ("dicom", "", "trunc.dcm"),
        "S-nopts": ("points", "both", "no .pts file"),
        "S-outside": ("points", "right", "outside the image"),
        "S-insane": ("landmarks", "left", "greater trochanter"),
        "S-nolabel": ("labels", "both", "no label row"),
        "S-colour": ("dicom", "", "colour"),
        "S-junk": ("labels", "right", "junk grade"),
        "S-ghost": ("labels", "left", "no radiograph"),
    }
    return manifest_path, labels_path, expected


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cohort")
    manifest, labels, expected = _bad_cohort(tmp_path)
    study, exclusions = tmp_path / "study.h5", tmp_path / "exclusions.csv"
    kept = preprocess_study(manifest, labels, study, exclusions, **SETTINGS)
    return dict(dir=tmp_path, manifest=manifest, labels=labels, study=study, exclusions=exclusions, kept=kept,
                expected=expected)


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
    manifest, labels, _ = _bad_cohort(tmp_path)
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
    assert study.truth_masks.shape == (4, 4, 80, 80) and study.truth_masks.dtype == np.uint8
    for row in (0, 1):  # subject 0, right then left
        masks = study.truth_masks[row]
        assert masks[:3].sum() == 0 and masks[3].sum() > 0
        ys, xs = np.nonzero(masks[3])
        px, py = study.groups[row, 3, 0]
        assert abs(xs.mean() - px) < 1.0 and abs(ys.mean() - py) < 1.0
    assert study.truth_masks[2:].sum() == 0  # subject 1 has no mask in the truth file


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


def matched_rows(ours, theirs):
    """Row indices (ours, theirs) of the same hips in two studies that must hold exactly the same hips."""
    key = ["subject", "visit", "side"]
    merged = ours.meta.reset_index().merge(theirs.meta.reset_index(), on=key, suffixes=("_o", "_t"))
    assert len(merged) == len(ours) == len(theirs)
    return merged.index_o.to_numpy(), merged.index_t.to_numpy()


# --- end to end on CI's phantom study -----------------------------------------------------------------
@pytest.fixture(scope="module")
def ci_workflow(tmp_path_factory):
    """A copy of the workflow that has run `figure_landmarks` (hence the phantom and preprocess) on CI's study."""
    from workflow_copy import CI_CONFIG, copy_workflow, snakemake

    workdir = copy_workflow(tmp_path_factory.mktemp("ci_wf"))
    snakemake(workdir, "figure_landmarks", "--cores", "2", "--configfile", CI_CONFIG)
    return workdir


@pytest.mark.workflow
def test_workflow_preprocess_and_figure1_on_the_ci_phantom(ci_workflow):
    """The rules on experiments/ci.yaml: HDF5 checked against the phantom's truth, every broken input
    excluded with its reason, both sides in the same orientation, Figure 1 written."""
    results = ci_workflow / "results"
    study = load_study(results / "preprocess" / "study.h5")
    spacing = study.attrs["spacing_mm"]
    assert study.truth_masks is not None and len(study) > 0
    assert not np.isnan(study.contour_manual).any()  # the phantom's exact points, as manual points
    # lesions of graded targets lie at their target group (exact points): within a lesion's protrusion
    for i in range(len(study)):
        groups, _ = target_groups(study.contour_manual[i], study.group_indices)
        for t in range(len(TARGETS)):
            if study.grades[i, t] > 0:
                ys, xs = np.nonzero(study.truth_masks[i, t])
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


@pytest.mark.workflow
def test_workflow_group_hdf5_source_gives_the_same_study(ci_workflow, tmp_path):
    """`cohort.source: group_hdf5`: the preprocess rule imports the group's layout (written here from the
    phantom study) plus the phantom's .pts files, and reproduces the phantom study's rows."""
    from workflow_copy import CI_CONFIG, copy_workflow, snakemake, write_override

    cohort = ci_workflow / "results" / "cohort"
    ours = load_study(ci_workflow / "results" / "preprocess" / "study.h5")
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


@pytest.mark.workflow
def test_workflow_landmarks_match_the_generator_within_one_pixel(ci_workflow):
    """The HDF5's target groups and head radius against the phantom generator's own records, mapped
    independently of the pipeline: generator mm -> source pixels -> target spacing -> crop -> flip."""
    from osteoloc.io.pts import read_pts
    from osteoloc.cohort.landmarks import FEMORAL_HEAD, fit_circle

    results = ci_workflow / "results"
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


@pytest.mark.workflow
def test_workflow_exclusions_table_survives_a_refused_excluded_share(ci_workflow, tmp_path):
    """A threshold no cohort meets: the gather `preprocess` fails, writes no study, and the exclusions
    table (written by its own rule before) stays with a reason on every row; restored afterwards."""
    from workflow_copy import CI_CONFIG, snakemake, write_override

    results = ci_workflow / "results" / "preprocess"
    before = (results / "exclusions.csv").read_text()
    override = write_override(tmp_path, {"preprocess": {"max_excluded_fraction": 0.0}})
    failed = snakemake(ci_workflow, "preprocess", "--cores", "1", "--configfile", CI_CONFIG, override, check=False)
    try:
        assert failed.returncode != 0
        assert "TooManyExclusions" in (ci_workflow / "results" / "logs" / "preprocess.log").read_text()
        assert not (results / "study.h5").exists()
        assert (results / "exclusions.csv").read_text() == before  # not rerun (its inputs did not change)
        table = pd.read_csv(results / "exclusions.csv", keep_default_na=False)
        assert len(table) and (table.reason.str.len() > 0).all()
    finally:
        snakemake(ci_workflow, "figure_landmarks", "--cores", "1", "--configfile", CI_CONFIG)
    assert (results / "study.h5").exists()
