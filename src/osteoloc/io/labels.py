"""The label table: OARSI osteophyte grades per subject, visit, hip and target (docs/method.md section 2.5).

A missing grade (a marker of `cohort.missing_values`, any case: by default empty, `.` as SAS, Stata and
SPSS export it, `NA`, `nan`, `none`, ...) is unknown (-1), never 0, and the hip keeps its other grades. A
value that is neither missing nor a grade 0-3 is *junk*: the caller decides what to do with the row (the
preprocessing excludes the hip, docs/preprocessing.md).

The table is kept the way its owner keeps it (`LabelFormat`, config `cohort.label_columns`,
`labels_layout`, `labels_sheet`, `grade_cutoff`): a CSV or an Excel sheet, osteoloc's column names or the
user's, one row per hip (`long`) or one row per subject and visit with each target per side (`wide`).
Whatever its form, `read_label_frame` turns it into the one long frame that `read_labels` parses. Cells are
taken as a spreadsheet shows them: a formula's saved value, a merged range's value in each of its cells,
an id typed as a number without its `.0` (`1001.0` -> `1001`).
"""

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd

from osteoloc.names import SIDES, TARGETS, UNKNOWN

log = logging.getLogger(__name__)

KEY_COLUMNS = ("cohort", "subject", "visit", "side")
# The default missing-value markers (config cohort.missing_values, compared ignoring case and blanks): empty,
# SAS / Stata / SPSS's `.`, R's NA, Excel's #N/A, and the usual words.
MISSING_VALUES = ("", ".", "NA", "N/A", "#N/A", "NaN", "None", "null", "missing", "-")
MISSING_SPELLINGS = frozenset(v.lower() for v in MISSING_VALUES)
SIDE_SPELLINGS = {"left": "left", "l": "left", "right": "right", "r": "right"}
# a number written by a float column: 1001.0, 0.0 (what a CSV export of a numeric id column holds)
FLOAT_INTEGER = re.compile(r"([+-]?\d+)\.0*")
LABEL_LAYOUTS = ("long", "wide")
# A wide table names each target once per side: osteo_fem_sup_right, osteo_fem_sup_left, ...
SIDE_SUFFIXES = {"right": "_right", "left": "_left"}
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
MAX_GRADE = 3


def parse_grade(value, missing=MISSING_SPELLINGS):
    """One grade cell -> 0-3, UNKNOWN for a missing-value marker (`missing`, lower case); raises ValueError
    for anything else."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNKNOWN
    text = str(value).strip().lower()
    if text in missing:
        return UNKNOWN
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"junk grade {value!r}") from None
    if number != int(number) or not 0 <= number <= MAX_GRADE:
        raise ValueError(f"junk grade {value!r}")
    return int(number)


def grades_to_labels(grades, cutoff=0):
    """Binary labels from grades: 1 (grade > cutoff), 0 (a known grade <= cutoff), -1 (unknown). `cutoff`
    is one number or one per target (the last axis, TARGETS order)."""
    grades = np.asarray(grades)
    return np.where(grades < 0, UNKNOWN, (grades > np.asarray(cutoff)).astype(np.int8)).astype(np.int8)


def normalise_side(value):
    side = SIDE_SPELLINGS.get(str(value).strip().lower())
    if side is None:
        raise ValueError(f"unknown side {value!r}")
    return side


def integer_text(value):
    """An id cell as text, a float column's integer (`1001.0`, `0.0`) without its `.0`; other text stripped."""
    text = str(value).strip()
    match = FLOAT_INTEGER.fullmatch(text)
    return match.group(1) if match else text


def pad_subject(subject, digits):
    """`subject` left-padded with zeros to `digits` when it is all digits and shorter (what a spreadsheet
    that typed the ids as numbers dropped: 1001 -> 001001 for 6); unchanged when `digits` is 0."""
    text = str(subject).strip()
    return text.zfill(digits) if digits and text.isdigit() else text


def visit_key(visit):
    """Visits match by number: `V00`, `T00`, `00` and `0` are the same visit (the prefixes are used
    interchangeably between files)."""
    text = str(visit).strip()
    match = re.fullmatch(r"[A-Za-z]*0*(\d+)", text)
    return str(int(match.group(1))) if match else text.upper()


def subject_key(subject):
    """Subject ids compare ignoring case and blanks (` oai-same` is `OAI-SAME`; inner runs of blanks count as one)."""
    return " ".join(str(subject).split()).upper()


def cohort_key(cohort):
    """Cohort names compare like subject ids."""
    return " ".join(str(cohort).split()).upper()


