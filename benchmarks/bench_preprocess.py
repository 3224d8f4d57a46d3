"""Preprocessing speed and memory on clinical-size compressed DICOMs (figures in docs/benchmarks.md).

Cohort: a small clinical-size phantom cohort (experiments/scale.yaml's DICOM settings: 0.14-0.2 mm, about
1800 x 1200 to 2600 x 1700 px, every transfer syntax, BitsStored 10-16), generated once into --cohort and
reused. Larger cohorts replicate its manifest rows under distinct subject ids (with their label rows): a
shard job judges no duplicates (the gather does, from the pixel hashes the shard records), so a shard of
replicas does the full work of distinct radiographs. Prints, measured side by side in one run:

1. time per radiograph of a shard job (decode, points, both hips' crops, pixel hash, HDF5 write) divided
   by a bare `pydicom.dcmread(path).pixel_array` of the same files, best of --repeats, alternating: goal
   <= 1.3; and the gather's time per radiograph;
2. peak RSS of one shard job (fresh process) at 50 and 500 radiographs per shard: goal flat (+10 %) and
   under 1.5 GB;
3. wall time of one shard job of a cohort against two shard jobs of half of it running at once: goal
   >= 1.8x on 2 cores.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_preprocess.py [--cohort DIR] [--n 24] [--repeats 3]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pydicom
import yaml

from osteoloc.cohort.landmarks import DEFAULT_GROUPS
from osteoloc.io.labels import read_labels
from osteoloc.preprocess.shards import gather_exclusions, gather_study, unlabelled, write_shard
from osteoloc.preprocess.sources import ManifestSource

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(crop_size=96, spacing_mm=0.9333, groups=DEFAULT_GROUPS)  # the default study's protocol


def clinical_cohort(folder, n):
    """A clinical-size phantom cohort of `n` radiographs in `folder` (made once; reused when present)."""
    from osteoloc.cohort.phantom.cohort import make_cohort

    folder = Path(folder)
    if not (folder / "manifest.csv").exists():
        phantom = yaml.safe_load((REPO / "experiments/scale.yaml").read_text())["cohort"]["phantom"]
        phantom.update(subjects=n, shard_subjects=n, broken_fraction=0.0)
        make_cohort(phantom, folder)
    return folder / "manifest.csv", folder / "labels.csv"


def replicated(manifest, labels, n, out):
    """A manifest of `n` rows cycling through `manifest`'s rows, each replica its own subject id (and
    label rows), with absolute paths; returns (manifest, labels) written to `out`."""
    rows = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    grades = pd.read_csv(labels, dtype=str, keep_default_na=False)
    base = Path(manifest).resolve().parent
    for column in ("image_path", "points_path", "manual_points_path"):
        rows[column] = [str(base / value) if value else value for value in rows[column]]
    out_rows, out_grades = [], []
    for i in range(n):
        row = rows.iloc[i % len(rows)].copy()
        new = f"{row.subject}-r{i // len(rows)}"
        hips = grades[(grades.subject == row.subject) & (grades.visit == row.visit)].copy()
        hips["subject"], row["subject"] = new, new
        out_rows.append(row)
        out_grades.append(hips)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(out_rows).to_csv(out / "manifest.csv", index=False)
    pd.concat(out_grades).to_csv(out / "labels.csv", index=False)
    return out / "manifest.csv", out / "labels.csv"


def shard_job(manifest, labels, out):
    """One shard job of every row of `manifest` into `out`; returns the hips written."""
    with ManifestSource(manifest, unlabelled(), **SETTINGS) as source:  # shards crop without labels
        return write_shard(source, range(len(source.units)), out)


def child(manifest, labels, out):
    """In a fresh process: one shard job; prints hips, seconds and peak RSS (MB) as JSON."""
    start = time.perf_counter()
    hips = shard_job(manifest, labels, out)
    print(json.dumps({"hips": hips, "seconds": time.perf_counter() - start,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def start_child(manifest, labels, out):
    return subprocess.Popen([sys.executable, __file__, "--child", str(manifest), str(labels), str(out)],
                            stdout=subprocess.PIPE, text=True)


def result(proc):
    stdout, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode})")
    return json.loads(stdout.strip().splitlines()[-1])


def bare_decode(paths):
    start = time.perf_counter()
    for path in paths:
        pydicom.dcmread(path).pixel_array
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", default=str(REPO / "results/bench/clinical_cohort"),
                        help="folder of the clinical-size phantom cohort (made there when missing)")
    parser.add_argument("--n", type=int, default=24, help="radiographs of the generated cohort")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-sizes", type=int, nargs=2, default=(50, 500), help="radiographs per shard")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    manifest, labels = clinical_cohort(args.cohort, args.n)
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    paths = [Path(manifest).parent / p for p in table.image_path]
    syntaxes = pd.Series([str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID.name)
                          for p in paths]).value_counts().to_dict()
    shapes = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    print(f"cohort: {len(paths)} clinical-size phantom radiographs, {min(s.Rows for s in shapes)}-"
          f"{max(s.Rows for s in shapes)} x {min(s.Columns for s in shapes)}-{max(s.Columns for s in shapes)} px; "
          f"{syntaxes}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. shard job time per radiograph / bare decode, alternating, best of each
        bare_decode(paths)  # warm the file cache for both
        decode, shard, gather = [], [], []
        for r in range(args.repeats):
            decode.append(bare_decode(paths) / len(paths))
            out = tmp / f"time{r}"
            start = time.perf_counter()
            shard_job(manifest, labels, out / "shard")
            shard.append((time.perf_counter() - start) / len(paths))
            start = time.perf_counter()
            with ManifestSource(manifest, unlabelled(), **SETTINGS) as source:
                table = read_labels(labels)
                gather_exclusions(source, table, labels, [out / "shard"], out / "exclusions.csv")
                gather_study(source, table, labels, [out / "shard"], out / "study.h5", max_excluded_fraction=1.0)
            gather.append((time.perf_counter() - start) / len(paths))
        decode, shard, gather = min(decode), min(shard), min(gather)
        print(f"bare pydicom decode: {1000 * decode:.0f} ms per radiograph (best of {args.repeats})")
        print(f"shard job: {1000 * shard:.0f} ms per radiograph = {shard / decode:.2f} x bare decode (goal <= 1.3)")
        print(f"gather (exclusions table + study file): {1000 * gather:.1f} ms per radiograph")

        # 2. peak RSS of one shard job against its size
        rss = {}
        for n in args.rss_sizes:
            m, lab = replicated(manifest, labels, n, tmp / f"rss{n}")
            stats = result(start_child(m, lab, tmp / f"rss{n}" / "shard"))
            rss[n] = stats["maxrss_mb"]
            print(f"shard job of {n} radiographs ({stats['hips']} hips): peak RSS {rss[n]:.0f} MB, "
                  f"{stats['seconds']:.0f} s")
        small, large = args.rss_sizes
        print(f"peak RSS {large} / {small} per shard: {rss[large] / rss[small]:.3f} (goal <= 1.10, under 1500 MB)")

        # 3. one shard of 2m radiographs against two shards of m at once
        m = 2 * len(paths)
        whole = replicated(manifest, labels, 2 * m, tmp / "par_whole")
        rows = pd.read_csv(whole[0], dtype=str, keep_default_na=False)
        grades = pd.read_csv(whole[1], dtype=str, keep_default_na=False)
        halves = []
        for k in range(2):  # the two shards of the same cohort: rows 0..m-1 and m..2m-1
            folder = tmp / f"par_{k}"
            folder.mkdir()
            part = rows.iloc[k * m:(k + 1) * m]
            part.to_csv(folder / "manifest.csv", index=False)
            grades[grades.subject.isin(part.subject)].to_csv(folder / "labels.csv", index=False)
            halves.append((folder / "manifest.csv", folder / "labels.csv"))
        start = time.perf_counter()
        result(start_child(*whole, tmp / "par_whole" / "shard"))
        one = time.perf_counter() - start
        start = time.perf_counter()
        procs = [start_child(hm, hl, tmp / f"par_{k}" / "shard") for k, (hm, hl) in enumerate(halves)]
        for proc in procs:
            result(proc)
        two = time.perf_counter() - start
        print(f"{2 * m} radiographs: one shard {one:.1f} s, two shards at once {two:.1f} s: "
              f"{one / two:.2f}x faster (goal >= 1.8 on 2 cores)")


if __name__ == "__main__":
    main()
