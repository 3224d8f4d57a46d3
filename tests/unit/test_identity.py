"""Who a radiograph belongs to: subject ids compared ignoring case and blanks everywhere (labels, duplicates,
splits) and stored in one spelling with a note; the cohort is part of the identity (the same id in two
cohorts is two people); blank spreadsheet rows of the manifest and the labels are ignored, not excluded."""

import logging

import pandas as pd
import pytest
from helpers import PREPROCESS_SETTINGS as SETTINGS

from osteoloc.io.labels import read_labels
from osteoloc.io.manifest import read_manifest
from helpers import load_study
from osteoloc.preprocess.stages import preprocess_study
from osteoloc.train.splits import check_split, make_split
from helpers import make_cohort

SHAPE, SPACING = (300, 440), 0.4


def _run(tmp_path, manifest, labels):
    preprocess_study(manifest, labels, tmp_path / "study.h5", tmp_path / "exclusions.csv",
                     **dict(SETTINGS, max_excluded_fraction=1.0))
    return (load_study(tmp_path / "study.h5", images=False),
            pd.read_csv(tmp_path / "exclusions.csv", keep_default_na=False))


@pytest.fixture
def cohort(tmp_path):
    manifest, labels = make_cohort(tmp_path, 4, shape=SHAPE, spacing=SPACING)
    return tmp_path, manifest, labels, pd.read_csv(manifest), pd.read_csv(labels)


def test_one_person_spelled_two_ways_is_stored_under_one_spelling_with_a_note(cohort):
    folder, manifest, labels, rows, grades = cohort
    # subject 1's second visit, spelled in lower case with a stray blank (a different radiograph: subject 2's)
    second = dict(rows.iloc[2], subject=" " + rows.iloc[1].subject.lower(), visit="T01")
    rows = pd.concat([rows.iloc[[0, 1, 3]], pd.DataFrame([second])], ignore_index=True)
    rows.to_csv(manifest, index=False)
    extra = grades[grades.subject == rows.iloc[1].subject].assign(subject=rows.iloc[1].subject.lower(),
                                                                  visit="T01")
    pd.concat([grades, extra]).to_csv(labels, index=False)
    study, table = _run(folder, manifest, labels)
    spelled = rows.iloc[1].subject
    assert sorted(set(study.meta.subject)) == sorted({rows.iloc[0].subject, spelled, rows.iloc[2].subject})
    assert (study.meta.subject == spelled).sum() == 4  # both visits, both hips, one spelling
    note = table[table.stage == "identity"]
    assert len(note) == 1 and note.iloc[0].side == "" and f"stored as {spelled!r}" in note.iloc[0].reason, table
    split = make_split(study.meta.subject, seed=0)
    assert split.subject.str.upper().is_unique  # one person, one split


def test_a_split_file_spelling_a_subject_otherwise_still_matches_it():
    split = pd.DataFrame({"subject": ["oai-same ", "OAI-2"], "split": ["train", "test"]})
    checked = check_split(split, ["OAI-SAME", "OAI-2"])
    assert dict(zip(checked.subject, checked.split)) == {"OAI-SAME": "train", "OAI-2": "test"}
    with pytest.raises(ValueError, match="more than one split"):
        check_split(pd.concat([split, pd.DataFrame({"subject": ["OAI-SAME"], "split": ["test"]})]),
                    ["OAI-SAME", "OAI-2"])


def test_the_same_id_in_two_cohorts_is_two_people(cohort):
    folder, manifest, labels, rows, grades = cohort
    rows.loc[1, "subject"] = rows.loc[0, "subject"]
    rows.loc[1, "cohort"] = "OAI"
    rows.to_csv(manifest, index=False)
    grades.loc[grades.subject == rows.loc[1, "subject"], "cohort"] = "CHECK"
    moved = grades.subject == grades.subject.unique()[1]
    grades.loc[moved, ["cohort", "subject"]] = ["OAI", rows.loc[0, "subject"]]
    grades.to_csv(labels, index=False)
    study, table = _run(folder, manifest, labels)
    assert len(study) == 8, table
    mine = study.meta[study.meta.subject == rows.loc[0, "subject"]]
    assert sorted(mine.cohort) == ["CHECK", "CHECK", "OAI", "OAI"]
    assert table.empty, table


def test_blank_trailing_rows_are_ignored_with_a_log_line(cohort, caplog):
    folder, manifest, labels, rows, grades = cohort
    manifest.write_text(manifest.read_text() + ",,,,\n" * 3)
    labels.write_text(labels.read_text() + ",,,,,,,\n" * 2)
    with caplog.at_level(logging.INFO):
        assert len(read_manifest(manifest)) == 4
        assert read_labels(labels).problems == []
    assert "3 blank manifest row(s) ignored (line(s) 6, 7, 8)" in caplog.text
    assert "2 blank label row(s) ignored" in caplog.text
    study, table = _run(folder, manifest, labels)
    assert len(study) == 8 and table.empty, table


def test_a_manifest_error_after_a_blank_row_names_its_own_line(cohort):
    folder, manifest, labels, rows, grades = cohort
    frame = pd.read_csv(manifest).assign(spacing="")
    frame.loc[2, "spacing"] = "0.4mm"
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(2, ",,,,,")  # line 3 blank: the bad spacing of the third row is on line 5
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"manifest.csv: line 5: spacing '0.4mm'"):
        read_manifest(manifest)