def split_key(cohort, subject):
    """A person as a split names them: the subject id compared like `subject_key`, with its cohort where one
    is given (an id that two cohorts use is two people: train.splits gives those their cohort)."""
    return (cohort_key(cohort), subject_key(subject)) if str(cohort).strip() else subject_key(subject)


def hip_key(subject, visit, side, cohort=None):
    """(subject, visit, side) compared ignoring case, blanks and visit prefixes; with `cohort`, the cohort
    too (the same id in two cohorts is two people: the label table keys such hips by cohort)."""
    key = subject_key(subject), visit_key(visit), normalise_side(side)
    return key if cohort is None else (*key, cohort_key(cohort))


@dataclass(frozen=True)
class LabelFormat:
    """How a label table is laid out. `columns`: osteoloc's name -> the user's column, for the renamed
    ones only (the others keep osteoloc's name); `layout` long (a `side` column, one row per hip) or wide
    (one row per subject and visit, targets named `<target>_right` / `<target>_left`); `sheet`: the Excel
    sheet ("" = the first); `cutoff`: per target (TARGETS order), label = grade > cutoff; `missing`: the
    missing-value markers (lower case); `side_codes`: the user's side codes (lower case) -> right / left;
    `subject_digits`: all-digit subject ids are zero-padded to this many digits (0 = as written)."""

    columns: tuple = ()  # ((osteoloc name, user's column), ...)
    layout: str = "long"
    sheet: str = ""
    cutoff: tuple = (0,) * len(TARGETS)
    missing: frozenset = MISSING_SPELLINGS
    side_codes: tuple = ()  # ((code, side), ...)
    subject_digits: int = 0

    @classmethod
    def from_settings(cls, settings=None):
        """The format from the config's cohort keys (`label_columns`, `labels_layout`, `labels_sheet`,
        `grade_cutoff`, `missing_values`, `side_codes`, `subject_digits`; absent = the long CSV with
        osteoloc's names). Raises ValueError naming the key for an unknown name, a name the layout does not
        have, one column given to two names, or a side code that is no side."""
        settings = settings or {}
        layout = settings.get("labels_layout") or "long"
        if layout not in LABEL_LAYOUTS:
            raise ValueError(f"cohort.labels_layout must be one of {LABEL_LAYOUTS}, got {layout!r}")
        columns = {str(k): str(v).strip() for k, v in (settings.get("label_columns") or {}).items()}
        known = label_names(layout)
        unknown = sorted(set(columns) - set(known))
        if unknown:
            hint = " (a wide table has no side column; name each target per side)" if layout == "wide" else ""
            raise ValueError(f"cohort.label_columns: {unknown} are not osteoloc names of a {layout} label table"
                             f"{hint}; known: {list(known)}")
        users = [v.lower() for v in columns.values()]
        twice = sorted({v for v in users if users.count(v) > 1})
        if twice:
            raise ValueError(f"cohort.label_columns: column(s) {twice} given for more than one osteoloc name")
        given = settings.get("grade_cutoff") or {}
        bad = sorted(set(given) - set(TARGETS))
        if bad:
            raise ValueError(f"cohort.grade_cutoff: {bad} are not targets; known: {list(TARGETS)}")
        cutoff = tuple(int(given.get(t, 0)) for t in TARGETS)
        if not all(0 <= c < MAX_GRADE for c in cutoff):
            raise ValueError(f"cohort.grade_cutoff must lie in 0..{MAX_GRADE - 1} (label = grade > cutoff), "
                             f"got {dict(zip(TARGETS, cutoff))}")
        given_missing = settings.get("missing_values")
        missing = MISSING_SPELLINGS if given_missing is None else frozenset(str(v).strip().lower()
                                                                           for v in given_missing)
        codes = {integer_text(k).lower(): str(v).strip().lower() for k, v in (settings.get("side_codes") or {}).items()}
        wrong = {k: v for k, v in codes.items() if v not in SIDES}
        if wrong:
            raise ValueError(f"cohort.side_codes: every code must map to one of {list(SIDES)}, got {wrong}")
        digits = int(settings.get("subject_digits") or 0)
        if digits < 0:
            raise ValueError(f"cohort.subject_digits must be 0 (ids as written) or a number of digits, got {digits}")
        return cls(columns=tuple(sorted(columns.items())), layout=layout,
                   sheet=str(settings.get("labels_sheet") or ""), cutoff=cutoff, missing=missing,
                   side_codes=tuple(sorted(codes.items())), subject_digits=digits)

    def column(self, name):
        """The user's column for osteoloc's `name`."""
        return dict(self.columns).get(name, name)

    def side(self, value):
        """A side cell as osteoloc's spelling when it is one of `side_codes`, else as written."""
        return dict(self.side_codes).get(integer_text(value).lower(), value)


