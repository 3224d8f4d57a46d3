"""The explain stage: one trained model on its test split -> predictions, Grad-CAM maps and localisation
metrics (docs/contracts.md section 5; the files themselves belong to `osteoloc.io.runs`); and the phantom's
interventions: rendered once per split (`render_intervention_crops`), scored per run (`explain_interventions`).

Every arm's maps come out in the hip crop's frame, S x S, four targets: a per-target arm's four models
are assembled into that layout, a landmark-crop arm's sub-crop maps are placed back where the sub-crop
was cut (zero elsewhere), so every metric compares with every other arm's. Paper A's distances are to
the study's automatic landmarks (field `groups`, the points the prior trains on); the calibrated
metrics are to the exact landmark points (field `contour_manual`, where the study has them) and to
the lesion (layer `lesions`), with chance and ceiling at the run's own map grid and the landmark-only
control beside them (`osteoloc.explain.metrics`).
"""

import logging
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import torch

from osteoloc.cohort.phantom.cohort import Plan
from osteoloc.cohort.phantom.interventions import interventions
from osteoloc.explain.intervention_crops import case_table, crop_pairs
from osteoloc.explain.interventions import EFFECT_COLUMNS, pair_effects
from osteoloc.explain.maps import map_grid, map_windows, predict_maps
from osteoloc.io.atomic import write_csv
from osteoloc.io.intervention_h5 import CASE_COLUMNS, read_intervention_crops, write_intervention_crops
from osteoloc.train.data import groups_from_contour, prior_landmarks, subcrop_offsets
from osteoloc.train.device import pick_device
from osteoloc.train.prior import penalty_maps
from osteoloc.io.study_h5 import StudyFile
from osteoloc.explain.metrics import Grid, Scoring, localisation_table
from osteoloc.train.model import load_trained_model
from osteoloc.train.settings import TrainSettings
from osteoloc.io.runs import (META_FIELDS, maps_writer, metrics_frame, predictions_frame, write_metrics,
                           write_predictions)
from osteoloc.train.splits import read_split
from osteoloc.names import TARGETS

log = logging.getLogger(__name__)

BATCH_FIELDS = ("image", "groups", "valid")  # what a model's maps need (the groups place landmark sub-crops)
SCORED_FIELDS = ("contour_manual",)  # the exact (manual) 80 points, NaN where the study has none
CONSTANT = 1e-6  # a penalty mask whose range over the grid is below this gives the prior no gradient


def exact_groups(batch, group_indices, crop_size):
    """The exact landmark groups (n, 4, L, 2) of a HipBatch from its manual contour (`contour_manual`), NaN
    where absent, or None when no hip of the batch has a manual point."""
    exact, exact_valid = groups_from_contour(batch.contour_manual, group_indices, crop_size)
    return np.where(exact_valid[..., None], exact, np.nan) if exact_valid.any() else None


def constant_penalty(settings, study, rows, cells):
    """Per test hip and target: 1.0 where the run's landmark penalty (`train.prior.penalty_maps` with the
    run's radius, sigma, shape and landmarks, on its map grid) is constant over the grid, so the prior loss
    gives that hip no gradient; 0.0 where it varies; NaN without a prior (lambda 0) or without a valid
    landmark. settings: the run's `TrainSettings` (`TrainSettings.from_checkpoint`)."""
    out = np.full((len(rows), len(TARGETS)), np.nan)
    if not settings.prior_lambda > 0:
        return out
    points, valid = prior_landmarks(study, rows, settings.landmark_source, settings.landmark_noise_mm, settings.seed)
    points, valid = torch.from_numpy(np.nan_to_num(points)), torch.from_numpy(valid)
    size = crop = study.crop_size
    crop_px = settings.crop_px
    if crop_px:  # each target's prior lives in its own sub-crop's pixels, as in training
        crop = crop_px
        offsets = torch.stack([subcrop_offsets(points[:, t], valid[:, t], crop_px, size) for t in range(len(TARGETS))], 1)
        points = points - offsets[:, :, None, :].to(points.dtype)
        valid = valid & ((points >= -0.5) & (points <= crop_px - 0.5)).all(dim=-1)
    penalty = penalty_maps(points, valid, cells, (crop, crop), settings.prior_radius, settings.prior_sigma,
                           settings.prior_shape)
    span = (penalty.amax(dim=(-2, -1)) - penalty.amin(dim=(-2, -1))).numpy()
    has_point = valid.any(dim=-1).numpy()
    out[has_point] = (span[has_point] < CONSTANT).astype(float)
    return out


