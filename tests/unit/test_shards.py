"""Sharded preprocessing (osteoloc.preprocess.shards): the study file and the exclusions table are the same
whatever the shard size, duplicate radiographs are judged over the whole cohort, the table survives a
refused excluded share. The workflow side (rules, reruns) is in test_reruns.py and test_preprocess.py."""

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from osteoloc.io.group_h5 import export_group_h5
from helpers import PREPROCESS_SETTINGS as SETTINGS
from helpers import RULE_SETTINGS, bad_cohort, load_study, run_sharded
from osteoloc.preprocess.exclusions import TooManyExclusions
from osteoloc.preprocess.stages import import_group_study, preprocess_exclusions, preprocess_gather, preprocess_study
from helpers import write_labels


def _with_duplicates(tmp_path):
    """The bad cohort plus the two duplicate cases: a copy-paste manifest row (the same file under another
    subject id) and a copy of a file under another name and subject; both labelled."""
    manifest, labels, _ = bad_cohort(tmp_path)
    table = pd.read_csv(manifest, keep_default_na=False)
    first, third = table.iloc[0], table.iloc[2]
    shutil.copy(tmp_path / third.image_path, tmp_path / "copied.dcm")
    shutil.copy(tmp_path / third.points_path, tmp_path / "copied.pts")
    extra = [dict(first, subject="S-pasted"), dict(third, subject="S-copied", image_path="copied.dcm",
                                                   points_path="copied.pts")]
    pd.concat([table, pd.DataFrame(extra)], ignore_index=True).to_csv(manifest, index=False)
    grades = pd.read_csv(labels, keep_default_na=False)
    rows = [tuple(r) for r in grades.itertuples(index=False)]
    rows += [("CHECK", s, "T00", side, 1, 0, 1, 0) for s in ("S-pasted", "S-copied") for side in ("right", "left")]
    write_labels(labels, rows)
    return manifest, labels, first, third


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dups")
    manifest, labels, first, third = _with_duplicates(tmp_path)
    whole = tmp_path / "whole"
    whole.mkdir()
    preprocess_study(manifest, labels, whole / "study.h5", whole / "exclusions.csv", **SETTINGS)
    return dict(dir=tmp_path, manifest=manifest, labels=labels, first=first, third=third, whole=whole)


def _sharded(cohort, shard_size, out):
    return run_sharded({"manifest": cohort["manifest"], "labels": cohort["labels"]}, shard_size, out)


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, (obj[()], obj.chunks, obj.dtype))
                      if isinstance(obj, h5py.Dataset) else None)
        attrs = {key: str(value) for key, value in h5.attrs.items()}
    return out, attrs


@pytest.mark.parametrize("shard_size", [1, 4, 7, 100])
def test_study_and_exclusions_identical_whatever_the_shard_size(cohort, shard_size, tmp_path):
    _sharded(cohort, shard_size, tmp_path)
    ours, our_attrs = _datasets(tmp_path / "study.h5")
    whole, whole_attrs = _datasets(cohort["whole"] / "study.h5")
    assert our_attrs == whole_attrs
    assert sorted(ours) == sorted(whole)
    for name, (values, chunks, dtype) in whole.items():
        assert ours[name][1:] == (chunks, dtype), name
        assert np.array_equal(ours[name][0], values, equal_nan=values.dtype.kind == "f"), name
    assert len(whole["images"][0]) == 8 * 2 + 3 + 2  # the bad cohort's kept hips; no duplicate among them
    assert (tmp_path / "exclusions.csv").read_text() == (cohort["whole"] / "exclusions.csv").read_text()


def test_a_copy_paste_manifest_row_is_excluded_naming_the_kept_file(cohort):
    table = pd.read_csv(cohort["whole"] / "exclusions.csv", keep_default_na=False)
    rows = table[table.subject == "S-pasted"]
    first = cohort["first"]
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    assert (row.stage, row.side, row.file) == ("dicom", "", first.image_path)
    assert row.reason.startswith(f"same pixel data as {first.image_path} (subject {first.subject}, ")
    study = load_study(cohort["whole"] / "study.h5", images=False)
    assert "S-pasted" not in set(study.meta.subject)
    assert (study.meta.subject == first.subject).sum() == 2  # the first one is kept, both hips


