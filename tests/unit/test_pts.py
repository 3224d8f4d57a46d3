"""BoneFinder .pts: file format and per-hip resolution with BoneFinder's side naming."""

import numpy as np
import pytest

from osteoloc.io.pts import read_hip_points, read_pts, resolve_hip_files, write_pts

SHAPE = (300, 500)  # rows, cols of the radiograph
SPACING = (0.2, 0.2)


def hips():
    rng = np.random.default_rng(1)
    right = np.column_stack([rng.uniform(10, 40, 80), rng.uniform(10, 50, 80)])  # image left (mm)
    left = np.column_stack([rng.uniform(60, 90, 80), rng.uniform(10, 50, 80)])  # image right (mm)
    return right, left


def test_read_pts_roundtrip_and_missing_last_newline(tmp_path):
    points = np.array([[1.5, 2.25], [3.0, 4.0]])
    write_pts(points, tmp_path / "a.pts")
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), points)
    (tmp_path / "b.pts").write_text("version: 1\nn_points: 2\n{\n1.5 2.25\n3 4\n}")
    np.testing.assert_allclose(read_pts(tmp_path / "b.pts"), points)


def test_read_pts_refuses_a_wrong_count(tmp_path):
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ValueError, match="c.pts"):
        read_pts(tmp_path / "c.pts")


def test_160_point_file_right_hip_first_and_mm_to_pixels(tmp_path):
    right, left = hips()
    write_pts(np.vstack([right, left]), tmp_path / "img.pts")
    points, problems = read_hip_points(tmp_path / "img.pts", SHAPE, SPACING)
    assert problems == {}
    np.testing.assert_allclose(points["right"], right / 0.2)
    np.testing.assert_allclose(points["left"], left / 0.2)


def test_mm_conversion_uses_column_spacing_for_x_and_row_spacing_for_y(tmp_path):
    right, left = hips()
    write_pts(np.vstack([right, left]), tmp_path / "img.pts")
    points, _ = read_hip_points(tmp_path / "img.pts", SHAPE, (0.5, 0.25))
    np.testing.assert_allclose(points["right"][:, 0], right[:, 0] / 0.25)
    np.testing.assert_allclose(points["right"][:, 1], right[:, 1] / 0.5)


def test_side_quirk_L_file_is_the_anatomical_right_hip(tmp_path):
    right, left = hips()
    write_pts(right, tmp_path / "img_L.pts")  # BoneFinder: _L = image left = anatomical RIGHT
    write_pts(left, tmp_path / "img_R.pts")
    points, problems = read_hip_points(tmp_path / "img", SHAPE, SPACING)
    assert problems == {}
    np.testing.assert_allclose(points["right"], right / 0.2)
    np.testing.assert_allclose(points["left"], left / 0.2)
    # the right hip lies on the image's left half
    assert points["right"][:, 0].max() < SHAPE[1] / 2 < points["left"][:, 0].min()


def test_rasl_is_unmirrored_with_the_image_width(tmp_path):
    right, left = hips()
    width_mm = SHAPE[1] * SPACING[1]
    mirrored = left.copy()
    mirrored[:, 0] = width_mm - left[:, 0]
    write_pts(right, tmp_path / "img_L.pts")
    write_pts(mirrored, tmp_path / "img_RasL.pts")
    points, problems = read_hip_points(tmp_path / "img.pts", SHAPE, SPACING)  # stem given with .pts
    assert problems == {}
    np.testing.assert_allclose(points["left"], left / 0.2)


def test_suffixes_are_case_insensitive(tmp_path):
    right, left = hips()
    write_pts(right, tmp_path / "IMG_l.PTS")
    write_pts(left, tmp_path / "IMG_rasl.pts")
    files = resolve_hip_files(tmp_path / "IMG")
    assert files["right"][0].name == "IMG_l.PTS" and files["right"][1] == "single"
    assert files["left"][1] == "mirrored"


def test_points_in_pixels_when_no_spacing(tmp_path):
    right, left = hips()
    write_pts(np.vstack([right, left]), tmp_path / "img.pts")
    points, _ = read_hip_points(tmp_path / "img.pts", SHAPE, None)
    np.testing.assert_allclose(points["left"], left)


def test_missing_side_and_wrong_count_are_problems_not_crashes(tmp_path):
    right, _ = hips()
    write_pts(right, tmp_path / "img_L.pts")
    write_pts(right[:40], tmp_path / "other_L.pts")
    points, problems = read_hip_points(tmp_path / "img", SHAPE, SPACING)
    assert set(points) == {"right"} and "left" in problems
    points, problems = read_hip_points(tmp_path / "other", SHAPE, SPACING)
    assert points == {} and "40 points" in problems["right"]
    points, problems = read_hip_points(tmp_path / "absent.pts", SHAPE, SPACING)
    assert points == {} and set(problems) == {"right", "left"}
