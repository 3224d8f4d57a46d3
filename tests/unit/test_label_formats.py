"""Label tables as users keep them: a wide Excel sheet with the user's own column names reads as the long CSV
does (the same frame, the same grades, the same study HDF5); missing columns name the file, the sheet and
both names; the grade cut-off per target sets the binary labels."""

from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import make_cohort, write_labels
from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.io.labels import LabelFormat, grades_to_labels, label_names, read_label_frame, read_labels
from osteoloc.io.study_h5 import StudyFile
from osteoloc.names import SIDES, TARGETS
from osteoloc.preprocess.stages import preprocess_study

ROOT = Path(__file__).resolve().parents[2]
# The user's names: osteoloc's name -> theirs (targets per side, OAI-style abbreviations)
USER_NAMES = {"cohort": "Study", "subject": "PatID", "visit": "Visit",
              **{f"{t}_{side}": f"OST_{t.split('_')[1][0].upper()}{t.split('_')[2][0].upper()}_{side[0].upper()}"
                 for t in TARGETS for side in SIDES}}
WIDE = {"labels_layout": "wide", "labels_sheet": "grades", "label_columns": USER_NAMES}


def long_rows():
    """Hips of three subjects with every cell spelling: grades, missing spellings, a junk grade."""
    return [("CHECK", "CHECK-1", "T00", "right", 0, 1, 2, 3), ("CHECK", "CHECK-1", "T00", "left", "", "NA", 3, 0),
            ("OAI", "OAI-9000099", "V00", "right", 1, 1, 0, 0), ("OAI", "OAI-9000099", "V00", "left", 0, "x", 0, 2),
            ("OAI", "OAI-9000099", "V01", "right", 2, 0, 0, 0), ("OAI", "OAI-9000099", "V01", "left", 0, 0, 1, 0)]


def to_wide_excel(long_path, path, first_sheet_junk=True):
    """The long CSV as the usual spreadsheet: one row per subject and visit, the user's column names, on a
    sheet named `grades` (after an unrelated first sheet)."""
    long = pd.read_csv(long_path, dtype=str, keep_default_na=False)
    wide = long.pivot(index=["cohort", "subject", "visit"], columns="side", values=list(TARGETS))
    wide.columns = [USER_NAMES[f"{t}_{side}"] for t, side in wide.columns]
    wide = wide.reset_index().rename(columns={k: USER_NAMES[k] for k in ("cohort", "subject", "visit")})
    with pd.ExcelWriter(path, engine="openpyxl") as book:
        if first_sheet_junk:
            pd.DataFrame({"note": ["exported from the study database"]}).to_excel(book, sheet_name="about", index=False)
        wide.to_excel(book, sheet_name="grades", index=False)
    return path


def canonical(frame):
    return frame.sort_values(["subject", "visit", "side"]).reset_index(drop=True)


def test_wide_excel_with_own_names_reads_as_the_long_csv(tmp_path):
    long_path = write_labels(tmp_path / "labels.csv", long_rows())
    excel = to_wide_excel(long_path, tmp_path / "grades.xlsx")
    pd.testing.assert_frame_equal(canonical(read_label_frame(excel, WIDE)), canonical(read_label_frame(long_path)))
    ours, theirs = read_labels(excel, WIDE), read_labels(long_path)
    assert ours.grades.keys() == theirs.grades.keys() and len(ours.grades) == 5
    for key in theirs.grades:
        np.testing.assert_array_equal(ours.grades[key], theirs.grades[key])
    assert ours.cohort == theirs.cohort and ours.spelled == theirs.spelled
    assert sorted(ours.problems) == sorted(theirs.problems) and "junk" in ours.problems[0][3]


def test_a_long_table_under_its_own_names(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"ID": ["A"], "Time": ["V00"], "Hip": ["R"], "FS": ["2"], "FI": ["0"], "AS": [""],
                  "AI": ["1"]}).to_csv(path, index=False)
    names = {"subject": "id", "visit": "TIME", "side": "Hip", "osteo_fem_sup": "FS", "osteo_fem_inf": "FI",
             "osteo_acet_sup": "AS", "osteo_acet_inf": "AI"}
    table = read_labels(path, {"label_columns": names})
    np.testing.assert_array_equal(list(table.grades.values())[0], [2, 0, -1, 1])
    assert list(table.cohort.values()) == [""]  # no cohort column: optional unless mapped


