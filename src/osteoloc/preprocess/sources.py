"""Hip sources: where the study's hips come from (docs/preprocessing.md). Each source turns its inputs
into study rows (`HipRecord`) or `Exclusion` rows and writes nothing; `driver.write_study` consumes them.

A source is a context manager with
- `crop_size` (px), `spacing_mm` (mm per crop pixel), `groups`, `layers` (the names of the label layers its
  records carry, e.g. `lesions`, `cue`), `attrs`: the study file's layout;
- `n_hips`: the hips the study expects (denominator of the excluded share);
- `units`: its work units in study order (manifest rows, or the group file's scans);
- `label_exclusions()`: rows known from the label table alone (first in the table);
- `hips(units=None)`: records and exclusions of the given units (a shard), in unit order; the answer for
  one unit never depends on which other units are asked for, so shards concatenate to the whole study;
- `unmatched_exclusions()`: labelled hips that no unit holds (last in the table).
"""

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from osteoloc.io.dicom import MAGNIFICATION, read_dicom
from osteoloc.io.group_h5 import GroupFile
from osteoloc.io.labels import LabelTable, cohort_key, grades_to_labels, hip_key, read_labels
from osteoloc.io.manifest import POINTS_UNITS, read_manifest
from osteoloc.io.pts import read_hip_points, resolve_hip_files
from osteoloc.io.study_h5 import HipRecord
from osteoloc.io.truth_h5 import TruthFile
from osteoloc.cohort.landmarks import (DEFAULT_LIMITS, HipsSwapped, LandmarkError, Misoriented, check_hip,
                                       check_orientation, check_pair, check_side, head_circle, outside_image,
                                       target_groups, validate_groups)
from osteoloc.preprocess.exclusions import Exclusion
from osteoloc.preprocess.geometry import (HipCrop, landmarks_in_crop, mirror_layers, mirror_points, preprocess_hip,
                                          resample_scale)
from osteoloc.io.errors import ExpertReferenceError
from osteoloc.names import SIDES, TARGETS

log = logging.getLogger(__name__)

# Stages of exclusions-table rows that keep the hip (notes, not exclusions): `mirrored` (the radiograph was
# mirrored and flipped back, preprocess.accept_mirrored), `manual_points` (its manual points were
# refused: the hip stays in the study with NaN manual points, so paper B's training leaves it out) and
# `references` (an expert reference went unused: its hip is not in the manifest, or it lies outside the crop).
NOTE_STAGES = ("mirrored", "manual_points", "references")
# A radiograph turned by 180 degrees is upside down AND has its hips on the wrong sides: no mirror image.
ROTATED_180 = ("radiograph rotated 180 degrees: upside down (the sourcil below the femoral-head centres, the "
               "teardrop, obturator foramen and shaft above them) and the right hip on the image's right; a "
               "rotation is no mirror image, so preprocess.accept_mirrored does not flip it back")


def points_spacing(unit, radiograph):
    """(spacing, unit): the (row_mm, col_mm) that turns a `.pts` file's numbers into pixels (None when they
    are pixels) and the unit that decides it. `unit` "auto" is BoneFinder's rule: millimetres when the
    DICOM header has a spacing, pixels otherwise. The millimetres are the spacing tag's as it is stored
    (`Radiograph.header_spacing`: BoneFinder knows no magnification factor)."""
    if unit == "auto":
        unit = "mm" if radiograph.spacing_in_header else "px"
    return (radiograph.header_spacing if unit == "mm" else None), unit


def _likely_cause(err, unit, spacing):
    """A landmark check's reason, led by the likely cause when a wrong unit explains it: millimetres read
    as pixels shrink a hip by the spacing (under 1 mm), pixels read as millimetres grow it."""
    shrinks = "small" if spacing[1] < 1.0 else "large"
    grows = "large" if shrinks == "small" else "small"
    if unit == "px" and err.scale == shrinks:
        return (f"points look like millimetres read as pixels: {err} (state the unit: manifest column "
                "points_unit or preprocess.points_unit = mm)")
    if unit == "mm" and err.scale == grows:
        return (f"points look like pixels read as millimetres: {err} (state the unit: manifest column "
                "points_unit or preprocess.points_unit = px)")
    return str(err)


