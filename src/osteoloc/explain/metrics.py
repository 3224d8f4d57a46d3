"""Heatmap localisation metrics in crop pixels (docs/method.md section 6), and the levels that calibrate them.

Conventions: pixel (row i, column j) sits at x = j, y = i; points are (x, y); eps = 1e-6. A metric that
is undefined returns NaN: no reference (no valid landmark, an empty mask), or, for the single-map functions,
a heatmap whose total mass is zero (no centre of mass, no peak, no spread). In `localisation_table` a
zero-mass map (a flat Grad-CAM: all evidence negative) is what it shows, a map without preference: it is
scored as the uniform map over the run's grid window, so every calibrated metric takes its chance
('uniform') level (`reference_levels`), and `map_defined` (0) keeps the count of such maps.

Peak: paper A takes the first maximum of the upsampled map (row-major). A Grad-CAM map is an h x w grid
upsampled bilinearly (half-pixel centres, edges clamped), so a border cell becomes a flat block whose
first maximum is its corner, and the peak sits on the crop's edge. With `cells` the peak is the centre of
the strongest cell instead: the h x w values are recovered exactly from the upsampled map by least
squares through the known upsampling (a map that is not such a grid gets its best grid approximation).

Calibration (`reference_levels`): for every metric, the value of a map that carries no information
(chance: the uniform map; a uniform map's peak is a random cell, so for peak metrics chance is the mean
over single-cell maps), the mean over maps at one random cell, and the best value any single-cell map of
the grid reaches (the ceiling: the oracle cell, upsampled exactly as the model's maps; for the centre of
mass, which a mixture of cells moves anywhere between the cells' centres, the oracle mixture).
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from osteoloc.explain.cam import scale_maps
from osteoloc.names import ABLATION_METRICS, CALIBRATED_METRICS

EPS = 1e-6
TIE = 1e-6  # cells within this of the strongest tie; the first in row-major order wins
PEAK_RULES = ("cell_centre", "first_max")
# The metrics calibrated against chance and ceiling, with the direction in which they are better.
CALIBRATED = {metric: ABLATION_METRICS[metric].better for metric in CALIBRATED_METRICS}
LEVELS = ("uniform", "random_cell", "ceiling")  # column suffixes of the reference levels
CONTROL = "control"  # column suffix of the landmark-only control map's value


def _valid_points(points):
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points[np.isfinite(points).all(axis=1)]


def _closest_distance(x, y, points):
    points = _valid_points(points)
    if len(points) == 0:
        return float("nan")
    return float(np.min(np.hypot(points[:, 0] - x, points[:, 1] - y)))


def _closest_distances(locations, points):
    """Each of the (K, 2) locations' distance to its closest valid point, as `_closest_distance` gives it."""
    points = _valid_points(points)
    if len(points) == 0:
        return np.full(len(locations), np.nan)
    offsets = np.asarray(locations, dtype=np.float64)[:, None, :] - points[None, :, :]
    return np.hypot(offsets[..., 0], offsets[..., 1]).min(axis=1)


def centre_of_mass(heatmap):
    """(x, y) of the heatmap's centre of mass; NaNs when its mass is zero."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    total = heatmap.sum()
    if not total > 0:
        return float("nan"), float("nan")
    rows, cols = np.indices(heatmap.shape)
    return float((heatmap * cols).sum() / (total + EPS)), float((heatmap * rows).sum() / (total + EPS))


def cell_centres(n_cells, length, start=0):
    """Pixel coordinates of the centres of n_cells cells over `length` pixels from `start`: cell j's centre
    at start + (j + 0.5) * length / n_cells - 0.5 (half-pixel convention, as the bilinear upsampling)."""
    return start + (np.arange(n_cells) + 0.5) * length / n_cells - 0.5


@lru_cache(maxsize=32)
def _unupsample(n_cells, length):
    """The least-squares inverse (n_cells, length) of the 1-D linear upsampling (half-pixel centres, edges
    clamped) of n_cells values to length pixels; the bilinear upsampling is this along rows and columns."""
    basis = torch.eye(n_cells, dtype=torch.float64).reshape(n_cells, 1, n_cells, 1)
    upsampled = F.interpolate(basis, size=(length, 1), mode="bilinear", align_corners=False).reshape(n_cells, length)
    return np.linalg.pinv(upsampled.numpy().T)


def cell_values(heatmap, cells):
    """The h x w grid whose bilinear upsampling is `heatmap` (exact for an upsampled grid, else the
    least-squares fit; separable, so the inverse is the two 1-D inverses)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    return _unupsample(int(cells[0]), heatmap.shape[0]) @ heatmap @ _unupsample(int(cells[1]), heatmap.shape[1]).T


