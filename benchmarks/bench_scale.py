"""Paper-scale memory and time of every stage after preprocessing, on a synthetic study.

Writes a study HDF5 of `--hips` hips at `--size` px (random images, plausible labels and landmarks, two
hips per subject) with StudyWriter, then runs each stage in its own subprocess and reads that process's
peak RSS from the kernel (`os.wait4`'s ru_maxrss), so every figure is one stage's own peak:

- write:      StudyWriter, one hip at a time (the preprocessing driver's writer)
- split:      splits.split_stage (the seeded split of seed 0)
- train_load: data.load_split of train + val, held together as training holds them
- explain:    explain.explain_run of one randomly initialised ResNet-18 (saved like best.pt) on the test
              split, capped to `--explain-hips` test hips (Grad-CAM on CPU is slow); the time is
              extrapolated linearly to the whole test split, the memory is per batch (see below)
- tables:     tables.report_tables + report_summary on synthetic predictions/metrics CSVs of 26 runs
              (13 seeds x 2 models, every run on seed 0's test rows)
- figures:    figures.paper.report_figures on the same CSVs and two maps.h5 of the whole test split
              (synthetic blocky maps written with runs.maps_writer)
- imports:    a process that only imports the libraries: the floor under every stage's RSS

Goal: every stage's memory is bounded by one batch (flat in N), except train_load, which holds its split
by design (linear in N). Run at two sizes to see it:

    .venv/bin/python benchmarks/bench_scale.py --hips 2000
    .venv/bin/python benchmarks/bench_scale.py --hips 20000      # 4 GB study file: check df -h first
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEEDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 123)  # experiments/paper.yaml
MODELS = ("baseline", "prior")
GROUPS = {"osteo_fem_sup": [13, 78, 14, 15], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [67],
          "osteo_acet_inf": [71]}  # config.yaml: four target groups, L = 4
SPACING_MM = 0.4
BATCH = 64  # explain's batch (experiments/paper.yaml's explain.batch_size default)


# ---------------------------------------------------------------- synthetic inputs

def write_study(path, n_hips, size, seed=0):
    """A study of `n_hips` random hips, two per subject, appended one at a time (memory: one writer batch)."""
    from osteoloc.io.study_h5 import HipRecord, StudyWriter

    rng = np.random.default_rng(seed)
    n_points = max(len(v) for v in GROUPS.values())
    with StudyWriter(path, size, SPACING_MM, GROUPS) as writer:
        for i in range(n_hips):
            labels = rng.choice(np.array([1, 0, -1], np.int8), size=4, p=[0.3, 0.65, 0.05])
            valid = np.zeros((4, n_points), bool)
            for t, indices in enumerate(GROUPS.values()):
                valid[t, :len(indices)] = True
            groups = np.where(valid[..., None], rng.uniform(0.25 * size, 0.75 * size, (4, n_points, 2)),
                              np.nan).astype(np.float32)
            side = ("right", "left")[i % 2]
            writer.append(HipRecord(
                image=rng.random((size, size), dtype=np.float32), grades=np.maximum(labels, 0) * 2,
                labels=labels, contour=rng.uniform(0, size, (80, 2)).astype(np.float32),
                contour_manual=np.full((80, 2), np.nan, np.float32), groups=groups, valid=valid,
                subject=f"S{i // 2:06d}", visit="V00", side=side, cohort="synthetic", source="bench",
                source_spacing=(0.15, 0.15), spacing_from="given", crop_offset=(100.0, 200.0),
                head_circle=(size / 2, size / 2, size / 8), intensity=(0.1, 0.9)))
    return n_hips


def test_rows(work):
    from osteoloc.io.study_h5 import StudyFile
    from osteoloc.train.splits import read_split

    with StudyFile(work / "study.h5") as study:
        return study.rows_in_split(read_split(work / "split.csv"), "test")


def write_capped_split(work, n_test_hips):
    """seed 0's split with only the first test subjects covering `n_test_hips` hips left in 'test' (the
    rest relabelled 'val', which explain does not read)."""
    import pandas as pd

    split = pd.read_csv(work / "split.csv", dtype=str)
    test = split.index[split["split"] == "test"]
    split.loc[test[(n_test_hips + 1) // 2:], "split"] = "val"  # two hips per subject
    split.to_csv(work / "split_capped.csv", index=False)


def write_checkpoint(path):
    """A randomly initialised ResNet-18 saved like best.pt (positive head weights, so maps are non-zero)."""
    import torch

    from osteoloc.train.model import build_model
    from schema_settings import default_settings

    torch.manual_seed(0)
    model = build_model(weights="none")
    with torch.no_grad():
        model.fc.weight.abs_()
    torch.save({"state_dict": model.state_dict(), "epoch": 1, "config": default_settings().as_dict()}, path)


def write_runs(work, size, seed=0):
    """Synthetic explain outputs: predictions/metrics CSVs of every (model, seed) on seed 0's test rows, and
    the selection seed's two maps.h5 (7 x 7 random cells blown up to `size`, like a stride-32 CAM)."""
    from osteoloc.io.study_h5 import StudyFile
    from osteoloc.io.runs import (META_FIELDS, maps_writer, metrics_frame, predictions_frame, write_metrics,
                               write_predictions)

    rows = test_rows(work)
    rng = np.random.default_rng(seed)
    with StudyFile(work / "study.h5") as study:
        meta = study.meta(META_FIELDS).set_index("row")
        labels = study.read(["labels"], rows).labels.astype(int)
    paths = {"predictions": [], "metrics": [], "runs": []}
    for s in SEEDS:
        for model in MODELS:
            folder = work / "explain" / model / f"seed{s}"
            probs = np.clip(0.5 + 0.3 * (labels == 1) - 0.15 + rng.normal(0, 0.2, labels.shape), 0, 1)
            values = {name: rng.uniform(2, 60, labels.shape) for name in ("com_distance", "peak_distance",
                                                                         "spread")}
            values |= {"pointing_hit": np.full(labels.shape, np.nan), "energy_in_mask": np.full(labels.shape,
                                                                                                np.nan)}
            write_predictions(predictions_frame(rows, meta, labels, probs), folder / "predictions.csv")
            write_metrics(metrics_frame(rows, labels, values), folder / "metrics.csv")
            paths["predictions"].append(str(folder / "predictions.csv"))
            paths["metrics"].append(str(folder / "metrics.csv"))
            paths["runs"].append([model, s])
    cells, block = 7, -(-size // 7)
    for model in MODELS:
        with maps_writer(work / f"maps_{model}.h5", rows, size) as append:
            for start in range(0, len(rows), BATCH):
                coarse = rng.random((min(BATCH, len(rows) - start), 4, cells, cells), dtype=np.float32)
                append(np.kron(coarse, np.ones((block, block), np.float32))[..., :size, :size])
    (work / "runs.json").write_text(json.dumps(paths))


# ---------------------------------------------------------------- stages (each in its own process)

def stage_imports(work, args):
    import osteoloc.explain.stages  # noqa: F401
    import osteoloc.report.stages  # noqa: F401
    return {"hips": 0}


def stage_write(work, args):
    return {"hips": write_study(work / "study.h5", args.hips, args.size)}


def stage_split(work, args):
    from osteoloc.train.stages import split_stage

    split = split_stage(work / "study.h5", work / "split.csv", seed=0)
    return {"hips": args.hips, "subjects": len(split)}


def stage_train_load(work, args):
    from osteoloc.train.data import load_split
    from osteoloc.train.splits import read_split

    split = read_split(work / "split.csv")
    data = {which: load_split(work / "study.h5", split, which) for which in ("train", "val")}
    held = sum(t.numel() * t.element_size() for d in data.values()
               for t in (d.images, d.labels, d.landmarks, d.valid, d.rows))
    return {"hips": sum(len(d) for d in data.values()), "held_gb": held / 1e9}


def stage_prepare(work, args):
    """Not a measured stage: the synthetic explain outputs, the capped split and the checkpoint."""
    write_capped_split(work, args.explain_hips)
    write_checkpoint(work / "best.pt")
    write_runs(work, args.size)
    return {"hips": len(test_rows(work))}


def stage_explain(work, args):
    import torch

    from osteoloc.explain.stages import explain_run

    torch.set_num_threads(args.threads)
    out = work / "explain_capped"
    result = explain_run(work / "study.h5", work / "split_capped.csv", work / "best.pt",
                         predictions_path=out / "predictions.csv", maps_path=out / "maps.h5",
                         metrics_path=out / "metrics.csv", batch_size=BATCH, pointing_tolerance_mm=2.0,
                         device="cpu")
    return {"hips": len(result["rows"]), "test_hips": len(test_rows(work))}


def stage_tables(work, args):
    from osteoloc.report.stages import SUMMARY_TABLES, report_summary, report_tables
    from osteoloc.names import TABLE_IDS

    runs = json.loads((work / "runs.json").read_text())
    table_paths = {t: work / "report" / "tables" / f"{t}.csv" for t in TABLE_IDS}
    report_tables(json.dumps(runs["runs"]), runs["predictions"], runs["metrics"], work / "study.h5",
                  selection_seed=0, calibration_bins=10, decimals=3, table_paths=table_paths,
                  seed_input_path=work / "report" / "tables" / "seed_level_input.csv")
    exclusions = work / "exclusions.csv"
    exclusions.write_text("stage,subject,visit,side,file,reason\n")
    report_summary("bench", json.dumps(list(SEEDS)), json.dumps(runs["runs"]),
                   table_paths={t: table_paths[t] for t in SUMMARY_TABLES}, exclusions_path=exclusions, study_path=work / "study.h5", metrics_paths=runs["metrics"],
                   out_path=work / "report" / "summary.md")
    return {"hips": len(test_rows(work)), "runs": len(runs["runs"])}


def stage_figures(work, args):
    from osteoloc.names import FIGURE_IDS
    from osteoloc.report.stages import report_figures

    runs = json.loads((work / "runs.json").read_text())
    report_figures(json.dumps(runs["runs"]), runs["predictions"], runs["metrics"], work / "study.h5",
                   {m: work / f"maps_{m}.h5" for m in MODELS}, selection_seed=0, calibration_bins=10,
                   figure_paths={f: work / "report" / "figures" / f"{f}.png" for f in FIGURE_IDS},
                   width_in=7.0, case_threshold=0.5, figure5_row=None)
    return {"hips": len(test_rows(work)), "runs": len(runs["runs"])}


ORDER = ("imports", "write", "split", "train_load", "prepare", "explain", "tables", "figures")
STAGES = {"imports": stage_imports, "write": stage_write, "split": stage_split,
          "train_load": stage_train_load, "prepare": stage_prepare, "explain": stage_explain,
          "tables": stage_tables, "figures": stage_figures}


def run_stage(name, args):
    """Run one stage in a fresh interpreter; (its result dict, wall s of the work, peak RSS in MB)."""
    command = [sys.executable, __file__, "--stage", name, "--hips", str(args.hips), "--size", str(args.size),
               "--work", str(args.work), "--explain-hips", str(args.explain_hips), "--threads",
               str(args.threads)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"stage {name} failed (exit {child.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return result, usage.ru_maxrss / 1024  # Linux: ru_maxrss in KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hips", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--explain-hips", type=int, default=128, help="test hips explain runs on (time cap)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder (default /tmp/bench_scale_<hips>)")
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--stages", nargs="+", choices=ORDER, default=ORDER,
                        help="a subset, on a kept work folder (e.g. another checkout's code via PYTHONPATH)")
    args = parser.parse_args()
    args.work = args.work or Path(f"/tmp/bench_scale_{args.hips}")
    if args.stage:  # child: run one stage, print its result as the last line
        start = time.perf_counter()
        result = STAGES[args.stage](args.work, args)
        print(json.dumps(result | {"wall_s": time.perf_counter() - start}))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in args.stages:
        result, rss_mb = run_stage(name, args)
        lines.append({"stage": name, "rss_mb": rss_mb, **result})
        note = ""
        if name == "train_load":
            note = f"holds {result['held_gb']:.2f} GB of tensors"
        if name == "explain":
            whole = result["wall_s"] / result["hips"] * result["test_hips"]
            note = f"-> {whole:.0f} s for all {result['test_hips']} test hips (linear extrapolation)"
        lines[-1]["note"] = note
        print(f"{name:<11} {result['hips']:>7} hips {result['wall_s']:>9.1f} s {rss_mb:>9.0f} MB  {note}",
              flush=True)
    (args.work / "bench_scale.json").write_text(json.dumps(lines, indent=1))  # the last run's stages
    print(f"\n| stage | hips | wall s | peak RSS MB | note |\n|---|---:|---:|---:|---|")
    for line in lines:
        print(f"| {line['stage']} | {line['hips']} | {line['wall_s']:.1f} | {line['rss_mb']:.0f} | {line['note']} |")
    if not args.keep:
        import shutil

        shutil.rmtree(args.work)


if __name__ == "__main__":
    main()