def test_missing_column_names_file_sheet_and_both_names(tmp_path):
    long_path = write_labels(tmp_path / "labels.csv", long_rows())
    excel = to_wide_excel(long_path, tmp_path / "grades.xlsx")
    wrong = {**WIDE, "label_columns": {**USER_NAMES, "osteo_acet_inf_left": "OST_AI_LEFT"}}
    with pytest.raises(ValueError, match=r"grades.xlsx \(sheet 'grades'\).*'OST_AI_LEFT' \(osteoloc's osteo_acet_inf_left\)"):
        read_labels(excel, wrong)
    with pytest.raises(ValueError, match=r"no sheet 'Grades'.*\['about', 'grades'\]"):
        read_labels(excel, {**WIDE, "labels_sheet": "Grades"})
    with pytest.raises(ValueError, match=r"sheet 'about'.*lacks column"):  # the first sheet when none is named
        read_labels(excel, {**WIDE, "labels_sheet": ""})
    with pytest.raises(ValueError, match="cohort.label_columns.*'side'.*no side column"):
        LabelFormat.from_settings({"labels_layout": "wide", "label_columns": {"side": "Hip"}})
    with pytest.raises(ValueError, match="more than one"):
        LabelFormat.from_settings({"label_columns": {"subject": "ID", "visit": "id"}})
    (tmp_path / "old.xls").write_bytes(b"")
    with pytest.raises(ValueError, match="old.xls.*save it as .xlsx"):
        read_labels(tmp_path / "old.xls")


def test_grade_cutoff_per_target(tmp_path):
    long_path = write_labels(tmp_path / "labels.csv", long_rows())
    table = read_labels(long_path, {"grade_cutoff": {"osteo_fem_sup": 1, "osteo_acet_inf": 2}})
    assert table.cutoff == (1, 0, 0, 2)
    np.testing.assert_array_equal(table.labels(np.array([1, 1, 1, 3], np.int8)), [0, 1, 1, 1])
    np.testing.assert_array_equal(table.labels(np.array([2, -1, 0, 2], np.int8)), [1, -1, 0, 0])
    np.testing.assert_array_equal(grades_to_labels([[0, 1, 2, 3]], [0, 1, 2, 0]), [[0, 0, 0, 1]])
    with pytest.raises(ValueError, match="grade_cutoff"):
        LabelFormat.from_settings({"grade_cutoff": {"osteo_fem_sup": 3}})


def test_wide_excel_gives_the_same_study_grades(tmp_path):
    manifest, long_path = make_cohort(tmp_path / "cohort", 3, seed=4)
    excel = tmp_path / "grades.xlsx"
    frame = pd.read_csv(long_path, dtype=str, keep_default_na=False)
    frame.loc[0, "osteo_fem_sup"] = ""  # an unknown grade on the way through
    frame.loc[1, "osteo_fem_sup"] = "1"  # a grade the cut-off below turns negative
    frame.to_csv(long_path, index=False)
    to_wide_excel(long_path, excel)
    settings = dict(crop_size=64, spacing_mm=1.0, groups=DEFAULT_GROUPS, max_excluded_fraction=0.5)
    studies = {}
    for name, labels, label_format in (("long", long_path, None), ("wide", excel, WIDE),
                                       ("cutoff", excel, {**WIDE, "grade_cutoff": {"osteo_fem_sup": 1}})):
        study = tmp_path / f"{name}.h5"
        assert preprocess_study(manifest, labels, study, tmp_path / f"{name}.csv", label_format=label_format,
                                **settings) == 6
        with StudyFile(study) as f:
            batch = f.read(["grades", "labels", "subject", "side"])
            studies[name] = {field: getattr(batch, field) for field in ("grades", "labels", "subject", "side")}
    long, wide, cutoff = studies["long"], studies["wide"], studies["cutoff"]
    for name in long:
        np.testing.assert_array_equal(wide[name], long[name])
    assert (long["grades"] == -1).any() and (long["grades"] > 0).any()
    np.testing.assert_array_equal(cutoff["grades"], long["grades"])
    expected = long["labels"].copy()
    expected[:, 0] = np.where(long["grades"][:, 0] < 0, -1, long["grades"][:, 0] > 1)
    np.testing.assert_array_equal(cutoff["labels"], expected)
    assert (cutoff["labels"][:, 0] != long["labels"][:, 0]).any()


def test_schema_defaults_are_the_readers_and_unknown_names_are_refused():
    spec = yaml.safe_load((ROOT / "workflow" / "schemas" / "cohort.schema.yaml").read_text())
    props = spec["properties"]
    default = LabelFormat()
    assert (props["labels_layout"]["default"], props["labels_sheet"]["default"]) == (default.layout, default.sheet)
    assert tuple(props["grade_cutoff"]["properties"][t]["default"] for t in TARGETS) == default.cutoff
    assert set(props["label_columns"]["propertyNames"]["enum"]) == set(label_names("long")) | set(label_names("wide"))
    jsonschema.validate({"label_columns": {"osteo_fem_sup_right": "OST_FS_R"}}, spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"label_columns": {"fem_sup_right": "OST_FS_R"}}, spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"grade_cutoff": {"osteo_fem_sup": 3}}, spec)
