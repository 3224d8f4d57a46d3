"""The study HDF5 (docs/contracts.md section 2, docs/preprocessing.md) and its one owner: `StudyWriter`
writes it, `StudyFile` is the only reader anywhere in the library.

The writer appends hips to resizable datasets in small batches, so memory stays flat however large the
cohort; it writes to a temporary file that is renamed onto the target only when the block succeeds.
The file's schema is declared once here (`FIELDS`, `LAYERS`: field name, HDF5 path, dtype, per-row shape);
the writer creates from it, the reader checks against it, and docs/contracts.md section 2 is tested against
it. Callers name fields (HipRecord's field names, layer names), never HDF5 paths: `StudyWriter` takes
`HipRecord`s, `StudyFile.read` and `.batches` return `HipBatch`es. The reader opens the file once, checks
`schema_version` and the layout, and serves the rows each stage needs, read in contiguous slices.
"""

import contextlib
import errno
import json
import os
import re
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Field:
    """One dataset of the study file: the record's attribute `name`, its HDF5 `path`, its `dtype`, its
    per-row `shape` in symbols (S crop size, T targets, L longest group, or a number) and the rows per HDF5
    chunk (1 for images and layers, so random access reads one image)."""

    name: str
    path: str
    dtype: object
    shape: tuple
    chunk_rows: int = 256

    def row_shape(self, crop_size, n_points):
        sizes = {"S": int(crop_size), "T": len(TARGETS), "L": int(n_points)}
        return tuple(sizes.get(dim, dim) for dim in self.shape)

    @property
    def dtype_name(self):
        """The dtype as docs/contracts.md section 2 spells it."""
        return "utf-8" if self.dtype is STR else np.dtype(self.dtype).name

    @property
    def is_string(self):
        return self.dtype is STR


# The study file's one schema (docs/contracts.md section 2 is checked against it): the per-hip fields every
# study has, in the order their datasets are created, then the named label layers a study may have.
FIELDS = (
    Field("image", "images", np.float32, ("S", "S"), 1),
    Field("grades", "grades", np.int8, ("T",)),
    Field("labels", "labels", np.int8, ("T",)),
    Field("contour", "landmarks/contour", np.float32, (80, 2)),
    Field("contour_manual", "landmarks/contour_manual", np.float32, (80, 2)),
    Field("groups", "landmarks/groups", np.float32, ("T", "L", 2)),
    Field("valid", "landmarks/valid", np.bool_, ("T", "L")),
    *(Field(name, f"meta/{name}", STR, ()) for name in STRING_META),
    *(Field(name, f"meta/{name}", np.float32, (width,)) for name, width in FLOAT_META.items()),
    Field("head_circle", "meta/head_circle", np.float32, (3,)),
    Field("magnification", "meta/magnification", np.float32, ()),
)
# Named label layers, transformed like the image: `lesions` (the phantom's truth or expert references, one
# mask per target), `cue` (the phantom's shortcut cue: 1 where its marker lies). A hip without one stores 0.
LAYERS = (
    Field("lesions", "truth/masks", np.uint8, ("T", "S", "S"), 1),
    Field("cue", "truth/cue", np.uint8, ("S", "S"), 1),
)
SCHEMA = {field.name: field for field in FIELDS + LAYERS}
NAN_FILLED = ("contour", "contour_manual", "groups")  # fill value NaN: absent points read as NaN


def study_fields(layers=()):
    """The Fields of a study with the named `layers`, in creation order."""
    unknown = set(layers) - {layer.name for layer in LAYERS}
    if unknown:
        raise ValueError(f"unknown study layer(s) {sorted(unknown)}; the schema has {[f.name for f in LAYERS]}")
    return FIELDS + tuple(layer for layer in LAYERS if layer.name in layers)


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
    """One hip, ready to store: everything in crop pixels after the flip (fields as in `FIELDS`)."""

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
    layers: dict = field(default_factory=dict)  # {layer name (LAYERS): array}, e.g. lesions uint8 (4, S, S)