def _window(heatmap, window):
    """(x0, y0, size) -> the window's view and its origin; None = the whole heatmap."""
    if window is None:
        return heatmap, 0, 0
    x0, y0, size = (int(v) for v in window)
    return heatmap[y0:y0 + size, x0:x0 + size], x0, y0


def peak(heatmap, cells=None, window=None):
    """(x, y) of the heatmap's peak; NaNs when its mass is zero.

    Without `cells`: the first maximum in row-major order (paper A). With cells (h, w): the centre of the
    strongest cell of the h x w map the heatmap was upsampled from (ties: the first in row-major order).
    window (x0, y0, size): where the grid lies when the heatmap is a sub-crop's map placed into a larger
    frame (zero outside); None = the whole heatmap."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if not heatmap.sum() > 0:
        return float("nan"), float("nan")
    if cells is None:
        row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
        return float(col), float(row)
    part, x0, y0 = _window(heatmap, window)
    values = cell_values(part, cells)
    strongest = int(np.flatnonzero(values.reshape(-1) >= values.max() - TIE * abs(values.max()))[0])
    i, j = divmod(strongest, int(cells[1]))
    return (float(cell_centres(cells[1], part.shape[1], x0)[j]), float(cell_centres(cells[0], part.shape[0], y0)[i]))


def com_distance(heatmap, points):
    """Distance from the heatmap's centre of mass to the closest of `points` (n, 2) as (x, y)."""
    return _closest_distance(*centre_of_mass(heatmap), points)


def peak_distance(heatmap, points, cells=None, window=None):
    """Distance from the heatmap's peak (`peak`) to the closest of `points`."""
    return _closest_distance(*peak(heatmap, cells, window), points)


def spread(heatmap):
    """Weighted spatial standard deviation around the centre of mass:
    sqrt( sum M ((x - xbar)^2 + (y - ybar)^2) / (sum M + eps) )."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    xbar, ybar = centre_of_mass(heatmap)
    if np.isnan(xbar):
        return float("nan")
    rows, cols = np.indices(heatmap.shape)
    second = (heatmap * ((cols - xbar) ** 2 + (rows - ybar) ** 2)).sum()
    return float(np.sqrt(second / (heatmap.sum() + EPS)))


def pointing_hit(heatmap, mask, tolerance_px, cells=None, window=None):
    """1.0 when the peak lies within `tolerance_px` (Euclidean) of a mask pixel, i.e. inside the mask dilated
    by a disc of that radius; 0.0 otherwise, also for a map with zero mass (a failure); NaN when the mask
    is empty."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    x, y = peak(heatmap, cells, window)
    if np.isnan(x):
        return 0.0
    return float(distance_to_mask(x, y, mask) <= tolerance_px)


def distance_to_mask(x, y, mask):
    """Euclidean distance from (x, y) (a cell centre may fall between pixels) to the closest mask pixel."""
    rows, cols = np.nonzero(mask)
    return float(np.min(np.hypot(cols - x, rows - y)))


