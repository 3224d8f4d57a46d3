"""The per-run files (docs/contracts.md sections 4 and 5): their one reader and writer. Training writes a
run's history, explain its predictions, maps and metrics; the grid selection, the report's tables and
figures read them; nobody opens them any other way.

- `best.pt`: beside the weights, what the run records of itself (`read_run_record`);
- `history.csv`: one row per epoch, HISTORY_COLUMNS (losses, validation AUC per target, seconds);

- `predictions.csv`: `row, subject, visit, side, target, label, prob` (test split, every target);
- `maps.h5`: `/maps` float16 (n_test, 4, S, S) Grad-CAM in crop pixels (values 0-1), chunked per image;
  `/rows` int64, the study HDF5 rows of `/maps`;
- `metrics.csv`: `row, target, label`, then the columns of `explain.metrics.localisation_table` (crop
  pixels; the full list in docs/contracts.md section 5) and `penalty_constant`.
"""

import numpy as np
import pandas as pd

from osteoloc.io.atomic import write_csv
from osteoloc.io.maps_h5 import MAPS_NORMALISATION, maps_writer, read_maps  # noqa: F401 (the run files' API)
from osteoloc.names import TARGETS

HISTORY_COLUMNS = (["epoch", "train_bce", "train_prior", "train_total", "val_bce", "val_prior", "val_total"]
                   + [f"val_auc_{t}" for t in TARGETS] + ["seconds"])
META_FIELDS = ("subject", "visit", "side")
HIP_KEYS = ["model", "seed", "row", "target"]  # one hip and target of one run, in both run frames


def write_history(history, path):
    """history: a list of per-epoch dicts or a DataFrame."""
    write_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), path)


def read_history(path):
    history = pd.read_csv(path)
    missing = {"epoch", "val_bce", "val_total"} - set(history.columns)
    if missing:
        raise ValueError(f"{path}: not a training history (lacks columns {sorted(missing)})")
    return history


def copy_history(source, path):
    write_history(read_history(source), path)


def predictions_frame(rows, meta, labels, probs):
    """The long predictions table: one row per (hip, target), hips in `rows` order, targets in TARGETS order.

    rows (n,) study rows; meta: DataFrame indexed by study row with META_FIELDS; labels, probs (n, 4)."""
    n_targets = len(TARGETS)
    meta = meta.loc[rows]
    return pd.DataFrame({"row": np.repeat(rows, n_targets),
                         **{f: np.repeat(meta[f].to_numpy(), n_targets) for f in META_FIELDS},
                         "target": np.tile(TARGETS, len(rows)), "label": np.asarray(labels).reshape(-1),
                         "prob": np.asarray(probs).reshape(-1)})


def metrics_frame(rows, labels, values):
    """The long metrics table; values: {metric name: (n, 4) array} (`metrics.localisation_table`)."""
    n_targets = len(TARGETS)
    return pd.DataFrame({"row": np.repeat(rows, n_targets), "target": np.tile(TARGETS, len(rows)),
                         "label": np.asarray(labels).reshape(-1),
                         **{name: np.asarray(v).reshape(-1) for name, v in values.items()}})


def write_predictions(frame, path):
    write_csv(frame, path)


def write_metrics(frame, path):
    write_csv(frame, path, float_format="%.6g")


def with_prediction_columns(metrics, predictions, columns, source):
    """`metrics` (`read_runs` frames) with `columns` of each row's predictions row, matched one to one by
    HIP_KEYS; a metrics row without one is an error naming `source` (its subject would be unknown)."""
    merged = metrics.merge(predictions[HIP_KEYS + list(columns)], on=HIP_KEYS, how="left", validate="one_to_one")
    missing = int(merged[columns[0]].isna().sum())
    if missing:
        raise ValueError(f"{source}: {missing} metrics rows without a predictions row (by {HIP_KEYS}), so "
                         "without a subject")
    return merged


def read_run_record(best_path):
    """What a run's best.pt records beside its weights: {"epoch", "environment", "throughput"} (the last
    two empty for a best.pt written before they were recorded)."""
    import torch  # here: the report jobs that import this module read no checkpoint (torch takes ~4 s to load)

    best = torch.load(best_path, map_location="cpu", weights_only=True)
    return {"epoch": best.get("epoch"), "environment": best.get("environment", {}),
            "throughput": best.get("throughput", {})}


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


def read_all_runs(runs, predictions_paths, metrics_paths):
    """Predictions and metrics of every run: `runs` lists the (model, seed) pairs in the order of the two
    path lists."""
    runs = [tuple(run) for run in runs]
    return (read_runs(dict(zip(runs, predictions_paths)), "predictions"),
            read_runs(dict(zip(runs, metrics_paths)), "metrics"))