def test_a_copied_file_under_another_name_is_excluded_naming_the_kept_file(cohort):
    table = pd.read_csv(cohort["whole"] / "exclusions.csv", keep_default_na=False)
    rows = table[table.subject == "S-copied"]
    third = cohort["third"]
    assert list(zip(rows.stage, rows.file)) == [("dicom", "copied.dcm")]
    assert f"same pixel data as {third.image_path} (subject {third.subject}" in rows.iloc[0].reason
    study = load_study(cohort["whole"] / "study.h5", images=False)
    assert "S-copied" not in set(study.meta.subject) and third.subject in set(study.meta.subject)
    assert len(study) == 8 * 2 + 3 + 2  # the bad cohort's kept hips: the duplicates added no row


def test_gather_refuses_missing_or_stale_shards(cohort, tmp_path):
    dirs = _sharded(cohort, 5, tmp_path)
    inputs = {"manifest": cohort["manifest"], "labels": cohort["labels"]}
    with pytest.raises(ValueError, match=r"unit\(s\) of the cohort in no shard"):
        preprocess_exclusions("manifest", inputs, RULE_SETTINGS, dirs[:1] + dirs[2:], tmp_path / "x.csv")
    table = pd.read_csv(cohort["manifest"], keep_default_na=False)
    shorter = {"manifest": cohort["dir"] / "shorter.csv", "labels": cohort["labels"]}  # paths relative to it
    table.iloc[:-1].to_csv(shorter["manifest"], index=False)
    with pytest.raises(ValueError, match=r"unit\(s\) no longer in the cohort"):
        preprocess_gather("manifest", shorter, RULE_SETTINGS, dirs, tmp_path / "x.h5")


def test_the_exclusions_table_survives_a_refused_excluded_share(cohort, tmp_path):
    dirs = _sharded(cohort, 6, tmp_path / "run")
    inputs = {"manifest": cohort["manifest"], "labels": cohort["labels"]}
    preprocess_exclusions("manifest", inputs, RULE_SETTINGS, dirs, tmp_path / "kept.csv")
    with pytest.raises(TooManyExclusions, match="max_excluded_fraction"):
        preprocess_gather("manifest", inputs, dict(RULE_SETTINGS, max_excluded_fraction=0.1), dirs,
                          tmp_path / "refused.h5")
    assert not (tmp_path / "refused.h5").exists()
    table = pd.read_csv(tmp_path / "kept.csv", keep_default_na=False)
    assert {"S-pasted", "S-copied", "S-trunc", "S-ghost"} <= set(table.subject)
    assert (table.reason.str.len() > 0).all()


def test_the_group_import_sharded_equals_the_one_process_import(processed, tmp_path):
    export_group_h5(load_study(processed["study"]), tmp_path / "group.h5")
    settings = dict(RULE_SETTINGS, crop_size=80, spacing_mm=0.8)
    inputs = {"group_hdf5": tmp_path / "group.h5", "points_dir": processed["dir"], "labels": processed["labels"]}
    dirs = run_sharded(inputs, 3, tmp_path / "sharded", settings, kind="group_hdf5")
    assert len(dirs) > 1
    import_group_study(tmp_path / "group.h5", processed["dir"], processed["labels"], tmp_path / "whole.h5",
                       tmp_path / "whole.csv", groups=SETTINGS["groups"], max_excluded_fraction=0.9,
                       spacing_mm=0.8, crop_size=80)
    ours, whole = _datasets(tmp_path / "sharded" / "study.h5"), _datasets(tmp_path / "whole.h5")
    assert ours[1] == whole[1] and sorted(ours[0]) == sorted(whole[0])
    for name, (values, _, _) in whole[0].items():
        assert np.array_equal(ours[0][name][0], values, equal_nan=values.dtype.kind == "f"), name
    assert (tmp_path / "sharded" / "exclusions.csv").read_text() == (tmp_path / "whole.csv").read_text()
