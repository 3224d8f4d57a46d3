"""A run's learning-curve figure from its history.csv, and throughput.json gathered from the runs' files."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread

from osteoloc.io.runs import HISTORY_COLUMNS, write_history
from osteoloc.names import TARGETS
from osteoloc.report.stages import learning_curves_stage, write_throughput


def history(epochs=5, prior=True):
    e = np.arange(1, epochs + 1)
    rows = {"epoch": e, "train_bce": 0.7 / e, "val_bce": 0.6 / e + 0.02 * e,
            "train_prior": 0.3 / e if prior else np.nan, "val_prior": 0.3 / e if prior else np.nan,
            "seconds": np.full(epochs, 4.0)}
    rows["train_total"] = rows["train_bce"] + (rows["train_prior"] if prior else 0)
    rows["val_total"] = rows["val_bce"] + (rows["val_prior"] if prior else 0)
    for t, target in enumerate(TARGETS):
        rows[f"val_auc_{target}"] = 0.5 + 0.05 * t + 0.03 * e
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


@pytest.mark.parametrize("prior", [True, False])
def test_learning_curves_are_written_for_a_run(tmp_path, prior):
    write_history(history(prior=prior), tmp_path / "history.csv")
    run = [["prior" if prior else "baseline", 0]]
    learning_curves_stage(json.dumps(run), [tmp_path / "history.csv"], [tmp_path / "curves.png"])
    image = imread(tmp_path / "curves.png")
    assert image.shape[1] > 1000 and image.shape[0] > 400  # two panels at 200 dpi
    assert image[..., :3].std() > 0.05  # drawn, not blank
    assert (tmp_path / "curves.pdf").stat().st_size > 1000
    assert not list(tmp_path.glob("*.part"))


def test_learning_curves_refuse_a_file_that_is_no_history(tmp_path):
    pd.DataFrame({"epoch": [1]}).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(ValueError, match="not a training history"):
        learning_curves_stage('[["baseline", 0]]', [tmp_path / "h.csv"], [tmp_path / "curves.png"])
    with pytest.raises(ValueError, match="differ"):
        learning_curves_stage('[["baseline", 0], ["prior", 0]]', [tmp_path / "h.csv"], [tmp_path / "c.png"])


def test_throughput_json_gathers_training_and_explain_rates(tmp_path):
    environment = {"torch": "2.14.1", "cuda": "12.6", "cudnn": "91000", "driver": "550.54.15",
                   "device": "cuda", "gpu": "NVIDIA A100", "gpu_memory_gb": 80.0, "python": "3.11", "host": "n1"}
    runs, best, predictions, benchmarks = [], [], [], []
    for i, (model, seed) in enumerate([("baseline", 0), ("prior", 0)]):
        folder = tmp_path / f"{model}{seed}"
        folder.mkdir()
        torch.save({"state_dict": {}, "epoch": 2, "config": {}, "environment": environment,
                    "throughput": {"train_images": 280, "train_seconds": 2.0 + 2 * i,
                                   "train_images_per_second": 280 / (2.0 + 2 * i), "val_images_per_second": 500.0}},
                   folder / "best.pt")
        pd.DataFrame({"row": np.repeat(np.arange(30), 4), "target": np.tile(TARGETS, 30)}).to_csv(
            folder / "predictions.csv", index=False)
        (folder / "benchmark.tsv").write_text("s\th:m:s\tmax_rss\n" f"{10.0 + 5 * i}\t0:00:10\t900\n")
        runs.append([model, seed])
        best.append(folder / "best.pt")
        predictions.append(folder / "predictions.csv")
        benchmarks.append(folder / "benchmark.tsv")
    write_throughput(json.dumps(runs), best, predictions, benchmarks, tmp_path / "throughput.json")
    record = json.loads((tmp_path / "throughput.json").read_text())
    assert record["train_images_per_second"] == pytest.approx(560 / 6.0)
    assert record["explain_images_per_second"] == pytest.approx(60 / 25.0)
    assert record["environments"] == [environment]
    assert [r["explain_images"] for r in record["runs"]] == [30, 30]
    assert record["runs"][1]["train_images_per_second"] == pytest.approx(70.0)
