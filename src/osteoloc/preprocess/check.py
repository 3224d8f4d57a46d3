"""The check before the long run (rule `check_inputs`, `osteoloc.preprocess.stages.check_inputs`;
docs/preprocessing.md "New data: first steps").

The manifest and the label table are parsed once, every radiograph's DICOM header is read without its
pixel data (io.dicom_header), every `.pts` file is read and put through the landmark checks the
preprocessing applies (sources.check_points), and the labels are joined with the radiographs. The result
is one row per radiograph (ok, or what will exclude which hip) in `input_check.csv`, plus a row per
subject and visit whose labels have no radiograph.

The check fails, before any shard job starts, on what would fail the whole run whatever the shards did: a
manifest or label table that cannot be read or lacks a column (their readers' errors, a workbook's formula
cells without saved values among them), an empty cohort, problems on every hip (e.g. subject ids that match
no label row), subject ids that match the labels only once leading zeros are ignored (naming the pairs and
the setting), a transfer syntax no installed decoder handles (a setup problem, however few files: install a
decoder, or convert or leave out those files), or a foreseen excluded share above
`preprocess.max_excluded_fraction` (the gather would refuse it after every shard job). Its message names the
most common problems and the label table's refused rows, counted per reason. Other problems are the data's:
they are listed, and the preprocessing excludes those hips as foreseen.
"""

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osteoloc.cohort.landmarks import AnatomyLimits, LandmarkError, check_hip, check_side
from osteoloc.io.dicom_header import read_header
from osteoloc.io.group_h5 import GroupFile
from osteoloc.io.labels import cohort_key, hip_key, integer_text, read_labels, subject_key, visit_key
from osteoloc.io.manifest import read_manifest
from osteoloc.io.pts import read_hip_points, resolve_hip_files
from osteoloc.names import SIDES
from osteoloc.preprocess.sources import check_points, points_spacing

log = logging.getLogger(__name__)

COLUMNS = ("image_path", "subject", "visit", "side", "status", "hips_lost", "problems")
# how many example rows the failure message quotes per kind of problem
EXAMPLES = 3


@dataclass
class RowCheck:
    """One unit's verdict: problems as (kind, side or "", text), the hips they exclude."""

    image_path: str
    subject: str
    visit: str
    side: str = ""  # the hip, for sources whose unit is one hip (the group's file)
    status: str = "ok"
    problems: list = field(default_factory=list)
    lost: set = field(default_factory=set)

    def add(self, kind, text, sides=SIDES):
        sides = (sides,) if isinstance(sides, str) else tuple(sides)
        prefix = f"{sides[0]} hip: " if len(sides) == 1 and self.side == "" else ""
        self.problems.append((kind, prefix + str(text)))
        self.lost.update(sides)

    def row(self):
        status = self.status if self.status != "ok" or not self.problems else "problem"
        return {"image_path": self.image_path, "subject": self.subject, "visit": self.visit, "side": self.side,
                "status": status, "hips_lost": len(self.lost), "problems": "; ".join(t for _, t in self.problems)}


def _label_reasons(labels):
    """({hip key: reason} of the label table's refused rows whose hip could be named, {(subject key, visit
    key): [reason]} of those whose side could not be read: they may be the rows a hip lacks)."""
    reasons, sideless = {}, {}
    for subject, visit, side, reason in labels.problems:
        try:
            reasons.setdefault(hip_key(subject, visit, side), reason)
        except ValueError:
            sideless.setdefault((subject_key(subject), visit_key(visit)), []).append(reason)
    return reasons, sideless


def loose_subject(subject):
    """A subject id with what spreadsheets and exports change taken out: case, blanks and punctuation, a
    float's `.0`, and the leading zeros of every run of digits (`CHECK-001001`, `check 1001.0` -> `CHECK1001`)."""
    text = re.sub(r"[^0-9A-Z]", "", integer_text(subject_key(subject)))
    return re.sub(r"(?<![0-9])0+(?=[0-9])", "", text)


