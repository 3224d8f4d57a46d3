"""The explain stage: one trained model on its test split -> predictions, Grad-CAM maps and localisation
metrics (docs/contracts.md section 5; the files themselves belong to `osteoloc.io.runs`).

Every arm's maps come out in the hip crop's frame, S x S, four targets: a per-target arm's four models
are assembled into that layout, a landmark-crop arm's sub-crop maps are placed back where the sub-crop
was cut (zero elsewhere), so every metric compares with every other arm's. Metrics are always against
the study's reference landmarks (`/landmarks/groups`), whatever landmarks an arm's prior trained on.
"""

import logging

import numpy as np
import torch

from osteoloc.explain.cam import gradcam_maps
from osteoloc.train.data import cut_subcrops, place_subcrop_maps, subcrop_offsets
from osteoloc.train.device import pick_device
from osteoloc.io.study_h5 import StudyFile
from osteoloc.explain.metrics import localisation_table
from osteoloc.train.model import PerTargetModels, load_trained_model
from osteoloc.io.runs import (META_FIELDS, maps_writer, metrics_frame, predictions_frame, write_metrics,
                           write_predictions)
from osteoloc.train.splits import read_split
from osteoloc.names import TARGETS

log = logging.getLogger(__name__)

BATCH_FIELDS = ("images", "landmarks/groups", "landmarks/valid")


CUE = "truth/cue"  # the shortcut cue's mask per hip, (N, S, S) uint8, in phantom studies with a cue


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
        for _, batch in twin.batches(BATCH_FIELDS, rows, batch_size):
            images = torch.from_numpy(batch["images"].astype(np.float32))[:, None]
            logits, _ = predict_maps(model, images.to(device), batch["landmarks/groups"], batch["landmarks/valid"])
            probs.append(torch.sigmoid(logits).cpu().numpy())
    return np.concatenate(probs)


def explain_run(study_path, split_path, checkpoint_path, *, predictions_path, maps_path, metrics_path,
                batch_size, pointing_tolerance_px, device, twin_study_path=None, twin_predictions_path=None):
    """Predictions, maps and metrics of one model on its test split, written to the three given paths.

    Reads the study one batch at a time (memory stays at one batch of images and maps however large the
    test split). Maps are in crop pixels; metrics use the float32 maps, the file keeps float16.
    pointing_tolerance_px: the pointing game's tolerance in crop pixels. The metrics gain `cue_energy`
    when the study has the shortcut cue's masks (`/truth/cue`). With twin_study_path (the study's
    counterfactual twin: same rows, images without the cue) the model's predictions on the twin's test
    rows go to twin_predictions_path (predictions.csv's columns). Returns dict rows (n,), predictions
    and metrics DataFrames.
    """
    torch.manual_seed(0)
    device = pick_device(device)
    model = load_trained_model(checkpoint_path, device)
    split = read_split(split_path)
    probs, values = [], []
    with StudyFile(study_path) as study:
        rows = study.rows_in_split(split, "test")
        meta = study.meta(META_FIELDS).set_index("row")
        labels = study.read(["labels"], rows)["labels"].astype(int)
        fields = BATCH_FIELDS + (("truth/masks",) if study.has_truth else ())
        fields += (CUE,) if study.has_cue else ()
        crop_size = study.crop_size
        with maps_writer(maps_path, rows, study.crop_size) as append_maps:
            for _, batch in study.batches(fields, rows, batch_size):
                images = torch.from_numpy(batch["images"].astype(np.float32))[:, None]
                logits, maps = predict_maps(model, images.to(device), batch["landmarks/groups"],
                                            batch["landmarks/valid"])
                maps = maps.cpu().numpy()
                probs.append(torch.sigmoid(logits).cpu().numpy())
                append_maps(maps)
                values.append(localisation_table(maps, batch["landmarks/groups"], batch["landmarks/valid"],
                                                 batch.get("truth/masks"), pointing_tolerance_px,
                                                 batch.get(CUE)))
    values = {name: np.concatenate([v[name] for v in values]) for name in values[0]}
    predictions = predictions_frame(rows, meta, labels, np.concatenate(probs))
    metrics = metrics_frame(rows, labels, values)
    write_predictions(predictions, predictions_path)
    write_metrics(metrics, metrics_path)
    result = {"rows": rows, "predictions": predictions, "metrics": metrics}
    if twin_study_path:
        twin_probs = _twin_probabilities(model, twin_study_path, rows, meta, crop_size, batch_size, device)
        result["twin_predictions"] = predictions_frame(rows, meta, labels, twin_probs)
        write_predictions(result["twin_predictions"], twin_predictions_path)
    log.info("explained %d test hips of %s", len(rows), checkpoint_path)
    return result
