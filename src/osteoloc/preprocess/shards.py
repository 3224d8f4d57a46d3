"""Sharded preprocessing (docs/preprocessing.md, "Shards"): a plan assigns each of a source's work units
(manifest rows, or the group file's scans) to a shard by the hash of its identity; each shard job crops its
units without the labels; the gather joins the labels, decides what needs the whole cohort (label-table
problems, unmatched labels, duplicate radiographs, one spelling per subject) and writes the one study HDF5
in the cohort's order.

The plan (`plan.json`) and the shard folders (`crops.h5`, `units.csv`, `exclusions.csv`, `manifest.csv`,
`content.txt`) are written and read by `osteoloc.io.shard_folder`, which describes them. A unit's shard
depends on its identity only (`cohort.sharding.shard_of`), so appending, inserting or deleting a radiograph
changes its own shard only, and fixing a grade changes none.

Every decision depends on a unit and on the whole cohort only, never on the shard it fell in, so the study
file and the exclusions table are identical whatever `shard_size` (tests/unit/test_shards.py).
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osteoloc.cohort.sharding import hashed_shard_count, shard_of
from osteoloc.io.atomic import write_csv, write_text
from osteoloc.io.labels import LabelTable, cohort_key, grades_to_labels, hip_key
from osteoloc.io.pts import resolve_hip_files
from osteoloc.io.shard_folder import (CROPS, UNITS, plan_shards, read_content, read_shard_tables,
                                      write_shard_tables)
from osteoloc.io.study_h5 import StudyFile, StudyWriter
from osteoloc.names import SIDES, TARGETS, UNKNOWN
from osteoloc.preprocess.exclusions import COLUMNS, Exclusion, Exclusions
from osteoloc.progress import Progress

log = logging.getLogger(__name__)


# --- shards crop without labels: every hip is "labelled" with unknown grades ----------------------------
class _AnyHip(dict):
    """A grades table that holds every hip, each with unknown grades."""

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return np.full(len(TARGETS), UNKNOWN, np.int8)


def unlabelled():
    """The label table a shard's source reads: every hip labelled, grades unknown (the gather joins the
    real grades, so a grade fix reruns no shard)."""
    return LabelTable(grades=_AnyHip())


# --- identity -----------------------------------------------------------------------------------------
def unit_identity(cohort, subject, visit):
    """The radiograph's identity as its shard is hashed from: cohort, subject and visit compared ignoring
    case and blanks (a second radiograph of one identity is a duplicate, so both land in one shard)."""
    return json.dumps([cohort_key(cohort), *hip_key(subject, visit, "right")[:2]])


def _as_input_path(path):
    """`path` relative to the working directory when it lies under it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _keyed(units):
    """Each unit's `key`: its identity and file, plus its occurrence number when a row repeats exactly."""
    seen = {}
    for unit in units:
        base = json.dumps([unit["identity"], unit["file"]])
        seen[base] = seen.get(base, 0) + 1
        unit["key"] = base if seen[base] == 1 else json.dumps([unit["identity"], unit["file"], seen[base]])
    return units


def hip_references(references, subject, visit):
    """The expert reference rows of one radiograph's hips as plain lists, [side, line, target, kind, unit,
    coords, mask file], in file order: what its shard draws and its notes name (the line too), so the shard's
    content digest changes when they do and not when another hip's rows do."""
    if references is None:
        return []
    return [[side, ref.line, ref.target, ref.kind, ref.unit, list(ref.coords),
             _as_input_path(ref.mask_path) if ref.mask_path else ""]
            for side in SIDES for ref in references.of_hip(subject, visit, side)]


