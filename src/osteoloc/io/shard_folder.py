"""The preprocessing's shard plan and shard folders (docs/preprocessing.md, "Shards"): their one writer and
reader. What goes into them is decided in `osteoloc.preprocess.shards`.

The plan (`plan.json`) lists every unit in study order: its `key` (identity and file, unique), `identity`
(cohort, subject, visit: what its shard is hashed from), `shard`, `files` (its own input files) and, for a
manifest, its `row` and `references` (its hips' expert reference rows, `[side, line, target, kind, unit,
coords, mask file]`, empty without references); beside them `shards` (the count) and `shard_size`.

A shard folder holds
- `crops.h5`: the shard's hips in unit order (a study HDF5 of the final layout, `io.study_h5.StudyWriter`),
  grades unknown;
- `units.csv`: one row per unit, `key, cohort, subject, visit, file, pixel_hash, records` (`records` = hips
  the unit added to `crops.h5`; `pixel_hash` = the digest of its decoded image, empty when none);
- `exclusions.csv`: `key` + the exclusions table's columns, the unit's own exclusions;
- `manifest.csv` (manifest sources): the shard's rows, which its source reads;
- `content.txt`: the digest of its rows, its hips' reference rows and its files' content it was made from.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from osteoloc.io.atomic import write_csv, write_text

log = logging.getLogger(__name__)

CROPS, UNITS, EXCLUSIONS, ROWS, CONTENT = "crops.h5", "units.csv", "exclusions.csv", "manifest.csv", "content.txt"
UNIT_COLUMNS = ("key", "cohort", "subject", "visit", "file", "pixel_hash", "records")


# --- the plan -------------------------------------------------------------------------------------------
def write_plan(plan, path):
    """Write the plan as JSON (any character of a file name survives)."""
    write_text(json.dumps(plan, indent=1, ensure_ascii=False) + "\n", path)
    counts = np.bincount([unit["shard"] for unit in plan["units"]], minlength=plan["shards"])
    log.info("%d units in %d shards (sizes %d-%d) -> %s", len(plan["units"]), plan["shards"],
             counts.min(initial=0), counts.max(initial=0), path)


def read_plan(path):
    """A plan `write_plan` wrote."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def plan_shards(plan):
    """{shard: [its units, study order]} for every shard of the plan (an empty shard still has a job, so the
    gather's inputs do not depend on where units fell)."""
    shards = {k: [] for k in range(plan["shards"])}
    for unit in plan["units"]:
        shards[unit["shard"]].append(unit)
    return shards


def read_shard_plan(plan_path):
    """{shard: [its units' input files]} of a plan `write_plan` wrote (every shard, empty ones too)."""
    return {shard: [f for unit in units for f in unit["files"]]
            for shard, units in plan_shards(read_plan(plan_path)).items()}


# --- a shard folder -------------------------------------------------------------------------------------
def write_shard_tables(shard_dir, units, exclusions, exclusion_columns, content):
    """units.csv (`units`: tuples of UNIT_COLUMNS), exclusions.csv (`exclusions`: tuples of key +
    `exclusion_columns`) and content.txt (`content`, the shard's digest) into `shard_dir`."""
    shard_dir = Path(shard_dir)
    write_csv(pd.DataFrame(units, columns=list(UNIT_COLUMNS)), shard_dir / UNITS)
    write_csv(pd.DataFrame(exclusions, columns=["key", *exclusion_columns]), shard_dir / EXCLUSIONS)
    write_text(content + "\n", shard_dir / CONTENT)


def read_content(shard_dir):
    """The digest content.txt stores, "" when the shard has none (never run, or removed)."""
    try:
        return (Path(shard_dir) / CONTENT).read_text().strip()
    except OSError:
        return ""


def _read_table(path):
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: shard table missing (rerun the preprocess_shard job)") from None


def read_shard_tables(shard_dir):
    """(units, exclusions) of a shard folder as string tables (units.csv, exclusions.csv); raises naming
    a missing table."""
    shard_dir = Path(shard_dir)
    return _read_table(shard_dir / UNITS), _read_table(shard_dir / EXCLUSIONS)


def write_shard_rows(units, path):
    """The shard's manifest rows (plan entries) as a manifest CSV its source reads: paths absolute, so
    they do not depend on where this file lies."""
    frame = pd.DataFrame([unit["row"] for unit in units])
    for column in ("image_path", "points_path", "manual_points_path"):
        if column in frame:
            frame[column] = [str(Path(p).absolute()) if p else "" for p in frame[column]]
    if frame.empty:
        frame = pd.DataFrame(columns=["image_path", "subject", "visit", "cohort", "points_path"])
    write_csv(frame, path)
    return path
