"""The study HDF5 (docs/contracts.md section 2, docs/preprocessing.md) and its one owner: `StudyWriter`
writes it, `StudyFile` is the only reader anywhere in the library.

The writer appends hips to resizable datasets in small batches, so memory stays flat however large the
cohort; it writes to a temporary file that is renamed onto the target only when the block succeeds.
The reader opens the file once, checks `schema_version` and the layout (`dataset_layout`, the same table
the writer creates from), and serves the rows each stage needs, read in contiguous slices.
"""

import contextlib
import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc2 filter an imported group file's crops may carry)
import numpy as np
import pandas as pd

from osteoloc.io.atomic import atomic_path
from osteoloc.io.h5view import H5View
from osteoloc.io.labels import split_key, subject_key
from osteoloc.names import TARGETS

SCHEMA_VERSION = 2  # 2: /meta/magnification
STRING_META = ("subject", "visit", "side", "cohort", "source", "spacing_from")
FLOAT_META = {"source_spacing": 2, "crop_offset": 2, "intensity": 2}
STR = h5py.string_dtype("utf-8")
READ_GAP = 64  # rows: wanted rows closer than this are read in one slice (slices beat fancy indexing)
READ_BLOCK = 1024  # rows: the longest slice read at once, so memory stays bounded


def dataset_layout(crop_size, n_points, with_truth, with_cue=False):
    """name -> (per-row shape, dtype, rows per chunk) of every dataset of contracts.md section 2.

    `n_points` is L, the longest target group; `/truth/masks` only `with_truth`, `/truth/cue` (the
    phantom's shortcut cue, 1 where its marker lies) only `with_cue`."""
    S, L, T = int(crop_size), int(n_points), len(TARGETS)
    layout = {
        "images": ((S, S), np.float32, 1),
        "grades": ((T,), np.int8, 256),
        "labels": ((T,), np.int8, 256),
        "landmarks/contour": ((80, 2), np.float32, 256),
        "landmarks/contour_manual": ((80, 2), np.float32, 256),
        "landmarks/groups": ((T, L, 2), np.float32, 256),
        "landmarks/valid": ((T, L), bool, 256),
        **{f"meta/{name}": ((), STR, 256) for name in STRING_META},
        **{f"meta/{name}": ((width,), np.float32, 256) for name, width in FLOAT_META.items()},
        "meta/head_circle": ((3,), np.float32, 256),
        "meta/magnification": ((), np.float32, 256),
    }
    if with_truth:
        layout["truth/masks"] = ((T, S, S), np.uint8, 1)
    if with_cue:
        layout["truth/cue"] = ((S, S), np.uint8, 1)
    return layout


class StudyFormatError(ValueError):
    """A file that is not a study HDF5 of this schema; the message names the file and the problem."""


class StudyWriteError(OSError):
    """Writing a study HDF5 failed (a full disk, a quota, an I/O error): one line naming the file and the
    errno; the half-written temporary file is removed."""


@contextlib.contextmanager
def _write_errors(path):
    """Turn HDF5's write failures into one StudyWriteError naming `path` and the errno (HDF5 reports them as
    OSError or RuntimeError with the errno inside a long message)."""
    try:
        yield
    except StudyWriteError:
        raise
    except (OSError, RuntimeError) as err:
        found = re.search(r"errno = (\d+)", str(err))
        number = getattr(err, "errno", None) or (int(found[1]) if found else None)
        if not number:
            raise
        raise StudyWriteError(number, f"{os.strerror(number)} (errno {errno.errorcode.get(number, number)}), "
                              "writing the study HDF5", str(path)) from None


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
    magnification: float = float("nan")  # the factor the spacing tag was divided by (1 = none; NaN unknown)
    truth_masks: np.ndarray = None  # uint8 (4, S, S) or None
    truth_cue: np.ndarray = None  # uint8 (S, S): the shortcut cue's marker, or None


