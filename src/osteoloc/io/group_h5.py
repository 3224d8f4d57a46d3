"""The group's preprocessed HDF5 (docs/method.md section 2.7): its reader and a writer of that layout.

`/scans/{subject}/{visit}/{side}/image`: one crop per hip, already resampled, cropped, flipped and
normalised (Blosc2-compressed), with the crop offset, spacings and intensities as attributes; it holds no
landmarks. `osteoloc.preprocess.sources.GroupSource` turns it into study rows.
"""

from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # registers the Blosc2 filter (id 32026) the group's file is written with
import numpy as np

from osteoloc.io.labels import normalise_side


def _spacing_pair(value):
    """An attribute's spacing as (row_mm, col_mm); a single value serves both; None when absent."""
    if value is None:
        return None
    value = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if value.size == 1:
        return float(value[0]), float(value[0])
    return float(value[0]), float(value[1])


def iter_scans(h5):
    """(hip group, image dataset) for every hip group `/scans/{subject}/{visit}/{side}` holding an image."""
    if "scans" not in h5:
        return
    for subject in h5["scans"]:
        for visit in h5["scans"][subject]:
            for side in h5["scans"][subject][visit]:
                group = h5["scans"][subject][visit][side]
                if isinstance(group, h5py.Group) and "image" in group:
                    yield group, group["image"]


@dataclass(frozen=True)
class GroupScan:
    """One hip of the group's file, as its attributes describe it (units in the comments)."""

    name: str  # HDF5 path of the hip's group, /scans/{subject}/{visit}/{side}
    subject: str
    visit: str
    side: str  # right / left
    cohort: str  # the group's `dataset` attribute
    source: str  # the source image's file name, no folders
    shape: tuple  # (rows, cols) of the stored crop
    header_spacing: tuple  # (row_mm, col_mm) of the source DICOM header, None when it had none
    input_spacing: tuple  # (row_mm, col_mm) the crop was resampled from (header spacing when absent), or None
    crop_offset: tuple  # (x0, y0) of the crop in the resampled, unflipped image (px), None when absent
    intensity: tuple  # (p5, p95) of the normalisation, NaN when absent


class GroupFile(h5py.File):
    """The group HDF5 opened read-only (an h5py File: a context manager, or call `close()`). Lists every
    hip on opening and raises ValueError naming the file when it holds none or its first crop states no
    spacing."""

    def __init__(self, path):
        super().__init__(path, "r")
        self.path = path
        try:
            self.scans = [self._scan(group, image) for group, image in iter_scans(self)]
            if not self.scans:
                raise ValueError(f"{path}: no /scans/{{subject}}/{{visit}}/{{side}}/image datasets")
            first = self[self.scans[0].name]["image"].attrs
            # a release without resampling has no pixel_spacing: its input's spacing is the crops' then
            spacing = (_spacing_pair(first.get("pixel_spacing")) or _spacing_pair(first.get("input_pixel_spacing"))
                       or _spacing_pair(first.get("source_pixel_spacing")))
            if spacing is None:
                raise ValueError(f"{path}: the first scan has no pixel_spacing / input_pixel_spacing attribute")
        except BaseException:
            self.close()
            raise
        self.crop_size = self.scans[0].shape[0]  # px
        self.spacing_mm = spacing[1]  # mm per crop pixel

    def _scan(self, group, image):
        attrs = image.attrs
        subject = str(group.attrs.get("subject_id", "")) or Path(group.parent.parent.name).name
        visit = str(group.attrs.get("visit", "")) or Path(group.parent.name).name
        try:
            side = normalise_side(group.attrs.get("side", group.name.rsplit("/", 1)[-1]))
        except ValueError as err:
            raise ValueError(f"{self.path}: {group.name}: {err}") from None
        header = _spacing_pair(attrs.get("source_pixel_spacing"))
        offset = None
        if "crop_offset_x" in attrs and "crop_offset_y" in attrs:
            offset = (float(attrs["crop_offset_x"]), float(attrs["crop_offset_y"]))
        p5 = float(attrs.get("intensity_offset", np.nan))
        return GroupScan(name=group.name, subject=subject, visit=visit, side=side,
                         cohort=str(group.attrs.get("dataset", "")), source=Path(str(attrs.get("source", ""))).name,
                         shape=tuple(image.shape), header_spacing=header,
                         input_spacing=_spacing_pair(attrs.get("input_pixel_spacing")) or header,
                         crop_offset=offset, intensity=(p5, p5 + float(attrs.get("intensity_slope", np.nan))))

    def image(self, scan):
        """The stored crop of `scan`: float32 (S, S), normalised and flipped as the group wrote it."""
        return np.asarray(self[scan.name]["image"][()], dtype=np.float32)


def export_group_h5(study, path):
    """Write a study (as the tests' `load_study` returns it, with images) in the group's layout: for tests and for
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

