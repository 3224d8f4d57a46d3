"""Every builder the tests share, in one place (no test module imports another; tests/unit/test_layers.py
checks it): small synthetic radiographs, hip points, label files and toy studies for unit tests and
benchmarks, the settings and inputs several test modules use, and synthetic runs for the report.

Not a phantom (that is `osteoloc.cohort.phantom`): just enough anatomy-shaped geometry to pass the landmark
sanity checks, and DICOM files in the variants the readers must handle. Shared fixtures are in
tests/conftest.py.
"""

import inspect
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.io.atomic import write_csv
from osteoloc.io.pts import read_pts, write_pts
from osteoloc.io.runs import HISTORY_COLUMNS, write_history
from osteoloc.io.study_h5 import STRING_META, HipRecord, StudyFile, StudyWriter
from osteoloc.names import TARGETS
from osteoloc.preprocess.stages import (preprocess_exclusions, preprocess_gather, preprocess_shard, preprocess_study,
                                        write_shard_plan)
from osteoloc.segment.sites import HEAD_CIRCLE_INDICES
from osteoloc.train.data import read_subjects
from osteoloc.train.model import build_model
from osteoloc.train.splits import make_split

HEAD_ANGLES = {13: -60, 78: -35, 14: -10, 15: 15, 16: 40, 17: 65, 18: 90, 19: 115, 20: 140, 21: 165}
SOURCIL_ANGLES = {79: 40, 64: 20, 65: 0, 66: -20, 67: -40}  # medial -> lateral
TEARDROP_71 = 130


def hip_points_mm(centre, side, head_radius=24.0, seed=0):
    """80 plausible points (mm, image coordinates) of one hip around the head centre `centre` (x, y).

    Head and sourcil points follow the model's semantics (angles from superior, positive = medial); the
    other points are scattered close by (enough for the neighbour check, not anatomy)."""
    rng = np.random.default_rng(seed)
    medial = 1.0 if side == "right" else -1.0  # the right hip is on the image's left: medial = +x
    cx, cy = centre
    points = np.column_stack([cx + rng.uniform(-25, 25, 80), cy + rng.uniform(-25, 25, 80)])  # all neighbours < 75 mm

    def on_circle(angle, radius):
        a = np.deg2rad(angle)
        return cx + medial * radius * np.sin(a), cy - radius * np.cos(a)

    for index, angle in HEAD_ANGLES.items():
        points[index] = on_circle(angle, head_radius)
    for index, angle in SOURCIL_ANGLES.items():
        points[index] = on_circle(angle, head_radius + 4)
    points[71] = on_circle(TEARDROP_71, head_radius + 10)
    # below the head, as the orientation check expects: the obturator foramen and the shaft's two ends
    # (placed after the random draws, so every other point stays as it was)
    foramen = np.deg2rad(np.arange(7) * 360 / 7)
    points[54:61] = np.column_stack([cx + medial * (12 + 6 * np.sin(foramen)), cy + 30 + 8 * np.cos(foramen)])
    points[0], points[28] = (cx - medial * 15, cy + 30), (cx + medial * 5, cy + 30)
    return points


def radiograph_points_mm(shape, spacing, seed=0):
    """160 points (mm): right hip 0-79 on the image's left third, left hip 80-159 on its right third."""
    rows, cols = shape
    y = rows * spacing * 0.45
    right = hip_points_mm((cols * spacing * 0.3, y), "right", seed=seed)
    left = hip_points_mm((cols * spacing * 0.7, y), "left", seed=seed + 1)
    return np.vstack([right, left])


