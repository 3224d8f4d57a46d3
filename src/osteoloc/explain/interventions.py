"""Does the map follow the lesion? One model on the phantom's interventions
(`osteoloc.cohort.phantom.interventions`): each hip cropped as preprocessing crops it (around its exact
points, left hips flipped), the original and the intervention through the same crop and the original's
intensity window, so that the two crops differ only at the lesion.

Per intervention: how far the map's centre of mass and peak move along the lesion's move, per millimetre
the lesion's truth mask moves (1 = the map follows the evidence, 0 = it stays where it was, e.g. on the
landmark), and the change of the target's logit (for a removal: how much of the score the lesion carried).
"""

import logging

import numpy as np
import pandas as pd
import torch

from osteoloc.cohort.landmarks import target_groups
from osteoloc.cohort.phantom.cohort import Plan
from osteoloc.cohort.phantom.interventions import interventions
from osteoloc.io.atomic import write_csv
from osteoloc.io.study_h5 import StudyFile
from osteoloc.train.device import pick_device
from osteoloc.train.model import load_trained_model
from osteoloc.train.splits import read_split
from osteoloc.explain.metrics import centre_of_mass, peak
from osteoloc.explain.stages import map_grid, map_windows, predict_maps
from osteoloc.names import TARGETS

log = logging.getLogger(__name__)
from osteoloc.preprocess.geometry import preprocess_hip

EFFECT_COLUMNS = ["side", "target", "kind", "shift_mm", "mask_shift_mm", "com_follow", "peak_follow",
                  "com_shift_mm", "peak_shift_mm", "logit_change"]


def crop_pair(case, crop_size, spacing_mm):
    """(original crop, intervention crop, original mask, intervention mask, contour) in crop pixels, both
    images in the original crop's intensity window; masks (S, S) bool (intervention's all False when
    removed)."""
    spacing = (case.spacing, case.spacing)
    points = case.points_mm / case.spacing  # image mm -> source pixels (x, y)
    masks = np.stack([case.original_mask, case.mask if case.mask is not None
                      else np.zeros_like(case.original_mask)]).astype(np.uint8)
    first = preprocess_hip(case.original, spacing, points, case.side, crop_size, spacing_mm,
                           layers={"lesions": masks})
    second = preprocess_hip(case.image, spacing, points, case.side, crop_size, spacing_mm)
    (p5, p95), (q5, q95) = first.intensity, second.intensity
    raw = second.image * (q95 - q5) + q5
    image = ((raw - p5) / (p95 - p5)).astype(np.float32)
    lesions = first.layers["lesions"]
    return first.image, image, lesions[0] > 0, lesions[1] > 0, first.contour


def _centroid(mask):
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()]) if len(rows) else np.full(2, np.nan)


def intervention_effects(model, cases, crop_size, spacing_mm, groups, peak_rule="cell_centre", device="cpu"):
    """One row per intervention (EFFECT_COLUMNS) for `model` (eval mode, on `device`).

    cases: `interventions.interventions(...)`; crop_size, spacing_mm: the study's crop; groups: the
    study's target groups (BoneFinder indices per target, `preprocess.groups`), for a landmark-crop arm's
    sub-crops. com_follow, peak_follow: the move of the map's centre of mass and peak along the direction
    the lesion's mask centroid moved, divided by that move (NaN for a removal or a lesion the bone
    swallowed); com_shift_mm, peak_shift_mm: how far they moved at all (mm); logit_change: intervention
    minus original, the lesion's target."""
    cells = map_grid(model, crop_size)
    rows = []
    for case in cases:
        t = TARGETS.index(case.target)
        original, image, mask, moved_mask, contour = crop_pair(case, crop_size, spacing_mm)
        group_points, valid = target_groups(contour, groups, crop_size)
        images = torch.from_numpy(np.stack([original, image])[:, None]).to(device)
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


def explain_interventions(study_path, split_path, checkpoint_path, *, phantom_config, groups, shifts_mm,
                          radiographs, peak, device, out_path):
    """Rule explain_interventions: `intervention_effects` of one trained model on the phantom radiographs
    of its test split (the first `radiographs` test subjects in study order, every visit), only for the
    lesions of test hips; written to out_path with columns subject, visit and EFFECT_COLUMNS.
    phantom_config: the `cohort.phantom` block the cohort was drawn with (the radiographs are redrawn)."""
    device = pick_device(device)
    model = load_trained_model(checkpoint_path, device)
    plan = Plan(phantom_config)
    index = {subject: i for i, (_, subject, _) in enumerate(plan.ids)}
    with StudyFile(study_path) as study:
        rows = study.rows_in_split(read_split(split_path), "test")
        meta = study.meta(("subject", "visit", "side"), rows)
        crop_size, spacing_mm = study.crop_size, study.spacing_mm
    test_hips = set(zip(meta["subject"], meta["side"]))  # splits are by subject: every visit is a test visit
    subjects = list(dict.fromkeys(meta["subject"]))[:int(radiographs)]
    frames = []
    for subject in subjects:
        if subject not in index:
            raise ValueError(f"{study_path}: test subject {subject} is not in the phantom the config draws "
                             "(cohort.phantom must be the cohort's own config)")
        for v in range(plan.n_visits):
            cases = interventions(phantom_config, index[subject], v, tuple(shifts_mm), plan=plan)
            cases = [c for c in cases if (subject, c.side) in test_hips]
            if not cases:
                continue
            table = intervention_effects(model, cases, crop_size, spacing_mm, groups, peak, device)
            frames.append(table.assign(subject=subject, visit=v))
    columns = ["subject", "visit", *EFFECT_COLUMNS]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    write_csv(table, out_path, float_format="%.6g")
    log.info("%d interventions on %d test radiographs of %s", len(table), len(subjects), checkpoint_path)
    return table
