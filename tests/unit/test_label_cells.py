"""Label cells as spreadsheets and statistics packages hold them, on the phantom's label table: formula cells
use their saved value (and fail naming the cells when the workbook has none), the `.` of SAS / Stata / SPSS
makes one grade unknown and keeps the hip, merged subject and visit cells reach every row of their range,
ids from a float column lose their `.0`, zero-padding and side codes are settings."""

import re
import zipfile
from pathlib import Path

import jsonschema
import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from osteoloc.io.labels import MISSING_VALUES, LabelFormat, hip_key, read_labels
from osteoloc.names import TARGETS, UNKNOWN

ROOT = Path(__file__).resolve().parents[2]
PHANTOM = {"subjects": 6, "seed": 5, "broken_fraction": 0, "missing_fraction": 0, "short_side_fraction": 0,
           "spacing_mm": [1.0, 1.0], "dicom": {"transfer_syntax": {"explicit": 1, "rle": 0, "jpeg2000": 0}}}


@pytest.fixture(scope="module")
def phantom(phantom_cohort):
    return phantom_cohort(PHANTOM)  # tests/conftest.py: one per config and session


@pytest.fixture
def labels(phantom):
    """The phantom's long label table (12 hips, every grade known) as strings."""
    return pd.read_csv(phantom / "labels.csv", dtype=str, keep_default_na=False)


