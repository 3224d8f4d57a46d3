"""Per-hip preprocessing (METHOD.md): resample to the target spacing, crop a square centred on the
femoral-head circle (shifted to stay inside the image), flip left hips, p5/p95 normalisation; and the
study driver that streams a whole cohort into one HDF5 plus an exclusions table.

Coordinates: pixel (row i, column j) sits at x = j, y = i. Resampling is edge-aligned (the image's outer
edges stay put, as in torch's `interpolate(align_corners=False)` and skimage's `rescale`), so a source
point x maps to (x + 0.5) / scale - 0.5 with scale = target spacing / source spacing.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from osteoloc.exclusions import Exclusions
from osteoloc.io.atomic import write_csv
from osteoloc.io.dicom import read_dicom
from osteoloc.io.labels import grades_to_labels, hip_key, read_labels
from osteoloc.io.manifest import read_manifest
from osteoloc.io.pts import read_hip_points
from osteoloc.io.study_h5 import HipRecord, StudyWriter
from osteoloc.landmarks import FEMORAL_HEAD, LandmarkError, check_hip, fit_circle, target_groups, validate_groups
from osteoloc.targets import SIDES, TARGETS

log = logging.getLogger(__name__)


class CropError(ValueError):
    """A hip cannot be cropped (image smaller than the crop, flat intensities)."""


# --- resampling ---------------------------------------------------------------------------------------
def resampled_length(n_in, scale):
    """Length of an axis of n_in source pixels after resampling by `scale` (= target / source spacing)."""
    return max(int(round(n_in / scale)), 1)


def axis_weights(n_in, scale, start, count):
    """Antialiased linear resampling weights for output pixels start .. start+count-1 of one axis.

    The same kernel as torch's `interpolate(mode="bilinear", antialias=True)`: a triangle stretched to the
    output pixel size when downsampling (so every source pixel contributes, no aliasing), plain linear
    interpolation when upsampling; truncated and renormalised at the image edge.
    Returns banded (indices, weights), both (count, K): output k = sum_j weights[k, j] * source[indices[k, j]].
    """
    support = scale if scale >= 1 else 1.0
    inv = 1.0 / scale if scale >= 1 else 1.0
    centres = scale * (np.arange(start, start + count) + 0.5)
    first = np.maximum(np.floor(centres - support + 0.5), 0).astype(np.int64)
    stop = np.minimum(np.floor(centres + support + 0.5), n_in).astype(np.int64)
    width = int((stop - first).max())
    indices = first[:, None] + np.arange(width)[None, :]
    weights = np.clip(1.0 - np.abs((indices - centres[:, None] + 0.5) * inv), 0.0, None)
    weights[indices >= stop[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(indices, n_in - 1), weights


def resample_crop(image, scale, offset, size):
    """The (size, size) window at `offset` (x0, y0) of `image` resampled by `scale`, computed from the
    source pixels under that window only (banded weights, a few source pixels per output pixel), never
    from the whole resampled image."""
    x0, y0 = offset
    row_idx, row_w = axis_weights(image.shape[0], scale, y0, size)
    col_idx, col_w = axis_weights(image.shape[1], scale, x0, size)
    lo, hi = int(col_idx.min()), int(col_idx.max()) + 1
    strip = image[row_idx.ravel(), lo:hi].astype(np.float64).reshape(*row_idx.shape, hi - lo)
    rows = np.einsum("ok,okc->oc", row_w, strip)  # (size, columns of the window)
    return np.einsum("pk,opk->op", col_w, rows[:, col_idx - lo]).astype(np.float32)


def _footprints(n_in, scale, start, count):
    """Source indices under each output pixel start .. start+count-1 (edge-aligned): (count, K), padded by
    repeating the last index (harmless for a maximum)."""
    k = np.arange(start, start + count)
    first = np.minimum(np.floor(scale * k + 1e-9).astype(np.int64), n_in - 1)
    stop = np.clip(np.ceil(scale * (k + 1) - 1e-9).astype(np.int64), first + 1, n_in)
    width = int((stop - first).max())
    return np.minimum(first[:, None] + np.arange(width)[None, :], stop[:, None] - 1)


def mask_crop(mask, scale, offset, size):
    """A label mask cropped like `resample_crop`: each output pixel takes the maximum over the source
    pixels it covers, so a lesion smaller than an output pixel never vanishes when downsampling (the same
    as nearest-neighbour when upsampling). Values are kept, never blended."""
    x0, y0 = offset
    rows = _footprints(mask.shape[0], scale, y0, size)
    cols = _footprints(mask.shape[1], scale, x0, size)
    return mask[rows[:, :, None, None], cols[None, None, :, :]].max(axis=(1, 3))


def to_resampled(points, scale):
    """Source-pixel points -> resampled-pixel points (edge-aligned grids)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / scale - 0.5


