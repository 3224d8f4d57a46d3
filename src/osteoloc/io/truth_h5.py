"""The phantom's lesion truth, `truth.h5` (docs/contracts.md section 1): the one reader.

`/masks/<image stem>`: uint8 (rows, cols) in the DICOM's pixel grid; bit `4 * s + t` is set where the
lesion of target t (TARGETS order) of side s (0 = right, 1 = left) lies. The phantom package writes it.
"""

import h5py
import numpy as np

from osteoloc.targets import SIDES, TARGETS


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