def write_sheet(path, frame, formulas=None, merged=(), cached=False):
    """`frame` as the first sheet of an .xlsx written by a script (openpyxl: no formula is computed);
    `formulas` {(row, column name): "=..."} replaces those cells; `merged` cell ranges; `cached` writes
    each formula's value into the file as a spreadsheet program saves it."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        sheet.append([int(v) if str(v).isdigit() else v for v in row])
    for (row, column), formula in (formulas or {}).items():
        sheet.cell(row=row + 2, column=list(frame.columns).index(column) + 1, value=formula)
    for cells in merged:
        sheet.merge_cells(cells)
    book.save(path)
    if cached:  # what Excel or LibreOffice writes on saving: <f>1+1</f><v>2</v>
        with zipfile.ZipFile(path) as archive:
            parts = {name: archive.read(name) for name in archive.namelist()}
        name = "xl/worksheets/sheet1.xml"
        parts[name] = re.sub(rb"<f>([0-9+]+)</f><v ?/>",
                             lambda m: b"<f>%s</f><v>%d</v>" % (m.group(1), eval(m.group(1))), parts[name])
        with zipfile.ZipFile(path, "w") as archive:
            for part, data in parts.items():
                archive.writestr(part, data)
    return path


def grades_of(table):
    return {key[:3]: tuple(int(g) for g in grades) for key, grades in table.grades.items()}


def test_formula_cells_use_the_saved_value_and_fail_without_one(labels, tmp_path):
    truth = grades_of(read_labels(write_sheet(tmp_path / "plain.xlsx", labels)))
    formulas = {(i, t): f"={labels.loc[i, t]}+0" for i in range(len(labels)) for t in TARGETS}
    saved = write_sheet(tmp_path / "saved.xlsx", labels, formulas, cached=True)
    assert grades_of(read_labels(saved)) == truth and len(truth) == 12
    scripted = write_sheet(tmp_path / "scripted.xlsx", labels, formulas)
    with pytest.raises(ValueError, match=r"scripted.xlsx \(sheet 'Sheet'\): 48 formula cell\(s\) hold no saved "
                                         r"value \(E2, F2, .*open and save it in a spreadsheet program.*export"):
        read_labels(scripted)


def test_a_formula_without_value_outside_the_read_columns_is_no_problem(labels, tmp_path):
    frame = labels.assign(note="")
    path = write_sheet(tmp_path / "note.xlsx", frame, {(0, "note"): "=1+1"})
    assert len(read_labels(path).grades) == 12


@pytest.mark.parametrize("marker", [".", " . ", "#N/A", "-", "NA"])
def test_a_missing_value_marker_makes_one_grade_unknown_and_keeps_the_hip(labels, tmp_path, marker):
    labels.loc[::2, "osteo_fem_sup"] = marker
    labels.to_csv(tmp_path / "labels.csv", index=False)
    table = read_labels(tmp_path / "labels.csv")
    assert len(table.grades) == 12 and not table.problems
    fem_sup = [grades[TARGETS.index("osteo_fem_sup")] for grades in table.grades.values()]
    assert fem_sup[::2] == [UNKNOWN] * 6 and UNKNOWN not in fem_sup[1::2]


def test_missing_values_are_a_setting_whose_default_the_schema_holds(labels, tmp_path):
    labels.loc[0, "osteo_fem_sup"] = "9"  # the user's code for "not assessable"
    labels.to_csv(tmp_path / "labels.csv", index=False)
    assert "junk grade" in read_labels(tmp_path / "labels.csv").problems[0][3]
    table = read_labels(tmp_path / "labels.csv", {"missing_values": ["", "9"]})
    assert len(table.grades) == 12 and not table.problems
    spec = yaml.safe_load((ROOT / "workflow" / "schemas" / "cohort.schema.yaml").read_text())["properties"]
    assert tuple(spec["missing_values"]["default"]) == MISSING_VALUES
    assert LabelFormat.from_settings({"missing_values": spec["missing_values"]["default"]}) == LabelFormat()
    assert (spec["subject_digits"]["default"], spec["side_codes"]["default"]) == (0, {})


def test_merged_subject_and_visit_cells_reach_both_side_rows(labels, tmp_path):
    # the long sheet as people lay it out: subject and visit written once per subject, over its two side rows
    merged = [f"{column}{row}:{column}{row + 1}" for row in range(2, 2 + len(labels), 2) for column in "ABC"]
    blanked = labels.copy()
    blanked.loc[1::2, ["cohort", "subject", "visit"]] = None
    path = write_sheet(tmp_path / "merged.xlsx", blanked, merged=merged)
    table = read_labels(path)
    assert grades_of(table) == grades_of(read_labels(write_sheet(tmp_path / "plain.xlsx", labels)))
    assert not table.problems


def test_a_blank_subject_is_refused_as_such_not_as_a_duplicate(labels, tmp_path):
    labels.loc[[1, 3], "subject"] = ""
    labels.to_csv(tmp_path / "labels.csv", index=False)
    table = read_labels(tmp_path / "labels.csv")
    reasons = [reason for *_, reason in table.problems]
    assert reasons == ["label row: no subject (an empty cell, or a merged cell read as blank)"] * 2
    assert len(table.grades) == 10


def test_ids_from_a_float_column_read_as_their_integer_text(labels, tmp_path):
    numbers = {s: str(1000 + i) for i, s in enumerate(dict.fromkeys(labels["subject"]))}
    labels = labels.assign(subject=labels["subject"].map(numbers))
    exported = labels.assign(subject=labels["subject"] + ".0", visit=labels["visit"].str[1:].astype(int).astype(float))
    exported.to_csv(tmp_path / "floats.csv", index=False)
    assert exported["visit"].astype(str).iloc[0] == "0.0"
    table = read_labels(tmp_path / "floats.csv")
    assert {key[0] for key in table.grades} == set(numbers.values()) and len(table.grades) == 12
    assert table.spelled[hip_key("1000", "V00", "right")] == ("1000", "0")


def test_subject_digits_pads_ids_a_spreadsheet_stripped(labels, tmp_path):
    numbers = {s: f"{1000 + i:06d}" for i, s in enumerate(dict.fromkeys(labels["subject"]))}
    labels.assign(subject=labels["subject"].map(numbers)).to_csv(tmp_path / "labels.csv", index=False)
    path = write_sheet(tmp_path / "typed.xlsx", pd.read_csv(tmp_path / "labels.csv", dtype=str))  # 1000, 1001, ...
    assert {key[0] for key in read_labels(path).grades} == {str(int(n)) for n in numbers.values()}
    assert {key[0] for key in read_labels(path, {"subject_digits": 6}).grades} == set(numbers.values())


def test_side_codes_are_a_setting_and_a_refused_side_says_so(labels, tmp_path):
    labels = labels.assign(side=labels["side"].map({"right": "1", "left": "2"}))
    labels.to_csv(tmp_path / "labels.csv", index=False)
    refused = read_labels(tmp_path / "labels.csv")
    assert not refused.grades and len(refused.problems) == 12
    hint = "unknown side '1' (set cohort.side_codes to name your codes, e.g. {1: right, 2: left})"
    assert hint in refused.problems[0][3]
    coded = read_labels(tmp_path / "labels.csv", {"side_codes": {1: "right", 2: "left"}})
    assert len(coded.grades) == 12 and {key[2] for key in coded.grades} == {"right", "left"}
    with pytest.raises(ValueError, match="cohort.side_codes"):
        LabelFormat.from_settings({"side_codes": {"1": "middle"}})
    spec = yaml.safe_load((ROOT / "workflow" / "schemas" / "cohort.schema.yaml").read_text())
    jsonschema.validate({"side_codes": {"1": "right", "2": "left"}}, spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"side_codes": {"1": "middle"}}, spec)
    floats = read_labels(tmp_path / "labels.csv", {"side_codes": {"1.0": "right", "2": "left"}})
    np.testing.assert_array_equal(sorted(coded.grades), sorted(floats.grades))