def manifest_units(rows, references=None, files=True):
    """Plan entries of manifest rows (read_manifest's itertuples): identity, file, files (unless `files` is
    False: the keys alone need no file lookups), row and references (its hips' expert reference rows,
    `hip_references`; [] without `references`)."""
    units = []
    for row in rows:
        paths = [row.image_path, row.points_path, row.manual_points_path] if files else []
        paths += references.mask_files(row.subject, row.visit) if references is not None else []
        for points in (row.points_path, row.manual_points_path) if files else ():
            if points:  # per-hip files (<stem>_L.pts ...) where the named file is a stem
                paths += [str(path) for path, _ in resolve_hip_files(points).values()]
        record = {column: ("" if isinstance(value, float) and np.isnan(value) else value)
                  for column, value in row._asdict().items()}
        for column in ("image_path", "points_path", "manual_points_path"):  # the plan of a moved folder stays
            if record.get(column):
                record[column] = _as_input_path(record[column])
        units.append(dict(identity=unit_identity(row.cohort, row.subject, row.visit),
                          file=_as_input_path(row.image_path) if row.image_path else "",
                          files=list(dict.fromkeys(_as_input_path(p) for p in paths if p)), row=record,
                          references=hip_references(references, row.subject, row.visit)))
    return _keyed(units)


def group_units(scans):
    """Plan entries of the group file's scans (one hip each; the group file is every shard's input)."""
    return _keyed([dict(identity=json.dumps([cohort_key(scan.cohort), *hip_key(scan.subject, scan.visit, scan.side)]),
                        file=str(scan.source), files=[], row={}) for scan in scans])


def source_keys(source):
    """The plan keys of a source's units, in study order (manifest rows or group scans)."""
    if hasattr(source, "rows"):
        return [unit["key"] for unit in manifest_units(source.rows, files=False)]
    return [unit["key"] for unit in group_units(source.units)]


def source_hips(source):
    """(cohort, subject, visit, side) of every hip the source's units hold, whatever became of them."""
    if hasattr(source, "rows"):
        return [(row.cohort, row.subject, row.visit, side) for row in source.rows for side in SIDES]
    return [(scan.cohort, scan.subject, scan.visit, scan.side) for scan in source.units]


# --- the plan -------------------------------------------------------------------------------------------
def make_plan(units, shard_size):
    """The plan of `units` (manifest_units / group_units): each unit's shard by the hash of its identity
    into `hashed_shard_count` shards."""
    n = hashed_shard_count(len(units), shard_size)
    for unit in units:
        unit["shard"] = shard_of(unit["identity"], n)
    return {"shards": n, "shard_size": int(shard_size), "units": units}


