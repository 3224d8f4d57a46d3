"""The phantom's intervention crops of one test split, `interventions.h5`: its one writer and reader.

Rendered once per split (rule intervention_crops) and read by every run scored on that split, since the
renders do not depend on the model. Per intervention i: `/original`, `/image` float32 (n, S, S), the hip
crop before and after it (one intensity window); `/mask`, `/moved` bool (n, S, S), the lesion's truth mask
before and after (all False when removed); `/contour` float32 (n, P, 2), the hip's points in crop pixels;
`/cases`, a table (subject, visit, side, target, kind, direction: along or across for a move, else
empty; shift_mm; lesion_targets: the targets with a lesion on that hip, space-separated) as one column per
dataset.
"""

import h5py
import numpy as np
import pandas as pd

from osteoloc.io.atomic import atomic_path

CASE_COLUMNS = ["subject", "visit", "side", "target", "kind", "direction", "shift_mm", "lesion_targets"]
ARRAYS = ("original", "image", "mask", "moved", "contour")


def write_intervention_crops(path, cases, arrays):
    """Write `cases` (a DataFrame with CASE_COLUMNS) and `arrays` ({name: array with one row per case} for
    every name of ARRAYS) atomically."""
    n = len(cases)
    if set(arrays) != set(ARRAYS) or any(len(arrays[k]) != n for k in ARRAYS):
        raise ValueError(f"{path}: intervention crops need {ARRAYS} with {n} rows each")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        for name in ARRAYS:
            data = np.asarray(arrays[name], dtype=bool if name in ("mask", "moved") else np.float32)
            out.create_dataset(name, data=data, compression="gzip", compression_opts=4)
        group = out.create_group("cases")
        for column in CASE_COLUMNS:
            values = cases[column].to_numpy()
            group.create_dataset(column, data=values.astype(float) if column == "shift_mm"
                                 else values.astype(str).astype(object), dtype=None if column == "shift_mm"
                                 else h5py.string_dtype())


def read_intervention_crops(path):
    """(cases DataFrame, {name: array}) from an interventions.h5."""
    with h5py.File(path, "r") as f:
        missing = [k for k in (*ARRAYS, "cases") if k not in f]
        if missing:
            raise ValueError(f"{path}: not an intervention crops file (missing {missing})")
        missing = [c for c in CASE_COLUMNS if c not in f["cases"]]
        if missing:
            raise ValueError(f"{path}: the intervention cases lack {missing} (written by an older version: "
                             "render the crops again)")
        cases = pd.DataFrame({c: f["cases"][c].asstr()[()] if c != "shift_mm" else f["cases"][c][()]
                              for c in CASE_COLUMNS})
        cases["visit"] = cases["visit"].astype(int)
        return cases, {name: f[name][()] for name in ARRAYS}
