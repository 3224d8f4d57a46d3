"""Localisation metrics on heatmaps whose answers are computed by hand."""

import math

import numpy as np
import pytest

from osteoloc.explain.metrics import (com_distance, cue_energy, energy_in_mask, localisation_table, peak_distance,
                              pointing_hit, spread)


def test_single_pixel_uses_x_column_y_row():
    heatmap = np.zeros((10, 20))
    heatmap[2, 7] = 1.0  # row 2, column 7 -> (x, y) = (7, 2)
    assert com_distance(heatmap, [[7, 2]]) == pytest.approx(0, abs=1e-5)
    assert peak_distance(heatmap, [[7, 2]]) == 0
    assert peak_distance(heatmap, [[2, 7]]) == pytest.approx(math.hypot(5, 5))
    assert spread(heatmap) == pytest.approx(0, abs=1e-4)  # eps in the centre of mass


def test_two_pixels_hand_computed():
    heatmap = np.zeros((8, 8))
    heatmap[1, 1] = 1.0  # (x, y) = (1, 1)
    heatmap[1, 5] = 3.0  # (x, y) = (5, 1): centre of mass (4, 1)
    points = np.array([[4, 5], [10, 1]])  # distances from CoM: 4 and 6 -> closest 4
    assert com_distance(heatmap, points) == pytest.approx(4.0, abs=1e-5)
    # peak at (5, 1): distances sqrt(1 + 16) and 5
    assert peak_distance(heatmap, points) == pytest.approx(math.sqrt(17))
    # spread: sqrt((1 * 9 + 3 * 1) / (4 + 1e-6)) = sqrt(3)
    assert spread(heatmap) == pytest.approx(math.sqrt(12 / (4 + 1e-6)), rel=1e-9)


def test_peak_is_first_maximum_in_row_major_order():
    heatmap = np.zeros((5, 5))
    heatmap[3, 0] = 1.0
    heatmap[1, 4] = 1.0  # row 1 comes first in row-major order -> peak (4, 1)
    assert peak_distance(heatmap, [[4, 1]]) == 0
    assert peak_distance(heatmap, [[0, 3]]) == pytest.approx(math.hypot(4, 2))


def test_nan_points_ignored_and_undefined_cases_are_nan():
    heatmap = np.zeros((4, 4))
    heatmap[0, 0] = 1
    assert peak_distance(heatmap, [[np.nan, np.nan], [0, 3]]) == 3
    assert math.isnan(com_distance(heatmap, np.full((2, 2), np.nan)))
    zero = np.zeros((4, 4))
    assert math.isnan(com_distance(zero, [[0, 0]]))
    assert math.isnan(peak_distance(zero, [[0, 0]]))
    assert math.isnan(spread(zero))


def test_pointing_game_and_energy():
    heatmap = np.zeros((10, 10))
    heatmap[5, 5] = 2.0  # peak (5, 5)
    heatmap[0, 0] = 1.0
    mask = np.zeros((10, 10), bool)
    mask[5, 8] = True  # 3 px right of the peak
    assert pointing_hit(heatmap, mask, tolerance_px=2) == 0.0
    assert pointing_hit(heatmap, mask, tolerance_px=3) == 1.0
    assert energy_in_mask(heatmap, mask) == pytest.approx(0.0, abs=1e-12)
    mask[0, 0] = True
    assert energy_in_mask(heatmap, mask) == pytest.approx(1 / 3, rel=1e-6)
    assert math.isnan(pointing_hit(heatmap, np.zeros((10, 10), bool), 5))


def test_table_matches_scalar_functions_and_respects_valid():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 4, 12, 12)).astype(np.float32)
    groups = rng.random((2, 4, 3, 2)) * 12
    valid = np.ones((2, 4, 3), bool)
    valid[0, 1, 0] = False
    groups_masked = groups.copy()
    groups_masked[0, 1, 0] = np.nan
    masks = rng.random((2, 4, 12, 12)) > 0.8
    table = localisation_table(maps, groups, valid, masks, tolerance_px=1.0)
    assert table["com_distance"][0, 1] == pytest.approx(com_distance(maps[0, 1], groups_masked[0, 1]))
    assert table["peak_distance"][1, 3] == pytest.approx(peak_distance(maps[1, 3], groups[1, 3]))
    assert table["spread"][1, 2] == pytest.approx(spread(maps[1, 2]))
    assert table["energy_in_mask"][0, 0] == pytest.approx(energy_in_mask(maps[0, 0], masks[0, 0]))
    assert set(table) == {"com_distance", "peak_distance", "spread", "pointing_hit", "energy_in_mask"}


def test_cue_energy_is_the_maps_share_on_the_cue_and_nan_without_one():
    heatmap = np.zeros((8, 8))
    heatmap[1, 1], heatmap[6, 6] = 3.0, 1.0
    cue = np.zeros((8, 8), np.uint8)
    cue[0:3, 0:3] = 1  # a 3 x 3 marker around the larger peak
    assert cue_energy(heatmap, cue) == pytest.approx(0.75, rel=1e-6)
    assert math.isnan(cue_energy(heatmap, np.zeros((8, 8), np.uint8)))  # a hip without the cue
    # in the table: one cue mask per image, every target's map against it; NaN where the image has none
    maps = np.stack([np.stack([heatmap, heatmap[::-1, ::-1]] * 2)] * 2).astype(np.float32)  # (2, 4, 8, 8)
    cues = np.stack([cue, np.zeros_like(cue)])
    groups, valid = np.zeros((2, 4, 1, 2)), np.ones((2, 4, 1), bool)
    table = localisation_table(maps, groups, valid, cue=cues)
    assert "cue_energy" in table and "energy_in_mask" not in table
    np.testing.assert_allclose(table["cue_energy"][0], [0.75, 0.25, 0.75, 0.25], rtol=1e-6)
    assert np.isnan(table["cue_energy"][1]).all()
    assert "cue_energy" not in localisation_table(maps, groups, valid)