def synthetic_pixels(shape, points_px=None, seed=0, bits=12):
    """A smooth background with bright discs at the head centres, as unsigned ints of `bits` bits."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    image = 0.3 + 0.2 * np.sin(xx / cols * 3) * np.cos(yy / rows * 2)
    if points_px is not None:
        for hip in (points_px[:80], points_px[80:]):
            hx, hy = hip[[13, 78, *range(14, 22)]].mean(axis=0)
            image += 0.4 * (((xx - hx) ** 2 + (yy - hy) ** 2) < (0.04 * cols) ** 2)
    image += rng.normal(0, 0.02, shape)
    top = 2 ** bits - 1
    return np.clip(image * top, 0, top).astype(np.uint16)


def write_dicom(path, pixels, spacing=0.2, spacing_tag="PixelSpacing", photometric="MONOCHROME2",
                bits=12, compress=False, patient_name="Doe^Jane", patient_id="PID-12345", extra=None):
    """Write a greyscale DICOM (secondary capture) with the given variant; returns the path."""
    path = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19500101"
    ds.Modality = "DX"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if spacing is not None and spacing_tag:
        value = list(spacing) if np.ndim(spacing) else [spacing, spacing]
        setattr(ds, spacing_tag, [f"{v:.6g}" for v in value])
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    if compress:
        ds.compress(RLELossless)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_labels(path, rows):
    """rows: iterables (cohort, subject, visit, side, *grades in TARGETS order) -> the label CSV schema."""
    import pandas as pd

    frame = pd.DataFrame([list(r) for r in rows], columns=["cohort", "subject", "visit", "side", *TARGETS])
    frame = frame[["cohort", "subject", "visit", "side", "osteo_acet_inf", "osteo_acet_sup", "osteo_fem_inf",
                   "osteo_fem_sup"]]
    frame.to_csv(path, index=False)
    return path


def make_cohort(folder, n_subjects, shape=(400, 600), spacing=0.4, seed=0, compress_every=0):
    """A tiny cohort of valid radiographs: DICOMs, 160-point .pts (mm), manifest.csv and labels.csv.

    Returns (manifest path, labels path). Every `compress_every`-th image is RLE-compressed (0 = none).
    """
    from osteoloc.io.pts import write_pts
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    manifest, labels = [], []
    for i in range(n_subjects):
        subject, stem = f"CHECK-{i:05d}", f"{i:05d}_T00_APO"
        points_mm = radiograph_points_mm(shape, spacing, seed=seed + i)
        pixels = synthetic_pixels(shape, points_mm / spacing, seed=seed + i)
        write_dicom(folder / f"{stem}.dcm", pixels, spacing=spacing,
                    compress=bool(compress_every) and i % compress_every == 0)
        write_pts(points_mm, folder / f"{stem}.pts")
        manifest.append(dict(image_path=f"{stem}.dcm", subject=subject, visit="T00", cohort="CHECK",
                             points_path=f"{stem}.pts"))
        for side in ("right", "left"):
            labels.append(("CHECK", subject, "T00", side, *rng.integers(0, 4, len(TARGETS))))
    manifest_path = folder / "manifest.csv"
    pd.DataFrame(manifest).to_csv(manifest_path, index=False)
    return manifest_path, write_labels(folder / "labels.csv", labels)


# --- a toy study HDF5: a disc for the head, blobs for the lesions (paper B) ---------------------------
# Target groups in the toy contour: head points above / below the centre, one acetabular point each.
TOY_GROUPS = {"osteo_fem_sup": [15, 16, 17], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [66],
              "osteo_acet_inf": [70]}


def _toy_contour(cx, cy, r):
    pts = np.full((80, 2), np.nan, np.float32)
    # y points down, so angle -pi/2 is superior: 15-17 sit on the top of the head, 19-21 at its bottom
    angles = np.pi * np.array([-1.0, -0.85, -0.7, -0.6, -0.5, -0.4, 0.0, 0.4, 0.5, 0.6])
    for k, idx in enumerate(HEAD_CIRCLE_INDICES):
        pts[idx] = (cx + r * np.cos(angles[k]), cy + r * np.sin(angles[k]))
    pts[66] = (cx - 0.9 * r, cy - 1.3 * r)  # lateral sourcil end: above and lateral (image left)
    pts[70] = (cx + 1.1 * r, cy + 0.6 * r)  # inferior acetabular margin near the teardrop
    return pts


def write_toy_study(path, n_subjects=20, size=96, seed=0, positive_rate=0.5, auto_noise=1.5,
                    with_manual=True, with_masks=True):
    """A tiny study HDF5 (two hips per subject) at `path`, for paper B's tests and benchmark: a bright disc
    (the femoral head) whose head points lie on its rim, and per positive target a bright blob (the lesion)
    beside the target's landmark. Manual points are exact; automatic ones carry Gaussian noise. Returns
    the subject ids."""
    rng = np.random.default_rng(seed)
    n = 2 * n_subjects
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, 4, size, size), np.uint8)
    labels = np.zeros((n, 4), np.int8)
    manual = np.zeros((n, 80, 2), np.float32)
    groups = np.full((n, 4, 3, 2), np.nan, np.float32)
    for i in range(n):
        r = rng.uniform(0.18, 0.24) * size
        cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
        pts = _toy_contour(cx, cy, r)
        manual[i] = pts
        img = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r**2).astype(np.float32) * 0.5
        for t, target in enumerate(TARGETS):
            labels[i, t] = rng.random() < positive_rate
            centre = pts[TOY_GROUPS[target]].mean(axis=0)
            groups[i, t, :len(TOY_GROUPS[target])] = pts[TOY_GROUPS[target]]
            if labels[i, t]:
                blob = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= rng.uniform(0.12, 0.2) ** 2 * r**2
                masks[i, t] = blob
                img[blob] = 1.0
        images[i] = img + rng.normal(0, 0.05, img.shape).astype(np.float32)
    automatic = manual + rng.normal(0, auto_noise, manual.shape).astype(np.float32)
    subjects = np.array([f"S{k:03d}" for k in range(n_subjects) for _ in range(2)])
    columns = {"image": images, "labels": labels, "groups": groups, "subject": subjects, "contour": automatic,
               "contour_manual": manual if with_manual else np.full_like(manual, np.nan),
               "side": np.tile(["right", "left"], n_subjects)}
    if with_masks:
        columns["layers"] = {"lesions": masks}
    write_study_arrays(path, columns, TOY_GROUPS)
    return sorted(set(subjects))


# --- a study HDF5 read whole, for assertions ----------------------------------------------------------
@dataclass
class Study:
    """A study HDF5 in memory (images optional)."""

    meta: pd.DataFrame  # subject, visit, side, cohort, source (+ row)
    grades: np.ndarray
    labels: np.ndarray
    contour: np.ndarray
    contour_manual: np.ndarray
    groups: np.ndarray
    valid: np.ndarray
    source_spacing: np.ndarray
    crop_offset: np.ndarray
    head_circle: np.ndarray
    intensity: np.ndarray
    magnification: np.ndarray
    attrs: dict = field(default_factory=dict)
    images: np.ndarray = None
    layers: dict = field(default_factory=dict)  # {layer name: (N, ...) array}, e.g. lesions (N, 4, S, S)

    @property
    def group_indices(self):
        return json.loads(self.attrs["group_indices"])

    def __len__(self):
        return len(self.meta)


def load_study(path, images=True, rows=None):
    """A study HDF5 in memory (`Study`); `images=False` skips the image stack, `rows` selects hips."""
    with StudyFile(path) as study:
        names = ["grades", "labels", "contour", "contour_manual", "groups", "valid", "source_spacing",
                 "crop_offset", "head_circle", "intensity", "magnification"] + ["image"] * images + list(study.layers)
        data = study.read(names, rows)
        return Study(
            meta=study.meta(STRING_META, rows), grades=data.grades, labels=data.labels,
            contour=data.contour, contour_manual=data.contour_manual, groups=data.groups, valid=data.valid,
            source_spacing=data.source_spacing, crop_offset=data.crop_offset, head_circle=data.head_circle,
            intensity=data.intensity, magnification=data.magnification, attrs=dict(study.attrs),
            images=data.image, layers=data.layers)


def write_study_arrays(path, columns, group_indices, spacing_mm=1.0, attrs=None):
    """Write whole arrays as a study through StudyWriter (synthetic studies for tests and benchmarks).

    `columns`: HipRecord field -> sequence of N values; `image` (N, S, S), `labels` (N, 4), `groups`
    (N, 4, L, 2) and `subject` are required. Absent fields take their 'unknown' value: grades = labels,
    contours NaN, valid = finite group points, strings empty (side 'right'), spacings and circle NaN.
    `layers`: {layer name: N values}, e.g. {"lesions": masks (N, 4, S, S)}; the file stores those layers.
    Returns the number of hips written."""
    images = np.asarray(columns["image"], dtype=np.float32)
    n, size = len(images), images.shape[-1]
    nan2, nan80 = np.full(2, np.nan, np.float32), np.full((80, 2), np.nan, np.float32)
    groups = np.asarray(columns["groups"], dtype=np.float32)
    defaults = {"grades": columns["labels"], "contour": [nan80] * n, "contour_manual": [nan80] * n,
                "valid": np.isfinite(groups).all(axis=-1), "visit": [""] * n, "side": ["right"] * n,
                "cohort": [""] * n, "source": [""] * n, "source_spacing": [nan2] * n, "spacing_from": ["given"] * n,
                "crop_offset": [nan2] * n, "head_circle": [np.full(3, np.nan, np.float32)] * n,
                "intensity": [nan2] * n, "magnification": [np.nan] * n}
    layers = dict(columns.get("layers") or {})
    unknown = set(columns) - set(defaults) - {"image", "labels", "groups", "subject", "layers"}
    if unknown:
        raise ValueError(f"write_study_arrays: unknown column(s) {sorted(unknown)}; use HipRecord's field names")
    values = defaults | {key: column for key, column in columns.items() if key != "layers"}
    with StudyWriter(path, size, spacing_mm, group_indices, layers=tuple(layers), attrs=attrs) as writer:
        for i in range(n):
            writer.append(HipRecord(**{key: column[i] for key, column in values.items()},
                                    layers={name: layer[i] for name, layer in layers.items()}))
        return len(writer)


# --- small study HDF5s for training and explain tests ------------------------------------------------
def write_study(path, n_subjects=12, size=32, n_points=3, seed=0):
    """A small study HDF5 as docs/contracts.md section 2 defines it: two hips per subject, a bright
    blob at the first landmark of every positive target, some unknown labels and padded landmarks."""
    rng = np.random.default_rng(seed)
    n = 2 * n_subjects
    labels = rng.integers(0, 2, size=(n, 4)).astype(np.int8)
    labels[rng.random((n, 4)) < 0.1] = -1
    groups = rng.uniform(size * 0.2, size * 0.8, size=(n, 4, n_points, 2)).astype(np.float32)
    valid = np.ones((n, 4, n_points), dtype=bool)
    valid[:, 2:, 1:] = False  # acetabular targets: one point, NaN-padded like the real file
    groups[~valid] = np.nan
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0.5, 0.1, size=(n, size, size)).astype(np.float32)
    for i in range(n):
        for t in range(4):
            if labels[i, t] == 1:
                x, y = groups[i, t, 0]
                images[i] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (size / 16) ** 2)).astype(np.float32)
    subjects = np.repeat([f"S{k:03d}" for k in range(n_subjects)], 2)
    group_indices = {t: list(range(10 * k, 10 * k + (n_points if k < 2 else 1))) for k, t in enumerate(TARGETS)}
    write_study_arrays(path, {"image": images, "labels": labels, "groups": groups, "valid": valid,
                              "subject": subjects, "side": np.tile(["right", "left"], n_subjects)}, group_indices)
    return path


def study_with_split(folder, fractions):
    """A synthetic 14-subject study of 64 px crops and its seed-0 split: (h5 path, split path, split)."""
    h5 = write_study(folder / "study.h5", n_subjects=14, size=64)
    split = make_split(read_subjects(h5), fractions, seed=0)
    write_csv(split, folder / "split.csv")
    return h5, folder / "split.csv", split


# --- preprocessing: the settings, a cohort with every kind of trouble, matching rows ---------------------
PREPROCESS_SETTINGS = dict(crop_size=80, spacing_mm=0.8, groups=DEFAULT_GROUPS, max_excluded_fraction=0.9)
BAD_COHORT_SHAPE, BAD_COHORT_SPACING = (300, 440), 0.4


def bad_cohort(tmp_path):
    """make_cohort's 8 good radiographs, then one of each problem; returns (manifest, labels, expected)."""
    manifest_path, labels_path = make_cohort(tmp_path, 8, shape=BAD_COHORT_SHAPE, spacing=BAD_COHORT_SPACING)
    manifest = pd.read_csv(manifest_path)
    labels = pd.read_csv(labels_path)
    points_mm = radiograph_points_mm(BAD_COHORT_SHAPE, BAD_COHORT_SPACING, seed=99)
    pixels = synthetic_pixels(BAD_COHORT_SHAPE, points_mm / BAD_COHORT_SPACING)
    extra_rows, extra_labels = [], []

    def marked():
        # each radiograph its own pixel data (else they are duplicates of each other): one corner pixel
        # differs, far from the left hip's crop, which test_manifest_spacing_fallback compares
        copy = pixels.copy()
        copy[0, 0] = (int(pixels[0, 0]) + 1 + len(extra_rows)) % 4096
        return copy

    def add(stem, subject, labelled=True, **dicom):
        write_dicom(tmp_path / f"{stem}.dcm", marked(), spacing=dicom.pop("spacing", BAD_COHORT_SPACING), **dicom)
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
    write_pts(points_mm / BAD_COHORT_SPACING, tmp_path / "nospacing.pts")
    extra_rows.append(dict(image_path="nospacing.dcm", subject="S-nospacing", visit="T00", cohort="CHECK",
                           points_path="nospacing.pts", spacing=BAD_COHORT_SPACING))
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


