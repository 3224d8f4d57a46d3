"""Import the group's preprocessed HDF5 (DATA-FORMATS.md, last section) into the study HDF5.

Its crops are already resampled, cropped, flipped and normalised; it holds no landmarks, so each hip's
`.pts` points are joined with the stored crop offsets and spacings and flipped like the pixels. The
result has the same schema as `osteoloc.preprocess.preprocess_study`'s output.
"""

import logging
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc2 filter (id 32026) the group's file is written with
import numpy as np

from osteoloc.exclusions import Exclusions
from osteoloc.io.atomic import write_csv
from osteoloc.io.labels import hip_key, normalise_side, read_labels
from osteoloc.io.pts import read_hip_points, resolve_hip_files
from osteoloc.io.study_h5 import StudyWriter
from osteoloc.landmarks import FEMORAL_HEAD, LandmarkError, check_hip, fit_circle, validate_groups
from osteoloc.preprocess import HipCrop, hip_record, label_problems_to_exclusions, to_crop, to_resampled

log = logging.getLogger(__name__)


def _spacing_pair(value):
    if value is None:
        return None
    value = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if value.size == 1:
        return float(value[0]), float(value[0])
    return float(value[0]), float(value[1])


def iter_scans(h5):
    """(subject, visit, side, image dataset) for every hip group `/scans/{subject}/{visit}/{side}`."""
    for subject in h5["scans"]:
        for visit in h5["scans"][subject]:
            for side in h5["scans"][subject][visit]:
                group = h5["scans"][subject][visit][side]
                if isinstance(group, h5py.Group) and "image" in group:
                    yield group, group["image"]


def import_group_study(group_path, points_dir, labels_path, study_path, exclusions_path, *, groups,
                       max_excluded_fraction, spacing_mm=None, crop_size=None):
    """Write the study HDF5 from the group's file plus `.pts` files named after each scan's source image
    (`<points_dir>/<source stem>.pts` or its per-hip files). `spacing_mm` / `crop_size`, when given, must
    match the file's. Returns the number of hips written."""
    groups = validate_groups(groups)
    labels = read_labels(labels_path)
    exclusions = Exclusions()
    label_problems_to_exclusions(labels, labels_path, exclusions)
    points_dir = Path(points_dir)
    seen, n_hips = set(), 0
    with h5py.File(group_path, "r") as h5:
        scans = list(iter_scans(h5))
        if not scans:
            raise ValueError(f"{group_path}: no /scans/{{subject}}/{{visit}}/{{side}}/image datasets")
        file_size = scans[0][1].shape[0]
        first = scans[0][1].attrs  # a release without resampling has no pixel_spacing: the input's then
        file_spacing = (_spacing_pair(first.get("pixel_spacing")) or _spacing_pair(first.get("input_pixel_spacing"))
                        or _spacing_pair(first.get("source_pixel_spacing")))
        if file_spacing is None:
            raise ValueError(f"{group_path}: the first scan has no pixel_spacing / input_pixel_spacing attribute")
        file_spacing = file_spacing[1]
        for name, given, found in (("crop_size", crop_size, file_size), ("spacing_mm", spacing_mm, file_spacing)):
            if given is not None and not np.isclose(float(given), float(found)):
                raise ValueError(f"{group_path}: its crops have {name} {found}, the config says {given}")
        with StudyWriter(study_path, file_size, file_spacing, groups, attrs={"imported_from": "group_hdf5"}) as writer:
            for group, image in scans:
                n_hips += 1
                subject = str(group.attrs.get("subject_id", "")) or Path(group.parent.parent.name).name
                visit = str(group.attrs.get("visit", "")) or Path(group.parent.name).name
                side = normalise_side(group.attrs.get("side", group.name.rsplit("/", 1)[-1]))
                key = hip_key(subject, visit, side)
                seen.add(key)
                record = _import_hip(group, image, subject, visit, side, key, labels, points_dir, groups,
                                     file_size, file_spacing, exclusions)
                if record is not None:
                    writer.append(record)
            for key in sorted(set(labels.grades) - seen):
                exclusions.add("labels", *labels.spelled[key], key[2], labels_path,
                               "labels but no scan in the group HDF5")
            kept = writer.count + len(writer.buffer)
            write_csv(exclusions.frame(), exclusions_path)
            exclusions.check_fraction(n_hips, kept, max_excluded_fraction)
    log.info("imported %d of %d hips from %s", kept, n_hips, group_path)
    return kept


