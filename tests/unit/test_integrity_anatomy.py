"""Orientation, spacing and intensities as DICOM defines them, adult size limits, expert-reference distances,
named label layers: each bad input is built from the phantom's files (the cohort of test_integrity) and ends
as an exclusion or a note naming its cause, never as a wrong crop in the study."""

import numpy as np
import pydicom
import pytest
import yaml

from osteoloc.cohort.landmarks import DEFAULT_LIMITS, AnatomyLimits, head_circle
from osteoloc.cohort.phantom.anatomy import draw_hip_params
from osteoloc.cohort.references import ExpertReferenceError, ExpertReferences
from osteoloc.io.dicom import read_dicom
from osteoloc.io.pts import read_hip_points, read_pts, write_pts
from osteoloc.preprocess.exclusions import Exclusion
from osteoloc.preprocess.geometry import preprocess_hip
from osteoloc.preprocess.sources import ManifestSource
from osteoloc.io.study_h5 import HipRecord
from helpers import synthetic_pixels, write_dicom
from helpers import INTEGRITY_SETTINGS as SETTINGS
from helpers import SCHEMAS, Variant, assert_excluded, keyword_defaults, spacing_of, without_spacing


def transform(v, i, pixels_of, points_of):
    """Radiograph i of the variant with its pixels and every point file (in mm) transformed alike:
    `pixels_of(stored) -> stored`, `points_of(points_mm, (rows, cols), spacing) -> points_mm`."""
    image = v.path(i, "image_path")
    ds = pydicom.dcmread(image)
    shape, spacing = ds.pixel_array.shape, spacing_of(image)
    stored = np.ascontiguousarray(pixels_of(ds.pixel_array))
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.tobytes()
    ds.save_as(image)
    for column in ("points_path", "manual_points_path"):
        if v.manifest.loc[i, column]:
            write_pts(points_of(read_pts(v.path(i, column)), shape, spacing), v.path(i, column))


def flip_vertically(points, shape, spacing):
    return np.column_stack([points[:, 0], (shape[0] - 1) * spacing - points[:, 1]])


def rotate_ccw(points, shape, spacing):
    """np.rot90 (counter-clockwise) of the points: x' = y, y' = W - 1 - x (pixels)."""
    return np.column_stack([points[:, 1], (shape[1] - 1) * spacing - points[:, 0]])


def rotate_180(points, shape, spacing):
    return np.column_stack([(shape[1] - 1) * spacing - points[:, 0], (shape[0] - 1) * spacing - points[:, 1]])


