"""Small synthetic radiographs, hip points and label files for unit tests and benchmarks.

Not a phantom (that is `osteoloc.cohort.phantom`): just enough anatomy-shaped geometry to pass the landmark
sanity checks, and DICOM files in the variants the readers must handle.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

from osteoloc.io.study_h5 import STRING_META, HipRecord, StudyFile, StudyWriter
from osteoloc.names import TARGETS
from osteoloc.segment.sites import HEAD_CIRCLE_INDICES

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
    """Write the toy study (two hips per subject) to `path`; returns the subject ids: a bright disc (the
    femoral head) whose head points lie on its rim, and per positive target a bright blob (the lesion)
    beside the target's landmark. Manual points are exact; automatic ones carry Gaussian noise."""
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
