"""Does the map follow the lesion? One model on the phantom's intervention crops
(`osteoloc.explain.intervention_crops`, rendered once per test split; rule explain_interventions,
`osteoloc.explain.stages.explain_interventions`).

Per intervention: how far the map's centre of mass and peak move along the lesion's move, per millimetre
the lesion's truth mask moves (1 = the map follows the evidence, 0 = it stays where it was, e.g. on the
landmark), and the change of the target's logit (for a removal: how much of the score the lesion carried).
"""

import numpy as np
import pandas as pd
import torch

from osteoloc.cohort.landmarks import target_groups
from osteoloc.explain.metrics import centre_of_mass, peak
from osteoloc.explain.maps import map_grid, map_windows, predict_maps
from osteoloc.names import TARGETS

EFFECT_COLUMNS = ["side", "target", "kind", "shift_mm", "mask_shift_mm", "com_follow", "peak_follow",
                  "com_shift_mm", "peak_shift_mm", "logit_change"]


def _centroid(mask):
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()]) if len(rows) else np.full(2, np.nan)


def pair_effects(model, cases, pairs, crop_size, spacing_mm, groups, peak_rule="cell_centre", device="cpu"):
    """One row per intervention (EFFECT_COLUMNS) for `model` (eval mode, on `device`).

    cases: a table with side, target, kind, shift_mm per intervention; pairs: its crops (`crop_pairs`);
    crop_size, spacing_mm: the study's crop; groups: the study's target groups (BoneFinder indices per
    target, `preprocess.groups`), for a landmark-crop arm's sub-crops. com_follow, peak_follow: the move of
    the map's centre of mass and peak along the direction the lesion's mask centroid moved, divided by that
    move (NaN for a removal or a lesion the bone swallowed); com_shift_mm, peak_shift_mm: how far they
    moved at all (mm); logit_change: intervention minus original, the lesion's target."""
    cells = map_grid(model, crop_size)
    rows = []
    for i, case in enumerate(cases.itertuples(index=False)):
        t = TARGETS.index(case.target)
        original, image, mask, moved_mask, contour = (pairs[k][i] for k in
                                                      ("original", "image", "mask", "moved", "contour"))
        group_points, valid = target_groups(contour, groups, crop_size)
        images = torch.from_numpy(np.stack([original, image])[:, None].astype(np.float32)).to(device)
        logits, maps = predict_maps(model, images, np.stack([group_points] * 2), np.stack([valid] * 2))
        maps, logits = maps[:, t].cpu().numpy(), logits[:, t].cpu().numpy()
        windows = map_windows(model, group_points[None], valid[None], crop_size)
        window = None if windows is None else windows[0, t]  # a landmark-crop arm's sub-crop
        peak_args = (cells, window) if peak_rule == "cell_centre" else (None, None)
        coms = [np.array(centre_of_mass(m)) for m in maps]
        peaks = [np.array(peak(m, *peak_args)) for m in maps]
        lesion_move = (_centroid(moved_mask) - _centroid(mask)) * spacing_mm
        length = np.linalg.norm(lesion_move)
        row = {"side": case.side, "target": case.target, "kind": case.kind, "shift_mm": case.shift_mm,
               "mask_shift_mm": length if case.kind != "removed" else np.nan,
               "com_shift_mm": np.linalg.norm(coms[1] - coms[0]) * spacing_mm,
               "peak_shift_mm": np.linalg.norm(peaks[1] - peaks[0]) * spacing_mm,
               "logit_change": float(logits[1] - logits[0]), "com_follow": np.nan, "peak_follow": np.nan}
        if case.kind != "removed" and length > 0:
            direction = lesion_move / length
            row["com_follow"] = float((coms[1] - coms[0]) * spacing_mm @ direction / length)
            row["peak_follow"] = float((peaks[1] - peaks[0]) * spacing_mm @ direction / length)
        rows.append(row)
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)