class StudyWriter:
    """Append HipRecords to a new study HDF5; use as a context manager (rename on success only). A write
    error (a full disk) raises StudyWriteError; HDF5's chunk cache is off so that it surfaces at the write
    that failed, not later inside HDF5's cleanup, where it used to end the process with SIGSEGV."""

    def __init__(self, path, crop_size, spacing_mm, groups, with_truth=False, batch=64, attrs=None, with_cue=False):
        self.path = Path(path)
        self.crop_size = int(crop_size)
        self.groups = {t: [int(i) for i in groups[t]] for t in TARGETS}
        self.length = max(len(v) for v in self.groups.values())
        self.spacing_mm = float(spacing_mm)
        self.with_truth = with_truth
        self.with_cue = with_cue
        self.batch = batch
        self.extra_attrs = dict(attrs or {})
        self.buffer = []  # HipRecords not yet written
        self.blocks, self.block_rows = [], 0  # rows copied from other study files, not yet written
        self._sources = {}  # id(StudyFile) -> its datasets, for append_rows
        self.count = 0

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            with _write_errors(self.path):
                self.h5 = h5py.File(tmp, "w", rdcc_nbytes=0)
                self._create()
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                with _write_errors(self.path):
                    self._flush()
                    self.h5.close()
            except BaseException as err:
                self._close_quietly()
                self._atomic.__exit__(type(err), err, err.__traceback__)
                raise
        else:
            self._close_quietly()
        return self._atomic.__exit__(exc_type, exc, tb)

    def _close_quietly(self):
        """Close after a failure: the file is discarded, so a second write error while closing is moot."""
        with contextlib.suppress(OSError, RuntimeError):
            self.h5.close()

    def _create(self):
        for name, (shape, dtype, chunk_rows) in dataset_layout(self.crop_size, self.length, self.with_truth, self.with_cue).items():
            fill = np.nan if name.startswith("landmarks/contour") or name == "landmarks/groups" else None
            # images and masks: one chunk per image, so random access is cheap
            self.h5.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                   chunks=(chunk_rows, *shape), fillvalue=fill)
        h5 = self.h5
        h5.attrs["targets"] = list(TARGETS)
        h5.attrs["crop_size"] = self.crop_size
        h5.attrs["spacing_mm"] = self.spacing_mm
        h5.attrs["group_indices"] = json.dumps(self.groups)
        h5.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in self.extra_attrs.items():
            h5.attrs[key] = value

    def __len__(self):
        """Hips appended so far, buffered ones included."""
        return self.count + len(self.buffer) + self.block_rows

    def append(self, record):
        if record.image.shape != (self.crop_size, self.crop_size):
            raise ValueError(f"image shape {record.image.shape} != crop size {self.crop_size}")
        with _write_errors(self.path):
            self._write_blocks()
            self.buffer.append(record)
            if len(self.buffer) >= self.batch:
                self._flush()

    def append_rows(self, study, start, stop, overrides=None):
        """Append rows start..stop-1 of the open StudyFile `study` (a shard of the same layout), with the
        datasets named in `overrides` ({name: values of those rows}, e.g. grades joined at the gather)
        replaced; buffered and written `batch` rows at a time."""
        start, stop = int(start), int(stop)
        source = self._source(study)
        with _write_errors(self.path):
            self._write_records()
            if stop <= start:
                return
            overrides = overrides or {}
            self.blocks.append({name: overrides[name] if name in overrides else values[start:stop]
                                for name, values in source.items()})
            self.block_rows += stop - start
            if self.block_rows >= self.batch:
                self._write_blocks()

    def _source(self, study):
        """{name: values} of a study file rows are copied from: the small per-row datasets read whole once
        (a few kB per hip), images and masks left on disk (one chunk per row, read as asked)."""
        key = id(study)
        if key not in self._sources:
            self._check_layout(study)
            layout = dataset_layout(self.crop_size, self.length, self.with_truth, self.with_cue)
            self._sources[key] = {name: (study._h5[name].asstr()[:] if study._strings(name) else study._h5[name][:])
                                  if chunk_rows > 1 else study._h5[name] for name, (_, _, chunk_rows) in layout.items()}
        return self._sources[key]

    def _names(self):
        return list(dataset_layout(self.crop_size, self.length, self.with_truth, self.with_cue))

    def _check_layout(self, study):
        if (study.crop_size, study.has_truth, study.has_cue) != (self.crop_size, self.with_truth, self.with_cue) or \
                study.group_indices != self.groups:
            raise StudyFormatError(f"{study.path}: layout differs from the study being written to {self.path}")

    def _write_blocks(self):
        if not self.blocks:
            return
        blocks, n = self.blocks, self.block_rows
        self.blocks, self.block_rows = [], 0
        for name in self._names():
            dataset = self.h5[name]
            dataset.resize(self.count + n, axis=0)
            values = [np.asarray(block[name], dtype=object if name[5:] in STRING_META and name.startswith("meta/")
                                 else dataset.dtype) for block in blocks]
            dataset[self.count:self.count + n] = np.concatenate(values)
        self.count += n

    def _flush(self):
        self._write_blocks()
        self._write_records()

    def _write_records(self):
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
            "meta/magnification": [r.magnification for r in records],
        }
        for name in STRING_META:
            columns[f"meta/{name}"] = [str(getattr(r, name)) for r in records]
        for name in FLOAT_META:
            columns[f"meta/{name}"] = [getattr(r, name) for r in records]
        if self.with_truth:
            S = self.crop_size
            columns["truth/masks"] = [r.truth_masks if r.truth_masks is not None
                                      else np.zeros((len(TARGETS), S, S), np.uint8) for r in records]
        if self.with_cue:
            S = self.crop_size
            columns["truth/cue"] = [r.truth_cue if r.truth_cue is not None else np.zeros((S, S), np.uint8)
                                    for r in records]
        for name, values in columns.items():
            dataset = self.h5[name]
            dataset.resize(start + n, axis=0)
            dataset[start:start + n] = np.asarray(values, dtype=dataset.dtype) if name not in (
                f"meta/{s}" for s in STRING_META) else np.asarray(values, dtype=object)
        self.count += n

    def copy_rows(self, study, start, stop, block=64):
        """Append rows start..stop-1 of the open StudyFile `study` (a shard of the same layout) as they are
        stored, `block` rows at a time so memory stays bounded; pending appends are written first, so
        rows keep the order they were added in."""
        self._check_layout(study)
        with _write_errors(self.path):
            self._flush()
            self._copy(study, int(start), int(stop), block)

    def _copy(self, study, start, stop, block):
        n = stop - start
        if n <= 0:
            return
        for name in dataset_layout(self.crop_size, self.length, self.with_truth, self.with_cue):
            source, target = study._h5[name], self.h5[name]
            target.resize(self.count + n, axis=0)
            for a in range(0, n, block):
                b = min(a + block, n)
                target[self.count + a:self.count + b] = source[start + a:start + b]
        self.count += n


