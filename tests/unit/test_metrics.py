"""Localisation metrics on heatmaps whose answers are computed by hand."""

import math

import numpy as np
import pytest
import torch

from osteoloc.explain.cam import scale_maps
from osteoloc.explain.metrics import (CALIBRATED, Grid, Scoring, _closest_distance, _closest_distances,
                                      cell_values, com_distance, cue_energy, energy_in_mask, energy_lift,
                                      landmark_control_map, localisation_table, mask_centroid, peak, peak_distance,
                                      pointing_hit, reference_levels, spread)
from osteoloc.report.stats import calibrated
from osteoloc.io.study_h5 import HipBatch


def _table(maps, groups, valid, masks=None, tolerance_px=0.0, cue=None, *, grid=None, exact=None,
           control_sigma_px=None):
    """localisation_table on a HipBatch built from these arrays (masks and cue as its layers), `exact` the
    exact points the scoring finds for it."""
    layers = {name: layer for name, layer in (("lesions", masks), ("cue", cue)) if layer is not None}
    batch = HipBatch(rows=np.arange(len(maps)), groups=groups, valid=valid, layers=layers)
    exact_points = None if exact is None else (lambda scored: exact)
    return localisation_table(maps, batch, Scoring(tolerance_px, grid, control_sigma_px, exact_points))


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
    table = _table(maps, groups, valid, masks, tolerance_px=1.0)
    assert table["com_distance"][0, 1] == pytest.approx(com_distance(maps[0, 1], groups_masked[0, 1]))
    assert table["peak_distance"][1, 3] == pytest.approx(peak_distance(maps[1, 3], groups[1, 3]))
    assert table["spread"][1, 2] == pytest.approx(spread(maps[1, 2]))
    assert table["energy_in_mask"][0, 0] == pytest.approx(energy_in_mask(maps[0, 0], masks[0, 0]))
    assert set(table) == {"com_distance", "peak_distance", "spread", "map_defined", "pointing_hit", "energy_in_mask",
                          "energy_lift", "com_to_lesion", "peak_to_lesion"}


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
    table = _table(maps, groups, valid, cue=cues)
    assert "cue_energy" in table and "energy_in_mask" not in table
    np.testing.assert_allclose(table["cue_energy"][0], [0.75, 0.25, 0.75, 0.25], rtol=1e-6)
    assert np.isnan(table["cue_energy"][1]).all()
    assert "cue_energy" not in _table(maps, groups, valid)


# --- the calibrated ruler: cell-centre peak, energy lift, chance and ceiling, undefined maps ---------------

def _upsampled(raw, size):
    """A raw h x w grid upsampled as Grad-CAM's maps are."""
    return scale_maps(torch.as_tensor(raw, dtype=torch.float32)[None, None], (size, size))[0, 0].numpy()


