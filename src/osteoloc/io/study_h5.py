"""The study HDF5 (docs/contracts.md section 2, docs/preprocessing.md): a streaming writer and a reader.

The writer appends hips to resizable datasets in small batches, so memory stays flat however large the
cohort; it writes to a temporary file that is renamed onto the target only when the block succeeds.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from osteoloc.io.atomic import atomic_path
from osteoloc.targets import TARGETS

SCHEMA_VERSION = 1
STRING_META = ("subject", "visit", "side", "cohort", "source", "spacing_from")
FLOAT_META = {"source_spacing": 2, "crop_offset": 2, "intensity": 2}
STR = h5py.string_dtype("utf-8")


@dataclass
class HipRecord:
    """One hip, ready to store: everything in crop pixels after the flip."""

    image: np.ndarray  # float32 (S, S), normalised
    grades: np.ndarray  # int8 (4,)
    labels: np.ndarray  # int8 (4,)
    contour: np.ndarray  # float32 (80, 2)
    contour_manual: np.ndarray  # float32 (80, 2), NaN when absent
    groups: np.ndarray  # float32 (4, L, 2)
    valid: np.ndarray  # bool (4, L)
    subject: str
    visit: str
    side: str
    cohort: str
    source: str
    source_spacing: tuple  # (row_mm, col_mm)
    spacing_from: str  # PixelSpacing, ImagerPixelSpacing or given (manifest / group file)
    crop_offset: tuple  # (x0, y0) in the resampled, unflipped image
    head_circle: tuple  # (cx, cy, r) in crop pixels
    intensity: tuple  # (p5, p95)
    truth_masks: np.ndarray = None  # uint8 (4, S, S) or None


class StudyWriter:
    """Append HipRecords to a new study HDF5; use as a context manager (rename on success only)."""

    def __init__(self, path, crop_size, spacing_mm, groups, with_truth=False, batch=64, attrs=None):
        self.path = Path(path)
        self.crop_size = int(crop_size)
        self.groups = {t: [int(i) for i in groups[t]] for t in TARGETS}
        self.length = max(len(v) for v in self.groups.values())
        self.spacing_mm = float(spacing_mm)
        self.with_truth = with_truth
        self.batch = batch
        self.extra_attrs = dict(attrs or {})
        self.buffer = []
        self.count = 0

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self.h5 = h5py.File(tmp, "w")
        self._create()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._flush()
                self.h5.close()
            except BaseException as err:
                self.h5.close()
                self._atomic.__exit__(type(err), err, err.__traceback__)
                raise
        else:
            self.h5.close()
        return self._atomic.__exit__(exc_type, exc, tb)

    def _create(self):
        S, L = self.crop_size, self.length
        h5 = self.h5

        def make(name, shape, dtype, chunks=None, fill=None):
            h5.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                              chunks=chunks or (256, *shape), fillvalue=fill)

        make("images", (S, S), np.float32, chunks=(1, S, S))  # one chunk per image: random access is cheap
        make("grades", (len(TARGETS),), np.int8)
        make("labels", (len(TARGETS),), np.int8)
        make("landmarks/contour", (80, 2), np.float32, fill=np.nan)
        make("landmarks/contour_manual", (80, 2), np.float32, fill=np.nan)
        make("landmarks/groups", (len(TARGETS), L, 2), np.float32, fill=np.nan)
        make("landmarks/valid", (len(TARGETS), L), bool)
        for name in STRING_META:
            make(f"meta/{name}", (), STR)
        for name, width in FLOAT_META.items():
            make(f"meta/{name}", (width,), np.float32)
        make("meta/head_circle", (3,), np.float32)
        if self.with_truth:
            make("truth/masks", (len(TARGETS), S, S), np.uint8, chunks=(1, len(TARGETS), S, S))
        h5.attrs["targets"] = list(TARGETS)
        h5.attrs["crop_size"] = S
        h5.attrs["spacing_mm"] = self.spacing_mm
        h5.attrs["group_indices"] = json.dumps(self.groups)
        h5.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in self.extra_attrs.items():
            h5.attrs[key] = value

    def append(self, record):
        if record.image.shape != (self.crop_size, self.crop_size):
            raise ValueError(f"image shape {record.image.shape} != crop size {self.crop_size}")
        self.buffer.append(record)
        if len(self.buffer) >= self.batch:
            self._flush()

    def _flush(self):
        if not self.buffer:
            return
        records, self.buffer = self.buffer, []
        start, n = self.count, len(records)
        columns = {
            "images": [r.image for r in records],
            "grades": [r.grades for r in records],
            "labels": [r.labels for r in records],
            "landmarks/contour": [r.contour for r in records],
            "landmarks/contour_manual": [r.contour_manual for r in records],
            "landmarks/groups": [r.groups for r in records],
            "landmarks/valid": [r.valid for r in records],
            "meta/head_circle": [r.head_circle for r in records],
        }
        for name in STRING_META:
            columns[f"meta/{name}"] = [str(getattr(r, name)) for r in records]
        for name in FLOAT_META:
            columns[f"meta/{name}"] = [getattr(r, name) for r in records]
        if self.with_truth:
            S = self.crop_size
            columns["truth/masks"] = [r.truth_masks if r.truth_masks is not None
                                      else np.zeros((len(TARGETS), S, S), np.uint8) for r in records]
        for name, values in columns.items():
            dataset = self.h5[name]
            dataset.resize(start + n, axis=0)
            dataset[start:start + n] = np.asarray(values, dtype=dataset.dtype) if name not in (
                f"meta/{s}" for s in STRING_META) else np.asarray(values, dtype=object)
        self.count += n


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
    attrs: dict = field(default_factory=dict)
    images: np.ndarray = None
    truth_masks: np.ndarray = None

    @property
    def group_indices(self):
        return json.loads(self.attrs["group_indices"])

    def __len__(self):
        return len(self.meta)


def load_study(path, images=True, rows=None):
    """Read a study HDF5; `images=False` skips the image stack, `rows` (sorted indices) selects hips."""
    select = slice(None) if rows is None else np.asarray(rows)
    with h5py.File(path, "r") as h5:
        def get(name):
            return h5[name][select]

        meta = pd.DataFrame({name: h5[f"meta/{name}"].asstr()[select] for name in STRING_META})
        meta.insert(0, "row", np.arange(h5["grades"].shape[0])[select])
        study = Study(
            meta=meta, grades=get("grades"), labels=get("labels"), contour=get("landmarks/contour"),
            contour_manual=get("landmarks/contour_manual"), groups=get("landmarks/groups"),
            valid=get("landmarks/valid"), source_spacing=get("meta/source_spacing"),
            crop_offset=get("meta/crop_offset"), head_circle=get("meta/head_circle"),
            intensity=get("meta/intensity"),
            attrs={k: (v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v) for k, v in h5.attrs.items()},
            images=get("images") if images else None,
            truth_masks=get("truth/masks") if "truth/masks" in h5 else None,
        )
    return study