def write_study_arrays(path, columns, group_indices, spacing_mm=1.0, attrs=None):
    """Write whole arrays as a study through StudyWriter (synthetic studies for tests and benchmarks).

    `columns`: HipRecord field -> sequence of N values; `image` (N, S, S), `labels` (N, 4), `groups`
    (N, 4, L, 2) and `subject` are required. Absent fields take their 'unknown' value: grades = labels,
    contours NaN, valid = finite group points, strings empty (side 'right'), spacings and circle NaN.
    `truth_masks` present -> the file has `/truth/masks`. Returns the number of hips written."""
    images = np.asarray(columns["image"], dtype=np.float32)
    n, size = len(images), images.shape[-1]
    nan2, nan80 = np.full(2, np.nan, np.float32), np.full((80, 2), np.nan, np.float32)
    groups = np.asarray(columns["groups"], dtype=np.float32)
    defaults = {"grades": columns["labels"], "contour": [nan80] * n, "contour_manual": [nan80] * n,
                "valid": np.isfinite(groups).all(axis=-1), "visit": [""] * n, "side": ["right"] * n,
                "cohort": [""] * n, "source": [""] * n, "source_spacing": [nan2] * n, "spacing_from": ["given"] * n,
                "crop_offset": [nan2] * n, "head_circle": [np.full(3, np.nan, np.float32)] * n,
                "intensity": [nan2] * n, "magnification": [np.nan] * n, "truth_masks": [None] * n}
    unknown = set(columns) - set(defaults) - {"image", "labels", "groups", "subject"}
    if unknown:
        raise ValueError(f"write_study_arrays: unknown column(s) {sorted(unknown)}; use HipRecord's field names")
    values = defaults | dict(columns)
    with StudyWriter(path, size, spacing_mm, group_indices, with_truth="truth_masks" in columns,
                     attrs=attrs) as writer:
        for i in range(n):
            writer.append(HipRecord(**{key: column[i] for key, column in values.items()}))
        return len(writer)


