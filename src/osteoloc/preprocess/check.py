"""The check before the long run (rule `check_inputs`, `osteoloc.preprocess.stages.check_inputs`;
docs/preprocessing.md "New data: first steps").

The manifest and the label table are parsed once, every radiograph's DICOM header is read without its
pixel data (io.dicom_header), every `.pts` file is read and put through the landmark checks the
preprocessing applies (sources.check_points), and the labels are joined with the radiographs. The result
is one row per radiograph (ok, or what will exclude which hip) in `input_check.csv`, plus a row per
subject and visit whose labels have no radiograph.

The check fails, before any shard job starts, on what would fail the whole run whatever the shards did: a
manifest or label table that cannot be read or lacks a column (their readers' errors), an empty cohort,
problems on every hip (e.g. subject ids that match no label row), or a transfer syntax no installed decoder
handles (a setup problem, however few files: install a decoder, or convert or leave out those files). Its
message names the most common problems. Other problems are the data's: they are
listed, and the preprocessing excludes those hips and judges the excluded share at its gather as always
(so its exclusions table is written even when that share refuses the run).
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osteoloc.cohort.landmarks import LandmarkError, check_hip, check_side
from osteoloc.io.dicom_header import read_header
from osteoloc.io.group_h5 import GroupFile
from osteoloc.io.labels import hip_key, read_labels
from osteoloc.io.manifest import read_manifest
from osteoloc.io.pts import read_hip_points, resolve_hip_files
from osteoloc.names import SIDES
from osteoloc.preprocess.sources import check_points, points_spacing

log = logging.getLogger(__name__)

COLUMNS = ("image_path", "subject", "visit", "side", "status", "hips_lost", "problems")
# how many example rows the failure message quotes per kind of problem
EXAMPLES = 3


class InputCheckFailed(ValueError):
    """The inputs would fail the whole run: nothing should start."""


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
    """{hip key: reason} of the label table's problem rows whose hip could be named."""
    reasons = {}
    for subject, visit, side, reason in labels.problems:
        try:
            reasons.setdefault(hip_key(subject, visit, side), reason)
        except ValueError:
            pass  # an unknown side: the hip it meant is simply unlabelled
    return reasons


def _check_labels(check, labels, reasons, subject, visit, sides=SIDES):
    for side in sides:
        key = hip_key(subject, visit, side)
        if key in labels.grades:
            continue
        check.add("labels", f"label row refused: {reasons[key]}" if key in reasons else "no label row for this hip",
                  side)


def check_radiograph(row, labels, reasons, points_unit, accept_mirrored):
    """The RowCheck of one manifest row (a named tuple of io.manifest.read_manifest's frame)."""
    check = RowCheck(str(row.image_path), str(row.subject), str(row.visit))
    _check_labels(check, labels, reasons, row.subject, row.visit)
    given = float(row.spacing) if np.isfinite(row.spacing) else None
    try:
        header = read_header(row.image_path, given)
    except (ValueError, OSError) as err:
        check.add("dicom", err)
        return check
    for problem in header.problems:
        check.add("decoder" if problem.startswith("transfer syntax") else "dicom", problem)
    if header.spacing is None or not all(header.shape):
        return check  # the points cannot be placed without the image's size and spacing
    units, unit = points_spacing(row.points_unit or points_unit, header)
    points, problems = read_hip_points(row.points_path, header.shape, units)
    failures, swapped = check_points(points, problems, header.shape, header.spacing, unit)
    if swapped is not None and not accept_mirrored:
        failures = {side: str(swapped) for side in SIDES}
    for side in SIDES:
        if side in failures:
            check.add("points", failures[side], side)
    return check


def check_manifest(manifest_path, labels_path, settings):
    """(RowChecks, n_hips) of the manifest cohort: one per row, then one per subject and visit whose labels
    have no radiograph (status "labels only", no hip lost: the excluded share does not count them)."""
    manifest = read_manifest(manifest_path)
    labels = read_labels(labels_path, settings.get("labels"))
    log.info("manifest %s: %d radiographs; label table %s: %d labelled hips, %d refused rows", manifest_path,
             len(manifest), labels_path, len(labels.grades), len(labels.problems))
    reasons = _label_reasons(labels)
    checks, first = [], {}
    for i, row in enumerate(manifest.itertuples(index=False)):
        key = hip_key(row.subject, row.visit, "right")
        if key in first:  # the preprocessing uses the first row of a subject and visit only
            check = RowCheck(str(row.image_path), str(row.subject), str(row.visit))
            check.add("manifest", f"duplicate manifest row for this subject and visit (line {first[key] + 2} is used)")
        else:
            first[key] = i
            check = check_radiograph(row, labels, reasons, settings["points_unit"], settings["accept_mirrored"])
        checks.append(check)
    held = {hip_key(row.subject, row.visit, side) for row in manifest.itertuples(index=False) for side in SIDES}
    checks += _labels_only(labels, held, "no radiograph in the manifest")
    return checks, 2 * len(manifest)


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
    """(RowChecks, n_hips) of the group's HDF5 (one unit per hip): its scans listed, each hip's `.pts` read
    and sanity-checked as GroupSource does, the labels joined."""
    labels = read_labels(labels_path, settings.get("labels"))
    reasons = _label_reasons(labels)
    with GroupFile(group_path) as group:
        scans = list(group.scans)
    log.info("group file %s: %d hips; label table %s: %d labelled hips", group_path, len(scans), labels_path,
             len(labels.grades))
    checks = []
    for scan in scans:
        check = RowCheck(scan.source, scan.subject, scan.visit, side=scan.side)
        _check_labels(check, labels, reasons, scan.subject, scan.visit, (scan.side,))
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
                check_hip(points[scan.side], scan.input_spacing)
                check_side(points[scan.side], scan.side)
            except LandmarkError as err:
                check.add("points", err, scan.side)
        checks.append(check)
    held = {hip_key(scan.subject, scan.visit, scan.side) for scan in scans}
    checks += _labels_only(labels, held, "no scan in the group HDF5")
    return checks, len(scans)


def problem_summary(checks):
    """'kind: n units, e.g. ...' lines, the most frequent kind first."""
    counts = Counter(kind for check in checks for kind in dict.fromkeys(k for k, _ in check.problems))
    lines = []
    for kind, n in counts.most_common():
        examples = Counter(text for check in checks for k, text in check.problems if k == kind)
        quoted = "; ".join(f"{text!r} (x{m})" for text, m in examples.most_common(EXAMPLES))
        lines.append(f"{kind}: {n} unit(s), e.g. {quoted}")
    return lines
