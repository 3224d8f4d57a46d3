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
from osteoloc.io.intervention_h5 import CASE_COLUMNS, read_intervention_crops, write_intervention_crops
from osteoloc.io.study_h5 import StudyFile
from osteoloc.train.device import pick_device
from osteoloc.train.model import load_trained_model
from osteoloc.train.splits import read_split
from osteoloc.explain.metrics import centre_of_mass, peak
from osteoloc.explain.stages import map_grid, map_windows, predict_maps
from osteoloc.names import TARGETS
from osteoloc.preprocess.geometry import preprocess_hip

log = logging.getLogger(__name__)

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


def crop_pairs(cases, crop_size, spacing_mm):
    """{name: stacked array} of `crop_pair` over `cases` (io.intervention_h5.ARRAYS): what the
    measurement needs of each intervention, without the radiographs."""
    pairs = [crop_pair(case, crop_size, spacing_mm) for case in cases]
    names = ("original", "image", "mask", "moved", "contour")
    if not pairs:
        return {name: np.zeros((0, crop_size, crop_size), bool if name in ("mask", "moved") else np.float32)
                for name in names[:4]} | {"contour": np.zeros((0, 0, 2), np.float32)}
    return {name: np.stack([pair[i] for pair in pairs]) for i, name in enumerate(names)}


def case_table(cases):
    """side, target, kind, shift_mm of each intervention (the case columns the crops do not hold)."""
    return pd.DataFrame({"side": [c.side for c in cases], "target": [c.target for c in cases],
                         "kind": [c.kind for c in cases], "shift_mm": [c.shift_mm for c in cases]})


def intervention_effects(model, cases, crop_size, spacing_mm, groups, peak_rule="cell_centre", device="cpu"):
    """`pair_effects` of the interventions `cases` (`interventions.interventions(...)`), cropped here."""
    return pair_effects(model, case_table(cases), crop_pairs(cases, crop_size, spacing_mm), crop_size,
                        spacing_mm, groups, peak_rule, device)


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


def render_intervention_crops(study_path, split_path, *, phantom_config, shifts_mm, radiographs, out_path):
    """Rule intervention_crops: the interventions on the lesions of the test hips of one split (the first
    `radiographs` test subjects in study order, every visit), redrawn and cropped once for every run scored
    on that split; written to out_path (io.intervention_h5). phantom_config: the `cohort.phantom` block the
    cohort was drawn with (the radiographs are redrawn)."""
    plan = Plan(phantom_config)
    index = {subject: i for i, (_, subject, _) in enumerate(plan.ids)}
    with StudyFile(study_path) as study:
        rows = study.rows_in_split(read_split(split_path), "test")
        meta = study.meta(("subject", "visit", "side"), rows)
        crop_size, spacing_mm = study.crop_size, study.spacing_mm
    test_hips = set(zip(meta["subject"], meta["side"]))  # splits are by subject: every visit is a test visit
    subjects = list(dict.fromkeys(meta["subject"]))[:int(radiographs)]
    tables, parts = [], []
    for subject in subjects:
        if subject not in index:
            raise ValueError(f"{study_path}: test subject {subject} is not in the phantom the config draws "
                             "(cohort.phantom must be the cohort's own config)")
        for v in range(plan.n_visits):
            cases = interventions(phantom_config, index[subject], v, tuple(shifts_mm), plan=plan)
            cases = [c for c in cases if (subject, c.side) in test_hips]
            if cases:
                tables.append(case_table(cases).assign(subject=subject, visit=v))
                parts.append(crop_pairs(cases, crop_size, spacing_mm))
    if tables:
        table = pd.concat(tables, ignore_index=True)[CASE_COLUMNS]
        arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    else:
        table, arrays = pd.DataFrame(columns=CASE_COLUMNS), crop_pairs([], crop_size, spacing_mm)
    write_intervention_crops(out_path, table, arrays)
    log.info("%d interventions on %d test radiographs -> %s", len(table), len(subjects), out_path)
    return table


def explain_interventions(crops_path, checkpoint_path, *, groups, peak, device, out_path, study_path):
    """Rule explain_interventions: `pair_effects` of one trained model on its split's intervention crops
    (`render_intervention_crops`), written to out_path with columns subject, visit and EFFECT_COLUMNS."""
    device = pick_device(device)
    model = load_trained_model(checkpoint_path, device)
    cases, arrays = read_intervention_crops(crops_path)
    with StudyFile(study_path) as study:
        crop_size, spacing_mm = study.crop_size, study.spacing_mm
    columns = ["subject", "visit", *EFFECT_COLUMNS]
    table = pair_effects(model, cases, arrays, crop_size, spacing_mm, groups, peak, device)
    table = table.assign(subject=cases["subject"].to_numpy(), visit=cases["visit"].to_numpy())[columns]
    write_csv(table, out_path, float_format="%.6g")
    log.info("%d interventions of %s scored with %s", len(table), crops_path, checkpoint_path)
    return table
