"""Subject-level splits: fractions, seeding, and the refusal of a subject in two splits."""

import pandas as pd
import pytest

from osteoloc.train.splits import check_split, make_split, read_split


def test_split_fractions_and_seed():
    subjects = [f"S{i:03d}" for i in range(100)] * 2  # two hips per subject
    split = make_split(subjects, (0.7, 0.15, 0.15), seed=3)
    assert len(split) == 100 and split["subject"].is_unique
    assert split["split"].value_counts().to_dict() == {"train": 70, "val": 15, "test": 15}
    assert split.equals(make_split(list(reversed(subjects)), (0.7, 0.15, 0.15), seed=3))
    assert not split.equals(make_split(subjects, (0.7, 0.15, 0.15), seed=4))
    with pytest.raises(ValueError, match="summing to 1"):
        make_split(subjects, (0.7, 0.2, 0.2))


def test_check_refuses_a_subject_in_two_splits(tmp_path):
    path = tmp_path / "my_split.csv"
    path.write_text("subject,split\nA,train\nB,val\nA,test\nC,test\nA,train\n")
    with pytest.raises(ValueError, match=r"my_split.csv: 1 subject\(s\) in more than one split.*'A'"):
        check_split(read_split(path), ["A", "B", "C"], source=str(path))


def test_check_refuses_missing_subjects_and_unknown_names(tmp_path):
    split = pd.DataFrame({"subject": ["A", "B"], "split": ["train", "val"]})
    with pytest.raises(ValueError, match="have no split.*'C'"):
        check_split(split, ["A", "B", "C"])
    with pytest.raises(ValueError, match="unknown split name"):
        check_split(split.assign(split=["train", "validation"]), ["A", "B"])
    ok = check_split(pd.concat([split, split]), ["A", "B"])  # exact duplicates are harmless
    assert ok.to_dict("list") == {"subject": ["A", "B"], "split": ["train", "val"]}
    (tmp_path / "bad.csv").write_text("id,fold\nA,1\n")
    with pytest.raises(ValueError, match="bad.csv: split file lacks column"):
        read_split(tmp_path / "bad.csv")


def test_read_split_takes_a_header_or_none_and_any_common_separator(tmp_path):
    expected = {"subject": ["0012", "B"], "split": ["train", "test"]}
    for name, text in [("header.csv", "subject,split\n0012,train\nB, test\n"),
                       ("plain.tsv", "0012\ttrain\nB\ttest\n"), ("spaces.txt", "0012 train\n  B   test\n"),
                       ("extra.csv", "split,subject,note\ntrain,0012,x\ntest,B,\n")]:
        (tmp_path / name).write_text(text)
        assert read_split(tmp_path / name).to_dict("list") == expected, name


def test_a_test_seed_holds_one_test_set_for_every_run_seed():
    """test_seed: the same test subjects for every seed; train and val still differ between seeds; the
    shares are kept and no subject is in two splits."""
    subjects = [f"S{i:03d}" for i in range(200)]
    splits = [make_split(subjects, (0.5, 0.2, 0.3), seed=seed, test_seed=7) for seed in range(3)]
    tests = [set(s.loc[s["split"] == "test", "subject"]) for s in splits]
    trains = [set(s.loc[s["split"] == "train", "subject"]) for s in splits]
    assert tests[0] == tests[1] == tests[2] and len(tests[0]) == 60
    assert trains[0] != trains[1] and all(len(t) == 100 for t in trains)
    assert all(s["subject"].is_unique and len(s) == 200 for s in splits)
    # without test_seed each seed draws its own test set
    assert set(make_split(subjects, (0.5, 0.2, 0.3), seed=1).query("split == 'test'")["subject"]) != tests[0]