# --- orientation -----------------------------------------------------------------------------------------
def test_a_vertically_flipped_radiograph_is_excluded_upside_down(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    transform(v, i, lambda p: p[::-1], flip_vertically)
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    assert_excluded(table, subject, "landmarks", v.path(i, "points_path").name, "radiograph upside down")
    assert subject not in set(study.meta.subject)
    assert len(study) == len(v.original) - 2  # every other hip as before


def test_a_radiograph_rotated_90_degrees_is_excluded_as_rotated(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    transform(v, i, np.rot90, rotate_ccw)
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    # rotated counter-clockwise: the top of the pelvis now faces the image's left
    assert_excluded(table, subject, "landmarks", v.path(i, "points_path").name,
                    "radiograph rotated ~90 degrees: the hip's superior side (sourcil) faces the image's left")
    assert subject not in set(study.meta.subject)


def test_a_radiograph_rotated_180_degrees_is_not_flipped_back_as_a_mirror(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    transform(v, i, lambda p: p[::-1, ::-1], rotate_180)
    table, study = v.run(accept_mirrored=True)
    subject = v.manifest.loc[i, "subject"]
    assert_excluded(table, subject, "landmarks", v.path(i, "points_path").name, "radiograph rotated 180 degrees")
    assert "mirrored" not in set(table.stage)  # not "flipped back"
    assert subject not in set(study.meta.subject)


# --- spacing and intensities -----------------------------------------------------------------------------
def test_imager_pixel_spacing_is_divided_by_the_magnification_factor(tmp_path):
    pixels = synthetic_pixels((60, 80))
    dx = write_dicom(tmp_path / "dx.dcm", pixels, spacing=0.8, spacing_tag="ImagerPixelSpacing",
                     extra={"EstimatedRadiographicMagnificationFactor": "1.2"})
    radiograph = read_dicom(dx)
    assert radiograph.spacing == pytest.approx((0.8 / 1.2, 0.8 / 1.2), rel=1e-9)  # 0.667 mm
    assert (radiograph.spacing_source, radiograph.magnification) == ("ImagerPixelSpacing", 1.2)
    assert radiograph.header_spacing == pytest.approx((0.8, 0.8), rel=1e-9)
    assert read_dicom(dx, magnification="ignore").spacing == pytest.approx((0.8, 0.8))
    both = write_dicom(tmp_path / "both.dcm", pixels, spacing=0.7, extra={
        "ImagerPixelSpacing": ["0.8", "0.8"], "EstimatedRadiographicMagnificationFactor": "1.2"})
    assert read_dicom(both).spacing == pytest.approx((0.7, 0.7))  # PixelSpacing is the object's already
    bad = write_dicom(tmp_path / "bad.dcm", pixels, spacing=0.8, spacing_tag="ImagerPixelSpacing",
                      extra={"EstimatedRadiographicMagnificationFactor": "0"})
    with pytest.raises(ValueError, match="bad.dcm: EstimatedRadiographicMagnificationFactor"):
        read_dicom(bad)


def test_a_magnified_dx_radiograph_is_cropped_at_the_objects_spacing(integrity_phantom, tmp_path):
    """A phantom radiograph given only ImagerPixelSpacing and a factor 1.2: its object spacing is 1.2 times
    finer, so its hips are 1.2 times smaller in the crop, and the study says which tag and factor."""
    v = Variant(integrity_phantom, tmp_path)
    i = v.row()
    image = v.path(i, "image_path")
    spacing = spacing_of(image)
    without_spacing(image)
    ds = pydicom.dcmread(image)
    ds.ImagerPixelSpacing = [f"{spacing:.4f}"] * 2
    ds.EstimatedRadiographicMagnificationFactor = "1.2"
    ds.save_as(image)
    # the phantom draws its heads at the image's scale: made 1.2 times smaller, some fall under 19 mm
    wide = AnatomyLimits.of({"head_radius_mm": [15, 36]})
    table, study = v.run(limits=wide)
    assert table.empty
    ours, theirs = v.rows_of(study, i), v.rows_of(v.original, i)
    for side in ("right", "left"):
        np.testing.assert_allclose(study.source_spacing[ours[side]], spacing / 1.2, rtol=1e-6)
        assert study.magnification[ours[side]] == pytest.approx(1.2)
        assert study.meta.spacing_from[ours[side]] == "ImagerPixelSpacing"
        ratio = v.original.head_circle[theirs[side], 2] / study.head_circle[ours[side], 2]
        assert ratio == pytest.approx(1.2, rel=0.01)
    assert np.all(np.delete(study.magnification, list(ours.values())) == 1.0)  # no factor elsewhere
    table, study = v.run(limits=wide, magnification="ignore")
    ours = v.rows_of(study, i)
    for side in ("right", "left"):
        np.testing.assert_allclose(study.images[ours[side]], v.original.images[theirs[side]], atol=1e-6)
        assert study.magnification[ours[side]] == 1.0


def test_a_negative_rescale_slope_does_not_invert_the_crop(integrity_phantom, tmp_path):
    """Stored values inverted and RescaleSlope -1 / RescaleIntercept max: the modality LUT restores the
    original values, so the normalised crops equal the clean file's (to 1e-5; inverted they would differ
    by up to 2)."""
    v = Variant(integrity_phantom, tmp_path)
    i = v.row()
    image = v.path(i, "image_path")
    ds = pydicom.dcmread(image)
    top = (1 << int(ds.BitsStored)) - 1
    ds.PixelData = (top - ds.pixel_array.astype(np.int64)).astype(np.uint16).tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = "-1", str(top)
    ds.save_as(image)
    table, study = v.run()
    assert table.empty
    ours, theirs = v.rows_of(study, i), v.rows_of(v.original, i)
    for side in ("right", "left"):
        np.testing.assert_allclose(study.images[ours[side]], v.original.images[theirs[side]], atol=1e-5)


# --- adult size limits -----------------------------------------------------------------------------------
def test_millimetre_points_read_as_pixels_at_the_phantom_spacing_are_excluded(integrity_phantom, tmp_path):
    """No spacing tag, the true spacing (0.6-0.8 mm) in the manifest, `.pts` in mm: the auto rule reads
    them as pixels, so each hip shrinks by the spacing. A head over the old 15 mm floor is now caught by
    the adult range, the message naming the radius and the range."""
    v = Variant(integrity_phantom, tmp_path)
    shrunk = {}
    for i in range(len(v.manifest)):
        image = v.path(i, "image_path")
        points, problems = read_hip_points(v.path(i, "points_path"), (1, 1), None)  # the numbers as written
        if not problems:
            shrunk[i] = max(head_circle(points[side])[2] for side in points) * spacing_of(image)
    i = min(shrunk, key=shrunk.get)
    assert 15 < shrunk[i] < DEFAULT_LIMITS.head_radius_mm[0]  # passed the old floor, fails the adult range
    image = v.path(i, "image_path")
    spacing = spacing_of(image)
    without_spacing(image)
    v.manifest["spacing"] = ""
    v.manifest.loc[i, "spacing"] = spacing
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    rows = table[table.subject == subject]
    assert set(rows.stage) == {"landmarks"} and set(rows.side) == {"right", "left"}
    assert rows.reason.str.contains(r"points look like millimetres read as pixels: femoral head radius "
                                    r"\d+\.\d px = 1\d\.\d mm, outside the adult range 19-36 mm").all(), rows.reason
    assert subject not in set(study.meta.subject)


def test_the_phantoms_heads_lie_inside_the_adult_range():
    rng = np.random.default_rng(0)
    radii = [draw_hip_params(rng, size_sd=0.2)["radius"] for _ in range(500)]  # wider than the default 0.07
    low, high = DEFAULT_LIMITS.head_radius_mm
    assert low <= min(radii) and max(radii) <= high


def test_size_limits_and_new_keys_default_to_the_schemas():
    spec = yaml.safe_load((SCHEMAS / "preprocess.schema.yaml").read_text())["properties"]
    anatomy = spec["anatomy"]
    assert AnatomyLimits.of(anatomy["default"]) == DEFAULT_LIMITS == AnatomyLimits.of(
        {key: value["default"] for key, value in anatomy["properties"].items()})
    code = keyword_defaults(ManifestSource.__init__)
    for key in ("magnification", "references_max_distance_mm", "points_unit", "accept_mirrored"):
        assert code[key] == spec[key]["default"], key


# --- expert references -----------------------------------------------------------------------------------
def test_a_reference_in_pixels_labelled_mm_gets_a_distance_note(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row()
    image = read_dicom(v.path(i, "image_path"))
    points, _ = read_hip_points(v.path(i, "points_path"), image.pixels.shape, image.spacing)
    x, y = points["right"][67]  # acet_sup's group: the lateral sourcil end, in pixels
    subject, visit = v.manifest.loc[i, ["subject", "visit"]]
    references = tmp_path / "references.csv"
    references.write_text("subject,visit,side,target,kind,unit,x,y\n"
                          f"{subject},{visit},right,acet_sup,point,px,{x:.2f},{y:.2f}\n"  # right
                          f"{subject},{visit},right,acet_sup,point,mm,{x:.2f},{y:.2f}\n")  # px labelled mm
    table, study = v.run(references_path=references)
    assert len(study) == len(v.original)  # a note: the hip stays
    notes = table[table.stage == "references"]
    far = notes[notes.reason.str.contains("from its target's landmark group")]
    assert len(far) == 1 and (far.side.iloc[0], far.file.iloc[0]) == ("right", "references.csv")
    assert far.reason.str.contains(r"acet_sup \(line 3\) lies \d+ mm from its target's landmark group, more than "
                                   r"preprocess.references_max_distance_mm = 25 mm \(pixels given as mm\?\)").all()
    assert not notes.reason.str.contains("line 2").any()  # the right one is on its landmark


def test_an_infinite_reference_coordinate_is_not_blamed_on_a_unit(tmp_path):
    for value in ("inf", "-Infinity", "1e999"):
        path = tmp_path / "references.csv"
        path.write_text("subject,visit,side,target,kind,unit,x,y\n"
                        "S1,V00,right,fem_sup,point,mm,10,12\n"
                        f"S1,V00,right,fem_sup,point,mm,{value},12\n")
        with pytest.raises(ExpertReferenceError, match=rf"references.csv: line 3: x '{value}' is not a finite number"):
            ExpertReferences(path)


# --- .pts ------------------------------------------------------------------------------------------------
def test_a_decimal_comma_in_a_pts_file_names_the_line(integrity_phantom, tmp_path):
    v = Variant(integrity_phantom, tmp_path)
    i = v.row(per_hip=False)
    pts = v.path(i, "points_path")
    lines = pts.read_text().splitlines()
    lines[12] = lines[12].replace(".", ",")  # the tenth point (line 13)
    pts.write_text("\n".join(lines) + "\n")
    table, study = v.run()
    subject = v.manifest.loc[i, "subject"]
    assert_excluded(table, subject, "points", pts.name, "line 13:")
    assert table[table.subject == subject].reason.str.contains("a comma as decimal separator").all()


# --- named layers and the split radiograph steps ---------------------------------------------------------
def test_every_named_layer_takes_the_crop_and_flip_of_the_image():
    rng = np.random.default_rng(1)
    shape, spacing = (300, 400), (0.5, 0.5)
    lesions = (rng.random((4, *shape)) > 0.995).astype(np.uint8)
    hip = np.column_stack([150 + 40 * np.sin(np.linspace(0, 6, 80)), 140 + 40 * np.cos(np.linspace(0, 6, 80))])
    pixels = synthetic_pixels(shape)
    for side in ("right", "left"):
        crop = preprocess_hip(pixels, spacing, hip, side, 48, 0.8,
                              layers={"lesions": lesions, "cue": lesions[2], "next": lesions[:2]})
        assert set(crop.layers) == {"lesions", "cue", "next"}
        assert crop.layers["lesions"].shape == (4, 48, 48) and crop.layers["cue"].shape == (48, 48)
        np.testing.assert_array_equal(crop.layers["cue"], crop.layers["lesions"][2])
        np.testing.assert_array_equal(crop.layers["next"], crop.layers["lesions"][:2])
        assert crop.layers["lesions"].any()
    assert preprocess_hip(pixels, spacing, hip, "right", 48, 0.8).layers == {}


def test_the_radiograph_steps_run_one_at_a_time(integrity_phantom):
    """Decode, check, draw and crop are steps of their own; run in order they give the source's records."""
    folder = integrity_phantom["dir"]
    with ManifestSource(folder / "manifest.csv", folder / "labels.csv", crop_size=SETTINGS["crop_size"],
                        spacing_mm=SETTINGS["spacing_mm"], groups=SETTINGS["groups"]) as source:
        row, out = source.rows[0], []
        radiograph = source._decode(row, out)
        assert radiograph.pixels.ndim == 2 and not out
        checked = source._check(row, radiograph, out)
        assert set(checked.points) == {"right", "left"} and not checked.failures and not checked.mirrored
        for side in ("right", "left"):
            source._hip(row, side, radiograph, checked, None, out)
        assert [type(item) for item in out] == [HipRecord, HipRecord]
        whole = [item for item in source.hips([0]) if not isinstance(item, Exclusion)]
        for one, other in zip(out, whole):
            np.testing.assert_array_equal(one.image, other.image)
            assert (one.subject, one.side) == (other.subject, other.side)