def check_points(points, problems, shape, spacing, unit, limits=DEFAULT_LIMITS):
    """Every check of one radiograph's point set: readable, inside the image, the sanity and size limits of
    each hip (landmarks.check_hip, `limits`), its orientation (check_orientation; both hips upside down
    and on the wrong sides is a 180-degree rotation), the two hips' order and distance (check_pair) and
    each hip facing its side (check_side). `points` {side: (80, 2) source px}, `problems` {side: reason}
    from read_hip_points, `shape` (rows, cols), `spacing` (row_mm, col_mm), `unit` the points' unit as
    read. Returns (failures {side: reason}, swapped): `swapped` is the HipsSwapped error when both hips pass
    on their own but the right one lies on the image's right (the caller refuses or mirrors), else None."""
    failures = dict(problems)
    turned = {}
    for side, hip in points.items():
        if side in failures:
            continue
        if outside_image(hip, shape):
            hint = " (pixels read as millimetres? state points_unit: px)" if unit == "mm" else ""
            failures[side] = "points outside the image" + hint
            continue
        try:
            check_hip(hip, spacing, limits)
            check_orientation(hip)
        except Misoriented as err:
            failures[side], turned[side] = str(err), err.turn
        except LandmarkError as err:
            failures[side] = _likely_cause(err, unit, spacing)
    upside_down = list(turned.values()) == ["upside down"] * 2
    if upside_down and head_circle(points["right"])[0] > head_circle(points["left"])[0]:
        failures.update(right=ROTATED_180, left=ROTATED_180)
    passed = [side for side in SIDES if side in points and side not in failures]
    if len(passed) == 2:
        try:
            check_pair(points["right"], points["left"], spacing, limits)
        except HipsSwapped as err:
            return failures, err
        except LandmarkError as err:
            return {**failures, **{side: _likely_cause(err, unit, spacing) for side in passed}}, None
    for side in passed:
        try:
            check_side(points[side], side)
        except LandmarkError as err:
            failures[side] = str(err)
    return failures, None


def hip_record(crop, grades, groups, crop_size, subject, visit, side, cohort, source, source_spacing,
               spacing_from, magnification=float("nan"), cutoff=0):
    """A HipCrop plus its grades (labels: grade > `cutoff`, per target) and metadata as one study row; the
    target groups are taken from the crop's contour (crop pixels), its named label layers kept
    as they are (`lesions`, `cue`)."""
    group_points, valid = target_groups(crop.contour, groups, crop_size)
    grades = np.asarray(grades, dtype=np.int8)
    return HipRecord(
        image=crop.image, grades=grades, labels=grades_to_labels(grades, cutoff),
        contour=crop.contour.astype(np.float32), contour_manual=np.asarray(crop.contour_manual, np.float32),
        groups=group_points, valid=valid, subject=subject, visit=visit, side=side, cohort=cohort,
        source=source, source_spacing=tuple(source_spacing), spacing_from=spacing_from,
        crop_offset=tuple(map(float, crop.offset)), head_circle=tuple(map(float, crop.head_circle)),
        intensity=crop.intensity, magnification=float(magnification), layers=dict(crop.layers))


def pixel_digest(pixels):
    """A hex digest of an image's decoded pixels with their shape and type: equal for the same radiograph
    however its file is named or compressed (losslessly)."""
    pixels = np.ascontiguousarray(pixels)
    digest = hashlib.blake2b(f"{pixels.shape}{pixels.dtype.str}".encode(), digest_size=16)
    digest.update(memoryview(pixels).cast("B"))
    return digest.hexdigest()


