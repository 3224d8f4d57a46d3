"""Landmarks: circle fit, sanity checks, target groups."""

import numpy as np
import pytest

from osteoloc.cohort.landmarks import (DEFAULT_GROUPS, DEFAULT_LIMITS, FEMORAL_HEAD, AnatomyLimits, HipsSwapped,
                                       LandmarkError, Misoriented, check_hip, check_orientation, check_pair,
                                       check_side, fit_circle, head_circle, target_groups, validate_groups)
from osteoloc.names import TARGETS
from helpers import hip_points_mm


def test_fit_circle_exact_and_noisy():
    angles = np.linspace(0.2, 2.5, 10)
    points = np.column_stack([30 + 12 * np.cos(angles), -7 + 12 * np.sin(angles)])
    assert fit_circle(points) == pytest.approx((30, -7, 12), abs=1e-9)
    noisy = points + np.random.default_rng(0).normal(0, 0.05, points.shape)
    assert fit_circle(noisy) == pytest.approx((30, -7, 12), abs=0.3)


def test_fit_circle_far_from_origin_is_stable():
    angles = np.linspace(0, np.pi, 8)
    points = np.column_stack([5000 + 20 * np.cos(angles), 8000 + 20 * np.sin(angles)])
    assert fit_circle(points) == pytest.approx((5000, 8000, 20), abs=1e-6)


def test_fit_circle_refuses_collinear_and_too_few():
    with pytest.raises(ValueError):
        fit_circle([[0, 0], [1, 1]])
    with pytest.raises(ValueError):
        fit_circle([[0, 0], [1, 1], [2, 2], [3, 3]])


def test_head_circle_uses_13_78_14_to_21():
    points = hip_points_mm((100, 80), "right", head_radius=22)
    assert head_circle(points) == pytest.approx((100, 80, 22), abs=1e-9)
    assert FEMORAL_HEAD == [13, 78, 14, 15, 16, 17, 18, 19, 20, 21]


def test_sanity_checks_pass_and_fail():
    spacing = (0.5, 0.5)
    good = hip_points_mm((100, 80), "right") / 0.5
    check_hip(good, spacing)
    far = good.copy()
    far[30] += 200 / 0.5  # 200 mm away from its trochanter neighbours
    with pytest.raises(LandmarkError, match="greater trochanter"):
        check_hip(far, spacing)
    big_head = hip_points_mm((100, 80), "right", head_radius=45) / 0.5
    others = [i for i in range(80) if i not in (*FEMORAL_HEAD, 79, 64, 65, 66, 67, 71)]
    big_head[others] = np.array([100, 80]) / 0.5  # everything else at the head centre: neighbours stay close
    with pytest.raises(LandmarkError, match="femoral head"):
        check_hip(big_head, spacing)


def test_sourcil_radius_limit():
    points = hip_points_mm((100, 80), "right", head_radius=30)
    spread = points.copy()
    # flatten the sourcil into a wide arc (radius ~ 60 mm) while keeping neighbours close
    for k, index in enumerate([79, 64, 65, 66, 67]):
        a = np.deg2rad(-20 + 10 * k)
        spread[index] = (100 + 60 * np.sin(a), 140 - 60 * np.cos(a))
    with pytest.raises(LandmarkError, match="sourcil"):
        check_hip(spread, (1.0, 1.0))


def test_target_groups_padding_and_validity():
    points = np.arange(160, dtype=float).reshape(80, 2)
    groups, valid = target_groups(points, DEFAULT_GROUPS)
    assert groups.shape == (4, 4, 2) and valid.shape == (4, 4)
    np.testing.assert_array_equal(groups[0], points[[13, 78, 14, 15]])
    np.testing.assert_array_equal(groups[1, :3], points[[19, 20, 21]])
    assert np.isnan(groups[1, 3]).all() and not valid[1, 3]
    np.testing.assert_array_equal(groups[3, 0], points[71])
    np.testing.assert_array_equal(valid.sum(axis=1), [4, 3, 1, 1])
    # a crop of 40 px: points beyond it are not valid
    _, inside = target_groups(points, DEFAULT_GROUPS, crop_size=40)
    assert not inside[3, 0]  # point 71 = (142, 143)


def test_validate_groups():
    assert list(validate_groups(DEFAULT_GROUPS)) == list(TARGETS)
    with pytest.raises(ValueError):
        validate_groups({**DEFAULT_GROUPS, "osteo_fem_sup": [80]})
    with pytest.raises(ValueError):
        validate_groups({k: v for k, v in DEFAULT_GROUPS.items() if k != "osteo_acet_inf"})


