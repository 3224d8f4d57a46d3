"""The cohort stage's entry points, one per rule of workflow/rules/cohort.smk: the phantom's shards and
their gather, the label table's check before BoneFinder runs, and the BoneFinder shards and their gather.
Expert references are read by the preprocessing that uses them, not here: editing their reader reruns
nothing of this stage."""

import json
import logging
import os
from pathlib import Path

import pandas as pd

from osteoloc.cohort.bonefinder import run_bonefinder
from osteoloc.cohort.phantom.cohort import gather_shards, make_shard
from osteoloc.cohort.sharding import n_shards, shard_units
from osteoloc.io.atomic import write_csv
from osteoloc.io.errors import InputCheckFailed
from osteoloc.io.labels import read_labels, refused_rows
from osteoloc.io.shard_folder import write_plan

log = logging.getLogger(__name__)


def phantom_shard(config_json, shard, shard_dir):
    """Rule phantom_shard: shard number `shard` of the phantom cohort (`cohort.phantom` as JSON) into `shard_dir`."""
    make_shard(json.loads(config_json), int(shard), shard_dir)


def phantom_cohort(config_json, shard_dirs, cohort_dir):
    """Rule phantom_cohort: the shards gathered into the cohort folder `cohort_dir` (manifest.csv, labels.csv,
    truth.h5, broken.csv, images/, points/ and, with twins, their manifest and images)."""
    gather_shards(json.loads(config_json), list(shard_dirs), cohort_dir)


def write_bonefinder_plan(manifest_path, shard_size, plan_path):
    """Checkpoint `bonefinder_plan`: the BoneFinder shards of the manifest as a plan (io.shard_folder): shard
    k takes the consecutive rows `cohort.sharding.shard_units` gives it (as `run_bonefinder_shard` reads
    them), each row a unit naming its image. Returns the number of shards."""
    images = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)["image_path"]
    count = n_shards(len(images), shard_size)
    units = [{"row": i, "shard": k, "files": [images[i]]}
             for k in range(count) for i in shard_units(len(images), shard_size, k)]
    write_plan({"shards": count, "shard_size": int(shard_size), "units": units}, plan_path)
    return count


def run_bonefinder_shard(manifest_path, command, out_manifest, points_dir, shard, shard_size, timeout_s=600):
    """Rule `bonefinder_shard`: the manifest rows of shard number `shard` (`shard_size` rows per shard, the
    preprocessing's shards): their points into `points_dir`, their rows into `out_manifest`."""
    n = len(pd.read_csv(manifest_path, dtype=str, keep_default_na=False))
    return run_bonefinder(manifest_path, command, out_manifest, timeout_s, rows=shard_units(n, shard_size, shard),
                          points_dir=points_dir)


def gather_bonefinder(shard_manifests, out_manifest):
    """Rule `bonefinder`: the shards' manifests, in shard order, as one manifest whose points paths are
    relative to `out_manifest`'s folder."""
    out_manifest = Path(out_manifest)
    frames = []
    for path in map(Path, shard_manifests):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame["points_path"] = [os.path.relpath(path.parent / p, out_manifest.parent) for p in frame["points_path"]]
        frames.append(frame)
    write_csv(pd.concat(frames, ignore_index=True), out_manifest)
    return sum(len(f) for f in frames)


def check_labels(labels_path, label_settings, table_path):
    """Rule `check_labels`, before BoneFinder runs on any radiograph (cohort.bonefinder.command): the label
    table read as the preprocessing reads it (`label_settings`: the cohort's label keys). The reader's
    ValueError passes through (unreadable, a missing column, formula cells without saved values);
    InputCheckFailed when not one row is usable, naming the refused rows per reason. Writes the refused rows
    (subject, visit, side, reason) to `table_path`; returns the number of labelled hips."""
    labels = read_labels(labels_path, label_settings)
    refused = refused_rows(labels)
    log.info("label table %s: %d labelled hips%s", labels_path, len(labels.grades), f"; {refused}" if refused else "")
    if not labels.grades:
        raise InputCheckFailed(f"{labels_path}: not one label row is usable ({refused or 'the table has no rows'}); "
                               "fix the table or the cohort's label settings before BoneFinder runs")
    write_csv(pd.DataFrame(labels.problems, columns=["subject", "visit", "side", "reason"]), table_path)
    return len(labels.grades)
