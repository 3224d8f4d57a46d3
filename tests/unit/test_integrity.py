"""Plausible input mistakes end as an exclusion naming the file and the likely cause, and nothing wrong
reaches the study file. Each test builds its bad input from the phantom's files (a small phantom cohort
generated once) and compares with the study of the untouched cohort."""

import numpy as np
import pydicom
import pytest

from helpers import Variant, assert_excluded, mirror, spacing_of, without_spacing

from osteoloc.io.pts import read_pts, write_pts


def assert_swapped(v, i, file):
    """Both hips of manifest row i excluded as swapped, naming `file`; the subject is not in the study."""
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    assert_excluded(table, subject, "landmarks", file, "hips swapped or image mirrored")
    assert subject not in set(study.meta.subject)


# --- 1. millimetre points read as pixels ---------------------------------------------------------------
def test_millimetre_points_read_as_pixels_are_excluded_with_the_cause(integrity_phantom, tmp_path):
    """A DICOM without spacing tags, the spacing in the manifest, and .pts in mm (BoneFinder knew a fine
    spacing): the auto rule reads them as pixels, the head-radius lower limit catches it."""
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    image, pts = v.path(i, "image_path"), v.path(i, "points_path")
    fine = 0.15  # the scanner's spacing as the manifest states it; the .pts is in mm at that spacing
    points_px = read_pts(pts) / spacing_of(image)
    write_pts(points_px * fine, pts)
    without_spacing(image)
    v.manifest["spacing"] = ""
    v.manifest.loc[i, "spacing"] = fine
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    assert_excluded(table, subject, "landmarks", pts.name, "points look like millimetres read as pixels")
    assert table[table.subject == subject].reason.str.contains(r"femoral head radius \d+\.\d px").all()
    assert subject not in set(study.meta.subject)
    # stated as mm, the same file is read as millimetres: then the (claimed) fine spacing itself is
    # implausible for this image, and the message no longer blames the unit
    v.manifest["points_unit"] = ""
    v.manifest.loc[i, "points_unit"] = "mm"
    table, study = v.run()
    reasons = table[table.subject == subject].reason
    assert len(reasons) == 2 and not reasons.str.contains("millimetres read as pixels").any()
    assert subject not in set(study.meta.subject)


def test_points_unit_mm_at_the_phantom_spacing_gives_the_original_crop(integrity_phantom, tmp_path):
    """At 0.6-0.8 mm a wrong unit may look plausible: stating the unit (config default) reads it right."""
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    image = v.path(i, "image_path")
    spacing = spacing_of(image)
    without_spacing(image)
    v.manifest["spacing"] = ""
    v.manifest.loc[i, "spacing"] = spacing
    table, study = v.run(points_unit="mm")
    assert table.empty
    ours, theirs = v.rows_of(study, i), v.rows_of(v.original, i)
    for side in ("right", "left"):
        np.testing.assert_allclose(study.contour[ours[side]], v.original.contour[theirs[side]], atol=1e-3)
        np.testing.assert_array_equal(study.images[ours[side]], v.original.images[theirs[side]])


# --- 2. swapped hips ---------------------------------------------------------------------------------------
def test_per_hip_files_named_by_the_anatomical_side_are_excluded(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=True)
    stem = v.path(i, "points_path")
    left_file, right_file = stem.with_name(stem.name + "_L.pts"), stem.with_name(stem.name + "_R.pts")
    left_file.rename(tmp_path / "swap.pts")
    right_file.rename(left_file)
    (tmp_path / "swap.pts").rename(right_file)
    assert_swapped(v, i, stem.name)


