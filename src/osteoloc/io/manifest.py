"""The cohort manifest: one row per radiograph (docs/contracts.md section 1)."""

import re
from pathlib import Path

import numpy as np

from osteoloc.io.labels import MISSING_SPELLINGS, drop_blank_rows, integer_text, read_csv_table

REQUIRED_COLUMNS = ("image_path", "subject", "visit", "cohort", "points_path")
OPTIONAL_COLUMNS = ("spacing", "manual_points_path", "points_unit")
# Units of the .pts coordinates: mm, px, or auto (mm when the DICOM header has a spacing, else px:
# BoneFinder's rule); "" = the config's default (preprocess.points_unit).
POINTS_UNITS = ("mm", "px", "auto")


def _resolve(base, value):
    """A manifest path: absolute as given, relative to the manifest's folder otherwise; '' when empty."""
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
    if not text:
        return ""
    path = Path(text)
    return str(path if path.is_absolute() else base / path)


def _spacing(path, line, value):
    """One `spacing` cell -> mm (NaN when empty); raises ValueError naming the file, line and cause."""
    text = str(value).strip()
    if text.lower() in MISSING_SPELLINGS:
        return np.nan
    if re.fullmatch(r"[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?", text, flags=re.IGNORECASE):
        number = float(text)
        if number > 0:
            return number
    cause = ("a comma as decimal separator: write 0.6669" if "," in text
             else "a unit or other text after the number: give mm as a plain number" if re.search("[a-z]", text, re.I)
             else "not a positive number")
    raise ValueError(f"{path}: line {line}: spacing {text!r} is not a spacing in mm ({cause})")


def _points_unit(path, line, value):
    unit = str(value).strip().lower()
    if unit and unit not in POINTS_UNITS:
        raise ValueError(f"{path}: line {line}: points_unit {value!r} is not one of {', '.join(POINTS_UNITS)} "
                         "(or empty for preprocess.points_unit)")
    return unit


def read_manifest(path):
    """Read the manifest with paths resolved against its folder; `spacing` is float mm (NaN when absent),
    `points_unit` one of POINTS_UNITS or "" (the config's default); subject, visit and cohort stripped, a
    float column's `1001.0` read as `1001`.

    Rows whose every cell is blank (a spreadsheet's trailing rows) are ignored, with a log line. Raises
    ValueError naming the file (and line) when it is not a comma-separated UTF-8 table, a required column is
    missing, a spacing is not a plain positive number or a points_unit is unknown.
    """
    path = Path(path)
    frame = drop_blank_rows(read_csv_table(path, "manifest", REQUIRED_COLUMNS), path, "manifest")
    base = path.resolve().parent
    for column in ("image_path", "points_path", "manual_points_path"):
        if column in frame.columns:
            frame[column] = [_resolve(base, v) for v in frame[column]]
        else:
            frame[column] = ""
    lines = frame.index + 2  # line numbers in the file (line 1 is the header; blank rows keep their place)
    for column, parse, empty in (("spacing", _spacing, np.nan), ("points_unit", _points_unit, "")):
        if column in frame.columns:
            frame[column] = [parse(path, line, v) for line, v in zip(lines, frame[column])]
        else:
            frame[column] = empty
    frame["spacing"] = frame["spacing"].astype(float)
    for column in ("subject", "visit", "cohort"):  # ids from a float column lose their .0, as in the labels
        frame[column] = frame[column].map(integer_text)
    return frame.reset_index(drop=True)