def matched_rows(ours, theirs):
    """Row indices (ours, theirs) of the same hips in two studies that must hold exactly the same hips."""
    key = ["subject", "visit", "side"]
    merged = ours.meta.reset_index().merge(theirs.meta.reset_index(), on=key, suffixes=("_o", "_t"))
    assert len(merged) == len(ours) == len(theirs)
    return merged.index_o.to_numpy(), merged.index_t.to_numpy()


# --- sharded preprocessing as the rules run it ----------------------------------------------------------
RULE_SETTINGS = dict(PREPROCESS_SETTINGS, points_unit="auto", accept_mirrored=False)


def run_sharded(inputs, shard_size, out, settings=RULE_SETTINGS, kind="manifest"):
    """The plan, the shard jobs and the two gathers, as the rules run them (a fresh source per job).
    Returns the shard folders."""
    plan = out / "plan.json"
    n = write_shard_plan(kind, inputs, shard_size, plan)
    dirs = [out / "shards" / str(k) for k in range(n)]
    for k, shard_dir in enumerate(dirs):
        preprocess_shard(kind, inputs, settings, plan, k, shard_dir)
    preprocess_exclusions(kind, inputs, settings, dirs, out / "exclusions.csv")
    preprocess_gather(kind, inputs, settings, dirs, out / "study.h5")
    return dirs


