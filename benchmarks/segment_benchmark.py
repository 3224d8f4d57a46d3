"""Time the segmentation branch (all sites: patches, training, evaluation, report) in one process and print
wall and CPU seconds per stage. Goal: the default study's branch within ~2 minutes on 2 CPU cores.

Usage: python benchmarks/segment_benchmark.py [study.h5 split.csv] [--config config.yaml] [--threads 1]
Without a study, a toy study at the phantom's size (240 subjects, 96 px crops) is generated.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from snakemake.utils import validate

from osteoloc.segment.stages import build_report, evaluate_site, make_patches, train_site

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import write_toy_study  # noqa: E402  (the toy study is test code: tests/helpers.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("study", nargs="?")
    ap.add_argument("split", nargs="?")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(open(args.config)).get("segment") or {}
    validate(cfg, str(ROOT / "workflow/schemas/segment.schema.yaml"))
    out = Path(tempfile.mkdtemp(prefix="segbench"))
    study, split = args.study, args.split
    if study is None:
        study, split = out / "study.h5", out / "seed0.csv"
        subjects = write_toy_study(study, n_subjects=240, size=96, positive_rate=0.25)
        n = len(subjects)
        pd.DataFrame({"subject": subjects, "split": ["train"] * int(0.7 * n) + ["val"] * int(0.15 * n)
                      + ["test"] * (n - int(0.7 * n) - int(0.15 * n))}).to_csv(split, index=False)
    rows, files = [], {}
    for site in cfg["sites"]:
        d = out / site
        f = {k: d / k for k in ("patches", "model", "history", "predictions", "metrics", "summary")}
        for stage, call in [
            ("patches", lambda: make_patches(study, split, site, cfg, 0, f["patches"])),
            ("train", lambda: train_site(f["patches"], cfg, 0, "cpu", f["model"], f["history"])),
            ("evaluate", lambda: evaluate_site(f["patches"], f["model"], site, cfg, "cpu", f["predictions"],
                                               f["metrics"], f["summary"]))]:
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            rows.append({"site": site, "stage": stage, "wall_s": time.perf_counter() - wall,
                         "cpu_s": time.process_time() - cpu})
        files[site] = f
    wall, cpu = time.perf_counter(), time.process_time()
    stems = {k: out / "report" / f"{k}.csv" for k in ("table2", "table1")}
    stems |= {k: out / "report" / f"{k}.png" for k in ("confusion", "examples")}
    build_report(cfg, files, {}, stems)
    rows.append({"site": "all", "stage": "report", "wall_s": time.perf_counter() - wall,
                 "cpu_s": time.process_time() - cpu})
    timings = pd.DataFrame(rows)
    print(timings.round(2).to_string(index=False))
    print(f"total wall {timings.wall_s.sum():.1f} s, cpu {timings.cpu_s.sum():.1f} s "
          f"(threads {args.threads}, load average {open('/proc/loadavg').read().split()[0]})")
    print(pd.read_csv(stems["table2"])[["site", "n", "n_positive", "sensitivity", "specificity", "f1",
                                        "dice"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
