"""Speed of the check before the long run (rule check_inputs, docs/preprocessing.md): radiographs per second
on one core for the header pass alone (io.dicom_header.read_header: every DICOM header without pixel data,
the transfer syntax against the installed decoders, spacing, photometric, size, truncation) and for the
whole check (manifest and labels parsed, headers, every .pts read and put through the landmark checks,
labels joined). Goal: >= 200 radiographs per second for the header pass (20,000 in under 2 minutes).

Cohort: `--distinct` phantom radiographs (default study's size, explicit / RLE / JPEG 2000 syntaxes, about
a third per-hip .pts), generated once into --cohort and copied to `--n` files under distinct names and
subject ids, so every header is read from its own file. Files are in the page cache (just written): on a
cluster file system a cold first pass is bounded by its latency instead.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_check_inputs.py [--cohort DIR] [--n 400] [--repeats 3]
"""

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from osteoloc.cohort.phantom.cohort import make_cohort
from osteoloc.io.dicom_header import read_header
from osteoloc.preprocess.stages import check_inputs

PHANTOM = {"seed": 7, "broken_fraction": 0.0, "split_pts_fraction": 0.3,
           "dicom": {"transfer_syntax": {"explicit": 1, "rle": 1, "jpeg2000": 1, "jpegls": 0, "jpeg_lossless": 0}}}
SETTINGS = {"points_unit": "auto", "accept_mirrored": False}


def phantom_cohort(folder, distinct):
    folder = Path(folder)
    if not (folder / "manifest.csv").exists():
        make_cohort({**PHANTOM, "subjects": distinct, "shard_subjects": distinct}, folder)
    return folder


def replicated(cohort, n, out):
    """`n` radiographs cycling through the cohort's, each copied to its own files and subject id; returns
    (manifest, labels) in `out`."""
    rows = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    grades = pd.read_csv(cohort / "labels.csv", dtype=str, keep_default_na=False)
    manifest, labels = [], []
    for k in range(n):
        row = rows.iloc[k % len(rows)].copy()
        original, subject = row["subject"], f"{row['subject']}-r{k}"
        for column in ("image_path", "points_path"):
            source = cohort / row[column]
            target = Path(f"r{k}") / row[column]
            (out / target).parent.mkdir(parents=True, exist_ok=True)
            for path in [source] if source.suffix else sorted(source.parent.glob(source.name + "_*.pts")):
                shutil.copyfile(path, out / target.parent / path.name)
            row[column] = str(target)
        row["subject"] = subject
        manifest.append(row.drop(labels=["manual_points_path"], errors="ignore"))
        labels.append(grades[grades["subject"] == original].assign(subject=subject))
    pd.DataFrame(manifest).to_csv(out / "manifest.csv", index=False)
    pd.concat(labels).to_csv(out / "labels.csv", index=False)
    return out / "manifest.csv", out / "labels.csv"


def timed(function, repeats):
    """(best CPU seconds, best wall seconds) of `repeats` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        function()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default=str(Path(tempfile.gettempdir()) / "osteoloc_bench_check_cohort"))
    parser.add_argument("--distinct", type=int, default=50)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cohort = phantom_cohort(args.cohort, args.distinct)
    with tempfile.TemporaryDirectory() as tmp:
        manifest, labels = replicated(cohort, args.n, Path(tmp))
        images = [Path(tmp) / p for p in pd.read_csv(manifest)["image_path"]]
        header_cpu, header_wall = timed(lambda: [read_header(p) for p in images], args.repeats)
        table = check_inputs("manifest", {"manifest": manifest, "labels": labels}, SETTINGS, Path(tmp) / "check.csv")
        check_cpu, check_wall = timed(lambda: check_inputs("manifest", {"manifest": manifest, "labels": labels},
                                                           SETTINGS, Path(tmp) / "check.csv"), args.repeats)
    n = len(images)
    print(f"{n} radiographs ({args.distinct} distinct phantom images copied), {int((table['status'] == 'ok').sum())} ok")
    print(f"header pass : {n / header_cpu:8.0f} radiographs/s per core (CPU time; wall {n / header_wall:.0f}/s)"
          f"  goal >= 200: {'met' if n / header_cpu >= 200 else 'NOT met'}")
    print(f"whole check : {n / check_cpu:8.0f} radiographs/s per core (CPU time; wall {n / check_wall:.0f}/s)")
    print(f"20,000 radiographs: header pass {20000 / (n / header_cpu):.0f} s, whole check {20000 / (n / check_cpu):.0f} s")


if __name__ == "__main__":
    main()