def test_default_groups_sit_where_their_names_say():
    """Right hip in image coordinates: superior = smaller y, lateral = smaller x than the head centre."""
    points = hip_points_mm((100, 80), "right")
    cx, cy, _ = head_circle(points)
    groups, _ = target_groups(points, DEFAULT_GROUPS)
    fem_sup, fem_inf, acet_sup, acet_inf = (g[~np.isnan(g[:, 0])] for g in groups)
    assert (fem_sup[:, 1] < cy).all()
    assert (fem_inf[:, 1] > cy).all()
    assert acet_sup[0, 1] < cy and acet_sup[0, 0] < cx  # lateral sourcil end: above and lateral
    assert acet_inf[0, 1] > cy  # teardrop tip: below the head centre


def test_head_radius_range_flags_a_wrong_scale():
    spacing = (0.15, 0.15)
    mm = hip_points_mm((100, 80), "right")  # head radius 24 mm
    check_hip(mm / 0.15, spacing)
    with pytest.raises(LandmarkError, match=r"femoral head radius 24\.0 px = 3\.6 mm, outside the adult range "
                                            r"19-36 mm \(preprocess.anatomy.head_radius_mm\)") as err:
        check_hip(mm, spacing)  # millimetres read as pixels
    assert err.value.scale == "small"
    low, high = DEFAULT_LIMITS.head_radius_mm
    for radius, scale in ((low - 0.5, "small"), (high + 0.5, "large")):
        with pytest.raises(LandmarkError, match="femoral head") as err:
            check_hip(hip_points_mm((100, 80), "right", head_radius=radius), (1.0, 1.0))
        assert err.value.scale == scale
    for radius in (low + 0.5, high - 0.5):
        check_hip(hip_points_mm((100, 80), "right", head_radius=radius), (1.0, 1.0))


def test_millimetres_read_as_pixels_at_0_7_mm_fall_under_the_adult_range():
    """A 24 mm head in millimetres read as pixels at 0.7 mm per pixel measures 16.8 mm: excluded, though
    over the old 15 mm floor; a narrower configured range moves the limit."""
    mm = hip_points_mm((150, 120), "right")
    with pytest.raises(LandmarkError, match=r"= 16\.8 mm, outside the adult range 19-36 mm"):
        check_hip(mm, (0.7, 0.7))
    check_hip(mm / 0.7, (0.7, 0.7))
    narrow = AnatomyLimits.of({"head_radius_mm": [25, 30]})
    with pytest.raises(LandmarkError, match="outside the adult range 25-30 mm"):
        check_hip(mm, (1.0, 1.0), narrow)
    with pytest.raises(ValueError, match="head_radius_mm must be"):
        AnatomyLimits.of({"head_radius_mm": [30, 19]})


def test_orientation_names_upside_down_and_rotated_hips():
    hip = hip_points_mm((150, 120), "right")
    check_orientation(hip)
    flipped = hip * [1, -1] + [0, 240]  # y <- 240 - y
    with pytest.raises(Misoriented, match="radiograph upside down") as err:
        check_orientation(flipped)
    assert err.value.turn == "upside down"
    # rotated by 90 degrees about the head centre: the superior side faces the image's left or right
    for rotation, superior in (([[0, 1], [-1, 0]], "left"), ([[0, -1], [1, 0]], "right")):
        turned = (hip - (150, 120)) @ np.array(rotation, float).T + (150, 120)
        with pytest.raises(Misoriented, match=rf"rotated ~90 degrees: the hip's superior side \(sourcil\) faces the "
                                              rf"image's {superior}") as err:
            check_orientation(turned)
        assert err.value.turn == "rotated"
    tilted = (hip - (150, 120)) @ np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]]).T + (150, 120)
    check_orientation(tilted)  # a 29-degree tilt is no rotation
    check_orientation(hip * [-1, 1] + [300, 0])  # a mirrored hip is upright


def test_hip_pair_order_and_distance():
    right, left = hip_points_mm((80, 100), "right"), hip_points_mm((260, 100), "left", seed=1)
    check_pair(right, left, (1.0, 1.0))
    with pytest.raises(HipsSwapped, match="hips swapped or image mirrored"):
        check_pair(left, right, (1.0, 1.0))
    with pytest.raises(LandmarkError, match="over the 320 mm") as err:
        check_pair(right, left, (2.0, 2.0))  # 360 mm apart
    assert err.value.scale == "large" and 180 * 2 > DEFAULT_LIMITS.hip_distance_max_mm
    with pytest.raises(LandmarkError, match="both point sets on one hip"):
        check_pair(right, hip_points_mm((90, 100), "left", seed=1), (1.0, 1.0))


def test_each_hip_faces_its_side():
    right, left = hip_points_mm((80, 100), "right"), hip_points_mm((260, 100), "left", seed=1)
    check_side(right, "right")
    check_side(left, "left")
    with pytest.raises(HipsSwapped, match="the right hip's points face like a left hip's"):
        check_side(left, "right")
    mirrored = right.copy()
    mirrored[:, 0] = 400 - mirrored[:, 0]
    with pytest.raises(HipsSwapped):
        check_side(mirrored, "right")