class _LabelIndex:
    """The label table as the check joins it: a hip's key as the gather finds it (`LabelTable.key_of`), the
    reason its row was refused, and the label ids that match an unmatched id only loosely."""

    def __init__(self, labels):
        self.labels = labels
        self.reasons, self.sideless = _label_reasons(labels)
        self.loose = {}
        for key in labels.keys():
            spelled = labels.spelled.get(key, (key[0], key[1]))[0]
            self.loose.setdefault((loose_subject(key[0]), key[1]), spelled)
        self.near = {}  # manifest id -> label id matching only loosely

    def problem(self, subject, visit, side, cohort=""):
        """None when the hip has a usable label row, else why not."""
        key = self.labels.key_of(subject, visit, side, cohort)
        if key in self.labels.grades:
            return None
        if key[:3] in self.reasons:
            return f"label row refused: {self.reasons[key[:3]]}"
        refused = self.sideless.get(key[:2])
        if refused:
            return (f"no label row for this hip; the label table refused {len(refused)} row(s) of this subject and "
                    f"visit, e.g. {refused[0]}")
        near = self.loose.get((loose_subject(subject), key[1]))
        if near is not None and subject_key(near) != key[0]:
            self.near.setdefault(str(subject), near)
            return (f"no label row for this hip; the label table has subject {near!r} (the same id but for leading "
                    "zeros or punctuation)")
        return "no label row for this hip"


def _check_labels(check, index, subject, visit, sides=SIDES, cohort=""):
    for side in sides:
        problem = index.problem(subject, visit, side, cohort)
        if problem is not None:
            check.add("labels", problem, side)


def check_radiograph(row, index, points_unit, accept_mirrored, limits=None, files=None):
    """The RowCheck of one manifest row (a named tuple of io.manifest.read_manifest's frame); `index` the
    _LabelIndex, `limits` the AnatomyLimits of the point checks, `files` {file identity: (line, subject,
    visit)} of the rows before it (the same file under a second row is a duplicate the gather drops)."""
    check = RowCheck(str(row.image_path), str(row.subject), str(row.visit))
    _check_labels(check, index, row.subject, row.visit, cohort=row.cohort)
    given = float(row.spacing) if np.isfinite(row.spacing) else None
    try:
        header = read_header(row.image_path, given)
    except (ValueError, OSError) as err:
        check.add("dicom", err)
        return check
    if files is not None:
        _check_same_file(check, row, header, files)
    for problem in header.problems:
        check.add("decoder" if problem.startswith("transfer syntax") else "dicom", problem)
    if header.spacing is None or not all(header.shape):
        return check  # the points cannot be placed without the image's size and spacing
    units, unit = points_spacing(row.points_unit or points_unit, header)
    points, problems = read_hip_points(row.points_path, header.shape, units)
    failures, swapped = check_points(points, problems, header.shape, header.spacing, unit,
                                     **({} if limits is None else {"limits": limits}))
    if swapped is not None and not accept_mirrored:
        failures = {side: str(swapped) for side in SIDES}
    for side in SIDES:
        if side in failures:
            check.add("points", failures[side], side)
    return check


def _check_same_file(check, row, header, files):
    """A `duplicate` problem when this row's file (its real path, or its SOPInstanceUID) is an earlier row's:
    the preprocessing keeps the first as the same pixel data."""
    identities = [("path", os.path.realpath(row.image_path))] + ([("uid", header.instance)] if header.instance else [])
    earlier = next((files[i] for i in identities if i in files), None)
    if earlier is not None:
        line, subject, visit, how = earlier
        same = "file" if how == "path" else "image (SOPInstanceUID)"
        check.add("duplicate", f"the same {same} as line {line} (subject {subject}, visit {visit}), which is kept")
        return
    for identity in identities:
        files[identity] = (getattr(row, "line", "?"), row.subject, row.visit, identity[0])


def check_manifest(manifest_path, labels_path, settings):
    """(RowChecks, n_hips, labels) of the manifest cohort: one per row, then one per subject and visit whose
    labels have no radiograph (status "labels only", no hip lost: the excluded share does not count them)."""
    manifest = read_manifest(manifest_path)
    labels = read_labels(labels_path, settings.get("labels"))
    limits = AnatomyLimits.of(settings.get("anatomy"))
    log.info("manifest %s: %d radiographs; label table %s: %d labelled hips, %d refused rows", manifest_path,
             len(manifest), labels_path, len(labels.grades), len(labels.problems))
    index = _LabelIndex(labels)
    checks, first, files = [], {}, {}
    manifest = manifest.assign(line=manifest.index + 2)
    for row in manifest.itertuples(index=False):
        key = (cohort_key(row.cohort), *hip_key(row.subject, row.visit, "right"))
        if key in first:  # the preprocessing uses the first row of a subject and visit only
            check = RowCheck(str(row.image_path), str(row.subject), str(row.visit))
            check.add("manifest", f"duplicate manifest row for this subject and visit (line {first[key]} is used)")
        else:
            first[key] = row.line
            check = check_radiograph(row, index, settings["points_unit"], settings["accept_mirrored"], limits, files)
        checks.append(check)
    held = {labels.key_of(row.subject, row.visit, side, row.cohort)
            for row in manifest.itertuples(index=False) for side in SIDES}
    checks += _labels_only(labels, held, "no radiograph in the manifest")
    return checks, 2 * len(manifest), index