def crop_offset(centre, resampled_shape, size):
    """Top-left (x0, y0) of the square crop with the circle centre in pixel size // 2 (as the group's code),
    shifted to stay inside the image; raises CropError when the image is smaller than the crop."""
    rows, cols = resampled_shape
    if rows < size or cols < size:
        raise CropError(f"image is {cols} x {rows} px after resampling, smaller than the {size} px crop")
    x0 = int(np.clip(np.floor(centre[0]) - size // 2, 0, cols - size))
    y0 = int(np.clip(np.floor(centre[1]) - size // 2, 0, rows - size))
    return x0, y0


def to_crop(points_resampled, offset, side, size):
    """Resampled-pixel points -> crop pixels, mirrored for left hips (x <- S - 1 - x, like the pixels)."""
    points = np.asarray(points_resampled, dtype=np.float64) - np.asarray(offset, dtype=np.float64)
    if side == "left":
        points[..., 0] = size - 1 - points[..., 0]
    return points


def normalise(crop):
    """(x - p5) / (p95 - p5) with the crop's own percentiles; raises CropError on a flat crop."""
    p5, p95 = np.percentile(crop, [5, 95])
    if not p95 > p5:
        raise CropError(f"flat crop (p5 = p95 = {p5:g}), nothing to normalise")
    return ((crop - p5) / (p95 - p5)).astype(np.float32), (float(p5), float(p95))


@dataclass
class HipCrop:
    image: np.ndarray  # (S, S) float32, normalised, flipped for left hips
    contour: np.ndarray  # (80, 2) crop pixels
    contour_manual: np.ndarray  # (80, 2) or NaN
    offset: tuple
    head_circle: tuple  # crop pixels
    intensity: tuple
    masks: np.ndarray = None  # (4, S, S) uint8


def preprocess_hip(pixels, spacing, points, side, crop_size, spacing_mm, manual_points=None, masks=None):
    """Crop one hip. `points` (80, 2) in source pixels; `masks` (4, rows, cols) uint8 or None."""
    scale = float(spacing_mm) / float(spacing[1])
    resampled_shape = (resampled_length(pixels.shape[0], scale), resampled_length(pixels.shape[1], scale))
    contour = to_resampled(points, scale)
    cx, cy, r = fit_circle(contour[FEMORAL_HEAD])
    offset = crop_offset((cx, cy), resampled_shape, crop_size)
    crop = resample_crop(pixels, scale, offset, crop_size)
    if side == "left":
        crop = crop[:, ::-1]
    image, intensity = normalise(crop)
    centre = to_crop(np.array([cx, cy]), offset, side, crop_size)
    manual = (np.full((80, 2), np.nan) if manual_points is None
              else to_crop(to_resampled(manual_points, scale), offset, side, crop_size))
    crop_masks = None
    if masks is not None:
        crop_masks = np.stack([mask_crop(m, scale, offset, crop_size) for m in masks])
        if side == "left":
            crop_masks = crop_masks[:, :, ::-1]
        crop_masks = np.ascontiguousarray(crop_masks, dtype=np.uint8)
    return HipCrop(image=np.ascontiguousarray(image), contour=to_crop(contour, offset, side, crop_size),
                   contour_manual=manual, offset=offset, head_circle=(centre[0], centre[1], r / 1.0),
                   intensity=intensity, masks=crop_masks)


def hip_record(crop, grades, groups, crop_size, subject, visit, side, cohort, source, source_spacing,
               spacing_from):
    """A HipCrop plus its labels and metadata as one HDF5 row."""
    group_points, valid = target_groups(crop.contour, groups, crop_size)
    grades = np.asarray(grades, dtype=np.int8)
    return HipRecord(
        image=crop.image, grades=grades, labels=grades_to_labels(grades),
        contour=crop.contour.astype(np.float32), contour_manual=np.asarray(crop.contour_manual, np.float32),
        groups=group_points, valid=valid, subject=subject, visit=visit, side=side, cohort=cohort,
        source=source, source_spacing=tuple(source_spacing), spacing_from=spacing_from,
        crop_offset=tuple(map(float, crop.offset)),
        head_circle=tuple(map(float, crop.head_circle)), intensity=crop.intensity, truth_masks=crop.masks)


# --- the study ----------------------------------------------------------------------------------------
def _outside_image(points, shape):
    rows, cols = shape
    x, y = points[:, 0], points[:, 1]
    return bool(np.any((x < -0.5) | (x > cols - 0.5) | (y < -0.5) | (y > rows - 0.5)))


def _truth_masks(truth_h5, stem, side):
    """The four lesion masks of one hip from the phantom's truth file (bit 4 * side + target)."""
    if truth_h5 is None:
        return None
    key = f"masks/{stem}"
    if key not in truth_h5:
        return None
    bits = truth_h5[key][()]
    s = SIDES.index(side)
    return np.stack([(bits >> (4 * s + t)) & 1 for t in range(len(TARGETS))]).astype(np.uint8)


def label_problems_to_exclusions(labels, labels_path, exclusions):
    for subject, visit, side, reason in labels.problems:
        exclusions.add("labels", subject, visit, side, labels_path, reason)


def preprocess_study(manifest_path, labels_path, study_path, exclusions_path, *, crop_size, spacing_mm,
                     groups, max_excluded_fraction, truth_path=None):
    """Stream every radiograph of the manifest into the study HDF5, one at a time; every unusable
    radiograph or hip becomes an exclusion row. Raises TooManyExclusions (after writing the exclusions
    table, without the HDF5) when too many hips were excluded. Returns the number of hips written."""
    groups = validate_groups(groups)
    manifest = read_manifest(manifest_path)
    labels = read_labels(labels_path)
    exclusions = Exclusions()
    label_problems_to_exclusions(labels, labels_path, exclusions)
    truth_h5 = h5py.File(truth_path, "r") if truth_path else None
    seen = set()
    try:
        with StudyWriter(study_path, crop_size, spacing_mm, groups, with_truth=truth_h5 is not None) as writer:
            for row in manifest.itertuples(index=False):
                keys = {side: hip_key(row.subject, row.visit, side) for side in SIDES}
                if keys["right"] in seen:  # a second radiograph of one subject and visit: which one is meant?
                    exclusions.add("dicom", row.subject, row.visit, "", row.image_path,
                                   "duplicate manifest row for this subject and visit (the first one is used)")
                    continue
                seen.update(keys.values())
                try:
                    _preprocess_radiograph(row, keys, labels, writer, exclusions, truth_h5,
                                           crop_size=crop_size, spacing_mm=spacing_mm, groups=groups)
                except Exception as err:  # noqa: BLE001 - one bad file must not stop the study
                    # Unforeseen trouble (a bug or an input nobody anticipated): recorded, with the
                    # traceback in the log; if it hits many files the excluded-fraction check fails loudly.
                    log.exception("unexpected error on %s", row.image_path)
                    exclusions.add("error", row.subject, row.visit, "", row.image_path,
                                   f"unexpected {type(err).__name__}: {err}")
            for key in sorted(set(labels.grades) - seen):
                exclusions.add("labels", *labels.spelled[key], key[2], labels_path,
                               "labels but no radiograph in the manifest")
            kept = writer.count + len(writer.buffer)
            write_csv(exclusions.frame(), exclusions_path)
            fraction = exclusions.check_fraction(2 * len(manifest), kept, max_excluded_fraction)
    finally:
        if truth_h5 is not None:
            truth_h5.close()
    log.info("wrote %d hips to %s; %.1f%% of the manifest's hips excluded (%d exclusion rows)",
             kept, study_path, 100 * fraction, len(exclusions.rows))
    return kept


def _preprocess_radiograph(row, keys, labels, writer, exclusions, truth_h5, *, crop_size, spacing_mm, groups):
    """One radiograph -> up to two HDF5 rows; problems become exclusions, never exceptions."""
    image_path = row.image_path
    source = Path(image_path).name
    given = None if not np.isfinite(row.spacing) else float(row.spacing)
    try:
        radiograph = read_dicom(image_path, spacing=given, dtype=None)  # native ints: crops convert
    except (ValueError, OSError) as err:
        exclusions.add("dicom", row.subject, row.visit, "", image_path, err)
        log.warning("excluded %s: %s", source, err)
        return
    # BoneFinder writes millimetres when the DICOM has a spacing, pixels otherwise.
    points_spacing = radiograph.spacing if radiograph.spacing_in_header else None
    points, problems = read_hip_points(row.points_path, radiograph.pixels.shape, points_spacing)
    manual = {}
    if row.manual_points_path:
        manual, _ = read_hip_points(row.manual_points_path, radiograph.pixels.shape, points_spacing)
    stem = Path(image_path).stem
    for side in SIDES:
        key = keys[side]

        def exclude(stage, file, reason):
            exclusions.add(stage, row.subject, row.visit, side, file, reason)
            log.warning("excluded %s %s: %s", source, side, reason)

        if key in labels.problem_keys:
            continue  # recorded once, from the label table
        if key not in labels.grades:
            exclude("labels", image_path, "no label row for this hip")
            continue
        if side in problems:
            exclude("points", row.points_path, problems[side])
            continue
        hip = points[side]
        if _outside_image(hip, radiograph.pixels.shape):
            exclude("points", row.points_path, "points outside the image")
            continue
        try:
            check_hip(hip, radiograph.spacing)
        except LandmarkError as err:
            exclude("landmarks", row.points_path, err)
            continue
        try:
            crop = preprocess_hip(radiograph.pixels, radiograph.spacing, hip, side, crop_size, spacing_mm,
                                  manual_points=manual.get(side), masks=_truth_masks(truth_h5, stem, side))
            cohort = row.cohort or labels.cohort.get(key, "")
            record = hip_record(crop, labels.grades[key], groups, crop_size, row.subject, row.visit, side,
                                cohort, source, radiograph.spacing, radiograph.spacing_source)
        except ValueError as err:  # CropError included
            exclude("crop", image_path, err)
            continue
        except Exception as err:  # noqa: BLE001 - unforeseen: recorded for this hip, traceback in the log
            log.exception("unexpected error on %s %s", source, side)
            exclude("error", image_path, f"unexpected {type(err).__name__}: {err}")
            continue
        writer.append(record)