# --- content, not clocks ------------------------------------------------------------------------------
class ContentDigests:
    """SHA-256 of files' bytes, cached by (size, mtime, ctime, inode): a file replaced by an older copy
    (`cp -p`, `rsync -a`) keeps its mtime but never its ctime, so it is hashed again, and a file whose bytes
    are unchanged keeps its digest however it was touched. The cache is a JSON file (`path`), rewritten
    when it changed; a missing file's digest is "missing"."""

    def __init__(self, path=None):
        self.path = Path(path) if path else None
        self.cache, self.hashed, self.bytes, self.seen = {}, 0, 0, set()
        if self.path is not None and self.path.is_file():
            try:
                self.cache = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.cache = {}
        self.changed = False

    def __call__(self, file):
        self.seen.add(str(file))
        try:
            st = os.stat(file)
        except OSError:
            return "missing"
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        cached = self.cache.get(str(file))
        if cached is not None and cached[:4] == stamp:
            return cached[4]
        with open(file, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self.hashed, self.bytes = self.hashed + 1, self.bytes + st.st_size
        self.cache[str(file)] = [*stamp, digest]
        self.changed = True
        return digest

    def save(self):
        """Write the cache (the files asked for since it was read, so it does not grow with deleted files)."""
        if self.path is not None and (self.changed or set(self.cache) - self.seen):
            self.cache = {f: entry for f, entry in self.cache.items() if f in self.seen}
            write_text(json.dumps(self.cache), self.path)
            self.changed = False


def shard_digests(plan, digests):
    """{shard: hex digest of its units' rows, their hips' expert reference rows and their files' content}:
    what a shard job was made from. A shard reruns when its digest changes (the rule's params), so a file
    replaced by one with an older modification time still reruns it, and an edit of the references CSV
    (not itself a trigger of the shard jobs) reruns only the shards whose hips' rows it changed."""
    out = {}
    for shard, units in plan_shards(plan).items():
        h = hashlib.sha256()
        for unit in units:
            parts = [unit["key"], unit["row"], [(f, digests(f)) for f in unit["files"]]]
            if unit.get("references"):  # only then: a hip without references keeps the digest its shard stored
                parts.append(unit["references"])
            h.update(json.dumps(parts, sort_keys=True).encode())
        out[shard] = h.hexdigest()
    return out


def changed_shards(shard_dirs_digests):
    """[shard] whose stored `content.txt` differs from the digest given ({shard: (folder, digest)})."""
    changed = []
    for shard, (folder, digest) in sorted(shard_dirs_digests.items()):
        if read_content(folder) != digest:
            changed.append(shard)
    return changed


# --- the shard job --------------------------------------------------------------------------------------
@dataclass
class UnitResult:
    """One unit's answer: its study rows and exclusions, and what the gather needs to judge duplicates."""

    key: str
    cohort: str
    subject: str
    visit: str
    file: str
    pixel_hash: str
    records: list = field(default_factory=list)
    exclusions: list = field(default_factory=list)


def unit_results(source, positions, keys):
    """UnitResult of each unit position of `source` (sources.py), in order; `keys` {position: plan key}."""
    units = source.units
    hashes = getattr(source, "pixel_hashes", {})
    for position in positions:
        unit = units[position]
        subject, visit, _, file = source._describe(unit)
        cohort = source.rows[unit].cohort if hasattr(source, "rows") else unit.cohort
        result = UnitResult(keys[position], cohort, subject, visit, str(file), "")
        for item in source.hips([unit]):
            (result.exclusions if isinstance(item, Exclusion) else result.records).append(item)
        result.pixel_hash = hashes.pop(unit, "")  # popped: memory stays flat over a long shard
        yield result


def _writer(source, path):
    return StudyWriter(path, source.crop_size, source.spacing_mm, source.groups, layers=source.layers,
                       attrs=source.attrs)


def write_shard(source, positions, shard_dir, keys=None, content=""):
    """Preprocess the units at `positions` of `source` (built on `unlabelled()`) into `shard_dir` (crops.h5,
    units.csv, exclusions.csv, content.txt; see the module docstring). `keys` {position: plan key}, by
    default the source's own (`source_keys`). Returns the number of hips written."""
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    keys = keys if keys is not None else dict(enumerate(source_keys(source)))
    units, exclusions = [], []
    progress = Progress(len(positions), "radiographs", log)  # a line every few seconds in the job's log
    with _writer(source, shard_dir / CROPS) as writer:
        for result in unit_results(source, positions, keys):
            progress.step()
            for record in result.records:
                writer.append(record)
            units.append((result.key, result.cohort, result.subject, result.visit, Path(result.file).name,
                          result.pixel_hash, len(result.records)))
            exclusions.extend((result.key, *row) for row in result.exclusions)
        written = len(writer)
    write_shard_tables(shard_dir, units, exclusions, COLUMNS, content)
    log.info("shard %s: %d units, %d hips, %d exclusion rows", shard_dir, len(units), written, len(exclusions))
    return written


# --- the gather -----------------------------------------------------------------------------------------
@dataclass
class ShardUnit:
    """One unit as its shard left it: where its rows lie and what it excluded."""

    shard_dir: Path
    start: int
    records: int
    cohort: str
    subject: str
    visit: str
    file: str
    pixel_hash: str
    sides: list
    cohorts: list
    exclusions: list


def _shard_units(shard_dirs):
    """{key: ShardUnit} of every shard; raises naming a shard that holds a key twice."""
    index = {}
    for shard_dir in map(Path, shard_dirs):
        units, rows = read_shard_tables(shard_dir)
        by_key = {key: [Exclusion(*row) for row in group[list(COLUMNS)].itertuples(index=False)]
                  for key, group in rows.groupby("key", sort=False)}
        with StudyFile(shard_dir / CROPS) as crops:
            meta = crops.meta(("side", "cohort"))
        start = 0
        for unit in units.itertuples(index=False):
            n = int(unit.records)
            if unit.key in index:
                raise ValueError(f"{shard_dir / UNITS}: unit {unit.key} also in {index[unit.key].shard_dir} "
                                 "(a stale shard: rerun its preprocess_shard job)")
            index[unit.key] = ShardUnit(shard_dir, start, n, unit.cohort, unit.subject, unit.visit, unit.file,
                                        unit.pixel_hash,
                                        list(meta.side[start:start + n]), list(meta.cohort[start:start + n]),
                                        by_key.get(unit.key, []))
            start += n
    return index


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


class Spellings:
    """One spelling per subject: the first one in study order (per cohort, ignoring case and blanks); a
    later unit spelling it otherwise is stored under it, with an `identity` note."""

    def __init__(self):
        self.first = {}

    def canonical(self, cohort, subject, visit, file):
        """(spelling to store, note or None)."""
        key = (cohort_key(cohort), hip_key(subject, visit, "right")[0])
        spelled, first_file = self.first.setdefault(key, (subject, file))
        if spelled == subject:
            return subject, None
        reason = (f"subject {subject!r} stored as {spelled!r}, its spelling in {Path(first_file).name} "
                  "(subject ids are compared ignoring case and blanks)")
        return spelled, Exclusion.of("identity", subject, visit, "", file, reason)


@dataclass
class Copy:
    """One hip of the study: where its row lies and the values the gather joins in."""

    shard_dir: Path
    row: int
    grades: np.ndarray
    subject: str
    cohort: str


@dataclass
class Gathered:
    """The whole cohort's decisions: the exclusions table and the rows to copy, in study order."""

    exclusions: Exclusions
    copies: list
    cutoff: tuple = 0  # the label table's per-target cut-offs: label = grade > cutoff

    @property
    def kept(self):
        return len(self.copies)


def _join(unit, subject, labels, labels_path, exclusions, copies):
    """One unit's shard answer joined with the labels: a hip with a label-table problem is dropped (its row
    was recorded from the table), a hip with no label row is excluded in place of what its shard said, a
    labelled hip keeps its rows and gets its grades. Row order stays the shard's: radiograph rows, then
    each side's."""
    by_side = {side: [row for row in unit.exclusions if row.side == side] for side in SIDES}
    leading, trailing, seen_side = [], [], False
    for row in unit.exclusions:
        if row.side in SIDES:
            seen_side = True
        elif row.side == "":
            (trailing if seen_side else leading).append(row)
    exclusions.rows.extend(leading)
    records = dict(zip(unit.sides, range(unit.start, unit.start + unit.records)))
    cohorts = dict(zip(unit.sides, unit.cohorts))
    for side in SIDES:
        if side not in records and not by_side[side]:
            continue  # the radiograph itself was refused: no hip to join
        key = labels.key_of(unit.subject, unit.visit, side, unit.cohort)
        if key in labels.problem_keys:
            continue
        if key not in labels.grades:
            exclusions.append(Exclusion.of("labels", unit.subject, unit.visit, side, unit.file,
                                           "no label row for this hip"))
            continue
        exclusions.rows.extend(by_side[side])
        if side in records:
            cohort = cohorts[side] or labels.cohort.get(key, "")
            copies.append(Copy(unit.shard_dir, records[side], labels.grades[key], subject, cohort))
    exclusions.rows.extend(trailing)


def assemble(source, labels, labels_path, shard_dirs):
    """Read the shards and decide, in study order: label-table rows first, then each unit's exclusions (or
    its duplicate row) joined with the labels, then unmatched labels and the source's own unmatched notes.
    Raises ValueError when the shards do not hold exactly the source's units (stale shards)."""
    index = _shard_units(shard_dirs)
    keys = source_keys(source)
    missing = [key for key in keys if key not in index]
    extra = sorted(set(index) - set(keys))
    if missing or extra:
        where = (f"{len(missing)} unit(s) of the cohort in no shard, e.g. {missing[0]}" if missing else
                 f"{len(extra)} unit(s) no longer in the cohort, e.g. {extra[0]} in {index[extra[0]].shard_dir}")
        raise ValueError(f"the shards do not match the cohort: {where} (missing or stale shards: rerun the "
                         "preprocess_plan and preprocess_shard jobs)")
    exclusions = Exclusions([Exclusion.of("labels", subject, visit, side, labels_path, reason)
                             for subject, visit, side, reason in labels.problems])
    duplicates, spellings, copies = Duplicates(), Spellings(), []
    for position, key in enumerate(keys):
        unit = index[key]
        duplicate = duplicates.exclusion(position, unit.subject, unit.visit, unit.file, unit.pixel_hash)
        if duplicate is not None:
            log.warning("excluded %s: %s", unit.file, duplicate.reason)
            exclusions.append(duplicate)
            continue
        before = len(copies)
        subject, note = spellings.canonical(unit.cohort, unit.subject, unit.visit, unit.file)
        _join(unit, subject, labels, labels_path, exclusions, copies)
        if note is not None and len(copies) > before:
            log.warning("%s: %s", unit.file, note.reason)
            exclusions.append(note)
    matched = {labels.key_of(subject, visit, side, cohort) for cohort, subject, visit, side in source_hips(source)}
    exclusions.rows.extend(Exclusion.of("labels", *labels.spelled[key], key[2], labels_path,
                                        source.unmatched_reason)
                           for key in sorted(set(labels.grades) - matched))
    exclusions.rows.extend(source.unmatched_exclusions())
    return Gathered(exclusions, copies, labels.cutoff)


def gather_exclusions(source, labels, labels_path, shard_dirs, exclusions_path):
    """Write the whole exclusions table from the shards (no check: the table is the evidence and stays
    even when the excluded share is then refused). Returns the hips the study will hold."""
    gathered = assemble(source, labels, labels_path, shard_dirs)
    write_csv(gathered.exclusions.frame(), exclusions_path)
    log.info("%d exclusion rows -> %s; %d of %d hips kept", len(gathered.exclusions.rows), exclusions_path,
             gathered.kept, source.n_hips)
    return gathered.kept


def write_gathered(source, gathered, study_path):
    """The study HDF5 from the shards' crops: the gathered rows in study order, grades, labels, subject
    spelling and cohort joined in. Returns the number of hips written."""
    files = {}
    try:
        with _writer(source, study_path) as writer:
            for copy in gathered.copies:
                if copy.shard_dir not in files:
                    files[copy.shard_dir] = StudyFile(copy.shard_dir / CROPS)
                grades = np.asarray(copy.grades, np.int8)[None]
                writer.append_rows(files[copy.shard_dir], copy.row, copy.row + 1, {
                    "grades": grades, "labels": grades_to_labels(grades, gathered.cutoff),
                    "subject": np.array([copy.subject], object), "cohort": np.array([copy.cohort], object)})
            return len(writer)
    finally:
        for handle in files.values():
            handle.close()


def gather_study(source, labels, labels_path, shard_dirs, study_path, *, max_excluded_fraction):
    """Check the excluded share (TooManyExclusions, no study written) and write the shards' kept crops, in
    study order, into `study_path`. Returns the number of hips written."""
    gathered = assemble(source, labels, labels_path, shard_dirs)
    fraction = gathered.exclusions.check_fraction(source.n_hips, gathered.kept, max_excluded_fraction)
    written = write_gathered(source, gathered, study_path)
    log.info("wrote %d of %d hips to %s; %.1f%% excluded", written, source.n_hips, study_path, 100 * fraction)
    return written