# --- input integrity: a phantom cohort to break (fixture `integrity_phantom`, tests/conftest.py) -----------
INTEGRITY_SETTINGS = dict(crop_size=64, spacing_mm=1.4, max_excluded_fraction=1.0,
                          groups={"osteo_fem_sup": [13, 78, 14, 15], "osteo_fem_inf": [19, 20, 21],
                                  "osteo_acet_sup": [67], "osteo_acet_inf": [71]})
INTEGRITY_PHANTOM = {"seed": 3, "subjects": 6, "broken_fraction": 0.0, "split_pts_fraction": 0.5,
                     "missing_fraction": 0.0,
                     "dicom": {"transfer_syntax": {"explicit": 1, "rle": 0, "jpeg2000": 0, "jpegls": 0,
                                                   "jpeg_lossless": 0}}}


class Variant:
    """A copy of the phantom cohort to break; `run()` preprocesses it."""

    def __init__(self, phantom, tmp_path):
        self.dir = tmp_path / "cohort"
        shutil.copytree(phantom["dir"], self.dir, ignore=shutil.ignore_patterns("study.h5", "excl.csv"))
        self.manifest = phantom["manifest"].copy()
        self.original = phantom["study"]

    def row(self, per_hip=None):
        """A manifest row (index) whose points are one 160-point file (per_hip=False) or per-hip files."""
        for i, path in enumerate(self.manifest.points_path):
            if per_hip is None or per_hip == (not path.endswith(".pts")):
                return i
        raise AssertionError("the phantom has no such row")

    def path(self, i, column):
        return self.dir / self.manifest.loc[i, column]

    def run(self, **settings):
        self.manifest.to_csv(self.dir / "manifest.csv", index=False)
        study, exclusions = self.dir / "study.h5", self.dir / "exclusions.csv"
        preprocess_study(self.dir / "manifest.csv", self.dir / "labels.csv", study, exclusions,
                         **{**INTEGRITY_SETTINGS, **settings})
        return pd.read_csv(exclusions, keep_default_na=False), load_study(study)

    def rows_of(self, study, i):
        """Study rows of manifest row i, by side."""
        subject = self.manifest.loc[i, "subject"]
        return {side: int(np.flatnonzero((study.meta.subject == subject) & (study.meta.side == side))[0])
                for side in ("right", "left") if ((study.meta.subject == subject) & (study.meta.side == side)).any()}


