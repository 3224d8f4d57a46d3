"""Heatmap localisation metrics in crop pixels (docs/method.md section 6).

Conventions: pixel (row i, column j) sits at x = j, y = i; points are (x, y); the peak is the first maximum
in row-major order; eps = 1e-6. A metric that is undefined returns NaN: no valid landmark, or a heatmap
whose total mass is zero (no centre of mass, no peak, no spread).
"""

import numpy as np
from scipy import ndimage

EPS = 1e-6


def _valid_points(points):
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points[np.isfinite(points).all(axis=1)]


def _closest_distance(x, y, points):
    points = _valid_points(points)
    if len(points) == 0:
        return float("nan")
    return float(np.min(np.hypot(points[:, 0] - x, points[:, 1] - y)))


def centre_of_mass(heatmap):
    """(x, y) of the heatmap's centre of mass; NaNs when its mass is zero."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    total = heatmap.sum()
    if not total > 0:
        return float("nan"), float("nan")
    rows, cols = np.indices(heatmap.shape)
    return float((heatmap * cols).sum() / (total + EPS)), float((heatmap * rows).sum() / (total + EPS))


def peak(heatmap):
    """(x, y) of the first maximum in row-major order; NaNs when the heatmap's mass is zero."""
    heatmap = np.asarray(heatmap)
    if not heatmap.sum() > 0:
        return float("nan"), float("nan")
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return float(col), float(row)


def com_distance(heatmap, points):
    """Distance from the heatmap's centre of mass to the closest of `points` (n, 2) as (x, y)."""
    return _closest_distance(*centre_of_mass(heatmap), points)


def peak_distance(heatmap, points):
    """Distance from the heatmap's first maximum (row-major) to the closest of `points`."""
    return _closest_distance(*peak(heatmap), points)


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


def pointing_hit(heatmap, mask, tolerance_px):
    """1.0 when the peak lies within `tolerance_px` (Euclidean) of a mask pixel, i.e. inside the mask dilated
    by a disc of that radius; 0.0 otherwise; NaN when the mask is empty or the heatmap has no peak."""
    mask = np.asarray(mask, dtype=bool)
    x, y = peak(heatmap)
    if not mask.any() or np.isnan(x):
        return float("nan")
    distance_to_mask = ndimage.distance_transform_edt(~mask)
    return float(distance_to_mask[int(y), int(x)] <= tolerance_px)


def energy_in_mask(heatmap, mask):
    """Share of the heatmap's mass inside the mask; NaN when the mask is empty or the mass is zero."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    total = heatmap.sum()
    if not mask.any() or not total > 0:
        return float("nan")
    return float(heatmap[mask].sum() / (total + EPS))


def cue_energy(heatmap, cue_mask):
    """Share of the heatmap's mass on the shortcut cue's pixels (the shortcut test, docs/contracts.md
    section 5): `energy_in_mask` on the cue's mask; NaN where the hip has no cue (empty mask) or the
    heatmap has no mass."""
    return energy_in_mask(heatmap, cue_mask)


def localisation_table(maps, groups, valid, masks=None, tolerance_px=0.0, cue=None):
    """Every metric for every image and target.

    maps (n, T, H, W); groups (n, T, L, 2) landmark points (x, y); valid (n, T, L) bool;
    masks (n, T, H, W) or None; cue (n, H, W) the shortcut cue's mask per image (`/truth/cue`) or None.
    Returns a dict of (n, T) float arrays: com_distance, peak_distance, spread, with masks pointing_hit
    and energy_in_mask, with cue cue_energy (every target's map against its image's cue).
    """
    maps = np.asarray(maps, dtype=np.float32)
    groups = np.where(np.asarray(valid, dtype=bool)[..., None], np.asarray(groups, dtype=np.float64), np.nan)
    n, n_targets = maps.shape[:2]
    names = ["com_distance", "peak_distance", "spread"] + (["pointing_hit", "energy_in_mask"]
                                                           if masks is not None else [])
    names += ["cue_energy"] if cue is not None else []
    out = {name: np.full((n, n_targets), np.nan) for name in names}
    for i in range(n):
        for t in range(n_targets):
            heatmap = maps[i, t]
            out["com_distance"][i, t] = com_distance(heatmap, groups[i, t])
            out["peak_distance"][i, t] = peak_distance(heatmap, groups[i, t])
            out["spread"][i, t] = spread(heatmap)
            if masks is not None:
                out["pointing_hit"][i, t] = pointing_hit(heatmap, masks[i, t], tolerance_px)
                out["energy_in_mask"][i, t] = energy_in_mask(heatmap, masks[i, t])
            if cue is not None:
                out["cue_energy"][i, t] = cue_energy(heatmap, cue[i])
    return out