def test_a_160_point_file_with_swapped_halves_is_excluded(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    pts = v.path(i, "points_path")
    points = read_pts(pts)
    write_pts(np.vstack([points[80:], points[:80]]), pts)
    assert_swapped(v, i, pts.name)


def test_a_mirrored_radiograph_is_excluded_or_flipped_back_when_the_config_accepts_it(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    mirror(v, i)
    subject, image = v.manifest.loc[i, "subject"], v.path(i, "image_path")
    assert_swapped(v, i, v.path(i, "points_path").name)

    table, study = v.run(accept_mirrored=True)
    notes = table[table.subject == subject]
    assert list(notes.stage) == ["mirrored"] and list(notes.side) == [""] and list(notes.file) == [image.name]
    assert "flipped back" in notes.reason.iloc[0]
    ours, theirs = v.rows_of(study, i), v.rows_of(v.original, i)
    for side in ("right", "left"):  # flipped back: the very crops, contours and grades of the original
        np.testing.assert_allclose(study.images[ours[side]], v.original.images[theirs[side]], atol=1e-5)
        np.testing.assert_allclose(study.contour[ours[side]], v.original.contour[theirs[side]], atol=1e-3)
        np.testing.assert_allclose(study.contour_manual[ours[side]], v.original.contour_manual[theirs[side]],
                                   atol=1e-3)
        np.testing.assert_array_equal(study.grades[ours[side]], v.original.grades[theirs[side]])


# --- 4. manual points ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, fragment", [
    ("missing", "no .pts file"),
    ("swapped", "hips swapped or image mirrored"),
    ("truncated", "points, expected 160"),
])
def test_broken_manual_points_are_a_recorded_note_and_the_hips_stay(integrity_phantom, tmp_path, damage, fragment):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row()
    manual = v.path(i, "manual_points_path")
    if damage == "missing":
        manual.unlink()
    else:
        points = read_pts(manual)
        write_pts(np.vstack([points[80:], points[:80]]) if damage == "swapped" else points[:150], manual)
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    assert_excluded(table, subject, "manual_points", manual.name, fragment)
    assert set(table.stage) == {"manual_points"}
    rows = v.rows_of(study, i)
    assert set(rows) == {"right", "left"}  # kept for paper A
    for side, row in rows.items():
        assert np.isnan(study.contour_manual[row]).all()  # paper B gets no manual points for it
        np.testing.assert_array_equal(study.images[row], v.original.images[v.rows_of(v.original, i)[side]])
    assert len(study) == len(v.original)  # notes never remove a hip


# --- smaller messages ------------------------------------------------------------------------------------------
def test_a_single_valued_imager_pixel_spacing_is_a_named_exclusion(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row()
    image = v.path(i, "image_path")
    without_spacing(image)
    ds = pydicom.dcmread(image)
    ds.ImagerPixelSpacing = "0.7"
    ds.save_as(image)
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    rows = table[table.subject == subject]
    assert list(rows.stage) == ["dicom"] and list(rows.file) == [image.name]
    assert "ImagerPixelSpacing holds 1 value" in rows.reason.iloc[0] and "unexpected" not in rows.reason.iloc[0]
    assert subject not in set(study.meta.subject)


def test_a_voi_lut_sequence_on_a_phantom_radiograph_is_applied(integrity_phantom, tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    v = Variant(integrity_phantom, tmp_path)
    i = v.row()
    image = v.path(i, "image_path")
    ds = pydicom.dcmread(image)
    stored = ds.pixel_array
    top = int(stored.max()) + 1
    lut = np.round(np.sqrt(np.arange(top) / (top - 1)) * 65535).astype(np.uint16)  # non-linear display
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [top, 0, 16])
    item.add_new("LUTData", "US", lut.tolist())
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(image)
    table, study = v.run()
    assert table.empty
    ours, theirs = v.rows_of(study, i), v.rows_of(v.original, i)
    # the crops differ from the original (the table was applied), the landmarks do not
    assert not np.allclose(study.images[ours["right"]], v.original.images[theirs["right"]], atol=1e-3)
    np.testing.assert_allclose(study.contour[ours["right"]], v.original.contour[theirs["right"]], atol=1e-4)


def test_a_semicolon_label_file_names_the_file(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    labels = v.dir / "labels.csv"
    labels.write_text(labels.read_text().replace(",", ";"))
    with pytest.raises(ValueError, match="labels.csv: label CSV is separated by ';'"):
        v.run()
