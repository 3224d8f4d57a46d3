"""The label CSV: OARSI osteophyte grades per subject, visit, hip and target (docs/method.md section 2.5).

A missing grade (NaN, empty, `nan`, `none`, `na`, `missing`, any case) is unknown (-1), never 0. A value
that is neither missing nor a grade 0-3 is *junk*: the caller decides what to do with the row (the
preprocessing excludes the hip, docs/preprocessing.md).
"""

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from osteoloc.names import TARGETS, UNKNOWN

KEY_COLUMNS = ("cohort", "subject", "visit", "side")
MISSING_SPELLINGS = frozenset({"", "nan", "none", "na", "n/a", "missing", "null"})
SIDE_SPELLINGS = {"left": "left", "l": "left", "right": "right", "r": "right"}


def parse_grade(value):
    """One grade cell -> 0-3, UNKNOWN for a missing spelling; raises ValueError for anything else."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNKNOWN
    text = str(value).strip().lower()
    if text in MISSING_SPELLINGS:
        return UNKNOWN
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"junk grade {value!r}") from None
    if number != int(number) or not 0 <= number <= 3:
        raise ValueError(f"junk grade {value!r}")
    return int(number)


def grades_to_labels(grades):
    """Binary labels from grades: 1 (grade > 0), 0 (grade 0), -1 (unknown)."""
    grades = np.asarray(grades)
    return np.where(grades < 0, UNKNOWN, (grades > 0).astype(np.int8)).astype(np.int8)


def normalise_side(value):
    side = SIDE_SPELLINGS.get(str(value).strip().lower())
    if side is None:
        raise ValueError(f"unknown side {value!r}")
    return side


def visit_key(visit):
    """Visits match by number: `V00`, `T00`, `00` and `0` are the same visit (the prefixes are used
    interchangeably between files)."""
    text = str(visit).strip()
    match = re.fullmatch(r"[A-Za-z]*0*(\d+)", text)
    return str(int(match.group(1))) if match else text.upper()


def subject_key(subject):
    return str(subject).strip().upper()


def hip_key(subject, visit, side):
    return subject_key(subject), visit_key(visit), normalise_side(side)


@dataclass
class LabelTable:
    """Grades per hip key, plus the rows that could not be used (with reasons)."""

    grades: dict = field(default_factory=dict)  # hip_key -> int8 (4,) in TARGETS order
    cohort: dict = field(default_factory=dict)  # hip_key -> cohort string
    spelled: dict = field(default_factory=dict)  # hip_key -> (subject, visit) as written in the file
    problems: list = field(default_factory=list)  # (subject, visit, side, reason)
    problem_keys: set = field(default_factory=set)

    def keys(self):
        return set(self.grades) | self.problem_keys


def read_csv_table(path, what, required):
    """A comma-separated UTF-8 table (`what` names it in messages) as strings, column names stripped and
    lower-cased. Raises ValueError naming the file and the cause: not UTF-8, empty, separated by ';' or
    tabs (what a spreadsheet in some locales writes), or lacking a `required` column."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # Excel adds a BOM
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: {what} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                         f"{err.start}); save it as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: {what} is empty (no header row)") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        header = ",".join(frame.columns)
        for name, sep in (("';'", ";"), ("tabs", "\t")):
            if len(frame.columns) == 1 and sep in header:
                raise ValueError(f"{path}: {what} is separated by {name}, commas expected (header {header!r})")
        raise ValueError(f"{path}: {what} lacks columns {missing}")
    return frame


def read_labels(path):
    """Read the label CSV into a LabelTable; raises ValueError naming the file when it cannot be read as a
    comma-separated UTF-8 table or columns are missing (read_csv_table)."""
    frame = read_csv_table(path, "label CSV", ("subject", "visit", "side", *TARGETS))
    table = LabelTable()
    seen = {}
    for row in frame.to_dict(orient="records"):
        subject, visit, side = row["subject"], row["visit"], row["side"]
        try:
            key = hip_key(subject, visit, side)
        except ValueError as err:
            table.problems.append((subject, visit, side, f"label row: {err}"))
            continue
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:  # a duplicate row: which grade is right is unknowable, so drop the hip
            table.grades.pop(key, None)
            table.problems.append((subject, visit, key[2], "duplicate label rows for this hip"))
            table.problem_keys.add(key)
            continue
        if seen[key] > 2:
            continue
        try:
            grades = np.array([parse_grade(row[t]) for t in TARGETS], dtype=np.int8)
        except ValueError:
            junk = {t: row[t] for t in TARGETS if _is_junk(row[t])}
            table.problems.append((subject, visit, key[2], f"junk grade in {junk}"))
            table.problem_keys.add(key)
            continue
        table.grades[key] = grades
        table.cohort[key] = str(row.get("cohort", "")).strip()
        table.spelled[key] = (str(subject).strip(), str(visit).strip())
    return table


def _is_junk(value):
    try:
        parse_grade(value)
    except ValueError:
        return True
    return False