class _LabelledSource:
    """What every source shares: the label table, its exclusions, the catch-all per unit."""

    layers = ()  # the named label layers of its records (the study file's layers)
    attrs = {}
    limits = DEFAULT_LIMITS  # AnatomyLimits of the point checks

    def __init__(self, labels_path, label_format=None):
        self.labels_path = labels_path
        # a LabelTable as given: the shards' sources crop with shards.unlabelled(), the gather joins the grades
        self.labels = (labels_path if isinstance(labels_path, LabelTable)
                       else read_labels(labels_path, label_format))  # label_format: io.labels.LabelFormat

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def label_exclusions(self):
        """Exclusion rows for the label table's own problems (junk grades, duplicate rows, bad sides)."""
        return [Exclusion.of("labels", subject, visit, side, self.labels_path, reason)
                for subject, visit, side, reason in self.labels.problems]

    def unmatched_exclusions(self):
        """Exclusion rows for labelled hips that none of the source's units holds (sorted by hip key)."""
        return [Exclusion.of("labels", *self.labels.spelled[key], key[2], self.labels_path, self.unmatched_reason)
                for key in sorted(set(self.labels.grades) - self.hip_keys)]

    def hips(self, units=None):
        """HipRecords and Exclusion rows of `units` (default: all), in unit order; a unit's items are
        produced whole before they are yielded, an unforeseen error adding an `error` row to them."""
        for unit in self.units if units is None else units:
            items = []
            try:
                self._unit(unit, items)
            except ExpertReferenceError:
                raise  # a bad row of the references CSV is the user's to fix: it stops the run
            except Exception as err:  # noqa: BLE001 - one bad file must not stop the study
                # Unforeseen trouble (a bug or an input nobody anticipated): recorded, with the traceback
                # in the log; if it hits many files the excluded-fraction check fails loudly.
                subject, visit, side, file = self._describe(unit)
                log.exception("unexpected error on %s", file)
                reason = f"unexpected {type(err).__name__}: {err}"
                items.append(Exclusion.of("error", subject, visit, side, file, reason))
            yield from items

    def _grades(self, key, exclude, file):
        """The hip's grades, or None: a label-table problem is already recorded, a missing row is excluded."""
        if key in self.labels.problem_keys:
            return None  # recorded once, from the label table
        if key not in self.labels.grades:
            exclude("labels", file, "no label row for this hip")
            return None
        return self.labels.grades[key]

    def _sane(self, points, spacing, side, exclude, file):
        """False (and the hip excluded) when its points fail the sanity limits (landmarks.check_hip), are
        not upright (check_orientation) or face the wrong way for `side` (check_side)."""
        try:
            check_hip(points, spacing, self.limits)
            check_orientation(points)
            check_side(points, side)
        except LandmarkError as err:
            exclude("landmarks", file, err)
            return False
        return True


def _excluder(out, subject, visit, side, where):
    """exclude(stage, file, reason): add one hip's exclusion to `out` and log it."""
    def exclude(stage, file, reason):
        out.append(Exclusion.of(stage, subject, visit, side, file, reason))
        log.warning("excluded %s %s: %s", where, side, reason)
    return exclude


@dataclass
class _Checked:
    """One radiograph's image and points after the point checks (`ManifestSource._check`): source pixels
    as they are to be cropped (flipped back when mirrored), `spacing` (row_mm, col_mm) of the object,
    `points` {side: (80, 2) source px}, `problems` {side: reason} of reading, `failures` {side: reason}
    of any check, `units` / `unit` how `.pts` numbers become pixels, `mirrored` whether flipped back."""

    pixels: np.ndarray
    spacing: tuple
    points: dict
    problems: dict
    units: tuple  # None when the .pts numbers are pixels
    unit: str
    failures: dict = field(default_factory=dict)
    mirrored: bool = False
    manual: dict = field(default_factory=dict)
    manual_failures: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.pixels.shape