def label_names(layout):
    """osteoloc's column names of a label table in `layout` (cohort first: the one optional column)."""
    if layout == "wide":
        return ("cohort", "subject", "visit", *(f"{t}{SIDE_SUFFIXES[s]}" for s in SIDES for t in TARGETS))
    return (*KEY_COLUMNS, *TARGETS)


def _read_csv(path, what):
    """A comma-separated UTF-8 table as strings, column names stripped and lower-cased; ValueError naming
    the file when it is not UTF-8 or empty."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # Excel adds a BOM
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: {what} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                         f"{err.start}); save it as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: {what} is empty (no header row)") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _cell_text(value):
    """An Excel cell's value as the text a CSV export would hold (a whole number without `.0`)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sheet_cells(values, formulas):
    """(rows of text, {(row, column): cell name} of formula cells without a saved value) of one sheet:
    `values` loaded with data_only=True (a formula's saved value), `formulas` as written; a merged range
    below the first row gives its first cell's value to every cell in it (what the sheet shows)."""
    grid = [list(row) for row in values.iter_rows(values_only=True)]
    uncomputed = {}
    for row in formulas.iter_rows():
        for cell in row:
            if cell.data_type == "f" and grid[cell.row - 1][cell.column - 1] is None:
                uncomputed[(cell.row - 1, cell.column - 1)] = cell.coordinate
    for merged in values.merged_cells.ranges:
        if merged.min_row == 1:
            continue  # a title over the header row: the header stays as written, refused naming its columns
        first = grid[merged.min_row - 1][merged.min_col - 1]
        for r in range(merged.min_row - 1, min(merged.max_row, len(grid))):
            for c in range(merged.min_col - 1, merged.max_col):
                if c < len(grid[r]):
                    grid[r][c] = first
    return [[_cell_text(v) for v in row] for row in grid], uncomputed


def _read_excel(path, what, sheet):
    """(frame, sheet name, {column: [cell names]}): one sheet (the first when `sheet` is "") of an Excel
    workbook as strings, like _read_csv; formula cells hold their saved value, merged ranges are filled
    (`_sheet_cells`); the third item lists, per column, the formula cells the workbook holds no value for."""
    try:
        book = openpyxl.load_workbook(path, data_only=True)
        names = book.sheetnames
        if sheet and sheet not in names:
            raise LookupError(sheet)
        sheet = sheet or names[0]
        formulas = openpyxl.load_workbook(path, data_only=False)[sheet]
        grid, uncomputed = _sheet_cells(book[sheet], formulas)
    except LookupError:
        raise ValueError(f"{path}: {what} has no sheet {sheet!r} (sheets: {names}); set cohort.labels_sheet") from None
    except Exception as err:  # noqa: BLE001 - a damaged workbook fails in many ways; all mean "unreadable"
        raise ValueError(f"{path}: {what} is not a readable Excel workbook ({type(err).__name__}: {err})") from None
    if not grid:
        raise ValueError(f"{path}: {what} (sheet {sheet!r}) is empty (no header row)")
    width = max(len(row) for row in grid)
    grid = [row + [""] * (width - len(row)) for row in grid]
    header, seen = [], {}
    for i, cell in enumerate(grid[0]):  # named as pandas names them: blank ones by place, repeats numbered
        name = str(cell).strip().lower() or f"unnamed: {i}"
        seen[name] = seen.get(name, -1) + 1
        header.append(f"{name}.{seen[name]}" if seen[name] else name)
    frame = pd.DataFrame(grid[1:], columns=header, dtype=str)
    by_column = {}
    for (row, column), name in sorted(uncomputed.items()):
        if row > 0:
            by_column.setdefault(header[column], []).append(name)
    return frame, sheet, by_column


def _lacks(path, what, frame, missing):
    """The error for `missing` columns: a ';'- or tab-separated header is named as the likely cause."""
    header = ",".join(frame.columns)
    for name, sep in (("';'", ";"), ("tabs", "\t")):
        if len(frame.columns) == 1 and sep in header:
            return ValueError(f"{path}: {what} is separated by {name}, commas expected (header {header!r})")
    return ValueError(f"{path}: {what} lacks columns {missing}")


def read_csv_table(path, what, required):
    """A comma-separated UTF-8 table (`what` names it in messages) as strings, column names stripped and
    lower-cased. Raises ValueError naming the file and the cause: not UTF-8, empty, separated by ';' or
    tabs (what a spreadsheet in some locales writes), or lacking a `required` column."""
    frame = _read_csv(path, what)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _lacks(path, what, frame, missing)
    return frame


