"""Sharded preprocessing (docs/preprocessing.md, "Shards"): a source's work units (manifest rows, or the
group file's scans) cut into shards of `shard_size` consecutive units; each shard job writes its crops and
its own exclusions, and the gather decides what needs the whole cohort (label-table problems, unmatched
labels, duplicate radiographs) and writes the one study HDF5.

A shard folder holds
- `crops.h5`: the shard's hips in unit order (a study HDF5 of the final layout, `StudyWriter`);
- `units.csv`: one row per unit, `unit, subject, visit, file, pixel_hash, records` (`records` = hips the
  unit added to `crops.h5`; `pixel_hash` = `sources.pixel_digest` of its decoded image, empty when none);
- `exclusions.csv`: `unit` + the exclusions table's columns, the unit's own exclusions.

Every decision depends on a unit and on the whole cohort only, never on the shard it fell in, so the study
file and the exclusions table are identical whatever `shard_size` (tests/unit/test_shards.py).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from osteoloc.io.atomic import write_csv
from osteoloc.io.study_h5 import StudyFile, StudyWriter
from osteoloc.cohort.sharding import n_shards, shard_units  # noqa: F401 (the shard jobs' unit ranges)
from osteoloc.preprocess.exclusions import COLUMNS, Exclusion, Exclusions

log = logging.getLogger(__name__)

CROPS, UNITS, EXCLUSIONS = "crops.h5", "units.csv", "exclusions.csv"
UNIT_COLUMNS = ("unit", "subject", "visit", "file", "pixel_hash", "records")


@dataclass
class UnitResult:
    """One unit's answer: its study rows and exclusions, and what the gather needs to judge duplicates."""

    unit: int
    subject: str
    visit: str
    file: str
    pixel_hash: str
    records: list = field(default_factory=list)
    exclusions: list = field(default_factory=list)


def unit_results(source, positions):
    """UnitResult of each unit position of `source` (sources.py), in order."""
    units = source.units
    hashes = getattr(source, "pixel_hashes", {})
    for position in positions:
        unit = units[position]
        result = UnitResult(position, *_describe(source, unit), "")
        for item in source.hips([unit]):
            (result.exclusions if isinstance(item, Exclusion) else result.records).append(item)
        result.pixel_hash = hashes.pop(unit, "")  # popped: memory stays flat over a long shard
        yield result


def _describe(source, unit):
    subject, visit, _, file = source._describe(unit)
    return subject, visit, str(file)


class Duplicates:
    """The same radiograph (pixel data) under more than one unit: the first unit in study order is kept,
    every later one is excluded with a reason naming the first."""

    def __init__(self):
        self.first = {}

    def exclusion(self, unit, subject, visit, file, pixel_hash):
        """None for a first (or hash-less) unit, else the Exclusion of this unit."""
        if not pixel_hash:
            return None
        first = self.first.setdefault(pixel_hash, (unit, subject, visit, file))
        if first[0] == unit:
            return None
        _, first_subject, first_visit, first_file = first
        reason = (f"same pixel data as {Path(first_file).name} (subject {first_subject}, visit {first_visit}, "
                  "which is kept)")
        return Exclusion.of("dicom", subject, visit, "", file, reason)


def _writer(source, path):
    return StudyWriter(path, source.crop_size, source.spacing_mm, source.groups, with_truth=source.with_truth,
                       with_cue=source.with_cue, attrs=source.attrs)


