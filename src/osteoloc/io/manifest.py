"""The cohort manifest: one row per radiograph (docs/contracts.md section 1)."""

from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("image_path", "subject", "visit", "cohort", "points_path")
OPTIONAL_COLUMNS = ("spacing", "manual_points_path")


def _resolve(base, value):
    """A manifest path: absolute as given, relative to the manifest's folder otherwise; '' when empty."""
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
    if not text:
        return ""
    path = Path(text)
    return str(path if path.is_absolute() else base / path)


def read_manifest(path):
    """Read the manifest with paths resolved; `spacing` is float (NaN when absent).

    Raises ValueError naming the file when a required column is missing.
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # Excel adds a BOM
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    base = path.resolve().parent
    for column in ("image_path", "points_path", "manual_points_path"):
        if column in frame.columns:
            frame[column] = [_resolve(base, v) for v in frame[column]]
        else:
            frame[column] = ""
    if "spacing" in frame.columns:
        frame["spacing"] = pd.to_numeric(frame["spacing"].replace("", np.nan), errors="coerce")
    else:
        frame["spacing"] = np.nan
    for column in ("subject", "visit", "cohort"):
        frame[column] = frame[column].str.strip()
    return frame
