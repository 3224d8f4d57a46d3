"""Does the map follow the lesion? One model on the phantom's intervention crops
(`osteoloc.explain.intervention_crops`, rendered once per test split; rule explain_interventions,
`osteoloc.explain.stages.explain_interventions`).

Per intervention and scored map: how far the map's centre of mass and peak move along the lesion's move,
per millimetre the lesion's truth mask moves (1 = the map follows the evidence, 0 = it stays where it was,
e.g. on the landmark), and the change of the scored target's logit (for a removal: how much of the score
the lesion carried). Each follow rate has its chance level and ceiling on the same pair of crops:
- chance: an image-blind map (the uniform map over the model's map window: it cannot depend on the image,
  so it scores what a map that ignores the image scores, computed like the model's);
- ceiling: the lesion-driven oracle map (`lesion_map`): the lesion's truth mask seen through the model's own
  map grid (each cell's response the mask weighted by a Gaussian receptive field of RF_SD cells around the
  cell's centre) and upsampled as Grad-CAM's maps are (`cam.scale_maps`). A perfect map on that grid
  follows by this much, not by 1.
An all-zero map (a flat CAM) is the uniform map it is: its centre of mass and peak are the window's centre,
and it is counted (`maps_undefined`), never dropped.

Which map is scored (column `role`): "lesion", the lesion's own target (every kind); "receiving", for a
lesion moved to the other site, the receiving target's map (does it pick the lesion up at its new site?);
"unaffected", for a moved lesion, each target of the same hip without a lesion of its own (false following:
its map should not move, its chance and ceiling are both 0: the oracle of an absent lesion is all zero).
"""

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from osteoloc.cohort.landmarks import target_groups
from osteoloc.cohort.phantom.interventions import OTHER_SITE
from osteoloc.explain.cam import scale_maps
from osteoloc.explain.metrics import cell_centres, centre_of_mass, peak
from osteoloc.explain.maps import map_grid, map_windows, predict_maps
from osteoloc.names import TARGETS

ROLES = ("lesion", "receiving", "unaffected")
FOLLOWS = ("com_follow", "peak_follow")
EFFECT_COLUMNS = ["case", "side", "target", "kind", "direction", "shift_mm", "role", "map_target", "mask_shift_mm",
                  "com_follow", "peak_follow", "com_shift_mm", "peak_shift_mm", "logit_change", "maps_undefined",
                  "com_follow_chance", "peak_follow_chance", "com_follow_ceiling", "peak_follow_ceiling"]
BATCH = 32  # interventions per forward pass (with their distinct originals)
RF_SD = 0.5  # the oracle's receptive field: Gaussian sd in cells (a cell's response reaches into its neighbours)


def _centroid(mask):
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()]) if len(rows) else np.full(2, np.nan)


def _bounds(size, window):
    """(x0, y0, side) of the map's window: the whole S x S crop, or a landmark-crop arm's sub-crop."""
    return (0, 0, size) if window is None else tuple(int(v) for v in window)


def lesion_map(mask, cells, window=None):
    """The lesion-driven oracle map (S, S) float32 of `mask` (S, S bool) on a model's map grid `cells` (h, w)
    over its window ((x0, y0, side), None = the whole crop): each cell's response is the mask weighted by
    a Gaussian of RF_SD cells around the cell's centre, then ReLU, min-max, bilinear upsampling and min-max
    as Grad-CAM's (`cam.scale_maps`); zero outside the window. An empty mask gives the all-zero map."""
    size = mask.shape[0]
    x0, y0, side = _bounds(size, window)
    part = np.asarray(mask, dtype=np.float64)[y0:y0 + side, x0:x0 + side]
    h, w = int(cells[0]), int(cells[1])
    blurred = ndimage.gaussian_filter(part, sigma=(RF_SD * side / h, RF_SD * side / w), mode="constant")
    rows, cols = np.meshgrid(cell_centres(h, side), cell_centres(w, side), indexing="ij")
    raw = ndimage.map_coordinates(blurred, [rows.ravel(), cols.ravel()], order=1).reshape(h, w)
    scaled = scale_maps(torch.from_numpy(raw)[None, None], (side, side))[0, 0].numpy()
    out = np.zeros((size, size), np.float32)
    out[y0:y0 + side, x0:x0 + side] = scaled
    return out


def _locations(heatmap, size, window, peak_args):
    """(centre of mass, peak) (x, y) of one map, the window's centre for an all-zero map (the uniform map's)."""
    x0, y0, side = _bounds(size, window)
    if not np.asarray(heatmap, dtype=np.float64).sum() > 0:
        centre = np.array([x0 + (side - 1) / 2, y0 + (side - 1) / 2])
        return centre, centre
    return np.array(centre_of_mass(heatmap)), np.array(peak(heatmap, *peak_args))


def _follows(maps, size, window, peak_args, lesion_move, spacing_mm):
    """com_follow, peak_follow, com_shift_mm, peak_shift_mm of a (before, after) pair of maps."""
    (com0, peak0), (com1, peak1) = (_locations(m, size, window, peak_args) for m in maps)
    out = {"com_shift_mm": float(np.linalg.norm(com1 - com0) * spacing_mm),
           "peak_shift_mm": float(np.linalg.norm(peak1 - peak0) * spacing_mm), "com_follow": np.nan,
           "peak_follow": np.nan}
    length = np.linalg.norm(lesion_move)
    if np.isfinite(length) and length > 0:
        direction = lesion_move / length
        out["com_follow"] = float((com1 - com0) * spacing_mm @ direction / length)
        out["peak_follow"] = float((peak1 - peak0) * spacing_mm @ direction / length)
    return out


