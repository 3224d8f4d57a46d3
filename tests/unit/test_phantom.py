"""The phantom cohort: determinism, labels, anatomy, lesions, DICOM variety, broken inputs, BoneFinder runner."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from scipy import ndimage

from osteoloc.io.pts import read_pts
from osteoloc.cohort.landmarks import fit_circle
from osteoloc.cohort.phantom import anatomy, dicom, labels, lesions
from osteoloc.cohort.phantom.cohort import Plan, gather_shards, make_cohort, make_shard, stage_radiograph
from osteoloc.cohort.phantom.render import host_coverage, lesion_coverage
from osteoloc.io.truth_h5 import TruthFile
from osteoloc.cohort.phantom.settings import DEFAULTS, PAPER_A_CORRELATION, with_defaults
from osteoloc.cohort.bonefinder import run_bonefinder
from osteoloc.cohort.phantom.cohort import BROKEN_KINDS, TWIN_IMAGES, TWIN_MANIFEST, Difficulty, cohort_grades
from osteoloc.names import TARGETS

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {"osteo_fem_sup": [13, 78, 14, 15], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [67],
          "osteo_acet_inf": [71]}
HAVE_DCMTK = shutil.which("dcmcjpls") is not None and shutil.which("dcmcjpeg") is not None
NEEDS_DCMTK = pytest.mark.skipif(not HAVE_DCMTK, reason="dcmtk (dcmcjpls, dcmcjpeg) not installed: "
                                 "tools/system-packages.sh installs it")
SYNTAXES = {"explicit": 1.0, "rle": 1.0, "jpeg2000": 1.0, "jpegls": float(HAVE_DCMTK),
            "jpeg_lossless": float(HAVE_DCMTK)}
SMALL = {"subjects": 16, "seed": 3, "spacing_mm": [0.75, 0.8], "broken_fraction": 0.01, "missing_fraction": 0.15, "split_pts_fraction": 0.4,
         "shard_subjects": 5,
         "dicom": {"cr_fraction": 0.4, "monochrome1_fraction": 0.5, "pixel_spacing_fraction": 0.5,
                   "bits_stored": {"10": 1, "12": 1, "14": 1, "16": 1}, "transfer_syntax": SYNTAXES},
         "prevalence": {"osteo_fem_sup": 0.5, "osteo_fem_inf": 0.5, "osteo_acet_sup": 0.5, "osteo_acet_inf": 0.5}}


@pytest.fixture(scope="module")
def cohort(phantom_cohort):
    return phantom_cohort(SMALL)


@pytest.fixture(scope="module")
def manifest(cohort):
    return pd.read_csv(cohort / "manifest.csv")


@pytest.fixture(scope="module")
def broken(cohort):
    return pd.read_csv(cohort / "broken.csv", keep_default_na=False)


def good_rows(manifest, broken):
    return manifest[~manifest["image_path"].isin(broken["image_path"])]


def read_image(path):
    ds = pydicom.dcmread(path)
    spacing = ds.get("PixelSpacing") or ds.ImagerPixelSpacing
    a = ds.pixel_array.astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        a = a.max() - a
    return ds, a, float(spacing[0])


def stem_of(image_path):
    return Path(image_path).stem


# --- determinism --------------------------------------------------------------------------------------

def test_same_seed_same_bytes_and_arrays(tmp_path):
    cfg = {"subjects": 2, "broken_fraction": 0.0, "spacing_mm": [0.8, 0.8], "dicom": {"transfer_syntax": SYNTAXES}}
    make_cohort(cfg, tmp_path / "a")
    make_cohort(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(str(f).endswith(".dcm") for f in files) and any(str(f).endswith(".pts") for f in files)
    for f in files:
        if f.suffix == ".h5":
            continue
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    with h5py.File(tmp_path / "a" / "truth.h5") as ha, h5py.File(tmp_path / "b" / "truth.h5") as hb:
        assert list(ha["masks"]) == list(hb["masks"])
        for k in ha["masks"]:
            np.testing.assert_array_equal(ha["masks"][k][:], hb["masks"][k][:])
            np.testing.assert_array_equal(ha["params"][k].attrs["grades"], hb["params"][k].attrs["grades"])
    make_cohort({**cfg, "seed": 1}, tmp_path / "c")
    first = sorted((tmp_path / "a" / "images").iterdir())[0].name
    assert not (tmp_path / "c" / "images" / first).exists() or (
        (tmp_path / "c" / "images" / first).read_bytes() != (tmp_path / "a" / "images" / first).read_bytes())


# --- labels -------------------------------------------------------------------------------------------

def test_label_correlation_and_prevalence_match_config():
    cfg = with_defaults({"subjects": 3000})
    g = cohort_grades(cfg).reshape(-1, 4)
    prevalence = (g > 0).mean(axis=0)
    np.testing.assert_allclose(prevalence, [cfg["prevalence"][t] for t in TARGETS], atol=0.02)
    corr = labels.binary_correlation(g)
    target = np.asarray(PAPER_A_CORRELATION)
    off = ~np.eye(4, dtype=bool)
    assert np.abs(corr[off] - target[off]).max() < 0.05, corr
    assert set(np.unique(g)) == {0, 1, 2, 3}
    # higher grades are rarer, as the shares say
    counts = [(g == k).sum() for k in (1, 2, 3)]
    assert counts[0] > counts[1] > counts[2]


def test_default_cohort_labels_correlate_like_paper_a():
    g = cohort_grades({}).reshape(-1, 4)  # the default study (240 subjects, 480 hips)
    corr = labels.binary_correlation(g)
    off = corr[~np.eye(4, dtype=bool)]
    assert 0.25 <= off.mean() <= 0.45 and off.min() > 0.15 and off.max() < 0.6, corr


def test_scalar_correlation_and_unreachable_correlation():
    g = labels.sample_grades(np.random.default_rng(0), 4000, 1, [0.3] * 4, 0.0, [1, 0, 0])
    assert np.abs(labels.binary_correlation(g.reshape(-1, 4))[~np.eye(4, dtype=bool)]).max() < 0.05
    with pytest.raises(ValueError, match="cannot be reached"):
        labels.latent_correlation(labels.correlation_matrix(0.9), [0.05, 0.9, 0.3, 0.3])


def test_labels_csv_schema_and_wild_spellings(cohort, broken):
    raw = pd.read_csv(cohort / "labels.csv", dtype=str, keep_default_na=False)
    assert list(raw.columns) == list(labels.LABEL_COLUMNS)
    assert set(raw["side"]) <= {"left", "right", "L", "R"} and {"L", "R"} & set(raw["side"])
    cells = raw[list(TARGETS)].to_numpy().ravel()
    assert set(cells) - {"0", "1", "2", "3"} - set(labels.MISSING_SPELLINGS) <= set(
        __import__("osteoloc.cohort.phantom.cohort", fromlist=["JUNK_GRADES"]).JUNK_GRADES)
    assert len(set(cells) & set(labels.MISSING_SPELLINGS)) >= 3
    # every known grade equals the truth's grade for that hip
    with h5py.File(cohort / "truth.h5") as truth:
        by_subject = {truth["params"][k].attrs["subject"]: truth["params"][k].attrs["grades"] for k in truth["params"]}
    junk = set(broken.loc[broken["kind"] == "junk_grade", "subject"])
    for row in raw.itertuples():
        s = 0 if row.side in ("right", "R") else 1
        for t, target in enumerate(TARGETS):
            cell = getattr(row, target)
            if cell in ("0", "1", "2", "3"):
                assert int(cell) == by_subject[row.subject][s, t]
            elif cell not in labels.MISSING_SPELLINGS:
                assert row.subject in junk


# --- anatomy and points -------------------------------------------------------------------------------

def test_points_inside_image_realistic_and_on_drawn_edges(cohort, manifest, broken):
    checked = 0
    for row in good_rows(manifest, broken).itertuples():
        ds, image, sp = read_image(cohort / row.image_path)
        pts_mm = read_pts(cohort / row.manual_points_path)
        assert pts_mm.shape == (160, 2)
        px = pts_mm / sp
        assert (px >= 0).all() and (px[:, 0] <= ds.Columns - 1).all() and (px[:, 1] <= ds.Rows - 1).all()
        # the anatomical right hip is on the image's left
        assert pts_mm[:80, 0].mean() < pts_mm[80:, 0].mean()
        smooth = ndimage.gaussian_filter(image, 1.5)
        grad = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
        local_max = ndimage.maximum_filter(grad, size=5)
        strong = np.percentile(grad, 70)
        for hip in (pts_mm[:80], pts_mm[80:]):
            for curve in anatomy.CURVES.values():
                gaps = np.linalg.norm(np.diff(hip[list(curve)], axis=0), axis=1)
                assert gaps.max() < 75.0
            r = fit_circle(hip[list(anatomy.HEAD_INDICES)])[2]
            assert 20.0 - 0.5 <= r <= 28.0 + 0.5 and r < 40
        ij = np.rint(px[:, ::-1]).astype(int)
        on_edge = local_max[ij[:, 0], ij[:, 1]] > strong
        assert on_edge.mean() == 1.0, np.flatnonzero(~on_edge) % 80
        checked += 1
    assert checked >= 10


def test_automatic_points_err_like_bonefinder(cohort, manifest, broken):
    errors = []
    split = 0
    for row in good_rows(manifest, broken).itertuples():
        exact = read_pts(cohort / row.manual_points_path)
        p = cohort / row.points_path
        if p.suffix == ".pts":
            auto = read_pts(p)
        else:
            split += 1
            auto = np.concatenate([read_pts(f"{p}_L.pts"), read_pts(f"{p}_R.pts")])
        errors.append(np.linalg.norm(auto - exact, axis=1))
    e = np.concatenate(errors)
    assert 0.5 < np.median(e) < 3.0 and e.max() < 20.0
    assert split >= 1  # some automatic points come as per-hip _L / _R files


# --- lesions ------------------------------------------------------------------------------------------

def test_lesion_masks_sit_at_their_target_groups_and_grow_with_grade(cohort, manifest, broken):
    areas = {1: [], 2: [], 3: []}
    with h5py.File(cohort / "truth.h5") as truth:
        assert list(truth.attrs["targets"]) == list(TARGETS)
        for row in good_rows(manifest, broken).itertuples():
            stem = stem_of(row.image_path)
            mask = truth["masks"][stem][:]
            grades = truth["params"][stem].attrs["grades"]
            sp = truth["params"][stem].attrs["spacing_mm"]
            pts = read_pts(cohort / row.manual_points_path)
            for s in range(2):
                for t, target in enumerate(TARGETS):
                    m = (mask >> (4 * s + t)) & 1
                    if grades[s, t] == 0:
                        assert m.sum() == 0
                        continue
                    assert m.sum() > 0, (stem, s, target)
                    cy, cx = ndimage.center_of_mass(m)
                    group = pts[[80 * s + i for i in GROUPS[target]]]
                    d = np.linalg.norm(group - np.array([cx, cy]) * sp, axis=1).min()
                    assert d < 12.0, (stem, s, target, d)
                    areas[int(grades[s, t])].append(m.sum() * sp**2)
    assert np.mean(areas[1]) < np.mean(areas[2]) < np.mean(areas[3])


def test_landmark_placement_puts_lesions_on_their_landmarks_and_truth_says_so(cohort):
    with TruthFile(cohort / "truth.h5") as truth:
        table = truth.lesion_table()
    assert len(table) > 20 and table[["x_mm", "y_mm", "landmark_mm", "along_mm", "across_mm"]].notna().all().all()
    assert (table["landmark_mm"] < 7.5).all()  # within half a 15 mm cell: lesion and landmark coincide
    assert table["placed_along_mm"].isna().all() and (table["anchor"] == -1).all() and not table["away"].any()
    for target, group in lesions.LANDMARK_GROUPS.items():
        assert set(table.loc[table["target"] == target, "landmark"]) <= set(group)
    np.testing.assert_allclose(np.hypot(table["along_mm"], table["across_mm"]), table["landmark_mm"], rtol=1e-6)


def test_offset_placement_separates_lesion_and_landmark(phantom_cohort):
    """Design `offset`: a lesion lies about its drawn arc offset from its group's nearest landmark (within its
    protrusion), the distances reach beyond a 15 mm cell, and the away share lies far from every group."""
    placement = {"design": "offset", "across_mm": 0.0, "away_fraction": 0.25}
    config = {"seed": 2, "subjects": 14, "broken_fraction": 0.0, "prevalence": {t: 0.6 for t in TARGETS},
              "lesion_placement": placement}
    with TruthFile(phantom_cohort(config) / "truth.h5") as truth:
        table = truth.lesion_table()
    assert table["x_mm"].notna().all() and set(table["target"]) == set(TARGETS)  # every mask non-empty
    near, away = table[~table["away"]], table[table["away"]]
    assert len(near) > 40 and len(away) > 5
    for target, group in lesions.LANDMARK_GROUPS.items():
        assert set(table.loc[table["target"] == target, "anchor"]) <= set(group)
    assert (near["landmark_mm"] - near["placed_along_mm"].abs()).abs().max() < 5.0
    assert (near["landmark_mm"] > 7.5).mean() > 0.3 and near["landmark_mm"].max() > 12.0
    assert (away["landmark_mm"] > DEFAULTS["lesion_placement"]["away_min_mm"] - 5.0).all()


def test_across_placement_moves_the_lesion_off_or_over_its_bone_with_its_shape():
    """An across offset (drawn on [-6, 6] mm) moves the lesion with the bone that clipped it: its mask keeps
    its shape and moves by the offset; design `offset` with no offset at all grows it at its anchor."""
    def staged_masks(placement):
        plan = Plan({"seed": 4, "subjects": 6, "prevalence": {t: 0.9 for t in TARGETS},
                     "lesion_placement": {"design": "offset", "away_fraction": 0.0, **placement}})
        out = {}
        for i in range(6):
            staged = stage_radiograph(plan, i, 0)
            bone = host_coverage(staged.scene)
            for key, lesion in staged.scene.lesions.items():
                out[i, key] = (lesion_coverage(staged.scene, lesion, bone) >= 0.5, staged.scene.placements[key],
                               staged.scene.spacing)
        return out

    still = staged_masks({"along_mm": 0.0, "across_mm": 0.0})
    moved = staged_masks({"along_mm": 0.0, "across_mm": 6.0})
    assert len(still) > 30 and still.keys() == moved.keys()
    for key, (mask, placed, spacing) in still.items():
        assert mask.any() and placed.along_mm == 0.0 and not any(placed.host_shift)
        other, placed_across, _ = moved[key]
        assert other.any() and other.sum() == pytest.approx(mask.sum(), rel=0.2, abs=4)  # anti-aliasing at the edge
        shift = np.hypot(*np.subtract(ndimage.center_of_mass(other), ndimage.center_of_mass(mask))) * spacing
        assert shift == pytest.approx(abs(placed_across.across_mm), abs=spacing), key  # a pixel: a small mask's edge


def test_unknown_lesion_placement_is_refused():
    with pytest.raises(ValueError, match="lesion_placement"):
        with_defaults({"lesion_placement": {"desgin": "offset"}})
    with pytest.raises(ValueError, match="design"):
        with_defaults({"lesion_placement": {"design": "near"}})
    with pytest.raises(ValueError, match="distribution"):
        with_defaults({"lesion_placement": {"along_distribution": "cauchy"}})


def test_difficulty_knob_is_monotone():
    easy, hard = Difficulty.from_number(0.0), Difficulty.from_number(1.0)
    assert easy.size_scale > hard.size_scale and easy.contrast > hard.contrast
    assert easy.mimic_probability < hard.mimic_probability


def test_lesion_scale_scales_only_its_targets_lesions():
    from osteoloc.cohort.phantom.cohort import _rng, _subject_params, build_scene, layout_radiograph

    def heights(lesion_scale):
        cfg = with_defaults({"lesion_scale": lesion_scale})
        rng = _rng(0, 11, 0, 0)
        layout = layout_radiograph(cfg, _subject_params(_rng(0, 10, 0), cfg), rng)
        grades = np.full((2, len(TARGETS)), 2)
        return build_scene(layout, grades, np.zeros(2, bool), cfg, Difficulty.from_number(0.5), rng)[2]

    base = heights({t: 1.0 for t in TARGETS})
    half = heights({"osteo_acet_sup": 0.5})  # the others keep their defaults
    acet_sup, fem_inf = TARGETS.index("osteo_acet_sup"), TARGETS.index("osteo_fem_inf")
    np.testing.assert_allclose(half[:, acet_sup], 0.5 * base[:, acet_sup])
    np.testing.assert_allclose(half[:, fem_inf], DEFAULTS["lesion_scale"]["osteo_fem_inf"] * base[:, fem_inf])
    assert (base > 0).all()
    with pytest.raises(ValueError, match="lesion_scale"):
        with_defaults({"lesion_scale": {"fem_sup": 0.5}})


def test_shortcut_cue_tracks_its_target_and_stays_off_target_zones(tmp_path):
    cfg = {"subjects": 4, "broken_fraction": 0.0, "spacing_mm": [0.8, 0.8],
           "cue": {"enabled": True, "target": "osteo_fem_inf", "strength": 1.0}, "prevalence": SMALL["prevalence"]}
    make_cohort(cfg, tmp_path)
    man = pd.read_csv(tmp_path / "manifest.csv")
    flags = []
    with h5py.File(tmp_path / "truth.h5") as truth:
        for row in man.itertuples():
            attrs = truth["params"][stem_of(row.image_path)].attrs
            np.testing.assert_array_equal(attrs["cue"], attrs["grades"][:, 1] > 0)
            _, image, sp = read_image(tmp_path / row.image_path)
            for s in range(2):
                flags.append(bool(attrs["cue"][s]))
                if attrs["cue"][s]:  # the burned-in square is brighter than anything around it
                    x, y = np.rint(attrs["cue_xy_mm"][s] / sp).astype(int)
                    assert image[y - 1 : y + 2, x - 1 : x + 2].mean() > np.percentile(image, 99)
                else:
                    assert np.isnan(attrs["cue_xy_mm"][s]).all()
    assert any(flags) and not all(flags)
    assert with_defaults({})["cue"]["enabled"] is False  # off by default
    assert with_defaults({})["cue"]["twins"] is False
    # twins off: no twin files at all
    assert not (tmp_path / TWIN_IMAGES).exists() and not (tmp_path / TWIN_MANIFEST).exists()
    # turning the cue off changes nothing but the markers
    make_cohort({**cfg, "cue": {**cfg["cue"], "enabled": False}}, tmp_path / "off")
    with h5py.File(tmp_path / "truth.h5") as on, h5py.File(tmp_path / "off" / "truth.h5") as off:
        for key in on["params"]:
            assert not off["params"][key].attrs["cue"].any()
            np.testing.assert_array_equal(on["masks"][key][:], off["masks"][key][:])
        assert "cue" in on and "cue" not in off  # cue masks only with the cue
    for row in man.itertuples():
        _, with_cue, sp = read_image(tmp_path / row.image_path)
        _, without, _ = read_image(tmp_path / "off" / row.image_path)
        changed = np.abs(with_cue - without) > 0.05 * (without.max() - without.min())
        assert changed.mean() < 0.01  # only the marker squares (plus rescaling) differ
    hip = anatomy.build_hip(anatomy.draw_hip_params(np.random.default_rng(0)), 88.0)
    corner = hip.sites["cue_corner"]
    for target, idx in GROUPS.items():
        assert np.linalg.norm(hip.points[idx] - corner, axis=1).min() > 20.0


# --- DICOM --------------------------------------------------------------------------------------------

def test_dicom_variety_is_present_and_readable(cohort, manifest, broken):
    seen = {"photometric": set(), "bits": set(), "spacing": set(), "syntax": set(), "modality": set()}
    for row in good_rows(manifest, broken).itertuples():
        ds, image, _ = read_image(cohort / row.image_path)
        seen["photometric"].add(ds.PhotometricInterpretation)
        seen["bits"].add(int(ds.BitsStored))
        seen["spacing"].add(tuple(t for t in ("PixelSpacing", "ImagerPixelSpacing") if t in ds))
        seen["syntax"].add(ds.file_meta.TransferSyntaxUID)
        seen["modality"].add(ds.Modality)
        assert image.shape == (ds.Rows, ds.Columns)
        assert image.max() < 2 ** int(ds.BitsStored)
        # fake identifiers, never the subject id
        assert str(ds.PatientID).startswith("PID") and row.subject not in str(ds.PatientName)
        # bone is bright once MONOCHROME1 is inverted: the femoral head beats the soft tissue beside it
        pts = read_pts(cohort / row.manual_points_path)
        sp = float((ds.get("PixelSpacing") or ds.ImagerPixelSpacing)[0])
        cx, cy, r = fit_circle(pts[list(anatomy.HEAD_INDICES)])
        head = image[int(cy / sp) - 3 : int(cy / sp) + 3, int(cx / sp) - 3 : int(cx / sp) + 3].mean()
        assert head > np.percentile(image, 30)
    assert seen["photometric"] == {"MONOCHROME1", "MONOCHROME2"}
    assert seen["bits"] == {10, 12, 14, 16}
    assert {("PixelSpacing",), ("ImagerPixelSpacing",)} <= seen["spacing"]
    expected = {dicom.TRANSFER_SYNTAXES[name][0] for name, weight in SYNTAXES.items() if weight > 0}
    assert seen["syntax"] == expected
    assert seen["modality"] == {"CR", "DX"}


def test_uids_deterministic_and_unique(cohort, manifest, broken):
    uids = set()
    for row in good_rows(manifest, broken).itertuples():
        ds = pydicom.dcmread(cohort / row.image_path, stop_before_pixels=True)
        assert ds.SOPInstanceUID.startswith("2.25.")
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == len(good_rows(manifest, broken))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_dciodvfy_reports_no_errors(cohort, manifest, broken):
    rows = good_rows(manifest, broken)
    # one file of each kind of variant
    picked = {}
    for row in rows.itertuples():
        ds = pydicom.dcmread(cohort / row.image_path, stop_before_pixels=True)
        key = (ds.Modality, ds.PhotometricInterpretation, ds.file_meta.TransferSyntaxUID)
        picked.setdefault(key, row.image_path)
    assert len(picked) >= 4
    for path in picked.values():
        done = subprocess.run(["dciodvfy", str(cohort / path)], capture_output=True, text=True)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (path, errors)


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="dcmtk (dcmdump) not installed")
def test_dcmdump_reads_files(cohort, manifest, broken):
    for path in good_rows(manifest, broken)["image_path"][:3]:
        done = subprocess.run(["dcmdump", str(cohort / path)], capture_output=True, text=True)
        assert done.returncode == 0 and "PatientName" in done.stdout


@pytest.mark.parametrize("syntax", [pytest.param(name, marks=NEEDS_DCMTK if dicom.TRANSFER_SYNTAXES[name][1] else ())
                                    for name in dicom.TRANSFER_SYNTAXES])
@pytest.mark.parametrize("bits", dicom.BITS_STORED)
def test_every_transfer_syntax_is_lossless_at_every_bit_depth(tmp_path, syntax, bits):
    rng = np.random.default_rng(bits)
    image = ndimage.gaussian_filter(rng.standard_normal((60, 90)), 3) + rng.standard_normal((60, 90))
    stored = dicom.to_stored(image, bits, "MONOCHROME2")
    stored[0, 0], stored[-1, -1] = 0, (1 << bits) - 1  # both ends of the range
    who = dicom.Identity("PHANTOM^X", "PID1", "19500101", "F", "20200101", "ACC1", dicom.uid(1), dicom.uid(2),
                         dicom.uid(3))
    variant = dicom.Variant(bits_stored=bits, transfer_syntax=syntax)
    dicom.write(tmp_path / "x.dcm", dicom.build_dataset(stored, 0.15, variant, who), syntax)
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    assert ds.file_meta.TransferSyntaxUID == dicom.TRANSFER_SYNTAXES[syntax][0]
    assert ds.SOPInstanceUID == dicom.uid(3) and int(ds.BitsStored) == bits
    np.testing.assert_array_equal(ds.pixel_array, stored)


def test_missing_dcmtk_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dcmtk here
    with pytest.raises(RuntimeError, match="dcmcjpls is not on PATH"):
        make_cohort({"subjects": 1, "broken_fraction": 0, "dicom": {"transfer_syntax": {"jpegls": 1}}}, tmp_path)
    assert not (tmp_path / "manifest.csv").exists()


# --- counterfactual twins -----------------------------------------------------------------------------

TWINS = {**SMALL, "subjects": 8, "shard_subjects": 3, "prevalence": {t: 0.5 for t in TARGETS},
         "cue": {"enabled": True, "target": "osteo_acet_sup", "strength": 0.6, "twins": True}}


@pytest.fixture(scope="module")
def twin_cohort(phantom_cohort):
    return phantom_cohort(TWINS)


def test_twin_manifest_matches_the_manifest_row_for_row(twin_cohort):
    manifest = pd.read_csv(twin_cohort / "manifest.csv")
    twins = pd.read_csv(twin_cohort / TWIN_MANIFEST)
    assert list(twins.columns) == list(manifest.columns) and len(twins) == len(manifest) == 8
    pd.testing.assert_frame_equal(twins.drop(columns="image_path"), manifest.drop(columns="image_path"))
    assert list(twins["image_path"]) == [f"{TWIN_IMAGES}/{Path(p).name}" for p in manifest["image_path"]]
    assert all((twin_cohort / p).exists() for p in twins["image_path"])


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")  # the truncated pair, on purpose
def test_twin_differs_from_its_radiograph_only_at_the_cue(twin_cohort):
    manifest = pd.read_csv(twin_cohort / "manifest.csv")
    twins = pd.read_csv(twin_cohort / TWIN_MANIFEST)
    broken = pd.read_csv(twin_cohort / "broken.csv", keep_default_na=False)
    truncated = set(broken.loc[broken["kind"] == "truncated_dicom", "image_path"])
    assert truncated
    marked, syntaxes = 0, set()
    with h5py.File(twin_cohort / "truth.h5") as truth:
        assert list(truth["cue"]) == list(truth["masks"])
        for path, twin_path in zip(manifest["image_path"], twins["image_path"]):
            if path in truncated:  # broken the same way, so both cohorts exclude it
                for p in (path, twin_path):
                    with pytest.raises(Exception):
                        pydicom.dcmread(twin_cohort / p).pixel_array
                continue
            stem = stem_of(path)
            attrs = truth["params"][stem].attrs
            cue = truth["cue"][stem][:]
            ds, tw = pydicom.dcmread(twin_cohort / path), pydicom.dcmread(twin_cohort / twin_path)
            assert ds.file_meta.TransferSyntaxUID == tw.file_meta.TransferSyntaxUID
            for tag in ("BitsStored", "PhotometricInterpretation", "Rows", "Columns", "Modality", "PatientID"):
                assert ds[tag].value == tw[tag].value, tag
            assert ds.SOPInstanceUID != tw.SOPInstanceUID and ds.SeriesInstanceUID != tw.SeriesInstanceUID
            syntaxes.add(ds.file_meta.TransferSyntaxUID)
            image, twin = ds.pixel_array, tw.pixel_array
            assert cue.shape == image.shape == twin.shape and cue.dtype == np.uint8 and cue.max() <= 3
            np.testing.assert_array_equal(image[cue == 0], twin[cue == 0])
            sp = float(attrs["spacing_mm"])
            for s in range(2):
                side = (cue >> s) & 1 == 1
                assert side.any() == bool(attrs["cue"][s]), (stem, s)
                if attrs["cue"][s]:  # at the marker's centre the twin shows what lies under it
                    x, y = np.rint(attrs["cue_xy_mm"][s] / sp).astype(int)
                    centre = np.s_[y - 1 : y + 2, x - 1 : x + 2]
                    assert side[y, x] and (image[centre] != twin[centre]).all()
                    marked += 1
                    # the mask is the square (size_mm, anti-aliased: +1 px a side) plus the blur's reach (2 px)
                    assert side.sum() <= (6.0 / sp + 7) ** 2
    assert marked >= 2 and len(syntaxes) >= 3


def test_twins_leave_the_radiographs_alone_and_off_removes_them(twin_cohort, tmp_path):
    off = {**TWINS, "cue": {**TWINS["cue"], "twins": False}}
    make_cohort(off, tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".h5")
    assert files == sorted(p.relative_to(twin_cohort) for p in twin_cohort.rglob("*") if p.is_file()
                           and p.suffix != ".h5" and p.parts[-2] != TWIN_IMAGES and p.name != TWIN_MANIFEST)
    for f in files:
        assert (tmp_path / f).read_bytes() == (twin_cohort / f).read_bytes(), f
    # a rerun with twins off in a folder that had them leaves no stale twin behind
    shutil.copytree(twin_cohort, tmp_path / "again")
    make_cohort(off, tmp_path / "again")
    assert not (tmp_path / "again" / TWIN_IMAGES).exists() and not (tmp_path / "again" / TWIN_MANIFEST).exists()


def test_twins_need_the_cue(tmp_path):
    with pytest.raises(ValueError, match="cue.twins is on but cue.enabled is off"):
        make_cohort({"subjects": 1, "cue": {"twins": True}}, tmp_path)
    assert not (tmp_path / "manifest.csv").exists()


# --- shards -------------------------------------------------------------------------------------------

def test_cohort_is_the_same_whatever_the_shard_size(tmp_path):
    # with the cue and its twins on, so that they too are checked
    cfg = {**SMALL, "subjects": 7, "visits": 2, "spacing_mm": [0.9, 1.0], "shard_subjects": 7,
           "cue": {"enabled": True, "strength": 1.0, "twins": True}}
    make_cohort(cfg, tmp_path / "one")
    for size in (1, 3):
        make_cohort({**cfg, "shard_subjects": size}, tmp_path / str(size))
        one, other = tmp_path / "one", tmp_path / str(size)
        files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and p.suffix != ".h5")
        assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file() and p.suffix != ".h5")
        assert len([f for f in files if f.suffix == ".dcm"]) == 28 and TWIN_MANIFEST in map(str, files)
        for f in files:
            assert (one / f).read_bytes() == (other / f).read_bytes(), (size, f)
        with h5py.File(one / "truth.h5") as a, h5py.File(other / "truth.h5") as b:
            assert {k: str(v) for k, v in a.attrs.items()} == {k: str(v) for k, v in b.attrs.items()}
            assert list(a["masks"]) == list(b["masks"]) == list(a["cue"]) == list(b["cue"])
            for stem in a["masks"]:
                np.testing.assert_array_equal(a["masks"][stem][:], b["masks"][stem][:])
                np.testing.assert_array_equal(a["cue"][stem][:], b["cue"][stem][:])
                assert {k: str(v) for k, v in a["params"][stem].attrs.items()} == {
                    k: str(v) for k, v in b["params"][stem].attrs.items()}


def test_gather_refuses_missing_or_misnumbered_shards(tmp_path):
    cfg = {"subjects": 4, "shard_subjects": 2, "broken_fraction": 0, "spacing_mm": [1.0, 1.0]}
    make_shard(cfg, 0, tmp_path / "a")
    make_shard(cfg, 0, tmp_path / "b")
    with pytest.raises(ValueError, match="has 2 shards but 1"):
        gather_shards(cfg, [tmp_path / "a"], tmp_path / "out")
    with pytest.raises(ValueError, match="holds shard 0, expected 1"):
        gather_shards(cfg, [tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(ValueError, match="shard 2 is outside 0..1"):
        make_shard(cfg, 2, tmp_path / "c")


# --- broken inputs ------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")  # the truncated file, on purpose
def test_every_broken_kind_is_present_and_really_broken(cohort, manifest, broken):
    assert set(broken["kind"]) == set(BROKEN_KINDS)
    assert broken["image_path"].is_unique
    raw = pd.read_csv(cohort / "labels.csv", dtype=str, keep_default_na=False)
    for row in broken.itertuples():
        entry = manifest[manifest["image_path"] == row.image_path].iloc[0]
        if row.kind == "truncated_dicom":
            with pytest.raises(Exception):
                pydicom.dcmread(cohort / row.image_path).pixel_array
        elif row.kind == "missing_pts":
            assert not (cohort / entry.points_path).exists()
        elif row.kind == "points_outside":
            pts = read_pts(cohort / entry.points_path)
            assert (pts[:80, 0] < 0).any()
        elif row.kind == "junk_grade":
            hip = raw[(raw["subject"] == row.subject) & raw["side"].isin(["right", "R"])]
            assert hip[list(TARGETS)].isin(["7", "abc"]).any(axis=None)


def test_manifest_columns_and_file_names(cohort, manifest):
    assert list(manifest.columns) == ["image_path", "subject", "visit", "cohort", "points_path",
                                      "manual_points_path"]
    for row in manifest.itertuples():
        name = Path(row.image_path).name
        if row.cohort == "OAI":
            assert row.subject.startswith("OAI-") and name.startswith(f"{row.subject}-{row.visit}-")
        else:
            assert row.subject.startswith("CHECK-") and name == f"{row.subject[6:]}_{row.visit}_APO.dcm"


# --- config -------------------------------------------------------------------------------------------

def test_schema_defaults_match_library_defaults():
    schema = yaml.safe_load((ROOT / "workflow/schemas/cohort.schema.yaml").read_text())
    props = schema["properties"]["phantom"]["properties"]
    assert set(props) == set(DEFAULTS)
    for key, value in DEFAULTS.items():
        if "properties" in props[key] and key != "prevalence":
            assert {k: v["default"] for k, v in props[key]["properties"].items()} == value, key
        else:
            assert props[key]["default"] == value, key
    for key, prop in schema["properties"].items():
        assert "description" in prop and "default" in prop, key


def test_unknown_phantom_key_is_refused():
    with pytest.raises(ValueError, match="unknown cohort.phantom keys"):
        with_defaults({"subjcts": 3})


# --- BoneFinder runner --------------------------------------------------------------------------------

def test_bonefinder_command_runs_per_image_and_writes_a_manifest(cohort, manifest, tmp_path):
    known = cohort / manifest["manual_points_path"].iloc[0]
    user = tmp_path / "user"
    user.mkdir()
    rows = manifest.head(3).copy()
    rows["image_path"] = [str(cohort / p) for p in rows["image_path"]]
    rows.loc[rows.index[2], "image_path"] = str(tmp_path / "no such image.dcm")  # a failing run
    rows.to_csv(user / "manifest.csv", index=False)
    copy = (f"{sys.executable} -c \"import shutil, sys, os; "
            f"assert os.path.exists(sys.argv[1]); shutil.copy('{known}', sys.argv[2])\" {{image}} {{points}}")
    failures = run_bonefinder(user / "manifest.csv", copy, tmp_path / "bf" / "manifest.csv")
    assert failures == 1
    out = pd.read_csv(tmp_path / "bf" / "manifest.csv")
    assert len(out) == 3 and list(out["subject"]) == list(rows["subject"])
    for i, row in enumerate(out.itertuples()):
        produced = tmp_path / "bf" / row.points_path
        assert produced.exists() == (i < 2)
        if i < 2:
            np.testing.assert_allclose(read_pts(produced), read_pts(known))
    with pytest.raises(ValueError, match="must contain"):
        run_bonefinder(user / "manifest.csv", "bonefinder {image}", tmp_path / "x" / "manifest.csv")


def test_visits_share_the_subject_and_anatomy(tmp_path):
    make_cohort({"subjects": 2, "visits": 2, "broken_fraction": 0.0, "oai_fraction": 0.0,
                 "spacing_mm": [0.8, 0.8]}, tmp_path)
    man = pd.read_csv(tmp_path / "manifest.csv")
    assert list(man["visit"]) == ["T00", "T01", "T00", "T01"]
    assert all(Path(p).name.endswith(f"_{v}_APO.dcm") for p, v in zip(man["image_path"], man["visit"]))
    with h5py.File(tmp_path / "truth.h5") as truth:
        radii = [truth["params"][stem_of(p)].attrs["head_radius_mm"] for p in man["image_path"]]
    np.testing.assert_allclose(radii[0], radii[1])
    assert not np.allclose(radii[0], radii[2])


def test_twin_study_has_the_study_rows_and_the_cue_in_crop_pixels(twin_cohort, tmp_path):
    """Preprocessing carries the cue into the study (`/truth/cue`, cropped and flipped like the image) and
    the twin cohort preprocesses to the same hips in the same rows; only the cue's neighbourhood (and the
    crop's own p5/p95 normalisation) tells the two images apart."""
    from osteoloc.io.study_h5 import StudyFile
    from osteoloc.preprocess.stages import preprocess_twin
    from osteoloc.preprocess.stages import preprocess_study

    settings = {"crop_size": 64, "spacing_mm": 1.4, "groups": GROUPS, "points_unit": "auto",
                "accept_mirrored": False, "max_excluded_fraction": 0.6}
    preprocess_study(twin_cohort / "manifest.csv", twin_cohort / "labels.csv", tmp_path / "study.h5",
                     tmp_path / "exclusions.csv", truth_path=twin_cohort / "truth.h5",
                     **{k: settings[k] for k in ("crop_size", "spacing_mm", "groups", "max_excluded_fraction")})
    preprocess_twin({"manifest": str(twin_cohort / TWIN_MANIFEST), "labels": str(twin_cohort / "labels.csv"),
                     "truth": str(twin_cohort / "truth.h5")}, settings, tmp_path / "twin.h5", tmp_path / "twin.csv")
    with StudyFile(tmp_path / "study.h5") as study, StudyFile(tmp_path / "twin.h5") as twin, \
            h5py.File(twin_cohort / "truth.h5") as truth:
        assert "cue" in study.layers and "cue" in twin.layers and len(study) == len(twin) > 0
        pd.testing.assert_frame_equal(study.meta(("subject", "visit", "side")), twin.meta(("subject", "visit", "side")))
        meta = study.meta(("subject", "visit", "side", "source"))
        a = study.read(["image", "cue"])
        b = twin.read(["image", "cue"])
        np.testing.assert_array_equal(a.layers["cue"], b.layers["cue"])
        marked = 0
        for i, hip in meta.iterrows():
            flag = bool(truth[f"params/{Path(hip.source).stem}"].attrs["cue"][["right", "left"].index(hip.side)])
            cue = a.layers["cue"][i]
            if not flag:  # no marker on this hip: nothing in the mask, the twin's crop is the same crop
                assert cue.sum() == 0
                np.testing.assert_allclose(a.image[i], b.image[i], atol=1e-6)
            elif cue.any():  # a marker inside the crop: the images differ most at the cue
                marked += 1
                diff = np.abs(a.image[i] - b.image[i])
                assert diff[cue > 0].mean() > 5 * diff[cue == 0].mean()
        assert marked > 0