def drop_blank_rows(frame, path, what):
    """`frame` (read_csv_table's) without the rows whose every cell is blank (what a spreadsheet leaves after
    the last row), logged with their lines; the index keeps each row's place (line = index + 2)."""
    blank = frame.apply(lambda column: column.str.strip() == "").all(axis=1) if len(frame.columns) else []
    if len(frame) and blank.any():
        lines = (frame.index[blank] + 2).tolist()
        log.info("%s: %d blank %s row(s) ignored (line(s) %s)", path, len(lines), what,
                 ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else ""))
        return frame[~blank]
    return frame


def read_label_frame(path, label_format=None):
    """The label table at `path` (CSV, or .xlsx / .xlsm read with openpyxl) in `label_format` (a
    LabelFormat, the config's cohort settings as a dict, or None = the long CSV with osteoloc's names) as
    the long frame: columns cohort, subject, visit, side and TARGETS as strings, one row per hip in the
    table's order (a wide row gives its right hip, then its left). Raises ValueError naming the file, the
    sheet and each missing column (the user's name and osteoloc's)."""
    fmt = label_format if isinstance(label_format, LabelFormat) else LabelFormat.from_settings(label_format)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise ValueError(f"{path}: label table is an old .xls workbook; save it as .xlsx or UTF-8 CSV")
    excel = suffix in EXCEL_SUFFIXES
    what = "label sheet" if excel else "label CSV"
    uncomputed = {}
    if excel:
        frame, sheet, uncomputed = _read_excel(path, what, fmt.sheet)
        where = f"{path} (sheet {sheet!r})"
    else:
        frame, where = _read_csv(path, what), f"{path}"
    frame = drop_blank_rows(frame, where, "label")
    names = label_names(fmt.layout)
    columns = {name: fmt.column(name).lower() for name in names}
    optional = {"cohort"} - {name for name, _ in fmt.columns}
    missing = [name for name in names if name not in optional and columns[name] not in frame.columns]
    if missing:
        if all(fmt.column(n) == n for n in missing) and len(frame.columns) == 1:
            raise _lacks(where, what, frame, missing)  # a ';'- or tab-separated file
        described = [f"{fmt.column(n)!r} (osteoloc's {n})" if fmt.column(n) != n else repr(n) for n in missing]
        raise ValueError(f"{where}: {what} lacks column(s) {', '.join(described)}; its columns: "
                         f"{list(frame.columns)}; map your own names in cohort.label_columns")
    cells = sorted((cell for name in names for cell in uncomputed.get(columns[name], [])),
                   key=lambda cell: openpyxl.utils.cell.coordinate_to_tuple(cell))  # row by row
    if cells:
        raise ValueError(f"{where}: {len(cells)} formula cell(s) hold no saved value ({', '.join(cells[:8])}"
                         f"{', ...' if len(cells) > 8 else ''}): the workbook was written by a program that does not "
                         "compute formulas; open and save it in a spreadsheet program (Excel, LibreOffice), or export "
                         "the sheet as CSV")
    ids = {name: frame[columns[name]].map(integer_text) for name in ("cohort", "subject", "visit")
           if columns[name] in frame.columns}
    ids["subject"] = ids["subject"].map(lambda subject: pad_subject(subject, fmt.subject_digits))
    frame = frame.assign(**{columns[name]: values for name, values in ids.items()})
    cohort = frame[columns["cohort"]] if columns["cohort"] in frame.columns else pd.Series([""] * len(frame))
    keys = {"cohort": cohort.to_numpy(), "subject": frame[columns["subject"]].to_numpy(),
            "visit": frame[columns["visit"]].to_numpy()}
    if fmt.layout == "long":
        return pd.DataFrame({**keys, "side": frame[columns["side"]].to_numpy(),
                             **{t: frame[columns[t]].to_numpy() for t in TARGETS}})
    per_side = [pd.DataFrame({**keys, "side": side, "order": np.arange(len(frame)) * len(SIDES) + s,
                              **{t: frame[columns[f"{t}{SIDE_SUFFIXES[side]}"]].to_numpy() for t in TARGETS}})
                for s, side in enumerate(SIDES)]
    long = pd.concat(per_side).sort_values("order", kind="stable").drop(columns="order")
    return long.reset_index(drop=True)


