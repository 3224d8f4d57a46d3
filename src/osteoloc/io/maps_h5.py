"""A run's Grad-CAM maps file, `maps.h5` (docs/contracts.md section 5): its one writer and reader.

`/maps` float16 (n_test, 4, S, S) in crop pixels (values 0-1), chunked per image; `/rows` int64, the study
HDF5 rows of `/maps`. The report reads it one batch of images at a time (`MapsFile`), so memory stays at a
batch however large the test split.
"""

import contextlib

import h5py
import numpy as np

from osteoloc.io.atomic import atomic_path
from osteoloc.io.h5view import H5View
from osteoloc.names import TARGETS

MAPS_NORMALISATION = "pytorch-grad-cam: ReLU, min-max, bilinear, min-max"


@contextlib.contextmanager
def maps_writer(path, rows, crop_size):
    """Write a maps.h5 one batch at a time, atomically (the file appears only when the block succeeds and
    every row has its maps). Yields `append(maps)`, maps (b, 4, S, S) float in `rows` order.

        with maps_writer(path, rows, crop_size) as append:
            append(batch_maps)
    """
    rows = np.asarray(rows, dtype=np.int64)
    size = (int(crop_size), int(crop_size))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        maps = out.create_dataset("maps", shape=(len(rows), len(TARGETS), *size), dtype=np.float16,
                                  chunks=(1, len(TARGETS), *size), compression="gzip", compression_opts=4)
        out.create_dataset("rows", data=rows)
        out.attrs["targets"] = list(TARGETS)
        out.attrs["normalisation"] = MAPS_NORMALISATION
        written = 0

        def append(batch):
            nonlocal written
            maps[written:written + len(batch)] = np.asarray(batch).astype(np.float16)
            written += len(batch)

        yield append
        if written != len(rows):
            raise ValueError(f"{path}: maps of {written} hips written for {len(rows)} rows")


def read_maps(path):
    """(rows, maps float32) from a maps.h5."""
    with h5py.File(path, "r") as f:
        return f["rows"][()], f["maps"][()].astype(np.float32)


class MapsFile(H5View):
    """Read-only view of a maps.h5: `.rows` (n,), `len`, and the maps of given positions or batches."""

    def __init__(self, path):
        self.path = str(path)
        self._h5 = h5py.File(path, "r")
        if "maps" not in self._h5 or "rows" not in self._h5:
            self._h5.close()
            raise ValueError(f"{path}: not a maps.h5 (needs /maps and /rows)")
        self.rows = self._h5["rows"][()]

    def __len__(self):
        return len(self.rows)

    def take(self, positions):
        """float32 maps (k, 4, S, S) of the given positions (indices into `.rows`), in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        unique, inverse = np.unique(positions[order], return_inverse=True)
        maps = self._h5["maps"][unique].astype(np.float32)
        out = np.empty((len(positions), *maps.shape[1:]), np.float32)
        out[order] = maps[inverse]
        return out

    def batches(self, batch_size):
        """Yield (start, float32 maps) over the file in order, one batch at a time."""
        for start in range(0, len(self), batch_size):
            yield start, self._h5["maps"][start:start + batch_size].astype(np.float32)

    def mean_over(self, selected, batch_size=64):
        """Per-target mean map over selected images, read one batch at a time (memory stays at a batch
        however large the file): `selected` bool (n, T) by position -> float32 (T, S, S), plane t the mean
        of maps[selected[:, t], t]; zeros where no image is selected. Sums in float64."""
        selected = np.asarray(selected, dtype=bool)
        if selected.shape != (len(self), self._h5["maps"].shape[1]):
            raise ValueError(f"{self.path}: selection of shape {selected.shape} for maps of shape "
                             f"{self._h5['maps'].shape[:2]}")
        total = np.zeros(self._h5["maps"].shape[1:], np.float64)
        for start, maps in self.batches(batch_size):
            chosen = selected[start:start + len(maps)]
            for t in range(len(total)):
                total[t] += maps[chosen[:, t], t].sum(axis=0, dtype=np.float64)
        count = selected.sum(axis=0)
        return (total / np.maximum(count, 1)[:, None, None]).astype(np.float32)
