"""The phantom's lesion truth, `truth.h5` (docs/contracts.md section 1): the one reader.

`/masks/<image stem>`: uint8 (rows, cols) in the DICOM's pixel grid; bit `4 * s + t` is set where the
lesion of target t (TARGETS order) of side s (0 = right, 1 = left) lies; `/cue/<stem>` (cue on only): bit s
where side s's cue marker lies; `/params/<stem>` attributes: the generator's per-hip parameters.
`TruthWriter` writes it (and the phantom's per-shard part files, which share the layout); `TruthFile`
reads it. Where each lesion lies relative to its target's landmarks (the `lesion_*` parameters,
docs/phantom.md "Truth") comes as one table, `TruthFile.lesion_table()`.
"""

import contextlib

import h5py
import numpy as np
import pandas as pd

from osteoloc.io.atomic import atomic_path
from osteoloc.names import SIDES, TARGETS

# lesion_table's columns: the hip and target, then the lesion's geometry (image mm) from /params.
LESION_COLUMNS = ["subject", "visit", "side", "target", "x_mm", "y_mm", "landmark", "landmark_mm", "along_mm",
                  "across_mm", "anchor", "placed_along_mm", "placed_across_mm", "away"]
MASK_BITS = "bit 4 * side + target is set where that lesion lies; side 0 = right, 1 = left"
CUE_BITS = ("bit s (0 = right, 1 = left) is set where side s's cue marker changes the radiograph; the twin "
            "equals the radiograph everywhere else")
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class TruthWriter:
    """Append radiographs to a new truth file; `attrs` are the file's attributes. Written atomically:
    use `truth_writer(path, ...)`."""

    def __init__(self, h5, with_cue):
        self._h5 = h5
        self.attrs = h5.attrs
        h5.attrs["targets"] = list(TARGETS)
        h5.attrs["bit"] = MASK_BITS
        h5.create_group("masks").attrs["targets"] = list(TARGETS)
        h5.create_group("params")
        if with_cue:
            h5.create_group("cue").attrs["bit"] = CUE_BITS

    def add(self, stem, layers, params):
        """One radiograph: its named layers {"lesions": the (rows, cols) uint8 mask bitfield, "cue": the
        cue bitfield (required when the file has a cue group)} and its parameter dict."""
        self._h5.create_dataset(f"masks/{stem}", data=layers["lesions"], **_COMPRESSION)
        self._h5.create_group(f"params/{stem}").attrs.update(params)
        if "cue" in self._h5:
            cue = layers.get("cue")
            if cue is None:
                raise ValueError(f"{self._h5.filename}: radiograph {stem} has no cue mask in a file with cues")
            self._h5.create_dataset(f"cue/{stem}", data=cue, **_COMPRESSION)


@contextlib.contextmanager
def truth_writer(path, with_cue=False):
    """A TruthWriter on `path`; the file appears only when the block succeeds."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        yield TruthWriter(h5, with_cue)


class TruthFile(h5py.File):
    """`truth.h5` opened read-only (an h5py File: a context manager, or call `close()`)."""

    def __init__(self, path):
        try:
            super().__init__(path, "r")
        except OSError as err:
            raise ValueError(f"{path}: cannot open the truth HDF5 ({err})") from None

    def masks(self, stem, side):
        """The four lesion masks (4, rows, cols) uint8 (0/1, TARGETS order) of one hip of the radiograph
        whose file stem is `stem`, in its source pixel grid; None when the file has no masks for it."""
        key = f"masks/{stem}"
        if key not in self:
            return None
        bits = self[key][()]
        s = SIDES.index(side)
        return np.stack([(bits >> (4 * s + t)) & 1 for t in range(len(TARGETS))]).astype(np.uint8)

    def cue(self, stem, side):
        """The cue marker mask (rows, cols) uint8 0/1 of one hip, or None when the file has no cue for it."""
        key = f"cue/{stem}"
        if key not in self:
            return None
        return ((self[key][()] >> SIDES.index(side)) & 1).astype(np.uint8)

    @property
    def has_cue(self):
        return "cue" in self

    def lesion_table(self):
        """One row per lesion (LESION_COLUMNS): its hip (subject, visit, side) and target, its rendered mask's
        centroid (x_mm, y_mm; image mm), the nearest landmark of its target's group and the distance to it
        (landmark_mm), that offset as (along_mm, across_mm) the host outline at the landmark, and how the
        phantom placed it (anchor, placed_along_mm, placed_across_mm: design `offset`, else -1 / NaN; away).
        Empty when the file predates these parameters."""
        rows = []
        for stem in sorted(self["params"]):
            params = self[f"params/{stem}"].attrs
            if "lesion_xy_mm" not in params:
                continue
            grades = params["grades"]
            for s, side in enumerate(SIDES):
                for t, target in enumerate(TARGETS):
                    if grades[s, t] <= 0:
                        continue
                    rows.append([params["subject"], params["visit"], side, target, *params["lesion_xy_mm"][s, t],
                                 int(params["lesion_landmark"][s, t]), float(params["lesion_landmark_mm"][s, t]),
                                 *params["lesion_offset_mm"][s, t], int(params["lesion_anchor"][s, t]),
                                 *params["lesion_placed_mm"][s, t], bool(params["lesion_away"][s, t])])
        return pd.DataFrame(rows, columns=LESION_COLUMNS)

    def radiograph(self, stem):
        """(layers, params dict) of one radiograph, as TruthWriter.add took them: layers {"lesions": mask
        bitfield, "cue": cue bitfield (where the file has one)}; KeyError naming the file when it is absent."""
        if f"masks/{stem}" not in self:
            raise KeyError(f"{self.filename}: no radiograph {stem}")
        layers = {"lesions": self[f"masks/{stem}"][()]}
        if f"cue/{stem}" in self:
            layers["cue"] = self[f"cue/{stem}"][()]
        return layers, dict(self[f"params/{stem}"].attrs)