@dataclass
class LabelTable:
    """Grades per hip key, plus the rows that could not be used (with reasons)."""

    grades: dict = field(default_factory=dict)  # hip_key -> int8 (4,) in TARGETS order
    cohort: dict = field(default_factory=dict)  # hip_key -> cohort string
    spelled: dict = field(default_factory=dict)  # hip_key -> (subject, visit) as written in the file
    problems: list = field(default_factory=list)  # (subject, visit, side, reason)
    problem_keys: set = field(default_factory=set)
    cutoff: tuple = (0,) * len(TARGETS)  # per target: label = grade > cutoff

    def keys(self):
        return set(self.grades) | self.problem_keys

    def labels(self, grades):
        """Binary labels of `grades` with this table's cut-offs."""
        return grades_to_labels(grades, self.cutoff)

    def key_of(self, subject, visit, side, cohort):
        """The key of a radiograph's hip in this table: with its cohort where the table holds that hip id
        in several cohorts, else without."""
        full = hip_key(subject, visit, side, cohort)
        return full if full in self.grades or full in self.problem_keys else full[:3]


def _side_hint(side, fmt):
    """Why a side cell is no side, with the setting that would accept it."""
    if fmt.side_codes:
        return f"not one of the sides or of cohort.side_codes {dict(fmt.side_codes)}"
    return "set cohort.side_codes to name your codes, e.g. {1: right, 2: left}"


def read_labels(path, label_format=None):
    """Read the label table (`read_label_frame`: CSV or Excel, long or wide, the user's column names)
    into a LabelTable; raises ValueError naming the file when it cannot be read or columns are missing.
    A refused row is in `problems` with its reason (its side as osteoloc spells it where it is one)."""
    fmt = label_format if isinstance(label_format, LabelFormat) else LabelFormat.from_settings(label_format)
    frame = read_label_frame(path, fmt)
    frame["side"] = [fmt.side(side) for side in frame["side"]]
    table = LabelTable(cutoff=fmt.cutoff)
    seen, cohorts = {}, {}
    rows = frame.to_dict(orient="records")
    for row in rows:  # the cohorts each hip id occurs in: a hip id of two cohorts is keyed with its cohort
        try:
            cohorts.setdefault(hip_key(row["subject"], row["visit"], row["side"]), set()).add(
                cohort_key(row.get("cohort", "")))
        except ValueError:
            pass
    for row in rows:
        subject, visit, side = row["subject"], row["visit"], row["side"]
        empty = [name for name in ("subject", "visit") if not str(row[name]).strip()]
        if empty:
            table.problems.append((subject, visit, side, f"label row: no {' and '.join(empty)} (an empty cell, "
                                   "or a merged cell read as blank)"))
            continue
        try:
            key = hip_key(subject, visit, side)
        except ValueError as err:
            table.problems.append((subject, visit, side, f"label row: {err} ({_side_hint(side, fmt)})"))
            continue
        if len(cohorts[key] - {""}) > 1:
            key = hip_key(subject, visit, side, row.get("cohort", ""))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:  # a duplicate row: which grade is right is unknowable, so drop the hip
            table.grades.pop(key, None)
            table.problems.append((subject, visit, key[2], "duplicate label rows for this hip"))
            table.problem_keys.add(key)
            continue
        if seen[key] > 2:
            continue
        try:
            grades = np.array([parse_grade(row[t], fmt.missing) for t in TARGETS], dtype=np.int8)
        except ValueError:
            junk = {t: row[t] for t in TARGETS if _is_junk(row[t], fmt.missing)}
            table.problems.append((subject, visit, key[2], f"junk grade in {junk} (a grade is 0-3; missing-value "
                                   "markers are cohort.missing_values)"))
            table.problem_keys.add(key)
            continue
        table.grades[key] = grades
        table.cohort[key] = str(row.get("cohort", "")).strip()
        table.spelled[key] = (str(subject).strip(), str(visit).strip())
    return table


def _is_junk(value, missing=MISSING_SPELLINGS):
    try:
        parse_grade(value, missing)
    except ValueError:
        return True
    return False


def refused_rows(labels, examples=3):
    """'label table: N row(s) refused: reason (xk); ...' (the `examples` commonest reasons) or "" when none
    was refused: the one summary of a LabelTable's refused rows, for the pre-flight checks' messages."""
    if not labels.problems:
        return ""
    counts = Counter(reason for *_, reason in labels.problems)
    shown = "; ".join(f"{reason} (x{n})" for reason, n in counts.most_common(examples))
    more = f"; {len(counts) - examples} other reason(s)" if len(counts) > examples else ""
    return f"label table: {len(labels.problems)} row(s) refused: {shown}{more}"