def energy_in_mask(heatmap, mask):
    """Share of the heatmap's mass inside the mask; 0 for a map with zero mass (a failure); NaN when the
    mask is empty."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    total = heatmap.sum()
    if not mask.any():
        return float("nan")
    if not total > 0:
        return 0.0
    return float(heatmap[mask].sum() / (total + EPS))


def energy_lift(heatmap, mask):
    """Energy share in the mask over its area share: 1.0 for a uniform map, > 1 when the map gathers on
    the mask; 0 for a map with zero mass; NaN when the mask is empty."""
    mask = np.asarray(mask, dtype=bool)
    share = energy_in_mask(heatmap, mask)
    return float(share / (mask.sum() / mask.size)) if mask.any() else float("nan")


def cue_energy(heatmap, cue_mask):
    """Share of the heatmap's mass on the shortcut cue's pixels (the shortcut test, docs/contracts.md
    section 5): NaN where the hip has no cue (empty mask) or the heatmap has no mass."""
    if not np.asarray(heatmap, dtype=np.float64).sum() > 0:
        return float("nan")
    return energy_in_mask(heatmap, cue_mask)


def mask_centroid(mask):
    """(x, y) centroid of a mask's pixels: the lesion's centre (an expert point: the point itself)."""
    rows, cols = np.nonzero(np.asarray(mask, dtype=bool))
    return np.array([[cols.mean(), rows.mean()]]) if len(rows) else np.full((1, 2), np.nan)


def lesion_vs_landmark(location, landmarks, centroid):
    """Distance from `location` (x, y) to the closest of `landmarks` minus its distance to the lesion's
    `centroid` (px): > 0 when the location is nearer the lesion than the landmark group."""
    return _closest_distance(*location, landmarks) - _closest_distance(*location, centroid)


def _separation_ceiling(landmarks, centroid, low, high, step=0.25):
    """The largest `lesion_vs_landmark` of a point in the box [low, high] (x, y): at most the lesion's
    distance to its closest landmark (triangle inequality), reached at the lesion when it lies in the box.
    Else the maximum is on the box's boundary (moving a point toward the lesion by d lowers its lesion
    distance by d and its landmark distance by at most d), searched on a `step`-px lattice of the boundary
    (error < 2 * step: the difference of two distances is 2-Lipschitz)."""
    centroid = np.asarray(centroid, dtype=np.float64).reshape(2)
    if np.all((centroid >= low) & (centroid <= high)):
        return _closest_distance(*centroid, landmarks)
    xs = np.append(np.arange(low[0], high[0], step), high[0])
    ys = np.append(np.arange(low[1], high[1], step), high[1])
    edges = np.concatenate([np.column_stack([xs, np.full_like(xs, low[1])]),
                            np.column_stack([xs, np.full_like(xs, high[1])]),
                            np.column_stack([np.full_like(ys, low[0]), ys]),
                            np.column_stack([np.full_like(ys, high[0]), ys]),
                            np.clip(centroid, low, high)[None]])
    values = _closest_distances(edges, landmarks) - np.hypot(*(edges - centroid).T)
    return float(values.max())


def landmark_control_map(points, size, sigma_px, cells=None, window=None):
    """The landmark-only control: a Gaussian of sd sigma_px at each valid point (max over points), size x
    size; all zero without a valid point. No model: what a map scores that only knows the landmarks.
    With cells (h, w): at the grid's resolution, as a model's map would be: the Gaussian taken at the
    cell centres of `window` (x0, y0, P; None = the whole map), upsampled like Grad-CAM's
    (`cam.scale_maps`) and placed in the window, zero outside it."""
    points = _valid_points(points)
    if len(points) == 0:
        return np.zeros((size, size))
    if cells is None:
        rows, cols = np.indices((size, size), dtype=np.float64)
    else:
        x0, y0, p = window or (0, 0, size)
        rows, cols = np.meshgrid(cell_centres(cells[0], p, y0), cell_centres(cells[1], p, x0), indexing="ij")
    d2 = (cols[None] - points[:, 0, None, None]) ** 2 + (rows[None] - points[:, 1, None, None]) ** 2
    gauss = np.exp(-d2.min(axis=0) / (2 * sigma_px**2))
    if cells is None:
        return gauss
    out = np.zeros((size, size))
    out[y0:y0 + p, x0:x0 + p] = scale_maps(torch.as_tensor(gauss, dtype=torch.float32)[None, None], (p, p))[0, 0]
    return out


@dataclass(frozen=True)
class Grid:
    """How a run's maps were made: cells (h, w) of the model's feature map, the peak rule (PEAK_RULES) and
    windows (n, T, 3) int (x0, y0, size) where a landmark-crop arm's sub-crop maps lie (None: the grid
    covers the whole heatmap)."""
    cells: tuple
    peak_rule: str = "cell_centre"
    windows: np.ndarray = None

    def __post_init__(self):
        if self.peak_rule not in PEAK_RULES:
            raise ValueError(f"peak rule {self.peak_rule!r}: choose one of {PEAK_RULES}")

    def window(self, i, t, size):
        return (0, 0, size) if self.windows is None else tuple(int(v) for v in self.windows[i, t])

    def peak_args(self, i, t, size):
        """The (cells, window) `peak` takes under this rule."""
        return (tuple(self.cells), self.window(i, t, size)) if self.peak_rule == "cell_centre" else (None, None)


@lru_cache(maxsize=16)
def _cell_maps(cells, window_size, peak_rule):
    """Every single-cell map of the grid, upsampled as Grad-CAM's (`cam.scale_maps`), at window_size:
    maps (K, P, P) float64, their peaks and centres of mass (K, 2) (x, y) in window pixels."""
    h, w = cells
    raw = torch.eye(h * w, dtype=torch.float32).reshape(h * w, 1, h, w)
    maps = scale_maps(raw, (window_size, window_size))[:, 0].double().numpy()
    peak_cells = cells if peak_rule == "cell_centre" else None
    peaks = np.array([peak(m, peak_cells) for m in maps])
    coms = np.array([centre_of_mass(m) for m in maps])
    return maps, peaks, coms


def reference_levels(grid, window, size, *, landmarks=None, mask=None, tolerance_px=0.0):
    """Chance and ceiling of every CALIBRATED metric for one hip and target at the run's grid.

    window (x0, y0, P): where the grid lies in the size x size heatmap; landmarks (L, 2) the exact points
    or None; mask (size, size) the lesion or None. Returns {metric: {"uniform", "random_cell", "ceiling"}}
    for the metrics whose reference exists. uniform: the uniform map over the window (its peak a random
    cell: the mean over cells, as random tie-breaking gives); random_cell: the mean over the single-cell
    maps; ceiling: the best single-cell map in the metric's direction (centre-of-mass distances: the best
    mixture of cells, the distance to the box spanned by the cell maps' centres of mass; lesion_vs_landmark,
    with both references: the best point of that box, `_separation_ceiling`)."""
    x0, y0, p = window
    maps, peaks, coms = _cell_maps(tuple(grid.cells), int(p), grid.peak_rule)
    peaks, coms = peaks + (x0, y0), coms + (x0, y0)
    centre = np.array([x0 + (p - 1) / 2, y0 + (p - 1) / 2])
    per_cell, uniform = {}, {}

    # A grid map's centre of mass is a mass-weighted mean of its cells' (the upsampling is linear), so it
    # can lie anywhere in their hull, the box spanned by the cell maps' centres of mass: CoM's ceiling
    # is the distance to that box, which a mixture of at most four neighbouring cells reaches.
    low, high = coms.min(axis=0), coms.max(axis=0)
    best_com = {}

    def box_distance(points):
        points = _valid_points(points)
        return float(np.min(np.hypot(*(points - np.clip(points, low, high)).T)))

    if landmarks is not None and len(_valid_points(landmarks)):
        per_cell["com_to_landmark"] = _closest_distances(coms, landmarks)
        uniform["com_to_landmark"] = _closest_distance(*centre, landmarks)
        best_com["com_to_landmark"] = box_distance(landmarks)
        per_cell["peak_to_landmark"] = _closest_distances(peaks, landmarks)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.any():
        centroid = mask_centroid(mask)
        per_cell["com_to_lesion"] = _closest_distances(coms, centroid)
        uniform["com_to_lesion"] = _closest_distance(*centre, centroid)
        best_com["com_to_lesion"] = box_distance(centroid)
        per_cell["peak_to_lesion"] = _closest_distances(peaks, centroid)
        per_cell["pointing_hit"] = np.array([float(distance_to_mask(x, y, mask) <= tolerance_px) for x, y in peaks])
        inside = mask[y0:y0 + p, x0:x0 + p].reshape(-1).astype(np.float64)
        energy = maps.reshape(len(maps), -1) @ inside / (maps.reshape(len(maps), -1).sum(axis=1) + EPS)
        per_cell["energy_in_mask"] = energy
        uniform["energy_in_mask"] = inside.sum() / p**2
        area = mask.sum() / mask.size
        per_cell["energy_lift"] = energy / area
        uniform["energy_lift"] = uniform["energy_in_mask"] / area
        if "com_to_landmark" in per_cell:
            # the same centres of mass, nearer the lesion than the landmark by how much
            per_cell["lesion_vs_landmark"] = per_cell["com_to_landmark"] - per_cell["com_to_lesion"]
            uniform["lesion_vs_landmark"] = uniform["com_to_landmark"] - uniform["com_to_lesion"]
            best_com["lesion_vs_landmark"] = _separation_ceiling(landmarks, centroid, low, high)
    levels = {}
    for metric, values in per_cell.items():
        best = best_com.get(metric, values.min() if CALIBRATED[metric] == "lower" else values.max())
        levels[metric] = {"uniform": float(uniform.get(metric, values.mean())), "random_cell": float(values.mean()),
                          "ceiling": float(best)}
    return levels


def _score(heatmap, i, t, size, groups, exact, masks, centroids, tolerance_px, grid):
    """Every metric of one map: {name: value}."""
    cells, window = grid.peak_args(i, t, size) if grid is not None else (None, None)
    x, y = peak(heatmap, cells, window)
    com = centre_of_mass(heatmap)
    out = {"com_distance": _closest_distance(*com, groups[i, t]), "peak_distance": _closest_distance(x, y, groups[i, t]),
           "spread": spread(heatmap)}
    if exact is not None:
        out["com_to_landmark"] = _closest_distance(*com, exact[i, t])
        out["peak_to_landmark"] = _closest_distance(x, y, exact[i, t])
    if masks is not None:
        out["com_to_lesion"] = _closest_distance(*com, centroids[i][t])
        out["peak_to_lesion"] = _closest_distance(x, y, centroids[i][t])
        out["pointing_hit"] = pointing_hit(heatmap, masks[i, t], tolerance_px, cells, window)
        out["energy_in_mask"] = energy_in_mask(heatmap, masks[i, t])
        out["energy_lift"] = energy_lift(heatmap, masks[i, t])
    if exact is not None and masks is not None:
        out["lesion_vs_landmark"] = out["com_to_landmark"] - out["com_to_lesion"]
    return out


def uniform_map(size, window=None):
    """The size x size map that is 1 over `window` (x0, y0, P; None = everywhere) and 0 outside it: what
    an all-zero Grad-CAM map shows, no preference among the grid's cells."""
    x0, y0, p = window or (0, 0, size)
    flat = np.zeros((size, size))
    flat[y0:y0 + p, x0:x0 + p] = 1.0
    return flat


