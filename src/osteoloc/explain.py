"""Explain one trained model on its test split: predictions, Grad-CAM maps and localisation metrics
(docs/contracts.md section 5); and read those outputs back for the report."""

import json
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the filters the study HDF5 may be written with)
import numpy as np
import pandas as pd
import torch

from osteoloc.cam import gradcam_maps
from osteoloc.io.atomic import atomic_path
from osteoloc.metrics import localisation_table
from osteoloc.model import build_model
from osteoloc.targets import TARGETS

META_FIELDS = ("subject", "visit", "side")
METRIC_COLUMNS = ("com_distance", "peak_distance", "spread")
TRUTH_COLUMNS = ("pointing_hit", "energy_in_mask")


def _strings(dataset):
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]])


def rows_in_test_split(study_path, split_path):
    """Sorted HDF5 row indices of the hips whose subject is in the test split."""
    split = pd.read_csv(split_path, dtype=str, keep_default_na=False)
    if not {"subject", "split"} <= set(split.columns):
        raise ValueError(f"{split_path}: needs columns 'subject,split'")
    test_subjects = set(split.loc[split["split"] == "test", "subject"])
    with h5py.File(study_path, "r") as study:
        subjects = _strings(study["meta/subject"])
    rows = np.flatnonzero(np.isin(subjects, sorted(test_subjects)))
    if len(rows) == 0:
        raise ValueError(f"{split_path}: no hip of {study_path} belongs to a test subject")
    return rows


def load_model(checkpoint_path):
    """The trained network from `best.pt` (dict with "state_dict"), in eval mode."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{checkpoint_path}: not a checkpoint dict with a 'state_dict'")
    model = build_model(weights="none")
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def resolve_device(device):
    """"auto" -> CUDA when present, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def explain_run(study_path, split_path, checkpoint_path, maps_path, batch_size=32, pointing_tolerance_px=5.0,
                device="cpu"):
    """Predictions, maps and metrics of one model on its test split, one batch at a time (memory stays
    at one batch of images and maps however large the test split).

    Writes `maps_path` (contracts §5: `/maps` float16 (n, 4, S, S) chunked per image, `/rows`) atomically;
    returns dict rows (n,), predictions and metrics DataFrames. Metrics use the float32 maps.
    """
    rows = rows_in_test_split(study_path, split_path)
    device = resolve_device(device)
    model = load_model(checkpoint_path).to(device)
    probs, values = [], []
    with h5py.File(study_path, "r") as study, atomic_path(maps_path) as tmp, h5py.File(tmp, "w") as out:
        size = study["images"].shape[1:]
        labels = study["labels"][rows].astype(int)
        meta = {field: _strings(study[f"meta/{field}"])[rows] for field in META_FIELDS}
        has_truth = "truth/masks" in study
        maps_out = out.create_dataset("maps", shape=(len(rows), len(TARGETS), *size), dtype=np.float16,
                                      chunks=(1, len(TARGETS), *size), compression="gzip", compression_opts=4)
        out.create_dataset("rows", data=np.asarray(rows, dtype=np.int64))
        out.attrs["targets"] = list(TARGETS)
        out.attrs["normalisation"] = "pytorch-grad-cam: ReLU, min-max, bilinear, min-max"
        for start in range(0, len(rows), batch_size):
            batch_rows = rows[start:start + batch_size]
            images = torch.from_numpy(study["images"][batch_rows].astype(np.float32))[:, None]
            logits, maps = gradcam_maps(model, images.to(device))
            maps = maps.cpu().numpy()
            probs.append(torch.sigmoid(logits).cpu().numpy())
            maps_out[start:start + len(batch_rows)] = maps.astype(np.float16)
            values.append(localisation_table(
                maps, study["landmarks/groups"][batch_rows], study["landmarks/valid"][batch_rows],
                study["truth/masks"][batch_rows] if has_truth else None, pointing_tolerance_px))
    probs = np.concatenate(probs)
    values = {name: np.concatenate([v[name] for v in values]) for name in values[0]}

    n = len(rows)
    long = {"row": np.repeat(rows, len(TARGETS)), "target": np.tile(TARGETS, n),
            "label": labels.reshape(-1)}
    predictions = pd.DataFrame({"row": long["row"],
                                **{f: np.repeat(meta[f], len(TARGETS)) for f in META_FIELDS},
                                "target": long["target"], "label": long["label"],
                                "prob": probs.reshape(-1)})
    metrics = pd.DataFrame({**long, **{name: v.reshape(-1) for name, v in values.items()}})
    return {"rows": rows, "predictions": predictions, "metrics": metrics}


def study_labels(study_path):
    """The study's (N, 4) labels (1 / 0 / -1)."""
    with h5py.File(study_path, "r") as study:
        return study["labels"][()].astype(int)


def read_maps(path):
    """(rows, maps float32) from a maps.h5."""
    with h5py.File(path, "r") as f:
        return f["rows"][()], f["maps"][()].astype(np.float32)


def read_runs(paths, kind):
    """Concatenate predictions.csv or metrics.csv of several runs.

    paths: {(model, seed): path}. Adds columns model, seed.
    """
    frames = []
    for (model, seed), path in sorted(paths.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        frame = pd.read_csv(path, keep_default_na=True, dtype={"subject": str, "visit": str})
        missing = {"row", "target", "label"} - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: {kind} lacks columns {sorted(missing)}")
        frames.append(frame.assign(model=model, seed=int(seed)))
    return pd.concat(frames, ignore_index=True)


def read_all_runs(runs_json, predictions_paths, metrics_paths):
    """Predictions and metrics of every run, as the report rules receive them: `runs_json` lists the
    (model, seed) pairs in the order of the two path lists."""
    runs = [tuple(run) for run in json.loads(runs_json)]
    return (read_runs(dict(zip(runs, predictions_paths)), "predictions"),
            read_runs(dict(zip(runs, metrics_paths)), "metrics"))