def _labels_only(labels, held, where):
    """A "labels only" RowCheck per subject and visit with labelled hips that `held` (hip keys) lacks."""
    unmatched = {}
    for key in sorted(set(labels.grades) - held):
        unmatched.setdefault(key[:2], []).append(key)
    checks = []
    for keys in unmatched.values():
        subject, visit = labels.spelled[keys[0]]
        check = RowCheck("", subject, visit, status="labels only")
        sides = " and ".join(side for side in SIDES if any(k[2] == side for k in keys))
        check.problems.append(("labels", f"labels for the {sides} hip(s) but {where}"))
        checks.append(check)
    return checks


def check_group(group_path, points_dir, labels_path, settings):
    """(RowChecks, n_hips, label index) of the group's HDF5 (one unit per hip): its scans listed, each hip's `.pts` read
    and sanity-checked as GroupSource does, the labels joined."""
    labels = read_labels(labels_path, settings.get("labels"))
    limits = AnatomyLimits.of(settings.get("anatomy"))
    index = _LabelIndex(labels)
    with GroupFile(group_path) as group:
        scans = list(group.scans)
    log.info("group file %s: %d hips; label table %s: %d labelled hips", group_path, len(scans), labels_path,
             len(labels.grades))
    checks = []
    for scan in scans:
        check = RowCheck(scan.source, scan.subject, scan.visit, side=scan.side)
        _check_labels(check, index, scan.subject, scan.visit, (scan.side,), scan.cohort)
        points_path = (Path(points_dir) / Path(scan.source).stem).with_suffix(".pts")
        if resolve_hip_files(points_path).get(scan.side, (None, ""))[1] == "mirrored":
            check.add("points", "a _RasL file needs the source image width, which the group HDF5 lacks", scan.side)
            checks.append(check)
            continue
        points, problems = read_hip_points(points_path, (0, 0), scan.header_spacing)
        if scan.side in problems:
            check.add("points", problems[scan.side], scan.side)
        elif scan.input_spacing is not None:
            try:
                check_hip(points[scan.side], scan.input_spacing, limits)
                check_side(points[scan.side], scan.side)
            except LandmarkError as err:
                check.add("points", err, scan.side)
        checks.append(check)
    held = {labels.key_of(scan.subject, scan.visit, scan.side, scan.cohort) for scan in scans}
    checks += _labels_only(labels, held, "no scan in the group HDF5")
    return checks, len(scans), index


def problem_summary(checks):
    """'kind: n units, e.g. ...' lines, the most frequent kind first."""
    counts = Counter(kind for check in checks for kind in dict.fromkeys(k for k, _ in check.problems))
    lines = []
    for kind, n in counts.most_common():
        examples = Counter(text for check in checks for k, text in check.problems if k == kind)
        quoted = "; ".join(f"{text!r} (x{m})" for text, m in examples.most_common(EXAMPLES))
        lines.append(f"{kind}: {n} unit(s), e.g. {quoted}")
    return lines


def near_ids(index):
    """The failure for subject ids that match the labels only loosely (leading zeros, punctuation), naming a
    few pairs and the setting that would accept them; "" when there are none."""
    if not index.near:
        return ""
    pairs = sorted(index.near.items())
    shown = ", ".join(f"manifest {ours!r} ~ labels {theirs!r}" for ours, theirs in pairs[:EXAMPLES])
    ours, theirs = pairs[0]
    if ours.isdigit() and theirs.isdigit() and len(theirs) < len(ours):
        fix = (f"the label table's ids lost their leading zeros (a spreadsheet typed them as numbers): set "
               f"cohort.subject_digits: {len(ours)} to pad them, or store the ids as text")
    elif ours.isdigit() and theirs.isdigit():
        fix = "the manifest's ids lost their leading zeros: store them as text (or rebuild it with osteoloc manifest)"
    else:
        fix = ("spell the ids alike in both files (osteoloc manifest --subject-format builds the manifest's ids, "
               "e.g. \"{cohort}-{subject}\"; cohort.subject_digits pads the label table's all-digit ids)")
    return (f"{len(pairs)} subject id(s) match a label row only when leading zeros and punctuation are ignored, "
            f"e.g. {shown}: {fix}")