def _plain(value):
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def read_spans(rows, max_gap=READ_GAP, max_len=READ_BLOCK):
    """Cover sorted unique `rows` with slices: (start, stop, positions) where `positions` index the
    slice's wanted rows. A new slice starts where the gap to the previous row exceeds `max_gap` or the
    slice would pass `max_len` rows, so dense selections cost few reads and sparse ones read little."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return []
    run = np.concatenate([[0], np.cumsum(np.diff(rows) > max_gap)])
    run_start = rows[np.concatenate([[0], np.flatnonzero(np.diff(run)) + 1])][run]
    key = run * (rows[-1] // max_len + 2) + (rows - run_start) // max_len
    edges = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1, rows[a:b] - rows[a]) for a, b in zip(edges[:-1], edges[1:])]


class StudyFile(H5View):
    """Read-only access to a study HDF5, the only reader of that format (contracts.md section 2).

    Opening checks `schema_version` and the layout once; a wrong file raises StudyFormatError naming
    it. Use as a context manager, or call `close()`. Rows are HDF5 row indices (0..N-1); arrays come
    back as stored: points (x, y) in crop pixels after the flip, images normalised, labels 1 / 0 / -1.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no such study HDF5") from None
        except OSError as err:
            raise StudyFormatError(f"{self.path}: cannot open as HDF5 ({err})") from None
        try:
            self._check()
        except BaseException:
            self._h5.close()
            raise

    def _fail(self, problem):
        raise StudyFormatError(f"{self.path}: {problem} (not a study HDF5 of schema {SCHEMA_VERSION}, "
                               "docs/contracts.md section 2)")

    def _check(self):
        h5 = self._h5
        version = h5.attrs.get("schema_version")
        if version is None:
            self._fail("no schema_version attribute")
        if int(version) != SCHEMA_VERSION:
            self._fail(f"schema_version {int(version)}, this code reads {SCHEMA_VERSION}")
        missing = [key for key in ("targets", "crop_size", "spacing_mm", "group_indices") if key not in h5.attrs]
        if missing:
            self._fail(f"no attribute(s) {missing}")
        self.attrs = {key: _plain(value) for key, value in h5.attrs.items()}
        if list(self.attrs["targets"]) != list(TARGETS):
            self._fail(f"targets {self.attrs['targets']}, expected {list(TARGETS)}")
        self.crop_size = int(self.attrs["crop_size"])
        self.spacing_mm = float(self.attrs["spacing_mm"])
        self.group_indices = {t: [int(i) for i in v] for t, v in json.loads(self.attrs["group_indices"]).items()}
        if set(self.group_indices) != set(TARGETS):
            self._fail(f"group_indices has targets {sorted(self.group_indices)}, expected {list(TARGETS)}")
        self.targets = list(TARGETS)
        self.has_truth = "truth/masks" in h5
        self.has_cue = "truth/cue" in h5
        n_points = max(len(v) for v in self.group_indices.values())
        self._n = h5["images"].shape[0] if "images" in h5 else 0
        for name, (shape, _, _) in dataset_layout(self.crop_size, n_points, self.has_truth, self.has_cue).items():
            if name not in h5:
                self._fail(f"no /{name} dataset")
            if h5[name].shape != (self._n, *shape):
                self._fail(f"/{name} has shape {h5[name].shape}, expected {(self._n, *shape)}")

    def __len__(self):
        return self._n

    def _strings(self, name):
        return name.startswith("meta/") and name[len("meta/"):] in STRING_META

    def _rows(self, rows):
        """(sorted unique rows, index that restores the caller's order) after a bounds check."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        bad = rows[(rows < 0) | (rows >= self._n)]
        if len(bad):
            raise IndexError(f"{self.path}: row(s) {bad[:5].tolist()} outside 0..{self._n - 1}")
        return np.unique(rows, return_inverse=True)

    def read(self, names, rows=None):
        """{name: array} of the datasets `names` (paths as in contracts.md section 2, e.g. "images",
        "landmarks/groups", "meta/subject") at `rows` (HDF5 row indices in any order; None = every
        row), in that order. Reads contiguous slices (`read_spans`); strings come back as str."""
        for name in names:
            if name not in self._h5:
                raise KeyError(f"{self.path}: no /{name} dataset")
        if rows is None:
            return {name: self._h5[name].asstr()[:] if self._strings(name) else self._h5[name][:]
                    for name in names}
        unique, restore = self._rows(rows)
        spans = read_spans(unique)
        # each slice goes straight to its places in the output: memory stays at the output plus one slice
        by_unique = np.argsort(restore, kind="stable")
        bounds = np.searchsorted(restore[by_unique], np.arange(len(unique) + 1))
        out = {}
        for name in names:
            dataset = self._h5[name].asstr() if self._strings(name) else self._h5[name]
            shape, dtype = self._h5[name].shape[1:], object if self._strings(name) else self._h5[name].dtype
            values = np.empty((len(restore), *shape), dtype)
            first = 0
            for start, stop, positions in spans:
                last = first + len(positions)
                places = by_unique[bounds[first]:bounds[last]]
                values[places] = dataset[start:stop][positions][restore[places] - first]
                first = last
            out[name] = values
        return out

    def batches(self, names, rows, batch_size):
        """Yield (batch_rows, {name: array}) over `rows` in order, `batch_size` rows at a time (memory
        stays at one batch)."""
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), int(batch_size)):
            batch = rows[start:start + int(batch_size)]
            yield batch, self.read(names, batch)

    def meta(self, fields=("subject", "visit", "side", "cohort", "source"), rows=None):
        """The string metadata as a DataFrame, column `row` (HDF5 row index) first."""
        values = self.read([f"meta/{f}" for f in fields], rows)
        index = np.arange(self._n) if rows is None else np.asarray(rows, dtype=np.int64)
        return pd.DataFrame({"row": index, **{f: values[f"meta/{f}"].astype(str) for f in fields}})

    def subjects(self):
        """`/meta/subject` as an array of str (N,)."""
        return self.read(["meta/subject"])["meta/subject"].astype(str)

    def rows_in_split(self, split, which):
        """Sorted int64 HDF5 rows whose subject is in split `which` of `split` (DataFrame `subject,
        split` [+ `cohort`, given for ids two cohorts share], e.g. from splits.read_split); raises naming the
        file when there is none."""
        chosen = split[split["split"] == which]
        cohorts = chosen["cohort"] if "cohort" in chosen.columns else [""] * len(chosen)
        wanted = {split_key(c, s) for c, s in zip(cohorts, chosen["subject"])}  # with its cohort: a shared id
        meta = self.meta(("subject", "cohort"))
        rows = np.flatnonzero([subject_key(s) in wanted or split_key(c, s) in wanted
                               for s, c in zip(meta["subject"], meta["cohort"])])
        if len(rows) == 0:
            raise ValueError(f"{self.path}: the '{which}' split holds no image")
        return rows.astype(np.int64)