@pytest.mark.parametrize("cells, size", [((3, 3), 96), ((6, 6), 96), ((7, 7), 224)])
def test_border_cell_peak_lands_at_its_cell_centre(cells, size):
    h, w = cells
    rng = np.random.default_rng(h)
    for i, j in [(0, 0), (0, w - 1), (h - 1, 0), (h // 2, 0), (h - 1, w // 2)]:
        raw = rng.uniform(0.0, 0.5, cells)
        raw[i, j] = 1.0
        heatmap = _upsampled(raw, size)
        x, y = peak(heatmap, cells=cells)
        assert x == pytest.approx((j + 0.5) * size / w - 0.5)
        assert y == pytest.approx((i + 0.5) * size / h - 0.5)
        if (i, j) == (0, 0):  # paper A's first maximum: the flat border block's corner, the crop's edge
            assert peak(heatmap) == (0.0, 0.0)


def test_cell_peak_is_the_strongest_cell_not_the_highest_pixel():
    """An isolated strong cell beside a plateau of slightly weaker ones: the plateau's pixels are higher after
    the bilinear upsampling, the strongest cell is still the isolated one."""
    raw = np.zeros((6, 6))
    raw[1, 1] = 1.0
    raw[3:6, 3:6] = 0.99
    heatmap = _upsampled(raw, 96)
    assert peak(heatmap, cells=(6, 6)) == pytest.approx((1.5 * 16 - 0.5, 1.5 * 16 - 0.5))
    x, y = peak(heatmap)
    assert x > 48 and y > 48  # the first maximum lies on the plateau


def test_cell_peak_in_a_window_and_pointing_at_a_cell_centre():
    raw = np.zeros((3, 3))
    raw[2, 2] = 1.0
    heatmap = np.zeros((96, 96))
    heatmap[10:58, 30:78] = _upsampled(raw, 48)  # a 48 px sub-crop's map placed at (x0, y0) = (30, 10)
    x, y = peak(heatmap, cells=(3, 3), window=(30, 10, 48))
    assert (x, y) == pytest.approx((30 + 2.5 * 16 - 0.5, 10 + 2.5 * 16 - 0.5))
    mask = np.zeros((96, 96), bool)
    mask[53, 69] = True  # (69, 53): hypot(0.5, 3.5) = 3.54 px from the centre (69.5, 49.5), between pixels
    assert pointing_hit(heatmap, mask, 3.5, cells=(3, 3), window=(30, 10, 48)) == 0.0
    assert pointing_hit(heatmap, mask, 3.6, cells=(3, 3), window=(30, 10, 48)) == 1.0


def test_energy_lift_of_a_uniform_map_is_one():
    mask = np.zeros((40, 40), bool)
    mask[5:9, 20:31] = True
    assert energy_lift(np.ones((40, 40)), mask) == pytest.approx(1.0, rel=1e-5)
    focused = np.zeros((40, 40))
    focused[mask] = 1.0
    assert energy_lift(focused, mask) == pytest.approx(40 * 40 / mask.sum(), rel=1e-5)


def _oracle_com_map(cells, size, point):
    """The grid map whose centre of mass lies at `point` (inside the cells' hull): bilinear weights among
    the four cells whose centres of mass surround it, each divided by its cell map's mass (the upsampling
    is separable, so the cells' centres of mass form a rectilinear grid)."""
    profiles = []
    for axis, n in enumerate(cells):
        basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, n, 1)  # the cells' raw upsampled profiles
        profile = torch.nn.functional.interpolate(basis, size=(size, 1), mode="bilinear", align_corners=False)
        profile = profile[:, 0, :, 0].numpy()
        mass = profile.sum(axis=1)
        com = profile @ np.arange(size) / mass
        k = int(np.clip(np.searchsorted(com, point[1 - axis]) - 1, 0, n - 2))
        t = (point[1 - axis] - com[k]) / (com[k + 1] - com[k])
        weights = np.zeros(n)
        weights[k], weights[k + 1] = (1 - t) / mass[k], t / mass[k + 1]
        profiles.append(weights)
    return _upsampled(np.outer(*profiles), size)


def _hip(size=96):
    mask = np.zeros((size, size), bool)
    mask[60:70, 20:34] = True  # the lesion
    landmarks = np.array([[25.0, 58.0], [31.0, 57.0], [np.nan, np.nan]])
    return mask, landmarks


@pytest.mark.parametrize("peak_rule", ["cell_centre", "first_max"])
@pytest.mark.parametrize("cells", [(3, 3), (6, 6)])
def test_oracle_map_reaches_the_ceiling_and_uniform_map_the_chance(peak_rule, cells):
    size = 96
    mask, landmarks = _hip(size)
    grid = Grid(cells, peak_rule)
    levels = reference_levels(grid, (0, 0, size), size, landmarks=landmarks, mask=mask, tolerance_px=6.0)
    assert set(levels) == set(CALIBRATED)
    tables = []
    for k in range(cells[0] * cells[1]):  # score every single-cell map as if a model had made it
        raw = np.zeros(cells)
        raw[divmod(k, cells[1])] = 1.0
        tables.append(_table(_upsampled(raw, size)[None, None], landmarks[None, None],
                                         np.isfinite(landmarks).all(-1)[None, None], mask[None, None], 6.0,
                                         grid=grid, exact=landmarks[None, None]))
    for metric, direction in CALIBRATED.items():
        values = np.array([table[metric][0, 0] for table in tables])
        best = values.min() if direction == "lower" else values.max()
        if metric == "lesion_vs_landmark":  # the oracle is a mixture of cells: no single cell beats it
            assert values.mean() == pytest.approx(levels[metric]["random_cell"], abs=1e-4)
            assert best <= levels[metric]["ceiling"] + 1e-6
            # the lesion lies inside the box of the cells' centres of mass: the ceiling is its distance to the
            # landmark, which the oracle mixture centred on the lesion reaches
            apart = _closest_distance(*mask_centroid(mask)[0], landmarks)
            assert levels[metric]["ceiling"] == pytest.approx(apart)
            best = _table(_oracle_com_map(cells, size, mask_centroid(mask)[0])[None, None], landmarks[None, None],
                          np.isfinite(landmarks).all(-1)[None, None], mask[None, None], 6.0,
                          grid=grid, exact=landmarks[None, None])[metric][0, 0]
        elif metric.startswith("com_"):  # the oracle is a mixture of cells: no single cell beats it
            assert best >= levels[metric]["ceiling"] - 1e-6
            target = landmarks[:1] if metric == "com_to_landmark" else mask_centroid(mask)
            best = _table(_oracle_com_map(cells, size, target[0])[None, None], landmarks[None, None],
                                      np.isfinite(landmarks).all(-1)[None, None], mask[None, None], 6.0,
                                      grid=grid, exact=landmarks[None, None])[metric][0, 0]
            assert levels[metric]["ceiling"] <= levels[metric]["uniform"]
        else:
            assert values.mean() == pytest.approx(levels[metric]["random_cell"], abs=1e-4), metric
        assert best == pytest.approx(levels[metric]["ceiling"], abs=1e-3), metric
        place = calibrated(best, levels[metric]["uniform"], levels[metric]["ceiling"])
        if metric == "pointing_hit" and cells == (3, 3):  # no 3 x 3 cell lies within 6 px of this lesion
            assert levels[metric]["ceiling"] == levels[metric]["uniform"] == 0 and np.isnan(place)
        else:
            assert place == pytest.approx(1, abs=1e-4), metric
    uniform = _table(np.ones((1, 1, size, size)), landmarks[None, None],
                                 np.isfinite(landmarks).all(-1)[None, None], mask[None, None], 6.0, grid=grid,
                                 exact=landmarks[None, None])
    for metric in ("com_to_landmark", "com_to_lesion", "energy_in_mask", "energy_lift", "lesion_vs_landmark"):
        assert uniform[metric][0, 0] == pytest.approx(levels[metric]["uniform"], rel=1e-4, abs=1e-4), metric
        assert uniform[f"{metric}_uniform"][0, 0] == pytest.approx(levels[metric]["uniform"])
        assert calibrated(uniform[metric][0, 0], levels[metric]["uniform"], levels[metric]["ceiling"]) == pytest.approx(0, abs=1e-3)
    assert levels["energy_lift"]["uniform"] == pytest.approx(1.0)
    # a uniform map's peak is a random cell: chance = the mean over the single-cell maps
    for metric in ("peak_to_landmark", "peak_to_lesion", "pointing_hit"):
        assert levels[metric]["uniform"] == pytest.approx(levels[metric]["random_cell"])


@pytest.mark.parametrize("peak_rule", ["cell_centre", "first_max"])
@pytest.mark.parametrize("cells, window", [((3, 3), None), ((7, 7), (8, 4, 80))])
def test_all_zero_map_scores_as_the_uniform_map_and_is_counted(peak_rule, cells, window):
    """A flat CAM (all zero) is a map without preference: every calibrated metric takes its chance level
    ('uniform'), the uncalibrated ones the uniform map's values over the grid window, and map_defined counts
    it; a defined map beside it keeps its own score."""
    size = 96
    mask, landmarks = _hip(size)
    maps = np.zeros((2, 1, size, size), np.float32)
    maps[1, 0, 60:70, 20:34] = 1.0  # a defined map on the lesion; map 0 has zero mass
    groups = np.stack([landmarks[None]] * 2)
    valid = np.isfinite(groups).all(-1)
    windows = None if window is None else np.array([[window]] * 2)
    cue = np.zeros((2, size, size), np.uint8)
    cue[:, 0:10, 0:20] = 1
    table = _table(maps, groups, valid, np.stack([mask[None]] * 2), 6.0, cue, grid=Grid(cells, peak_rule, windows),
                   exact=groups, control_sigma_px=5.0)
    assert table["map_defined"][:, 0].tolist() == [0.0, 1.0]
    for metric in CALIBRATED:
        assert np.isfinite(table[metric][0, 0]), metric
        assert table[metric][0, 0] == table[f"{metric}_uniform"][0, 0], metric  # exactly its chance level
    assert table["energy_lift"][0, 0] == pytest.approx(1.0 if window is None else
                                                       mask[4:84, 8:88].sum() / 80**2 / mask.mean())
    x0, y0, p = window or (0, 0, size)
    flat = np.zeros((size, size))
    flat[y0:y0 + p, x0:x0 + p] = 1.0  # the uniform map over the window
    assert table["com_distance"][0, 0] == pytest.approx(com_distance(flat, landmarks), abs=1e-4)
    assert table["spread"][0, 0] == pytest.approx(spread(flat))
    assert table["cue_energy"][0, 0] == pytest.approx(energy_in_mask(flat, cue[0]))
    # the automatic landmarks' peak distance: a random cell's, the mean over the grid's cells
    per_cell = [peak_distance(_upsampled(np.eye(cells[0] * cells[1])[k].reshape(cells), p), landmarks - (x0, y0),
                              cells if peak_rule == "cell_centre" else None) for k in range(cells[0] * cells[1])]
    assert table["peak_distance"][0, 0] == pytest.approx(np.mean(per_cell), abs=1e-6)
    place = calibrated(table["com_to_lesion"][0, 0], table["com_to_lesion_uniform"][0, 0],
                       table["com_to_lesion_ceiling"][0, 0])
    assert place == 0.0
    assert table["com_to_lesion"][1, 0] < table["com_to_lesion"][0, 0]  # the defined map is scored as it is
    # the levels and the landmark-only control exist for both hips: they do not depend on the map
    assert np.isfinite(table["energy_in_mask_ceiling"]).all() and np.isfinite(table["peak_to_landmark_control"]).all()
    assert table["energy_in_mask_control"][0, 0] == table["energy_in_mask_control"][1, 0]


def test_all_zero_map_without_grid_is_the_uniform_map_under_paper_as_rule():
    size = 32
    mask, landmarks = np.zeros((size, size), bool), np.array([[10.0, 12.0]])
    mask[10:14, 8:12] = True
    table = _table(np.zeros((1, 1, size, size), np.float32), landmarks[None, None], np.ones((1, 1, 1), bool),
                   mask[None, None], 0.0)
    flat = np.ones((size, size))
    assert table["map_defined"][0, 0] == 0.0
    assert table["com_distance"][0, 0] == pytest.approx(com_distance(flat, landmarks))
    assert table["peak_distance"][0, 0] == pytest.approx(math.hypot(10, 12))  # the first maximum: pixel (0, 0)
    assert table["energy_lift"][0, 0] == pytest.approx(1.0, rel=1e-6)


def test_lesion_vs_landmark_separates_and_needs_the_minimum_separation():
    size, cells = 96, (6, 6)
    mask = np.zeros((size, size), bool)
    mask[60:66, 60:66] = True  # centroid (62.5, 62.5)
    landmarks = np.array([[22.5, 62.5]])  # 40 px to the left
    maps = np.zeros((2, 1, size, size), np.float32)
    maps[0, 0, 58:68, 58:68] = 1.0  # on the lesion
    maps[1, 0, 58:68, 18:28] = 1.0  # on the landmark
    groups, valid = np.stack([landmarks[None]] * 2), np.ones((2, 1, 1), bool)

    def scored(min_separation_px):
        batch = HipBatch(rows=np.arange(2), groups=groups, valid=valid, layers={"lesions": np.stack([mask[None]] * 2)})
        return localisation_table(maps, batch, Scoring(6.0, Grid(cells), 5.0, lambda b: groups, min_separation_px))

    table = scored(7.5)
    np.testing.assert_allclose(table["lesion_landmark_px"][:, 0], 40.0)
    assert table["lesion_vs_landmark"][0, 0] == pytest.approx(40.0, abs=0.1)
    assert table["lesion_vs_landmark"][1, 0] == pytest.approx(-40.0, abs=0.1)
    assert table["lesion_vs_landmark_uniform"][0, 0] == pytest.approx(
        _closest_distance(47.5, 47.5, landmarks) - _closest_distance(47.5, 47.5, mask_centroid(mask)))
    assert table["lesion_vs_landmark_ceiling"][0, 0] == pytest.approx(40.0)  # the lesion is inside the box
    assert table["lesion_vs_landmark_control"][0, 0] < 0  # the landmark-only control sits on the landmark
    far = scored(41.0)  # closer than the minimum: undefined, levels and control too; the distance stays
    assert np.isnan(far["lesion_vs_landmark"]).all() and np.isnan(far["lesion_vs_landmark_ceiling"]).all()
    assert np.isnan(far["lesion_vs_landmark_control"]).all()
    np.testing.assert_allclose(far["lesion_landmark_px"][:, 0], 40.0)


def test_separation_ceiling_outside_the_box_is_on_its_boundary():
    """A lesion outside the box of reachable centres of mass: the boundary search finds the maximum that
    a dense search of the whole box finds."""
    from osteoloc.explain.metrics import _separation_ceiling
    low, high = np.array([10.0, 10.0]), np.array([50.0, 50.0])
    centroid, landmarks = np.array([70.0, 30.0]), np.array([[60.0, 45.0], [20.0, 20.0]])
    xs, ys = np.meshgrid(np.arange(10, 50.01, 0.05), np.arange(10, 50.01, 0.05))
    points = np.column_stack([xs.ravel(), ys.ravel()])
    dense = (_closest_distances(points, landmarks) - np.hypot(*(points - centroid).T)).max()
    assert _separation_ceiling(landmarks, centroid, low, high) == pytest.approx(dense, abs=0.1)
    assert dense < _closest_distance(*centroid, landmarks)


def test_landmark_control_map_peaks_on_the_landmark():
    control = landmark_control_map([[40.0, 30.0], [np.nan, np.nan]], 96, 4.0)
    assert peak(control) == (40.0, 30.0)
    assert control.max() == pytest.approx(1.0)
    assert not landmark_control_map(np.full((2, 2), np.nan), 96, 4.0).any()


def test_landmark_control_at_the_grid_is_a_grid_map_that_cannot_beat_the_ceiling():
    size, cells = 96, (3, 3)
    mask, landmarks = _hip(size)
    control = landmark_control_map(landmarks, size, 10.0, cells)
    np.testing.assert_allclose(_upsampled(cell_values(control, cells), size), control, atol=1e-5)
    levels = reference_levels(Grid(cells), (0, 0, size), size, landmarks=landmarks, mask=mask, tolerance_px=6.0)
    assert energy_in_mask(control, mask) <= levels["energy_in_mask"]["ceiling"] + 1e-9
    assert com_distance(control, mask_centroid(mask)) >= levels["com_to_lesion"]["ceiling"] - 1e-9


def test_closest_distances_are_bit_identical_to_the_per_location_distance():
    """The vectorised per-cell distances of the calibration levels give exactly the single-location ones,
    invalid points skipped, and NaN without a valid point."""
    rng = np.random.default_rng(0)
    locations = rng.uniform(0, 96, (49, 2))
    points = np.vstack([rng.uniform(0, 96, (5, 2)), [[np.nan, 3.0]]])
    expected = np.array([_closest_distance(x, y, points) for x, y in locations])
    np.testing.assert_array_equal(_closest_distances(locations, points), expected)
    assert np.isnan(_closest_distances(locations, np.full((2, 2), np.nan))).all()
