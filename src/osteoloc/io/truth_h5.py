"""The phantom's lesion truth, `truth.h5` (docs/contracts.md section 1): the one reader.

`/masks/<image stem>`: uint8 (rows, cols) in the DICOM's pixel grid; bit `4 * s + t` is set where the
lesion of target t (TARGETS order) of side s (0 = right, 1 = left) lies. The phantom package writes it.
"""

import h5py
import numpy as np

from osteoloc.targets import SIDES, TARGETS


class TruthFile:
    """Read-only `truth.h5`; a context manager (or call `close()`)."""

    def __init__(self, path):
        self.path = path
        try:
            self.h5 = h5py.File(path, "r")
        except OSError as err:
            raise ValueError(f"{path}: cannot open the truth HDF5 ({err})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.h5.close()

    def masks(self, stem, side):
        """The four lesion masks (4, rows, cols) uint8 (0/1, TARGETS order) of one hip of the radiograph
        whose file stem is `stem`, in its source pixel grid; None when the file has no masks for it."""
        key = f"masks/{stem}"
        if key not in self.h5:
            return None
        bits = self.h5[key][()]
        s = SIDES.index(side)
        return np.stack([(bits >> (4 * s + t)) & 1 for t in range(len(TARGETS))]).astype(np.uint8)
