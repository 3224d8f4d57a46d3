"""The explain stage: one trained model on its test split -> predictions, Grad-CAM maps and localisation
metrics (docs/contracts.md section 5; the files themselves belong to `osteoloc.io.runs`).

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
import torch

from osteoloc.explain.cam import feature_grid, gradcam_maps
from osteoloc.train.data import (cut_subcrops, groups_from_contour, place_subcrop_maps, prior_landmarks,
                                 subcrop_offsets)
from osteoloc.train.device import pick_device
from osteoloc.train.prior import penalty_maps
from osteoloc.io.study_h5 import StudyFile
from osteoloc.explain.metrics import Grid, Scoring, localisation_table
from osteoloc.train.model import PerTargetModels, load_trained_model
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


def map_grid(model, size):
    """(h, w) of the maps' grid: the model's feature map for its input (the hip crop, or a sub-crop)."""
    first = model[TARGETS[0]] if isinstance(model, PerTargetModels) else model
    crop = model.crop_px if isinstance(model, PerTargetModels) and model.crop_px else size
    return feature_grid(first, (crop, crop))


def map_windows(model, groups, valid, size):
    """(B, 4, 3) int (x0, y0, crop_px) where a landmark-crop arm's sub-crop maps lie in the hip crop (the
    same `subcrop_offsets` as `predict_maps`), or None when every map covers the whole crop."""
    if not (isinstance(model, PerTargetModels) and model.crop_px):
        return None
    valid = torch.from_numpy(np.asarray(valid, dtype=bool) & np.isfinite(groups).all(axis=-1))
    groups = torch.from_numpy(np.nan_to_num(np.asarray(groups, dtype=np.float32)))
    offsets = [subcrop_offsets(groups[:, t], valid[:, t], model.crop_px, size).numpy() for t in range(len(TARGETS))]
    windows = np.stack(offsets, axis=1)  # (B, 4, 2)
    return np.concatenate([windows, np.full((*windows.shape[:2], 1), model.crop_px)], axis=-1)


def constant_penalty(settings, study, rows, cells):
    """Per test hip and target: 1.0 where the run's landmark penalty (`train.prior.penalty_maps` with the
    run's radius, sigma, shape and landmarks, on its map grid) is constant over the grid, so the prior loss
    gives that hip no gradient; 0.0 where it varies; NaN without a prior (lambda 0) or without a valid
    landmark. settings: the checkpoint's run config (`TrainSettings.as_dict()`)."""
    out = np.full((len(rows), len(TARGETS)), np.nan)
    if not float(settings.get("prior_lambda", 0)) > 0:
        return out
    points, valid = prior_landmarks(study, rows, settings.get("landmark_source", "automatic"),
                                    float(settings.get("landmark_noise_mm", 0.0)), int(settings.get("seed", 0)))
    points, valid = torch.from_numpy(np.nan_to_num(points)), torch.from_numpy(valid)
    size = crop = study.crop_size
    crop_px = int(settings.get("crop_px", 0))
    if crop_px:  # each target's prior lives in its own sub-crop's pixels, as in training
        crop = crop_px
        offsets = torch.stack([subcrop_offsets(points[:, t], valid[:, t], crop_px, size) for t in range(len(TARGETS))], 1)
        points = points - offsets[:, :, None, :].to(points.dtype)
        valid = valid & ((points >= -0.5) & (points <= crop_px - 0.5)).all(dim=-1)
    penalty = penalty_maps(points, valid, cells, (crop, crop), float(settings["prior_radius"]),
                           float(settings["prior_sigma"]), settings.get("prior_shape", "plateau_gaussian"))
    span = (penalty.amax(dim=(-2, -1)) - penalty.amin(dim=(-2, -1))).numpy()
    has_point = valid.any(dim=-1).numpy()
    out[has_point] = (span[has_point] < CONSTANT).astype(float)
    return out


def predict_maps(model, images, groups, valid):
    """Logits (B, 4) and Grad-CAM maps (B, 4, S, S) in the hip crop's frame, detached float32.

    model: a four-target network or a `model.PerTargetModels` (each target's own model; with crop_px,
    on the sub-crop around the target's landmarks, its map placed back into the S x S frame, 0 outside).
    images (B, 1, S, S) on the model's device; groups (B, 4, L, 2) (x, y) crop pixels and valid (B, 4, L),
    numpy, NaN-padded as in the study (they place the sub-crops)."""
    if not isinstance(model, PerTargetModels):
        return gradcam_maps(model, images)
    size = images.shape[-1]
    valid = torch.from_numpy(np.asarray(valid, dtype=bool) & np.isfinite(groups).all(axis=-1))
    groups = torch.from_numpy(np.nan_to_num(np.asarray(groups, dtype=np.float32)))
    logits, maps = [], []
    for t, target in enumerate(TARGETS):
        inputs = images
        if model.crop_px:
            offsets = subcrop_offsets(groups[:, t], valid[:, t], model.crop_px, size)
            inputs = cut_subcrops(images, offsets, model.crop_px)
        target_logits, target_maps = gradcam_maps(model[target], inputs)
        if model.crop_px:
            target_maps = place_subcrop_maps(target_maps, offsets, size)
        logits.append(target_logits)
        maps.append(target_maps)
    return torch.cat(logits, dim=1), torch.cat(maps, dim=1)


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
                twin_study_path=None, twin_predictions_path=None):
    """Predictions, maps and metrics of one model on its test split, written to the three given paths.

    Reads the study one batch at a time (memory stays at one batch of images and maps however large the
    test split). Maps are in crop pixels; metrics use the float32 maps, the file keeps float16.
    pointing_tolerance_mm: the pointing game's tolerance, converted to crop pixels with the study's
    spacing (`spacing_mm`); peak: "cell_centre" (the centre of the strongest cell of the model's grid) or
    "first_max" (paper A); control_sigma_mm: the landmark-only control map's sd (None: no control). The
    metrics gain `cue_energy` when the study has the shortcut cue's masks (layer `cue`), the exact-point
    distances when it has manual points, and `penalty_constant` (`constant_penalty`). With
    twin_study_path (the study's counterfactual twin: same rows, images without the cue) the model's
    predictions on the twin's test rows go to twin_predictions_path (predictions.csv's columns). Returns
    dict rows (n,), predictions and metrics DataFrames.
    """
    torch.manual_seed(0)
    device = pick_device(device)
    model = load_trained_model(checkpoint_path, device)
    settings = torch.load(checkpoint_path, map_location="cpu", weights_only=True).get("config") or {}
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
                          exact_points=partial(exact_groups, group_indices=study.group_indices, crop_size=crop_size))
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
