"""Label CSV and manifest: unknown is never 0, junk is flagged, sides and visits are matched across spellings;
unreadable tables and cells are refused naming the file and the cause."""

import numpy as np
import pytest

from osteoloc.io.labels import grades_to_labels, hip_key, parse_grade, read_labels, visit_key
from osteoloc.io.manifest import read_manifest
from osteoloc.names import TARGETS, UNKNOWN


@pytest.mark.parametrize("value", [None, float("nan"), "", "  ", "nan", "NaN", "none", "None", "na", "NA",
                                   "missing", "MISSING"])
def test_every_missing_spelling_is_unknown(value):
    assert parse_grade(value) == UNKNOWN


@pytest.mark.parametrize("value, grade", [("0", 0), ("1", 1), ("2.0", 2), (3, 3), (" 3 ", 3)])
def test_grades(value, grade):
    assert parse_grade(value) == grade


@pytest.mark.parametrize("value", ["4", "-1", "1.5", "x", "grade 2"])
def test_junk_grades_raise(value):
    with pytest.raises(ValueError, match="junk"):
        parse_grade(value)


def test_binary_labels_keep_unknown():
    np.testing.assert_array_equal(grades_to_labels([0, 1, 3, -1]), [0, 1, 1, -1])


def test_visit_prefixes_and_side_spellings_match():
    assert visit_key("V00") == visit_key("T00") == visit_key("00") == visit_key("0")
    assert visit_key("V01") != visit_key("V00")
    assert hip_key(" check-09053", "T00", "L") == hip_key("CHECK-09053", "V00", "left")


def test_read_labels_unknowns_junk_and_duplicates(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "cohort,subject,visit,side,osteo_acet_inf,osteo_acet_sup,osteo_fem_inf,osteo_fem_sup\n"
        "CHECK,CHECK-1,T00,right,0,1,,missing\n"
        "CHECK,CHECK-1,T00,L,NA,none,3,2\n"
        "CHECK,CHECK-2,T00,right,7,0,0,0\n"
        "CHECK,CHECK-3,T00,left,0,0,0,0\n"
        "CHECK,CHECK-3,T00,left,1,0,0,0\n"
        "CHECK,CHECK-4,T00,middle,0,0,0,0\n")
    table = read_labels(path)
    right = table.grades[hip_key("CHECK-1", "T00", "right")]
    # TARGETS order is fem_sup, fem_inf, acet_sup, acet_inf, whatever the CSV's column order
    assert TARGETS == ("osteo_fem_sup", "osteo_fem_inf", "osteo_acet_sup", "osteo_acet_inf")
    np.testing.assert_array_equal(right, [-1, -1, 1, 0])
    np.testing.assert_array_equal(table.grades[hip_key("CHECK-1", "V00", "left")], [2, 3, -1, -1])
    reasons = {(s, side): r for s, _, side, r in table.problems}
    assert "junk" in reasons[("CHECK-2", "right")] and "'7'" in reasons[("CHECK-2", "right")]
    assert "duplicate" in reasons[("CHECK-3", "left")]
    assert "side" in reasons[("CHECK-4", "middle")]
    assert hip_key("CHECK-2", "T00", "right") not in table.grades
    assert hip_key("CHECK-3", "T00", "left") not in table.grades


def test_missing_column_names_the_file(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("subject,visit,side,osteo_fem_sup\nA,V00,left,0\n")
    with pytest.raises(ValueError, match="short.csv.*osteo_fem_inf"):
        read_labels(path)


HEADER = "cohort,subject,visit,side,osteo_acet_inf,osteo_acet_sup,osteo_fem_inf,osteo_fem_sup"


@pytest.mark.parametrize("content, cause", [
    ((HEADER + "\nCHECK,Jürgen,T00,left,0,1,0,0\n").encode("latin-1"), r"not UTF-8 text \(byte 0xfc"),
    (b"", "empty"),
    ((HEADER.replace(",", ";") + "\nCHECK;A;T00;left;0;1;0;0\n").encode(), "separated by ';'"),
    ((HEADER.replace(",", "\t") + "\nCHECK\tA\tT00\tleft\t0\t1\t0\t0\n").encode(), "separated by tabs"),
])
def test_unreadable_label_files_name_the_file_and_cause(tmp_path, content, cause):
    path = tmp_path / "grades.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"grades.csv: label CSV .*{cause}"):
        read_labels(path)


MANIFEST = "image_path,subject,visit,cohort,points_path,spacing,points_unit\n"


@pytest.mark.parametrize("cell, cause", [("0,6669", "comma as decimal separator"), ("0.65 mm", "unit"),
                                         ("-1", "not a positive number")])
def test_manifest_spacing_that_is_not_a_plain_number_names_line_and_cause(tmp_path, cell, cause):
    path = tmp_path / "manifest.csv"
    path.write_text(MANIFEST + f'a.dcm,A,T00,CHECK,a.pts,0.7,\nb.dcm,B,T00,CHECK,b.pts,"{cell}",mm\n')
    with pytest.raises(ValueError, match=f"manifest.csv: line 3: spacing '{cell}' .*{cause}"):
        read_manifest(path)


def test_manifest_points_unit_and_missing_spacing(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text(MANIFEST + "a.dcm,A,T00,CHECK,a.pts,,MM\nb.dcm,B,T00,CHECK,b.pts,0.7,\n")
    frame = read_manifest(path)
    assert list(frame["points_unit"]) == ["mm", ""]
    assert np.isnan(frame["spacing"][0]) and frame["spacing"][1] == 0.7
    assert frame["image_path"][0] == str(tmp_path.resolve() / "a.dcm")
    path.write_text(MANIFEST + "a.dcm,A,T00,CHECK,a.pts,,inch\n")
    with pytest.raises(ValueError, match="line 2: points_unit 'inch'"):
        read_manifest(path)


def test_manifest_separated_by_semicolons_names_the_file(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text(MANIFEST.replace(",", ";") + "a.dcm;A;T00;CHECK;a.pts;0,7;\n")
    with pytest.raises(ValueError, match="manifest.csv: manifest is separated by ';'"):
        read_manifest(path)