def spacing_of(path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return float((ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))[1])


def without_spacing(path):
    ds = pydicom.dcmread(path)
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.save_as(path)


def assert_excluded(table, subject, stage, file, fragment, sides=("right", "left")):
    rows = table[(table.subject == subject) & (table.stage == stage)]
    assert set(rows.side) == set(sides), table
    assert (rows.file == file).all(), rows
    assert rows.reason.str.contains(fragment, regex=False).all(), rows.reason.tolist()


def mirror(v, i):
    """Mirror radiograph i and its points and manual points (the points keep their anatomical sides)."""
    image = v.path(i, "image_path")
    ds = pydicom.dcmread(image)
    width, spacing = ds.Columns, spacing_of(image)
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
    ds.save_as(image)
    for column in ("points_path", "manual_points_path"):
        points = read_pts(v.path(i, column))
        points[:, 0] = (width - 1) * spacing - points[:, 0]  # x_px <- W - 1 - x_px, in mm
        write_pts(points, v.path(i, column))


# --- config defaults ------------------------------------------------------------------------------------
SCHEMAS = Path(__file__).resolve().parents[1] / "workflow" / "schemas"  # the config schemas


def keyword_defaults(function):
    """{parameter: default} of the keyword defaults of `function`."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


# --- synthetic runs with known differences between arms (the ablation table) -------------------------------
ABLATION_SEEDS = (0, 1, 2)
ABLATION_HIPS = 12  # hips per run


def run_frames(arm, seed, with_truth=True, with_cue=False):
    """(predictions, metrics) of one run. Labels alternate 1/0 (hip 11: unknown). The prior arm's values
    depend on the seed; `better` has lower distances, higher pointing / energy and a perfect ranking in
    every seed; `same` copies prior; baseline is noisy."""
    rng = np.random.default_rng(100 * seed + len(arm))
    n = ABLATION_HIPS * len(TARGETS)
    labels = np.tile(np.arange(ABLATION_HIPS) % 2, len(TARGETS))
    labels[np.arange(n) % ABLATION_HIPS == ABLATION_HIPS - 1] = -1
    ref_rng = np.random.default_rng(seed)  # prior's (and same's) draws, shared by `better`
    prob = ref_rng.random(n)
    com = ref_rng.uniform(5, 15, n)
    if arm == "better":
        prob = np.where(labels == 1, 0.6 + 0.4 * prob, 0.5 * prob)  # every positive above every negative
        com = com - 2.0 - seed  # better by 2, 3, 4 px: distinct differences
    elif arm == "baseline":
        prob, com = rng.random(n), rng.uniform(5, 15, n)
    hips = np.tile(np.arange(ABLATION_HIPS), len(TARGETS))
    predictions = pd.DataFrame({"row": hips, "target": np.repeat(TARGETS, ABLATION_HIPS), "label": labels,
                                "prob": prob,
                                # explain's hip identity: two hips per subject, one visit
                                "subject": [f"s{h // 2:02d}" for h in hips], "visit": "V00",
                                "side": np.where(hips % 2 == 0, "right", "left")})
    metrics = pd.DataFrame({"row": predictions["row"], "target": predictions["target"], "label": labels,
                            "com_distance": com, "peak_distance": com + 1.0, "spread": com * 2})
    # hip 1 (a positive of the first target): an all-zero map, scored by explain as the uniform map
    metrics.loc[1, ["com_distance", "peak_distance", "spread"]] = (30.0, 31.0, 60.0)
    if with_truth:
        metrics["pointing_hit"] = (com < 10).astype(float)
        metrics["energy_in_mask"] = 1.0 / com
        # the calibrated columns explain writes: distances with chance 20 px, ceiling 2 px, control 8 px
        metrics["map_defined"] = 1.0
        metrics.loc[1, "map_defined"] = 0.0
        for metric, offset in (("com_to_landmark", 0.0), ("peak_to_landmark", 1.0), ("com_to_lesion", 3.0),
                               ("peak_to_lesion", 4.0)):
            metrics[metric] = com + offset
            metrics[f"{metric}_uniform"], metrics[f"{metric}_random_cell"] = 20.0, 25.0
            metrics[f"{metric}_ceiling"], metrics[f"{metric}_control"] = 2.0, 8.0
        metrics.loc[1, ["com_to_landmark", "peak_to_landmark", "com_to_lesion", "peak_to_lesion"]] = 20.0  # chance
        metrics["energy_lift"] = 10.0 / com
        # the separating endpoint: nearer the lesion when com is small; every third hip's lesion sits on its
        # landmark (undefined, levels too); chance 0, ceiling 8, control -4
        apart = np.arange(n) % 3 != 0
        metrics["lesion_vs_landmark"] = np.where(apart, 10.0 - com, np.nan)
        for level, value in (("uniform", 0.0), ("random_cell", -1.0), ("ceiling", 8.0), ("control", -4.0)):
            metrics[f"lesion_vs_landmark_{level}"] = np.where(apart, value, np.nan)
        metrics.loc[1, "lesion_vs_landmark"] = 0.0  # hip 1 (apart): the uniform map's value
        metrics["penalty_constant"] = np.where(np.arange(n) % 4 == 0, 1.0, 0.0) if arm in ("prior", "same") else 0.0
    if with_cue:
        metrics["cue_energy"] = np.where(np.arange(n) % 3 == 0, 0.02 * com, np.nan)
    return predictions.assign(model=arm, seed=seed), metrics.assign(model=arm, seed=seed)


def twin_frame(predictions):
    """Twin predictions: the cue removed makes every arm rank worse, except `better` (no cue reliance)."""
    twins = predictions.copy()
    hurt = twins["model"] != "better"
    twins.loc[hurt, "prob"] = 1 - twins.loc[hurt, "prob"]
    return twins


# --- a tiny study and its upstream results (splits, checkpoints, histories) for explain and the report ----
REPORT_CROP, REPORT_SUBJECTS = 64, 12  # crop px, subjects (two hips each)
REPORT_SEEDS = (0, 1)
REPORT_MODELS = ("baseline", "prior")


def write_report_study(path, with_truth=True):
    """Two hips per subject; balanced labels; landmark groups of 3 points (acetabular: 1 valid)."""
    rng = np.random.default_rng(0)
    n = 2 * REPORT_SUBJECTS
    labels = np.zeros((n, 4), np.int8)
    labels[::2] = 1
    labels[1::4, 2] = 1
    labels[3, 3] = -1
    groups = rng.uniform(8, REPORT_CROP - 8, size=(n, 4, 3, 2)).astype(np.float32)
    valid = np.ones((n, 4, 3), bool)
    valid[:, 2:, 1:] = False
    groups[~valid] = np.nan
    masks = np.zeros((n, 4, REPORT_CROP, REPORT_CROP), np.uint8)
    for i in range(n):
        for t in range(4):
            x, y = groups[i, t, 0].astype(int)
            masks[i, t, y - 4:y + 4, x - 4:x + 4] = labels[i, t] == 1
    subjects = [f"s{i // 2:02d}" for i in range(n)]
    columns = {"image": rng.random((n, REPORT_CROP, REPORT_CROP), dtype=np.float32), "labels": labels,
               "groups": groups, "valid": valid, "subject": subjects, "visit": ["v0"] * n,
               "side": ["right", "left"] * REPORT_SUBJECTS}
    if with_truth:
        columns["layers"] = {"lesions": masks}
    group_indices = {t: list(range(10 * k, 10 * k + (3 if k < 2 else 1))) for k, t in enumerate(TARGETS)}
    write_study_arrays(path, columns, group_indices)


def write_upstream(root):
    """study.h5, exclusions, splits and checkpoints, at their contract paths under `root`."""
    (root / "preprocess").mkdir(parents=True)
    write_report_study(root / "preprocess" / "study.h5")
    pd.DataFrame([{"stage": "preprocess", "subject": "s99", "visit": "v0", "side": "",
                   "file": "x.dcm", "reason": "no landmarks"}]).to_csv(root / "preprocess" / "exclusions.csv",
                                                                       index=False)
    for seed in REPORT_SEEDS:
        order = np.random.default_rng(seed).permutation(REPORT_SUBJECTS)
        split = ["train"] * 4 + ["val"] * 2 + ["test"] * 6
        write_csv(pd.DataFrame({"subject": [f"s{i:02d}" for i in order], "split": split}),
                  root / "splits" / f"seed{seed}.csv")
        for k, model in enumerate(REPORT_MODELS):
            torch.manual_seed(10 * seed + k)
            path = root / "train" / model / f"seed{seed}" / "best.pt"
            path.parent.mkdir(parents=True)
            model = build_model(weights="none")
            with torch.no_grad():  # positive head weights: random-init CAMs would often be all zero
                model.fc.weight.abs_()
            torch.save({"state_dict": model.state_dict(), "epoch": 1, "config": train_settings().as_dict()}, path)
            # two epochs of a history, for the learning-curve figure
            write_history([{column: 0.5 for column in HISTORY_COLUMNS} | {"epoch": epoch} for epoch in (0, 1)],
                          path.with_name("history.csv"))


def schema_config(*sections):
    """Config sections as the workflow validates them: empty, filled with the schemas' defaults."""
    from snakemake.utils import validate

    config = {section: {} for section in sections}
    for section, block in config.items():
        validate(block, str(SCHEMAS / f"{section}.schema.yaml"))
    return config


def train_settings(**overrides):
    """The TrainSettings the workflow builds for a default study's baseline (the schemas' defaults, the
    reference arm's keys, seed 0, no prior), with `overrides`."""
    from osteoloc.train.arms import reference_arm_settings
    from osteoloc.train.settings import TrainSettings, training_block

    block = training_block(schema_config("study", "train")) | reference_arm_settings()
    return TrainSettings(**{**block, "seed": 0, "prior_lambda": 0.0, "prior_radius": 0.0, "prior_sigma": 0.0,
                            **overrides})


def copy_phantom(phantom, dest, parts=None):
    """A copy of a phantom cohort's folder (conftest's `phantom_cohort`) at `dest`, to break: all of it but its
    truth.h5, or only the sub-folders `parts`. Returns `dest`."""
    if parts is None:
        shutil.copytree(phantom, dest, ignore=shutil.ignore_patterns("truth.h5"))
    for sub in parts or ():
        shutil.copytree(phantom / sub, dest / sub)
    return dest
