"""The apply stage's cost per model against a bare forward pass, side by side in one process: a synthetic study
of N hips and K trained-model checkpoints (the shape of baseline and prior per seed), each model run over every
hip in batches read from the study HDF5, three ways:

- bare: `model(images)` under torch.inference_mode (no maps, nothing written);
- predictions + maps: the apply path's forward pass (explain.stages.predict_maps: logits and the Grad-CAM maps
  of four targets from one pass) with the maps written to a maps.h5 as apply writes them (and the same
  without writing them, to show the file's share);
- whole job: apply.stages.apply_run, i.e. the above plus the localisation metrics and the CSV files.

    .venv/bin/python benchmarks/bench_apply.py [--hips 512] [--size 96] [--models 6] [--batch 32] [--threads 2]

Prints hips per second (all K models: the rate a cohort goes through the stage) and each way's wall and CPU
time relative to the bare pass (goal for predictions + maps: at most 1.2x). Memory: one batch of images and
maps per job.
"""

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from osteoloc.apply.stages import apply_run
from osteoloc.explain.stages import predict_maps
from osteoloc.io.maps_h5 import maps_writer
from osteoloc.io.study_h5 import StudyFile, write_study_arrays
from osteoloc.train.model import build_model, load_trained_model

GROUPS = {"osteo_fem_sup": [13, 78, 14, 15], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [67],
          "osteo_acet_inf": [71]}
FIELDS = ("images", "landmarks/groups", "landmarks/valid")


def synthetic_study(folder, hips, size, n_models):
    rng = np.random.default_rng(0)
    study = folder / "study.h5"
    groups = rng.uniform(size * 0.2, size * 0.8, (hips, 4, 4, 2)).astype(np.float32)
    write_study_arrays(study, {"image": rng.normal(0.5, 0.2, (hips, size, size)).astype(np.float32),
                               "labels": rng.integers(0, 2, (hips, 4)), "groups": groups,
                               "subject": [f"S{i // 2:05d}" for i in range(hips)]}, GROUPS, spacing_mm=0.9333)
    split = folder / "split.csv"
    pd.DataFrame({"subject": sorted({f"S{i // 2:05d}" for i in range(hips)}), "split": "test"}).to_csv(split,
                                                                                                        index=False)
    checkpoints = []
    for k in range(n_models):
        torch.manual_seed(k)
        path = folder / f"model{k}.pt"
        torch.save({"state_dict": build_model().state_dict(), "config": {"seed": k}}, path)
        checkpoints.append(path)
    return study, split, checkpoints


def bare(study_path, checkpoint, batch):
    model = load_trained_model(checkpoint)
    with StudyFile(study_path) as study, torch.inference_mode():
        for _, values in study.batches(("images",), np.arange(len(study)), batch):
            model(torch.from_numpy(values["images"].astype(np.float32))[:, None])


def predictions_and_maps(study_path, checkpoint, batch, maps_path=None):
    """The apply path's forward pass; the maps written to `maps_path` (None: dropped, not written)."""
    model = load_trained_model(checkpoint)
    with StudyFile(study_path) as study:
        rows = np.arange(len(study))
        writer = maps_writer(maps_path, rows, study.crop_size) if maps_path else contextlib.nullcontext(
            lambda maps: None)
        with writer as append:
            for _, values in study.batches(FIELDS, rows, batch):
                images = torch.from_numpy(values["images"].astype(np.float32))[:, None]
                logits, maps = predict_maps(model, images, values["landmarks/groups"], values["landmarks/valid"])
                torch.sigmoid(logits).numpy()
                append(maps.numpy())


def whole_job(study_path, split, checkpoint, batch, out):
    apply_run(study_path, split, checkpoint, predictions_path=out / "predictions.csv", maps_path=out / "maps.h5",
              metrics_path=out / "metrics.csv", batch_size=batch, pointing_tolerance_mm=6.0, peak="cell_centre",
              control_sigma_mm=10.0, device="cpu")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hips", type=int, default=512)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--models", type=int, default=6, help="checkpoints (e.g. 2 models x 3 seeds)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study, split, checkpoints = synthetic_study(folder, args.hips, args.size, args.models)
        ways = {"bare forward": lambda c: bare(study, c, args.batch),
                "predictions + maps": lambda c: predictions_and_maps(study, c, args.batch, folder / "maps.h5"),
                "  of which unwritten": lambda c: predictions_and_maps(study, c, args.batch),
                "whole apply job": lambda c: whole_job(study, split, c, args.batch, folder)}
        bare(study, checkpoints[0], args.batch)  # warm-up (the study's pages, torch's kernels)
        wall = {name: [0.0] * args.repeats for name in ways}
        cpu = {name: [0.0] * args.repeats for name in ways}
        for repeat in range(args.repeats):
            for checkpoint in checkpoints:  # interleaved per model, so a load change hits every way alike
                for name, run in ways.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    run(checkpoint)
                    wall[name][repeat] += time.perf_counter() - start
                    cpu[name][repeat] += time.process_time() - start_cpu
    print(f"{args.hips} hips x {args.models} models, {args.size} px crops, batch {args.batch}, {args.threads} "
          f"threads, median of {args.repeats} (CPU); wall time, and this process's CPU time (less sensitive to "
          "other load on the machine)")
    bare_wall, bare_cpu = statistics.median(wall["bare forward"]), statistics.median(cpu["bare forward"])
    for name in ways:
        seconds, cpu_seconds = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:20s} wall {seconds:7.2f} s {args.hips / seconds:7.1f} hips/s (all models) "
              f"{seconds / bare_wall:5.2f} x bare | CPU {cpu_seconds:7.2f} s {cpu_seconds / bare_cpu:5.2f} x bare")


if __name__ == "__main__":
    main()
