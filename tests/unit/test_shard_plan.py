"""The shard plan (osteoloc.preprocess.shards): a radiograph's shard follows from its identity, never its row,
so appending, inserting or deleting one changes its own shard's digest only; file names with any character
survive the plan; a shard's digest follows its files' content, not their modification times, and its hips'
expert reference rows, not other hips' ones."""

import os
import shutil
import time

import pandas as pd
import pytest

from osteoloc.cohort.sharding import hashed_shard_count, shard_of, shard_units
from osteoloc.cohort.stages import write_bonefinder_plan
from osteoloc.io.shard_folder import plan_shards, read_plan, read_shard_plan, write_plan
from osteoloc.preprocess.shards import ContentDigests, make_plan, shard_digests
from osteoloc.preprocess.stages import plan_units, write_shard_plan


def _manifest(folder, subjects, name="manifest.csv"):
    rows = [dict(image_path=f"{s}.dcm", subject=s, visit="V00", cohort="OAI", points_path=f"{s}.pts")
            for s in subjects]
    for row in rows:
        for key in ("image_path", "points_path"):
            (folder / row[key]).write_bytes(row[key].encode())
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _plan(folder, subjects, shard_size=4):
    return make_plan(plan_units("manifest", {"manifest": _manifest(folder, subjects)}), shard_size)


def _shard_by_subject(plan):
    return {unit["row"]["subject"]: unit["shard"] for unit in plan["units"]}


SUBJECTS = [f"S{i:03d}" for i in range(40)]


@pytest.mark.parametrize("edit", ["append", "insert_first", "delete_middle"])
def test_one_edit_changes_one_shard_digest(tmp_path, edit):
    before = _plan(tmp_path, SUBJECTS)
    changed = {"append": SUBJECTS + ["NEW"], "insert_first": ["NEW"] + SUBJECTS,
               "delete_middle": SUBJECTS[:20] + SUBJECTS[21:]}[edit]
    after = _plan(tmp_path, changed)
    assert before["shards"] == after["shards"] == 12  # 40 / 4 -> 10 -> the ladder's 12
    moved = {s for s, k in _shard_by_subject(after).items() if _shard_by_subject(before).get(s, k) != k}
    assert moved == set(), f"{edit} moved {moved}"
    digests = ContentDigests()
    old, new = shard_digests(before, digests), shard_digests(after, digests)
    assert sum(old[k] != new[k] for k in old) == 1


def _references(path, rows):
    header = "subject,visit,side,target,kind,unit,x,y\n"
    path.write_text(header + "".join(f"{s},V00,{side},fem_sup,point,mm,{x},{y}\n" for s, side, x, y in rows))
    return path


def test_a_reference_edit_changes_its_hips_shard_digest_only(tmp_path):
    manifest = _manifest(tmp_path, SUBJECTS)
    rows = [(s, side, 10.0 + i, 20.0) for i, s in enumerate(SUBJECTS) for side in ("right", "left")]

    def digests(rows):
        inputs = {"manifest": manifest, "references": str(_references(tmp_path / "references.csv", rows))}
        return shard_digests(make_plan(plan_units("manifest", inputs), 4), ContentDigests())

    before = digests(rows)
    moved = [(s, side, x + (side == "left" and s == "S007"), y) for s, side, x, y in rows]  # one hip, in place
    after = digests(moved)
    assert sum(before[k] != after[k] for k in before) == 1
    assert digests(rows + [("S999", "left", 1.0, 2.0)]) == before  # a hip of no radiograph
    # hips without references keep the digest of a study without references
    no_references = shard_digests(make_plan(plan_units("manifest", {"manifest": manifest}), 4), ContentDigests())
    only_s007 = digests([row for row in rows if row[0] == "S007"])
    assert sum(no_references[k] != only_s007[k] for k in no_references) == 1


def test_shard_counts_follow_the_ladder_and_hashing_ignores_the_row():
    assert [hashed_shard_count(n, 100) for n in (0, 100, 101, 250, 301, 401, 601, 20000)] == [1, 1, 2, 3, 4, 6, 8,
                                                                                              256]
    assert shard_of("x", 7) == shard_of("x", 7) and {shard_of(str(i), 3) for i in range(100)} == {0, 1, 2}


def test_file_names_with_any_character_survive_the_plan(tmp_path):
    odd = ["a;b", "c,d", 'e"f', "g h", "ü"]
    units = plan_units("manifest", {"manifest": _manifest(tmp_path, odd)})
    write_plan(make_plan(units, 2), tmp_path / "plan.json")
    files = {f for shard in read_shard_plan(tmp_path / "plan.json").values() for f in shard}
    for name in odd:
        assert any(f.endswith(f"{name}.dcm") for f in files) and any(f.endswith(f"{name}.pts") for f in files), name
    assert all(os.path.isfile(f) for f in files)


@pytest.mark.parametrize("n, shard_size, shards", [(10, 4, 3), (8, 4, 2), (0, 4, 1)])
def test_the_bonefinder_plan_has_the_shards_its_jobs_read(tmp_path, n, shard_size, shards):
    """Every BoneFinder shard job reads the consecutive rows `shard_units` gives it: the plan has one shard
    per such block (one, empty, for an empty manifest), each naming its rows' images."""
    manifest = _manifest(tmp_path, SUBJECTS[:n]) if n else tmp_path / "empty.csv"
    if not n:
        pd.DataFrame(columns=["image_path", "subject", "visit", "cohort", "points_path"]).to_csv(manifest, index=False)
    assert write_bonefinder_plan(manifest, shard_size, tmp_path / "plan.csv") == shards
    plan = read_shard_plan(tmp_path / "plan.csv")
    assert sorted(plan) == list(range(shards))
    assert plan == {k: [f"{s}.dcm" for s in SUBJECTS[:n][shard_units(n, shard_size, k).start:
                                                       shard_units(n, shard_size, k).stop]] for k in plan}


def test_a_copy_with_an_older_mtime_changes_the_digest_a_touch_does_not(tmp_path):
    plan = _plan(tmp_path, SUBJECTS[:6], shard_size=2)
    write_shard_plan("manifest", {"manifest": tmp_path / "manifest.csv"}, 2, tmp_path / "plan.json")
    assert read_plan(tmp_path / "plan.json") == plan
    cache = tmp_path / "cache.json"
    first = shard_digests(plan, digests := ContentDigests(cache))
    digests.save()
    image = tmp_path / "S002.dcm"
    os.utime(image)  # touched: same bytes
    assert shard_digests(plan, ContentDigests(cache)) == first
    replacement = tmp_path / "new.dcm"
    replacement.write_bytes(b"corrected pixels")
    old = time.time() - 10 * 24 * 3600
    os.utime(replacement, (old, old))
    shutil.copy2(replacement, image)  # cp -p: new content, an mtime older than anything made from the old
    after = shard_digests(plan, ContentDigests(cache))
    shard = next(k for k, units in plan_shards(plan).items() if any(u["row"]["subject"] == "S002" for u in units))
    assert {k for k in first if first[k] != after[k]} == {shard}