class ManifestSource(_LabelledSource):
    """The cohort manifest (docs/contracts.md section 1): DICOM + BoneFinder `.pts` (+ manual points) +
    the label CSV; one unit per manifest row (radiograph), two hips each. `truth_path`, the phantom's
    `truth.h5`, adds lesion masks cropped like the image; `references`, the expert references (an
    `osteoloc.cohort.references.ExpertReferences` the stage reads), adds them as the lesion masks instead,
    drawn in the radiograph's grid and cropped alike (with both, the references replace truth.h5's lesion
    masks; its cue stays). `magnification` ("correct" / "ignore") as `io.dicom.read_dicom`; `limits` the
    AnatomyLimits of the point checks; `references_max_distance_mm` how far a reference may lie from its
    target's landmark group before a note says so."""

    unmatched_reason = "labels but no radiograph in the manifest"
    mirrored_reason = ("image mirrored (the right hip lies on the image's right): image and points flipped "
                       "back, as preprocess.accept_mirrored allows")

    def __init__(self, manifest_path, labels_path, *, crop_size, spacing_mm, groups, truth_path=None,
                 references=None, points_unit="auto", accept_mirrored=False, magnification="correct",
                 limits=DEFAULT_LIMITS, references_max_distance_mm=25.0, label_format=None):
        if points_unit not in POINTS_UNITS:
            raise ValueError(f"preprocess.points_unit must be one of {POINTS_UNITS}, got {points_unit!r}")
        if magnification not in MAGNIFICATION:
            raise ValueError(f"preprocess.magnification must be one of {MAGNIFICATION}, got {magnification!r}")
        self.points_unit, self.accept_mirrored = points_unit, bool(accept_mirrored)
        self.magnification, self.limits = magnification, limits
        self.references_max_distance_mm = float(references_max_distance_mm)
        self.manifest_path = Path(manifest_path)
        self.groups = validate_groups(groups)
        self.rows = list(read_manifest(manifest_path).itertuples(index=False))
        super().__init__(labels_path, label_format)
        self.crop_size, self.spacing_mm = int(crop_size), float(spacing_mm)
        self.references = references
        self.truth = TruthFile(truth_path) if truth_path else None
        if self.truth is not None and self.references is not None:
            log.warning("lesion masks from the expert references %s replace those of %s (its cue, if any, stays)",
                        self.references.path, truth_path)
        self.layers = (("lesions",) if self.truth is not None or self.references is not None else ()) + (
            ("cue",) if self.truth is not None and self.truth.has_cue else ())
        self.n_hips = 2 * len(self.rows)
        self.units = range(len(self.rows))
        # A second radiograph of one subject and visit: which one is meant? Only the first is used,
        # decided over the whole manifest so that any shard of rows gives the same answer.
        first = {}
        for i, row in enumerate(self.rows):
            first.setdefault((cohort_key(row.cohort), *hip_key(row.subject, row.visit, "right")), i)
        self.duplicate = [first[(cohort_key(row.cohort), *hip_key(row.subject, row.visit, "right"))] != i
                          for i, row in enumerate(self.rows)]
        self.hip_keys = {hip_key(row.subject, row.visit, side) for row in self.rows for side in SIDES}
        if self.references is not None:
            log.info("%d expert references of %d hips from %s", len(self.references), len(self.references.by_hip),
                     self.references.path)
        self.pixel_hashes = {}  # unit -> pixel_digest of its decoded image (duplicates are judged on these)

    def close(self):
        if self.truth is not None:
            self.truth.close()

    def unmatched_exclusions(self):
        """The labelled hips no radiograph holds, then a note per hip with expert references but no
        radiograph in the manifest (its references go unused)."""
        rows = super().unmatched_exclusions()
        for subject, visit, side, lines in self.references.unmatched(self.hip_keys) if self.references else []:
            reason = (f"expert references (line {', '.join(map(str, lines))}) for a hip with no radiograph in the "
                      "manifest: unused")
            log.warning("%s %s %s: %s", subject, visit, side, reason)
            rows.append(Exclusion.of("references", subject, visit, side, self.references.path, reason))
        return rows

    def _describe(self, i):
        row = self.rows[i]
        return row.subject, row.visit, "", row.image_path

    # --- one radiograph: each step one job, problems become exclusions or notes, never exceptions ------
    def _unit(self, i, out):
        """One radiograph -> up to two records (and the exclusions and notes of its hips) in `out`."""
        row = self.rows[i]
        if self.duplicate[i]:
            out.append(Exclusion.of("dicom", row.subject, row.visit, "", row.image_path,
                                    "duplicate manifest row for this subject and visit (the first one is used)"))
            return
        radiograph = self._decode(row, out)
        if radiograph is None:
            return
        self.pixel_hashes[i] = pixel_digest(radiograph.pixels)  # of the file's pixels, before any flip
        checked = self._check(row, radiograph, out)
        # Drawn for both hips before any hip is judged, so that a bad reference stops the run even on an
        # excluded hip; drawn on the file's grid, then flipped back with the image when it was mirrored.
        drawn = {side: self._draw_references(row, side, radiograph) for side in SIDES}
        for side in SIDES:
            self._hip(row, side, radiograph, checked, drawn[side], out)

    def _decode(self, row, out):
        """The row's radiograph (`io.dicom.Radiograph`, native integer pixels when no LUT changes them), or
        None with a `dicom` exclusion in `out`."""
        self._log_if_missing(row.image_path)
        given = None if not np.isfinite(row.spacing) else float(row.spacing)
        try:
            return read_dicom(row.image_path, spacing=given, dtype=None, magnification=self.magnification)
        except (ValueError, OSError) as err:
            out.append(Exclusion.of("dicom", row.subject, row.visit, "", row.image_path, err))
            log.warning("excluded %s: %s", Path(row.image_path).name, err)
            return None

    def _check(self, row, radiograph, out):
        """The row's points read in their unit and judged (`_judge`); a mirrored radiograph flipped back when
        `accept_mirrored` allows (`_flip_back`), then judged again; its manual points read and judged alike."""
        units, unit = points_spacing(row.points_unit or self.points_unit, radiograph)
        points, problems = self._read_points(row.points_path, radiograph.pixels.shape, units)
        checked = _Checked(pixels=radiograph.pixels, spacing=radiograph.spacing, points=points, problems=problems,
                           units=units, unit=unit)
        swapped = self._judge(checked)
        if swapped is not None and self.accept_mirrored:
            checked = self._flip_back(row, checked, out)
            swapped = self._judge(checked)
        if swapped is not None:
            checked.failures = {side: str(swapped) for side in SIDES}
        checked.manual, checked.manual_failures = self._manual_points(row, checked)
        return checked

    def _judge(self, checked):
        """Every check of the points (`check_points`) into `checked.failures`; returns the HipsSwapped error
        when the two hips pass alone but sit on the wrong sides, else None."""
        checked.failures, swapped = check_points(checked.points, checked.problems, checked.shape, checked.spacing,
                                                 checked.unit, self.limits)
        return swapped

    def _flip_back(self, row, checked, out):
        """The radiograph and its points mirrored back (`x <- W - 1 - x`), a `mirrored` note in `out`."""
        out.append(Exclusion.of("mirrored", row.subject, row.visit, "", row.image_path, self.mirrored_reason))
        log.warning("%s: %s", Path(row.image_path).name, self.mirrored_reason)
        width = checked.shape[1]
        return replace(checked, pixels=checked.pixels[:, ::-1], mirrored=True,
                       points={side: mirror_points(hip, width) for side, hip in checked.points.items()})

    def _manual_points(self, row, checked):
        """({side: (80, 2) source px} of the manual points that pass every check of the crop points,
        {side: reason} of those that do not); both empty without a manual_points_path."""
        if not row.manual_points_path:
            return {}, {}
        manual, problems = self._read_points(row.manual_points_path, checked.shape, checked.units)
        if checked.mirrored:  # the radiograph was flipped back: its manual points follow it
            manual = {side: mirror_points(hip, checked.shape[1]) for side, hip in manual.items()}
        failures, swapped = check_points(manual, problems, checked.shape, checked.spacing, checked.unit, self.limits)
        if swapped is not None:
            failures = {side: str(swapped) for side in SIDES}
        return {side: hip for side, hip in manual.items() if side not in failures}, failures

    def _draw_references(self, row, side, radiograph):
        """The hip's expert references drawn on the radiograph's grid as the file stores it
        (`ExpertReferences.draw`; their millimetres are the spacing tag's, as the points'), or None."""
        if self.references is None:
            return None
        return self.references.draw(row.subject, row.visit, side, radiograph.pixels.shape, radiograph.header_spacing)

    def _layers(self, row, side, drawn, mirrored):
        """The hip's named label layers in the grid of the pixels to crop: `lesions` (4, rows, cols) from its
        expert references when the source has them, else from truth.h5; `cue` (rows, cols) from truth.h5.
        A layer the hip lacks is left out (stored as zeros)."""
        stem = Path(row.image_path).stem
        layers = {}
        if self.references is not None:
            lesions = drawn.lesions if drawn is not None else None
        else:
            lesions = self.truth.masks(stem, side) if self.truth is not None else None
        if lesions is not None:
            layers["lesions"] = lesions
        cue = self.truth.cue(stem, side) if "cue" in self.layers else None
        if cue is not None:
            layers["cue"] = cue
        return mirror_layers(layers) if mirrored else layers

    def _hip(self, row, side, radiograph, checked, drawn, out):
        """One hip: its exclusion, or its record plus its notes (manual points, references), into `out`."""
        source = Path(row.image_path).name
        key = hip_key(row.subject, row.visit, side)
        exclude = _excluder(out, row.subject, row.visit, side, source)
        grades = self._grades(key, exclude, row.image_path)
        if grades is None:
            return
        if side in checked.failures:
            reason = checked.failures[side]
            stage = "points" if side in checked.problems or reason.startswith("points outside") else "landmarks"
            exclude(stage, row.points_path, reason)
            return
        try:
            crop = preprocess_hip(checked.pixels, checked.spacing, checked.points[side], side, self.crop_size,
                                  self.spacing_mm, manual_points=checked.manual.get(side),
                                  layers=self._layers(row, side, drawn, checked.mirrored))
            cohort = row.cohort or self.labels.cohort.get(key, "")
            record = hip_record(crop, grades, self.groups, self.crop_size, row.subject, row.visit, side, cohort,
                                source, checked.spacing, radiograph.spacing_source, radiograph.magnification,
                                cutoff=self.labels.cutoff)
        except ValueError as err:  # CropError included
            exclude("crop", row.image_path, err)
            return
        except Exception as err:  # noqa: BLE001 - unforeseen: recorded for this hip, traceback in the log
            log.exception("unexpected error on %s %s", source, side)
            exclude("error", row.image_path, f"unexpected {type(err).__name__}: {err}")
            return
        if side in checked.manual_failures:  # a note: the hip is kept, its manual contour is NaN
            exclude("manual_points", row.manual_points_path, checked.manual_failures[side])
        for reason in self._reference_notes(checked, side, drawn, crop):
            out.append(Exclusion.of("references", row.subject, row.visit, side, self.references.path, reason))
            log.warning("%s %s: %s", source, side, reason)
        out.append(record)

    def _reference_notes(self, checked, side, drawn, crop):
        """Notes (the hip is kept) for the hip's expert references that its crop lost or that lie farther than
        `references_max_distance_mm` from their target's landmark group (a wrong unit, a wrong hip)."""
        if drawn is None:
            return []
        if checked.mirrored:  # drawn on the file's grid; the points are on the flipped-back one
            drawn = drawn.mirrored(checked.shape[1])
        groups = {t: checked.points[side][self.groups[target]] for t, target in enumerate(TARGETS)}
        return (self.references.lost_in_crop(drawn, crop.layers["lesions"])
                + self.references.far_from_groups(drawn, groups, checked.spacing, self.references_max_distance_mm))

    def _read_points(self, points_path, shape, units):
        """read_hip_points, logging the folder a missing file was looked up in (exclusions name no folder)."""
        points, problems = read_hip_points(points_path, shape, units)
        if any(reason.startswith("no .pts file") for reason in problems.values()):
            self._log_if_missing(points_path, exists=False)
        return points, problems

    def _log_if_missing(self, path, exists=None):
        """Log where a missing file was looked for: relative manifest paths start from its folder."""
        if path and not (Path(path).exists() if exists is None else exists):
            log.warning("%s not found: looked up in %s (relative paths in %s start from its folder)",
                        Path(path).name, Path(path).parent, self.manifest_path)