def write_shard(source, positions, shard_dir):
    """Preprocess the units at `positions` of `source` into `shard_dir` (crops.h5, units.csv,
    exclusions.csv; see the module docstring). Returns the number of hips written."""
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    units, exclusions = [], []
    with _writer(source, shard_dir / CROPS) as writer:
        for result in unit_results(source, positions):
            for record in result.records:
                writer.append(record)
            units.append((result.unit, result.subject, result.visit, Path(result.file).name, result.pixel_hash,
                          len(result.records)))
            exclusions.extend((result.unit, *row) for row in result.exclusions)
        written = len(writer)
    write_csv(pd.DataFrame(units, columns=list(UNIT_COLUMNS)), shard_dir / UNITS)
    write_csv(pd.DataFrame(exclusions, columns=["unit", *COLUMNS]), shard_dir / EXCLUSIONS)
    log.info("shard %s: %d units, %d hips, %d exclusion rows", shard_dir, len(units), written, len(exclusions))
    return written


def _read_table(path):
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: shard table missing (rerun the preprocess_shard job)") from None


@dataclass
class Gathered:
    """The whole cohort's decisions: the exclusions table and, per shard, the crop rows to copy."""

    exclusions: Exclusions
    copies: list  # (shard folder, first row, stop row) in study order
    kept: int


def assemble(source, shard_dirs):
    """Read the shards' tables in order and decide: label-table rows first, then each unit's exclusions (or
    its duplicate row) in study order, then unmatched labels. Raises ValueError naming a shard whose units
    do not continue where the previous shard stopped (a stale shard of another shard size or manifest)."""
    exclusions = Exclusions(list(source.label_exclusions()))
    duplicates, copies, kept, expected = Duplicates(), [], 0, 0
    for shard_dir in map(Path, shard_dirs):
        units = _read_table(shard_dir / UNITS)
        rows = _read_table(shard_dir / EXCLUSIONS)
        by_unit = {unit: [Exclusion(*row) for row in group[list(COLUMNS)].itertuples(index=False)]
                   for unit, group in rows.groupby("unit", sort=False)}
        row = 0
        for unit in units.itertuples(index=False):
            position, records = int(unit.unit), int(unit.records)
            if position != expected:
                raise ValueError(f"{shard_dir / UNITS}: unit {position} where unit {expected} was expected "
                                 "(a shard of another manifest or shard size; rerun its preprocess_shard job)")
            expected += 1
            duplicate = duplicates.exclusion(position, unit.subject, unit.visit, unit.file, unit.pixel_hash)
            if duplicate is not None:
                log.warning("excluded %s: %s", unit.file, duplicate.reason)
                exclusions.append(duplicate)
            else:
                exclusions.rows.extend(by_unit.get(unit.unit, []))
                if records:
                    copies.append((shard_dir, row, row + records))
                kept += records
            row += records
    if expected != len(source.units):
        raise ValueError(f"the shards hold {expected} units, the cohort has {len(source.units)} "
                         "(missing or stale shards)")
    exclusions.rows.extend(source.unmatched_exclusions())
    return Gathered(exclusions, copies, kept)


def gather_exclusions(source, shard_dirs, exclusions_path):
    """Write the whole exclusions table from the shards (no check: the table is the evidence and stays
    even when the excluded share is then refused). Returns the hips the study will hold."""
    gathered = assemble(source, shard_dirs)
    write_csv(gathered.exclusions.frame(), exclusions_path)
    log.info("%d exclusion rows -> %s; %d of %d hips kept", len(gathered.exclusions.rows), exclusions_path,
             gathered.kept, source.n_hips)
    return gathered.kept


def gather_study(source, shard_dirs, study_path, *, max_excluded_fraction):
    """Check the excluded share (TooManyExclusions, no study written) and copy the shards' kept crops, in
    study order, into `study_path`. Returns the number of hips written."""
    gathered = assemble(source, shard_dirs)
    fraction = gathered.exclusions.check_fraction(source.n_hips, gathered.kept, max_excluded_fraction)
    with _writer(source, study_path) as writer:
        for shard_dir, start, stop in gathered.copies:
            with StudyFile(shard_dir / CROPS) as shard:
                writer.copy_rows(shard, start, stop)
        written = len(writer)
    log.info("wrote %d of %d hips to %s; %.1f%% excluded", written, source.n_hips, study_path, 100 * fraction)
    return written