def _twin_probabilities(model, twin_path, rows, meta, crop_size, batch_size, device):
    """The model's probabilities (n, 4) on the twin study's `rows` (the same hips, the cue removed)."""
    probs = []
    with StudyFile(twin_path) as twin:
        if twin.crop_size != crop_size:
            raise ValueError(f"{twin_path}: crop size {twin.crop_size}, the study's is {crop_size}")
        if len(twin) != len(meta) or not twin.meta(META_FIELDS, rows).set_index("row").equals(meta.loc[rows]):
            raise ValueError(f"{twin_path}: its rows are not the study's hips (subject, visit, side differ); "
                             "the twin cohort must be preprocessed like the study")
        for batch in twin.batches(BATCH_FIELDS, rows, batch_size):
            images = torch.from_numpy(batch.image.astype(np.float32))[:, None]
            logits, _ = predict_maps(model, images.to(device), batch.groups, batch.valid)
            probs.append(torch.sigmoid(logits).cpu().numpy())
    return np.concatenate(probs)


def explain_run(study_path, split_path, checkpoint_path, *, predictions_path, maps_path, metrics_path,
                batch_size, pointing_tolerance_mm, device, peak="cell_centre", control_sigma_mm=None,
                min_separation_mm=0.0,
                twin_study_path=None, twin_predictions_path=None):
    """Predictions, maps and metrics of one model on its test split, written to the three given paths.

    Reads the study one batch at a time (memory stays at one batch of images and maps however large the
    test split). Maps are in crop pixels; metrics use the float32 maps, the file keeps float16.
    pointing_tolerance_mm: the pointing game's tolerance, converted to crop pixels with the study's
    spacing (`spacing_mm`); peak: "cell_centre" (the centre of the strongest cell of the model's grid) or
    "first_max" (paper A); control_sigma_mm: the landmark-only control map's sd (None: no control);
    min_separation_mm: the lesion-landmark distance below which `lesion_vs_landmark` is undefined. The
    metrics gain `cue_energy` when the study has the shortcut cue's masks (layer `cue`), the exact-point
    distances when it has manual points, and `penalty_constant` (`constant_penalty`). With
    twin_study_path (the study's counterfactual twin: same rows, images without the cue) the model's
    predictions on the twin's test rows go to twin_predictions_path (predictions.csv's columns). Returns
    dict rows (n,), predictions and metrics DataFrames.
    """
    torch.manual_seed(0)
    device = pick_device(device)
    model = load_trained_model(checkpoint_path, device)
    settings = TrainSettings.from_checkpoint(checkpoint_path)
    split = read_split(split_path)
    probs, values = [], []
    with StudyFile(study_path) as study:
        rows = study.rows_in_split(split, "test")
        meta = study.meta(META_FIELDS).set_index("row")
        labels = study.read(["labels"], rows).labels.astype(int)
        fields = BATCH_FIELDS + SCORED_FIELDS + study.layers
        crop_size = study.crop_size
        scoring = Scoring(tolerance_px=float(pointing_tolerance_mm) / study.spacing_mm,
                          control_sigma_px=None if control_sigma_mm is None else float(control_sigma_mm) / study.spacing_mm,
                          exact_points=partial(exact_groups, group_indices=study.group_indices, crop_size=crop_size),
                          min_separation_px=float(min_separation_mm) / study.spacing_mm)
        cells = map_grid(model, crop_size)
        penalty = constant_penalty(settings, study, rows, cells)
        with maps_writer(maps_path, rows, study.crop_size) as append_maps:
            for batch in study.batches(fields, rows, batch_size):
                images = torch.from_numpy(batch.image.astype(np.float32))[:, None]
                logits, maps = predict_maps(model, images.to(device), batch.groups, batch.valid)
                maps = maps.cpu().numpy()
                probs.append(torch.sigmoid(logits).cpu().numpy())
                append_maps(maps)
                grid = Grid(cells, peak, map_windows(model, batch.groups, batch.valid, crop_size))
                values.append(localisation_table(maps, batch, replace(scoring, grid=grid)))
    names = list(dict.fromkeys(name for v in values for name in v))
    n_batch = [len(v["map_defined"]) for v in values]
    values = {name: np.concatenate([v.get(name, np.full((k, len(TARGETS)), np.nan)) for v, k in zip(values, n_batch)])
              for name in names}
    values["penalty_constant"] = penalty
    predictions = predictions_frame(rows, meta, labels, np.concatenate(probs))
    metrics = metrics_frame(rows, labels, values)
    write_predictions(predictions, predictions_path)
    write_metrics(metrics, metrics_path)
    result = {"rows": rows, "predictions": predictions, "metrics": metrics}
    if twin_study_path:
        twin_probs = _twin_probabilities(model, twin_study_path, rows, meta, crop_size, batch_size, device)
        result["twin_predictions"] = predictions_frame(rows, meta, labels, twin_probs)
        write_predictions(result["twin_predictions"], twin_predictions_path)
    log.info("explained %d test hips of %s (map grid %d x %d, peak %s)", len(rows), checkpoint_path, *cells, peak)
    return result


