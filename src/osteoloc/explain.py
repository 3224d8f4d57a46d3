"""The explain stage: one trained model on its test split -> predictions, Grad-CAM maps and localisation
metrics (docs/contracts.md section 5; the files themselves belong to `osteoloc.runs`)."""

import logging

import numpy as np
import torch

from osteoloc.cam import gradcam_maps
from osteoloc.device import pick_device
from osteoloc.io.study_h5 import StudyFile
from osteoloc.metrics import localisation_table
from osteoloc.model import load_trained_model
from osteoloc.runs import (META_FIELDS, maps_writer, metrics_frame, predictions_frame, write_metrics,
                           write_predictions)
from osteoloc.splits import read_split

log = logging.getLogger(__name__)

BATCH_FIELDS = ("images", "landmarks/groups", "landmarks/valid")


def explain_run(study_path, split_path, checkpoint_path, *, predictions_path, maps_path, metrics_path,
                batch_size, pointing_tolerance_px, device):
    """Predictions, maps and metrics of one model on its test split, written to the three given paths.

    Reads the study one batch at a time (memory stays at one batch of images and maps however large the
    test split). Maps are in crop pixels; metrics use the float32 maps, the file keeps float16.
    pointing_tolerance_px: the pointing game's tolerance in crop pixels. Returns dict rows (n,),
    predictions and metrics DataFrames.
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
        with maps_writer(maps_path, rows, study.crop_size) as append_maps:
            for _, batch in study.batches(fields, rows, batch_size):
                images = torch.from_numpy(batch["images"].astype(np.float32))[:, None]
                logits, maps = gradcam_maps(model, images.to(device))
                maps = maps.cpu().numpy()
                probs.append(torch.sigmoid(logits).cpu().numpy())
                append_maps(maps)
                values.append(localisation_table(maps, batch["landmarks/groups"], batch["landmarks/valid"],
                                                 batch.get("truth/masks"), pointing_tolerance_px))
    values = {name: np.concatenate([v[name] for v in values]) for name in values[0]}
    predictions = predictions_frame(rows, meta, labels, np.concatenate(probs))
    metrics = metrics_frame(rows, labels, values)
    write_predictions(predictions, predictions_path)
    write_metrics(metrics, metrics_path)
    log.info("explained %d test hips of %s", len(rows), checkpoint_path)
    return {"rows": rows, "predictions": predictions, "metrics": metrics}
