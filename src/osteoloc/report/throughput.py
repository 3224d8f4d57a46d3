"""How fast a study's jobs ran, and on what: training and explain images per second gathered into one
small JSON (`results/report/throughput.json`), so one run of experiments/gpu_smoke.yaml tells whether a GPU
node is set up. Training's rates come from each run's best.pt (training and validation passes timed in the
loop); explain's from its job's Snakemake benchmark (the whole job: start-up, reading the study,
Grad-CAM, writing the maps), per test hip explained."""

import math

import pandas as pd

from osteoloc.io.runs import read_run_record


def _rate(images, seconds):
    return images / seconds if seconds > 0 else float("nan")


def gather_throughput(runs, best_paths, predictions_paths, benchmark_paths):
    """runs: [(model, seed)] in the order of the three path lists. Returns the record rule throughput writes
    (`osteoloc.report.stages.write_throughput`): per-run rates, the totals' rates, and every distinct
    environment the runs reported."""
    per_run, environments = [], []
    for (model, seed), best, predictions, benchmark in zip(runs, best_paths, predictions_paths, benchmark_paths):
        record = read_run_record(best)
        speed = record["throughput"]
        test_hips = pd.read_csv(predictions, usecols=["row"])["row"].nunique()
        explain_seconds = float(pd.read_csv(benchmark, sep="\t")["s"].iloc[0])
        per_run.append({"model": model, "seed": int(seed), "device": record["environment"].get("device", "n/a"),
                        "train_images": speed.get("train_images", 0), "train_seconds": speed.get("train_seconds", 0.0),
                        "train_images_per_second": speed.get("train_images_per_second", float("nan")),
                        "val_images_per_second": speed.get("val_images_per_second", float("nan")),
                        "explain_images": int(test_hips), "explain_seconds": explain_seconds,
                        "explain_images_per_second": _rate(test_hips, explain_seconds)})
        if record["environment"] and record["environment"] not in environments:
            environments.append(record["environment"])
    frame = pd.DataFrame(per_run)
    totals = {"train_images_per_second": _rate(frame["train_images"].sum(), frame["train_seconds"].sum()),
              "explain_images_per_second": _rate(frame["explain_images"].sum(), frame["explain_seconds"].sum())}
    return {**totals, "environments": environments, "runs": per_run}


def json_safe(value):
    """NaN (a rate without a timed second) as null: the file stays strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