def _uniform_score(i, t, size, groups, exact, masks, centroids, tolerance_px, grid, levels):
    """Every metric of an all-zero map, scored as the uniform map over the run's grid window: centre of mass
    at the window's centre, spread and energies the uniform map's, peak metrics (a random cell: every cell
    ties) the mean over the grid's cells, so each calibrated metric equals its 'uniform' level in
    `levels`. Without a grid: the uniform map over the whole heatmap under paper A's first-maximum rule."""
    if grid is None:
        return _score(uniform_map(size), i, t, size, groups, exact, masks, centroids, tolerance_px, None)
    window = grid.window(i, t, size)
    x0, y0, p = window
    out = _score(uniform_map(size, window), i, t, size, groups, exact, masks, centroids, tolerance_px, grid)
    _, peaks, _ = _cell_maps(tuple(grid.cells), int(p), grid.peak_rule)
    out["com_distance"] = _closest_distance(x0 + (p - 1) / 2, y0 + (p - 1) / 2, groups[i, t])
    out["peak_distance"] = float(np.mean(_closest_distances(peaks + (x0, y0), groups[i, t])))
    for metric in CALIBRATED:
        if metric in out:
            out[metric] = levels.get(metric, {}).get("uniform", np.nan)
    return out


@dataclass(frozen=True)
class Scoring:
    """How a run's maps are scored: tolerance_px the pointing game's tolerance (crop pixels); grid the run's
    `Grid` (None: paper A's first-maximum peak, no calibration); control_sigma_px the landmark-only control
    map's sd (crop pixels; None: no control, needs the grid); exact_points: a function HipBatch -> the
    batch's exact landmark groups (n, T, L, 2), NaN where absent, or None (the study's rule, e.g. its manual
    contour grouped by its group indices; None: no exact points); min_separation_px: `lesion_vs_landmark`
    is defined only where the lesion's centroid lies at least this far from its closest exact landmark
    (crop pixels: nearer, the two cannot be told apart)."""

    tolerance_px: float = 0.0
    grid: Grid = None
    control_sigma_px: float = None
    exact_points: object = None
    min_separation_px: float = 0.0