@dataclass
class HipBatch:
    """Rows of a study as `StudyFile.read` returns them: each field (as in `FIELDS`, the names of HipRecord)
    an array with a leading row axis, None where it was not read; `layers` {name: array} the label layers
    read; `rows` the HDF5 row indices, in the order asked."""

    rows: np.ndarray
    image: np.ndarray = None
    grades: np.ndarray = None
    labels: np.ndarray = None
    contour: np.ndarray = None
    contour_manual: np.ndarray = None
    groups: np.ndarray = None
    valid: np.ndarray = None
    subject: np.ndarray = None
    visit: np.ndarray = None
    side: np.ndarray = None
    cohort: np.ndarray = None
    source: np.ndarray = None
    source_spacing: np.ndarray = None
    spacing_from: np.ndarray = None
    crop_offset: np.ndarray = None
    head_circle: np.ndarray = None
    intensity: np.ndarray = None
    magnification: np.ndarray = None
    layers: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.rows)


class StudyWriter:
    """Append HipRecords to a new study HDF5; use as a context manager (rename on success only). `layers`:
    the names (LAYERS) of the label layers the study stores. A write error (a full disk) raises
    StudyWriteError; HDF5's chunk cache is off so that it surfaces at the write that failed, not later
    inside HDF5's cleanup, where it used to end the process with SIGSEGV."""

    def __init__(self, path, crop_size, spacing_mm, groups, layers=(), batch=64, attrs=None):
        self.path = Path(path)
        self.crop_size = int(crop_size)
        self.groups = {t: [int(i) for i in groups[t]] for t in TARGETS}
        self.length = max(len(v) for v in self.groups.values())
        self.spacing_mm = float(spacing_mm)
        self.fields = study_fields(layers)
        self.layers = tuple(f.name for f in self.fields if f in LAYERS)
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
        for f in self.fields:
            shape = f.row_shape(self.crop_size, self.length)
            fill = np.nan if f.name in NAN_FILLED else None
            # images and layers: one chunk per image, so random access is cheap
            self.h5.create_dataset(f.path, shape=(0, *shape), maxshape=(None, *shape), dtype=f.dtype,
                                   chunks=(f.chunk_rows, *shape), fillvalue=fill)
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
        unknown = set(record.layers) - set(self.layers)
        if unknown:
            raise ValueError(f"{self.path}: a hip has layer(s) {sorted(unknown)} the study does not store "
                             f"(its layers: {list(self.layers)})")
        with _write_errors(self.path):
            self._write_blocks()
            self.buffer.append(record)
            if len(self.buffer) >= self.batch:
                self._flush()

    def append_rows(self, study, start, stop, overrides=None):
        """Append rows start..stop-1 of the open StudyFile `study` (a shard of the same layout), with the
        fields named in `overrides` ({field name: values of those rows}, e.g. grades joined at the gather)
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
        """{field name: values} of a study file rows are copied from: the small per-row datasets read whole
        once (a few kB per hip), images and layers left on disk (one chunk per row, read as asked)."""
        key = id(study)
        if key not in self._sources:
            self._check_layout(study)
            self._sources[key] = {f.name: (study._h5[f.path].asstr()[:] if f.is_string else study._h5[f.path][:])
                                  if f.chunk_rows > 1 else study._h5[f.path] for f in self.fields}
        return self._sources[key]

    def _check_layout(self, study):
        if (study.crop_size, study.layers) != (self.crop_size, self.layers) or study.group_indices != self.groups:
            raise StudyFormatError(f"{study.path}: layout differs from the study being written to {self.path}")

    def _write_blocks(self):
        if not self.blocks:
            return
        blocks, n = self.blocks, self.block_rows
        self.blocks, self.block_rows = [], 0
        for f in self.fields:
            dataset = self.h5[f.path]
            dataset.resize(self.count + n, axis=0)
            values = [np.asarray(block[f.name], dtype=object if f.is_string else dataset.dtype) for block in blocks]
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
        for f in self.fields:
            if f in LAYERS:
                empty = np.zeros(f.row_shape(self.crop_size, self.length), f.dtype)
                values = [r.layers[f.name] if r.layers.get(f.name) is not None else empty for r in records]
            elif f.is_string:
                values = [str(getattr(r, f.name)) for r in records]
            else:
                values = [getattr(r, f.name) for r in records]
            dataset = self.h5[f.path]
            dataset.resize(start + n, axis=0)
            dataset[start:start + n] = np.asarray(values, dtype=object if f.is_string else dataset.dtype)
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
        for f in self.fields:
            source, target = study._h5[f.path], self.h5[f.path]
            target.resize(self.count + n, axis=0)
            for a in range(0, n, block):
                b = min(a + block, n)
                target[self.count + a:self.count + b] = source[start + a:start + b]
        self.count += n


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
        self.layers = tuple(layer.name for layer in LAYERS if layer.path in h5)
        n_points = max(len(v) for v in self.group_indices.values())
        self._n = h5[SCHEMA["image"].path].shape[0] if SCHEMA["image"].path in h5 else 0
        for f in study_fields(self.layers):
            shape = f.row_shape(self.crop_size, n_points)
            if f.path not in h5:
                self._fail(f"no /{f.path} dataset")
            if h5[f.path].shape != (self._n, *shape):
                self._fail(f"/{f.path} has shape {h5[f.path].shape}, expected {(self._n, *shape)}")

    def __len__(self):
        return self._n

    def _rows(self, rows):
        """(sorted unique rows, index that restores the caller's order) after a bounds check."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        bad = rows[(rows < 0) | (rows >= self._n)]
        if len(bad):
            raise IndexError(f"{self.path}: row(s) {bad[:5].tolist()} outside 0..{self._n - 1}")
        return np.unique(rows, return_inverse=True)

    def _fields(self, names):
        """The Fields named `names` (HipRecord's field names or layer names); KeyError naming the file when
        the schema or this study has no such field."""
        out = []
        for name in names:
            if name not in SCHEMA:
                raise KeyError(f"{self.path}: no study field {name!r}; fields: {sorted(SCHEMA)}")
            if SCHEMA[name] in LAYERS and name not in self.layers:
                raise KeyError(f"{self.path}: this study has no {name!r} layer (/{SCHEMA[name].path})")
            out.append(SCHEMA[name])
        return out

    def _values(self, f, rows):
        """One field at `rows` (None = every row): contiguous slices (`read_spans`); strings as str."""
        if rows is None:
            return self._h5[f.path].asstr()[:] if f.is_string else self._h5[f.path][:]
        unique, restore = self._rows(rows)
        spans = read_spans(unique)
        # each slice goes straight to its places in the output: memory stays at the output plus one slice
        by_unique = np.argsort(restore, kind="stable")
        bounds = np.searchsorted(restore[by_unique], np.arange(len(unique) + 1))
        dataset = self._h5[f.path].asstr() if f.is_string else self._h5[f.path]
        shape, dtype = self._h5[f.path].shape[1:], object if f.is_string else self._h5[f.path].dtype
        values = np.empty((len(restore), *shape), dtype)
        first = 0
        for start, stop, positions in spans:
            last = first + len(positions)
            places = by_unique[bounds[first]:bounds[last]]
            values[places] = dataset[start:stop][positions][restore[places] - first]
            first = last
        return values

    def read(self, names, rows=None):
        """A HipBatch holding the fields `names` (HipRecord's field names, e.g. "image", "groups",
        "subject", or layer names, e.g. "lesions", which land in `layers`) at `rows` (HDF5 row indices in
        any order; None = every row), in that order. Reads contiguous slices; strings come back as str."""
        wanted = self._fields(names)
        batch = HipBatch(rows=np.arange(self._n) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1))
        for f in wanted:
            values = self._values(f, rows)
            if f in LAYERS:
                batch.layers[f.name] = values
            else:
                setattr(batch, f.name, values)
        return batch

    def batches(self, names, rows, batch_size):
        """Yield HipBatches (`read`) over `rows` in order, `batch_size` rows at a time (memory stays at one
        batch)."""
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, len(rows), int(batch_size)):
            yield self.read(names, rows[start:start + int(batch_size)])

    def meta(self, fields=("subject", "visit", "side", "cohort", "source"), rows=None):
        """The string metadata as a DataFrame, column `row` (HDF5 row index) first."""
        values = self.read(fields, rows)
        return pd.DataFrame({"row": values.rows, **{f: getattr(values, f).astype(str) for f in fields}})

    def subjects(self):
        """The subjects as an array of str (N,)."""
        return self.read(["subject"]).subject.astype(str)

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