def _import_hip(group, image, subject, visit, side, key, labels, points_dir, groups, size, spacing_mm,
                exclusions):
    attrs = image.attrs
    source = Path(str(attrs.get("source", ""))).name
    cohort = str(group.attrs.get("dataset", ""))

    def exclude(stage, file, reason):
        exclusions.add(stage, subject, visit, side, file, reason)
        log.warning("excluded %s/%s/%s: %s", subject, visit, side, reason)

    if key in labels.problem_keys:
        return None
    if key not in labels.grades:
        exclude("labels", source, "no label row for this hip")
        return None
    if image.shape != (size, size):
        exclude("crop", source, f"crop shape {image.shape} differs from the file's first crop {(size, size)}")
        return None
    header_spacing = _spacing_pair(attrs.get("source_pixel_spacing"))
    input_spacing = _spacing_pair(attrs.get("input_pixel_spacing")) or header_spacing
    if input_spacing is None:
        exclude("crop", source, "no input_pixel_spacing / source_pixel_spacing attribute")
        return None
    stem = points_dir / Path(source).stem
    files = resolve_hip_files(stem.with_suffix(".pts"))
    if files.get(side, (None, ""))[1] == "mirrored":
        exclude("points", files[side][0], "a _RasL file needs the source image width, which the group HDF5 lacks")
        return None
    # Units are mm when the source DICOM had a spacing, else pixels (the shape only serves _RasL).
    points, problems = read_hip_points(stem.with_suffix(".pts"), (0, 0), header_spacing)
    if side in problems:
        exclude("points", stem.with_suffix(".pts"), problems[side])
        return None
    try:
        check_hip(points[side], input_spacing)
    except LandmarkError as err:
        exclude("landmarks", stem.with_suffix(".pts"), err)
        return None
    scale = spacing_mm / input_spacing[1]
    offset = (float(attrs["crop_offset_x"]), float(attrs["crop_offset_y"]))
    resampled = to_resampled(points[side], scale)
    cx, cy, r = fit_circle(resampled[FEMORAL_HEAD])
    centre = to_crop(np.array([cx, cy]), offset, side, size)
    p5 = float(attrs.get("intensity_offset", np.nan))
    crop = HipCrop(image=np.asarray(image[()], dtype=np.float32),
                   contour=to_crop(resampled, offset, side, size),
                   contour_manual=np.full((80, 2), np.nan), offset=offset,
                   head_circle=(centre[0], centre[1], r),
                   intensity=(p5, p5 + float(attrs.get("intensity_slope", np.nan))))
    return hip_record(crop, labels.grades[key], groups, size, subject, visit, side, cohort, source,
                      input_spacing, "source_pixel_spacing" if header_spacing is not None else "given")


def export_group_h5(study, path):
    """Write a study (as `load_study` returns it, with images) in the group's layout: for tests and for
    handing crops back to the group. Blosc2-compressed like their release."""
    with h5py.File(path, "w") as h5:
        for i, row in study.meta.iterrows():
            group = h5.require_group(f"scans/{row.subject}/{row.visit}/{row.side}")
            group.attrs.update(dataset=row.cohort, subject_id=row.subject, visit=row.visit, side=row.side)
            ds = group.create_dataset("image", data=study.images[i].astype(np.float64),
                                      **hdf5plugin.Blosc2(cname="blosclz", clevel=9, filters=hdf5plugin.Blosc2.SHUFFLE))
            p5, p95 = (float(v) for v in study.intensity[i])
            spacing = [float(v) for v in study.source_spacing[i]]
            if row.spacing_from != "given":  # the group writes it only when the DICOM header had one
                ds.attrs["source_pixel_spacing"] = spacing
            ds.attrs.update(source=f"/data/images/{row.source}", pixel_spacing=[study.attrs["spacing_mm"]] * 2,
                            input_pixel_spacing=spacing,
                            intensity_offset=p5, intensity_slope=p95 - p5,
                            crop_offset_x=int(study.crop_offset[i][0]), crop_offset_y=int(study.crop_offset[i][1]),
                            femoral_head_radius=float(study.head_circle[i][2]), sourcil_radius=0.0)
    return path

