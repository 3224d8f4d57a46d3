"""Time `snakemake -n` (DAG building, no jobs run) on the paper protocol and print its job count.

Goal: <= 15 s for experiments/paper.yaml (13 seeds x 2 models, the prior's grid, paper B). The dry run
needs no data: it plans from the config. Jobs after the grid search's checkpoint (`select_prior_round`)
are planned only once the checkpoint has run, so a fresh dry run counts the jobs up to it plus those
that do not depend on it. The protocol's data paths are placeholders (`/path/to/your/...`): the
benchmark points them at empty stand-in files, since planning reads no data.

Usage: .venv/bin/python benchmarks/bench_dryrun.py [--configfile experiments/paper.yaml] [--repeat 3]
"""

import argparse
import copy
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
GOAL_S = 15.0
# Config keys that name input data; each set one is replaced by an empty stand-in file.
DATA_KEYS = [("cohort", "manifest"), ("cohort", "labels"), ("cohort", "group_hdf5"), ("train", "weights_path")]


def stand_in_config(configfile, workdir):
    """A copy of the config whose data paths name empty files under `workdir`."""
    config = copy.deepcopy(yaml.safe_load((REPO / configfile).read_text()))
    for section, key in DATA_KEYS:
        value = config.get(section, {}).get(key)
        if value:
            stand_in = Path(workdir, "data", section, Path(value).name)
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.touch()
            config[section][key] = str(stand_in)
    path = Path(workdir, "config.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(configfile, workdir):
    """(seconds, {rule: count}) of one `snakemake -n` whose .snakemake/ state lives in `workdir`."""
    start = time.perf_counter()
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--quiet", "rules", "--cores", "1", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(configfile)],
        cwd=REPO, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake -n failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    counts = {}
    lines = (proc.stdout + proc.stderr).splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^job\s+count\s*$", line.strip()):
            for row in lines[i + 2:]:
                fields = row.split()
                if len(fields) != 2:
                    break
                counts[fields[0]] = int(fields[1])
            break
    return seconds, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="experiments/paper.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (REPO / args.configfile).is_file():
        sys.exit(f"{args.configfile} does not exist yet: nothing to time (the paper protocol's config)")
    with tempfile.TemporaryDirectory() as workdir:  # no results there: every job is planned
        config = stand_in_config(args.configfile, workdir)
        runs = [dry_run(config, workdir) for _ in range(args.repeat)]
    times = [seconds for seconds, _ in runs]
    counts = runs[-1][1]
    print(f"snakemake -n --configfile {args.configfile}  ({args.repeat} runs)")
    print(f"  wall time: median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
          f"max {max(times):.2f} s  (goal <= {GOAL_S:.0f} s: {'met' if statistics.median(times) <= GOAL_S else 'NOT met'})")
    print(f"  jobs planned: {counts.get('total', sum(counts.values()))}")
    for rule, count in counts.items():
        if rule != "total":
            print(f"    {rule:<22} {count}")


if __name__ == "__main__":
    main()