def _chunk_maps(model, pairs, chunk, crop_size, groups, device):
    """{i: (before, after)} logits (2, 4) and maps (2, 4, S, S) of the interventions `chunk` (indices into
    `pairs`) and {i: (group points, valid)}, from one forward pass over the chunk's distinct originals (a
    lesion's interventions share its original) and its interventions."""
    points, keys, images, position = {}, {}, [], {}
    for i in chunk:
        contour = pairs["contour"][i]
        points[i] = target_groups(contour, groups, crop_size)
        keys[i] = (pairs["original"][i].tobytes(), contour.tobytes())
        if keys[i] not in position:
            position[keys[i]] = len(images)
            images.append((pairs["original"][i], *points[i]))
    first = len(images)
    images += [(pairs["image"][i], *points[i]) for i in chunk]
    batch = torch.from_numpy(np.stack([x[0] for x in images])[:, None].astype(np.float32)).to(device)
    logits, maps = predict_maps(model, batch, np.stack([x[1] for x in images]), np.stack([x[2] for x in images]))
    logits, maps = logits.cpu().numpy(), maps.cpu().numpy()
    out_logits, out_maps = {}, {}
    for k, i in enumerate(chunk):
        pair = [position[keys[i]], first + k]
        out_logits[i], out_maps[i] = logits[pair], maps[pair]
    return out_logits, out_maps, points


def _scored_maps(case, lesion_targets):
    """[(role, map target)] scored for one intervention (module docstring)."""
    scored = [("lesion", case.target)]
    if case.kind == "other_site":
        scored.append(("receiving", OTHER_SITE[case.target]))
    if case.kind == "moved":
        scored += [("unaffected", t) for t in TARGETS if t not in lesion_targets]
    return scored


def _case_rows(i, case, pairs, logits, maps, points, model, cells, crop_size, spacing_mm, peak_rule):
    """The rows of intervention i (`pair_effects`): logits (2, 4), maps (2, 4, S, S) before and after."""
    mask, moved_mask = pairs["mask"][i], pairs["moved"][i]
    group_points, valid = points
    windows = map_windows(model, group_points[None], valid[None], crop_size)
    lesion_move = (_centroid(moved_mask) - _centroid(mask)) * spacing_mm
    move = lesion_move if case.kind != "removed" else np.full(2, np.nan)
    rows = []
    for role, map_target in _scored_maps(case, set(str(case.lesion_targets).split())):
        t = TARGETS.index(map_target)
        window = None if windows is None else windows[0, t]  # a landmark-crop arm's sub-crop
        peak_args = (cells, window) if peak_rule == "cell_centre" else (None, None)
        pair = maps[:, t]
        row = {"case": i, "side": case.side, "target": case.target, "kind": case.kind, "direction": case.direction,
               "shift_mm": case.shift_mm, "role": role, "map_target": map_target,
               "mask_shift_mm": np.linalg.norm(lesion_move) if case.kind != "removed" else np.nan,
               "logit_change": float(logits[1, t] - logits[0, t]),
               "maps_undefined": int(sum(not m.astype(np.float64).sum() > 0 for m in pair))}
        row |= _follows(pair, crop_size, window, peak_args, move, spacing_mm)
        blind = np.ones((2, crop_size, crop_size), np.float32)
        chance = _follows(blind, crop_size, window, peak_args, move, spacing_mm)
        # the oracle of the map's own lesion: an absent one (role unaffected) gives all-zero maps
        oracle_masks = (mask, moved_mask) if role != "unaffected" else (np.zeros_like(mask),) * 2
        ceiling = _follows([lesion_map(m, cells, window) for m in oracle_masks], crop_size, window, peak_args, move,
                           spacing_mm)
        for name in FOLLOWS:
            row[f"{name}_chance"], row[f"{name}_ceiling"] = chance[name], ceiling[name]
        rows.append(row)
    return rows


def pair_effects(model, cases, pairs, crop_size, spacing_mm, groups, peak_rule="cell_centre", device="cpu"):
    """Rows (EFFECT_COLUMNS) for `model` (eval mode, on `device`): per intervention (column case: its row in
    `cases`), one per scored map (column role, module docstring).

    cases: a table with side, target, kind, direction, shift_mm and lesion_targets (the targets with a
    lesion on that hip, space-separated) per intervention; pairs: its crops (`crop_pairs`); crop_size,
    spacing_mm: the study's crop; groups: the study's target groups (BoneFinder indices per target,
    `preprocess.groups`), for a landmark-crop arm's sub-crops. com_follow, peak_follow: the move of the map's
    centre of mass and peak along the direction the lesion's mask centroid moved, divided by that move (NaN
    for a removal or a lesion the bone swallowed); their _chance (the uniform, image-blind map's) and
    _ceiling (the lesion-driven oracle's, `lesion_map`); com_shift_mm, peak_shift_mm: how far they moved at
    all (mm); logit_change: intervention minus original, the map target's; maps_undefined: how many of the
    two maps are all zero (scored as the uniform map)."""
    cells = map_grid(model, crop_size)
    rows = []
    for start in range(0, len(cases), BATCH):
        chunk = range(start, min(len(cases), start + BATCH))
        logits, maps, points = _chunk_maps(model, pairs, chunk, crop_size, groups, device)
        for i in chunk:
            rows += _case_rows(i, cases.iloc[i], pairs, logits[i], maps[i], points[i], model, cells, crop_size,
                               spacing_mm, peak_rule)
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)