def localisation_table(maps, batch, scoring=Scoring()):
    """Every metric for every image and target.

    maps (n, T, H, W) crop pixels; batch: the hips' `HipBatch` (io.study_h5) with `groups` (n, T, L, 2)
    landmark points (x, y) (the automatic points) and `valid` (n, T, L) bool, optionally the layers
    `lesions` (n, T, H, W; lesions or expert references) and `cue` (n, H, W; the shortcut cue's mask);
    scoring: the run's `Scoring`.

    Returns a dict of (n, T) float arrays: com_distance, peak_distance, spread (to `groups`), map_defined
    (1, or 0 for a map with zero mass, which is scored as the uniform map: `_uniform_score`); with exact
    com_to_landmark, peak_to_landmark; with lesions com_to_lesion, peak_to_lesion (to the mask's
    centroid), pointing_hit, energy_in_mask, energy_lift; with both lesion_landmark_px (the lesion
    centroid's distance to its closest exact landmark, whatever the map) and lesion_vs_landmark
    (com_to_landmark - com_to_lesion, where lesion_landmark_px >= min_separation_px); with cue cue_energy.
    With a grid, for every CALIBRATED metric present, `<metric>_<level>` for LEVELS (`reference_levels`),
    and with control_sigma_px `<metric>_control`.
    """
    groups, valid, masks, cue = batch.groups, batch.valid, batch.layers.get("lesions"), batch.layers.get("cue")
    tolerance_px, grid, control_sigma_px = scoring.tolerance_px, scoring.grid, scoring.control_sigma_px
    exact = None if scoring.exact_points is None else scoring.exact_points(batch)
    maps = np.asarray(maps, dtype=np.float32)
    groups = np.where(np.asarray(valid, dtype=bool)[..., None], np.asarray(groups, dtype=np.float64), np.nan)
    n, n_targets, size = maps.shape[0], maps.shape[1], maps.shape[-1]
    if control_sigma_px is not None and grid is None:
        raise ValueError("the landmark-only control is scored on the run's grid: pass grid=")
    masks = None if masks is None else np.asarray(masks, dtype=bool)
    centroids = None if masks is None else [[mask_centroid(masks[i, t]) for t in range(n_targets)] for i in range(n)]
    out = {}

    def put(name, i, t, value):
        out.setdefault(name, np.full((n, n_targets), np.nan))[i, t] = value

    def score(heatmap, i, t, levels):
        if heatmap.astype(np.float64).sum() > 0:
            return _score(heatmap, i, t, size, groups, exact, masks, centroids, tolerance_px, grid), heatmap
        flat = uniform_map(size, None if grid is None else grid.window(i, t, size))
        return _uniform_score(i, t, size, groups, exact, masks, centroids, tolerance_px, grid, levels), flat

    for i in range(n):
        for t in range(n_targets):
            separated = True
            if exact is not None and masks is not None:
                apart = _closest_distance(*centroids[i][t][0], exact[i, t])
                put("lesion_landmark_px", i, t, apart)
                separated = bool(apart >= scoring.min_separation_px)  # False for NaN: no lesion or landmark
            levels = {} if grid is None else reference_levels(
                grid, grid.window(i, t, size), size, landmarks=None if exact is None else exact[i, t],
                mask=None if masks is None else masks[i, t], tolerance_px=tolerance_px)
            heatmap = maps[i, t]
            put("map_defined", i, t, float(heatmap.astype(np.float64).sum() > 0))
            scores, scored_map = score(heatmap, i, t, levels)
            if not separated:  # lesion and landmark too close to tell apart: no endpoint, no levels
                scores["lesion_vs_landmark"] = np.nan
                levels.pop("lesion_vs_landmark", None)
            for name, value in scores.items():
                put(name, i, t, value)
            if cue is not None:
                put("cue_energy", i, t, cue_energy(scored_map, cue[i]))
            if grid is None:
                continue
            for metric in CALIBRATED:
                if metric not in scores:
                    continue
                for level in LEVELS:
                    put(f"{metric}_{level}", i, t, levels.get(metric, {}).get(level, np.nan))
            if control_sigma_px is not None:
                control = landmark_control_map(groups[i, t], size, control_sigma_px, tuple(grid.cells),
                                               grid.window(i, t, size))
                control_scores, _ = score(control, i, t, levels)
                for metric in CALIBRATED:
                    if metric in scores:
                        put(f"{metric}_{CONTROL}", i, t, control_scores[metric] if separated or
                            metric != "lesion_vs_landmark" else np.nan)
    return out