class GroupSource(_LabelledSource):
    """The group's preprocessed HDF5 (`osteoloc.io.group_h5`) + `.pts` files named after each scan's source
    image (`<points_dir>/<source stem>.pts` or its per-hip files) + the label CSV; one unit per scan
    (hip). Its crops are used as stored; the points are mapped onto them with the stored crop offset and
    spacings and flipped like the pixels. `spacing_mm` / `crop_size`, when given, must match the file's."""

    unmatched_reason = "labels but no scan in the group HDF5"
    attrs = {"imported_from": "group_hdf5"}

    def __init__(self, group_path, points_dir, labels_path, *, groups, spacing_mm=None, crop_size=None,
                 limits=DEFAULT_LIMITS, label_format=None):
        self.groups, self.limits = validate_groups(groups), limits
        super().__init__(labels_path, label_format)
        self.points_dir = Path(points_dir)
        self.file = GroupFile(group_path)
        self.crop_size, self.spacing_mm = self.file.crop_size, self.file.spacing_mm
        checks = (("crop_size", crop_size, self.crop_size), ("spacing_mm", spacing_mm, self.spacing_mm))
        for name, given, found in checks:
            if given is not None and not np.isclose(float(given), float(found)):
                self.file.close()
                raise ValueError(f"{group_path}: its crops have {name} {found}, the config says {given}")
        self.n_hips = len(self.file.scans)
        self.units = self.file.scans
        self.hip_keys = {hip_key(scan.subject, scan.visit, scan.side) for scan in self.file.scans}

    def close(self):
        self.file.close()

    @staticmethod
    def _describe(scan):
        return scan.subject, scan.visit, scan.side, scan.source

    def _unit(self, scan, out):
        """One hip of the group's file -> a record or an exclusion."""
        subject, visit, side, source = self._describe(scan)
        size = self.crop_size
        exclude = _excluder(out, subject, visit, side, f"{subject}/{visit}")
        grades = self._grades(hip_key(subject, visit, side), exclude, source)
        if grades is None:
            return
        if scan.shape != (size, size):
            exclude("crop", source, f"crop shape {scan.shape} differs from the file's first crop {(size, size)}")
            return
        if scan.input_spacing is None:
            exclude("crop", source, "no input_pixel_spacing / source_pixel_spacing attribute")
            return
        if scan.crop_offset is None:
            exclude("crop", source, "no crop_offset_x / crop_offset_y attribute")
            return
        points_path = (self.points_dir / Path(source).stem).with_suffix(".pts")
        files = resolve_hip_files(points_path)
        if files.get(side, (None, ""))[1] == "mirrored":
            exclude("points", files[side][0],
                    "a _RasL file needs the source image width, which the group HDF5 lacks")
            return
        # Units are mm when the source DICOM had a spacing, else pixels (the shape only serves _RasL).
        points, problems = read_hip_points(points_path, (0, 0), scan.header_spacing)
        if side in problems:
            exclude("points", points_path, problems[side])
            return
        if not self._sane(points[side], scan.input_spacing, side, exclude, points_path):
            return
        scale = resample_scale(self.spacing_mm, scan.input_spacing)
        contour, circle = landmarks_in_crop(points[side], scale, scan.crop_offset, side, size)
        crop = HipCrop(image=self.file.image(scan), contour=contour, contour_manual=np.full((80, 2), np.nan),
                       offset=scan.crop_offset, head_circle=circle, intensity=scan.intensity)
        out.append(hip_record(crop, grades, self.groups, size, subject, visit, side, scan.cohort, source,
                              scan.input_spacing,
                              "source_pixel_spacing" if scan.header_spacing is not None else "given",
                              cutoff=self.labels.cutoff))  # magnification factor unknown