def render_intervention_crops(study_path, split_path, *, phantom_config, shifts_mm, radiographs, directions,
                              out_path):
    """Rule intervention_crops: the interventions on the lesions of the test hips of one split (every test
    subject, radiographs None, or the first `radiographs` in study order; every visit: each lesion removed, moved by each of
    `shifts_mm` (mm, signed) in each of `directions` (along or across its zone), and moved to the other
    site), redrawn and cropped once for every run scored on that split; written to out_path
    (io.intervention_h5). phantom_config: the `cohort.phantom` block the cohort was drawn with (the
    radiographs are redrawn)."""
    plan = Plan(phantom_config)
    index = {subject: i for i, (_, subject, _) in enumerate(plan.ids)}
    with StudyFile(study_path) as study:
        rows = study.rows_in_split(read_split(split_path), "test")
        meta = study.meta(("subject", "visit", "side"), rows)
        crop_size, spacing_mm = study.crop_size, study.spacing_mm
    test_hips = set(zip(meta["subject"], meta["side"]))  # splits are by subject: every visit is a test visit
    subjects = list(dict.fromkeys(meta["subject"]))
    subjects = subjects if radiographs is None else subjects[:int(radiographs)]
    tables, parts = [], []
    for subject in subjects:
        if subject not in index:
            raise ValueError(f"{study_path}: test subject {subject} is not in the phantom the config draws "
                             "(cohort.phantom must be the cohort's own config)")
        for v in range(plan.n_visits):
            cases = interventions(phantom_config, index[subject], v, tuple(shifts_mm), plan=plan,
                                  directions=tuple(directions))
            table = case_table(cases).assign(subject=subject, visit=v)  # lesion_targets from every lesion
            keep = [(subject, c.side) in test_hips for c in cases]
            if any(keep):
                tables.append(table[keep])
                parts.append(crop_pairs([c for c, k in zip(cases, keep) if k], crop_size, spacing_mm))
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
    (`render_intervention_crops`), written to out_path with columns subject, visit and EFFECT_COLUMNS (one
    row per intervention and scored map)."""
    device = pick_device(device)
    model = load_trained_model(checkpoint_path, device)
    cases, arrays = read_intervention_crops(crops_path)
    with StudyFile(study_path) as study:
        crop_size, spacing_mm = study.crop_size, study.spacing_mm
    columns = ["subject", "visit", *EFFECT_COLUMNS]
    table = pair_effects(model, cases, arrays, crop_size, spacing_mm, groups, peak, device)
    case = table["case"].to_numpy(dtype=int)
    table = table.assign(subject=cases["subject"].to_numpy()[case], visit=cases["visit"].to_numpy()[case])[columns]
    write_csv(table, out_path, float_format="%.6g")
    log.info("%d interventions of %s scored with %s", len(table), crops_path, checkpoint_path)
    return table
