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

from osteoloc.io.study_h5 import STRING_META, StudyFile
from osteoloc.names import TARGETS

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
    truth_masks: np.ndarray = None

    @property
    def group_indices(self):
        return json.loads(self.attrs["group_indices"])

    def __len__(self):
        return len(self.meta)


def load_study(path, images=True, rows=None):
    """A study HDF5 in memory (`Study`); `images=False` skips the image stack, `rows` selects hips."""
    with StudyFile(path) as study:
        names = ["grades", "labels", "landmarks/contour", "landmarks/contour_manual", "landmarks/groups",
                 "landmarks/valid", "meta/source_spacing", "meta/crop_offset", "meta/head_circle",
                 "meta/intensity", "meta/magnification"] + ["images"] * images + ["truth/masks"] * study.has_truth
        data = study.read(names, rows)
        return Study(
            meta=study.meta(STRING_META, rows), grades=data["grades"], labels=data["labels"],
            contour=data["landmarks/contour"], contour_manual=data["landmarks/contour_manual"],
            groups=data["landmarks/groups"], valid=data["landmarks/valid"],
            source_spacing=data["meta/source_spacing"], crop_offset=data["meta/crop_offset"],
            head_circle=data["meta/head_circle"], intensity=data["meta/intensity"],
            magnification=data["meta/magnification"], attrs=dict(study.attrs),
            images=data.get("images"), truth_masks=data.get("truth/masks"))


SCHEMAS = Path(__file__).resolve().parents[1] / "workflow" / "schemas"


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
