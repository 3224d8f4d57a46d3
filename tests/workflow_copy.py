"""Run snakemake on a throw-away copy of the workflow, for the workflow tests (tests/workflow).

A copy keeps the checkout's results untouched. `src/` is copied too and put first on PYTHONPATH, so a test may
edit library code (the rules list it relative to the working directory, so in the copy) without touching the
checkout. Scratch workflows (a few rules written by a test) use the same runner. A copy's experiments/ci.yaml
asks only for the transfer syntaxes this machine can write (dcmtk's two are left out where dcmtk is missing).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from osteoloc.cohort.phantom.dicom import dcmtk_missing

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")
NO_SLURM_BIN = REPO / "tests" / "no_slurm"  # a stand-in scontrol for runs without SLURM (its comment says why)
# What a workflow run needs; results/, .snakemake/ and the venv stay behind.
WORKFLOW_PARTS = ("Snakefile", "workflow", "scripts", "config.yaml", "experiments", "profiles", "src")
CI_CONFIG = "experiments/ci.yaml"
# What paper A and paper B train or compute after the split (folders under results/): a copy of a run
# without them holds the phantom, preprocessing and the splits only.
TRAINED = ("train", "grid", "explain", "report", "segment")


def copy_workflow(dest):
    """Copy the workflow's files into `dest` (created) and return it as a Path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.is_file():
            shutil.copy2(source, dest / part)
    config = machine_ci_config()
    if config is not None:
        (dest / CI_CONFIG).write_text(config)
    return dest


def unwritable_syntaxes():
    """The transfer syntaxes experiments/ci.yaml asks for that this machine cannot write (dcmtk missing)."""
    asked = yaml.safe_load((REPO / CI_CONFIG).read_text())["cohort"]["phantom"]["dicom"]["transfer_syntax"]
    return sorted(name for name, weight in asked.items() if float(weight) > 0 and dcmtk_missing([name]))


def machine_ci_config():
    """experiments/ci.yaml with weight 0 for the syntaxes this machine cannot write; None when it can write all."""
    missing = unwritable_syntaxes()
    if not missing:
        return None
    config = yaml.safe_load((REPO / CI_CONFIG).read_text())
    config["cohort"]["phantom"]["dicom"]["transfer_syntax"].update(dict.fromkeys(missing, 0))
    header = f"# experiments/ci.yaml without {', '.join(missing)}: dcmtk is not installed where the tests ran\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def copy_profiles(dest):
    """Copy only profiles/ (for scratch workflows that bring their own Snakefile)."""
    shutil.copytree(REPO / "profiles", Path(dest) / "profiles", dirs_exist_ok=True)


def run_env(workdir, slurm=False):
    """The venv's tools first on PATH (SLURM jobs inherit it) and the copy's library first on PYTHONPATH;
    without `slurm` (a run through no SLURM profile) tests/no_slurm's scontrol before SLURM's."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), *([] if slurm else [str(NO_SLURM_BIN)]), env.get("PATH", "")])
    src = Path(workdir) / "src"
    if src.is_dir():
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    return env


def snakemake(workdir, *args, check=True, timeout=900, slurm=False):
    """Run snakemake in `workdir` (`slurm`: through a SLURM profile); on failure (check=True) raise with the
    whole output."""
    proc = subprocess.run(
        [SNAKEMAKE, *map(str, args)],
        cwd=workdir,
        env=run_env(workdir, slurm),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} failed ({proc.returncode}) in {workdir}:\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-10000:]}"
        )
    return proc


def start_snakemake(workdir, *args, log_path, slurm=False):
    """Start snakemake in its own process group (so the test can kill it with every job it started)."""
    log = open(log_path, "w")
    return subprocess.Popen(
        [SNAKEMAKE, *map(str, args)],
        cwd=workdir,
        env=run_env(workdir, slurm),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(proc, sig=signal.SIGKILL):
    """Send `sig` to the process group `start_snakemake` created, and reap the leader."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_for(predicate, timeout, what, proc=None):
    """Poll until predicate() is true; fail after `timeout` s, or early if `proc` ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended ({proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


_STATS_HEADER = re.compile(r"^job\s+count\s*$")


def epochs_in_checkpoint(path):
    """Completed epochs recorded in a training run's last.pt; 0 while it is missing or being written."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return 0
    return 0 if checkpoint.get("done") else len(checkpoint["history"])


def planned_jobs(workdir, *args):
    """{rule: job count} snakemake -n would run ({} when nothing is to be done)."""
    proc = snakemake(workdir, "-n", "--quiet", "rules", *args)
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    counts = {}
    for i, line in enumerate(lines):
        if _STATS_HEADER.match(line.strip()):
            for row in lines[i + 2 :]:
                fields = row.split()
                if len(fields) != 2 or fields[0] == "total":
                    break
                counts[fields[0]] = int(fields[1])
            break
    if not counts and "Nothing to be done" not in proc.stdout + proc.stderr:
        raise AssertionError(f"could not read the job stats from snakemake -n:\n{proc.stdout}\n{proc.stderr}")
    return counts


def local_slurm_profile(workdir):
    """profiles/slurm adapted to the tests' single-node SLURM; returns the new profile's folder.

    Kept as written: executor, partitions (start.sh creates `compute` and `gpu-a100`), GPU requests,
    retries, rerun policy, attempt-scaled runtimes. Changed, because the local cluster differs from a
    production one: no account (no accounting database to validate it against), job states from squeue
    (sacct needs accounting), memory capped to the small node, quick status checks, and the rules' own
    threads instead of set-threads (the 2-CPU node; and the same torch thread count as a local run, so
    the numbers can be compared exactly).
    """
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["latency-wait"] = 5
    profile["jobs"] = 4
    profile["local-cores"] = 2
    profile.pop("set-threads", None)
    blocks = [profile["default-resources"], *profile["set-resources"].values()]
    for block in blocks:
        block.pop("slurm_account", None)
        block["mem_mb"] = "1000 * attempt"
    folder = Path(workdir) / "profiles" / "slurm-local"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def csv_outputs(results):
    """{relative path: content} of every CSV under `results` (logs excluded; timing columns dropped; the
    workflow copy's own folder, which absolute input paths name, written as `<workdir>`)."""
    results = Path(results)
    workdir = str(results.resolve().parent)
    return {
        str(p.relative_to(results)): comparable_csv(p).replace(workdir, "<workdir>")
        for p in sorted(results.rglob("*.csv"))
        if "logs" not in p.relative_to(results).parts
    }


def copy_study(source, dest, without=()):
    """Copy a workflow copy that has run (results, .snakemake metadata, mtimes kept) so a test may change it.

    Checkpoints (*.pt, hundreds of MB) are hard links: the library writes them only by renaming a new file
    into place and snakemake deletes outputs before rerunning a job, so the source's stay as they were.
    `without`: folders under results/ left out (their jobs then run again in the copy).
    """
    source, dest = Path(source), Path(dest)
    skipped = {source / "results" / name for name in without}

    def ignore(folder, names):
        if Path(folder) == source / ".snakemake":
            return [n for n in names if n in ("locks", "incomplete")]
        return [n for n in names if Path(folder, n) in skipped or n == "__pycache__"]

    def link_or_copy(src, dst):
        if src.endswith(".pt"):
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass  # another file system: copy
        return shutil.copy2(src, dst)

    shutil.copytree(source, dest, symlinks=True, ignore=ignore, copy_function=link_or_copy)
    return dest


_JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def planned(workdir, *args):
    """[(rule, {wildcard: value})] of every job `snakemake -n` would run ([] when nothing is to be done)."""
    proc = snakemake(workdir, "-n", *args)
    jobs = []
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if m := _JOB_HEADER.match(line.strip()):
            jobs.append((m.group(1), {}))
        elif (m := _WILDCARDS.match(line)) and jobs:
            jobs[-1][1].update(item.split("=", 1) for item in m.group(1).split(", "))
    if not jobs and "Nothing to be done" not in proc.stdout + proc.stderr:
        raise AssertionError(f"no jobs and no 'Nothing to be done' in snakemake -n:\n{proc.stdout}\n{proc.stderr}")
    return jobs


def comparable_csv(path):
    """A CSV's content without columns that measure time (they differ between any two runs)."""
    import pandas as pd

    frame = pd.read_csv(path)
    timing = [c for c in frame.columns if "second" in c.lower() or c.lower() in ("time", "elapsed", "runtime")]
    return frame.drop(columns=timing).to_csv(index=False)


def write_override(tmp_path, block):
    """A config file holding `block`; passed after experiments/ci.yaml it overrides just those keys."""
    path = Path(tmp_path) / "override.yaml"
    path.write_text(yaml.safe_dump(block))
    return path


_RULE = re.compile(r"^(?:rule|checkpoint) (\w+):")
_SCRIPT = re.compile(r"""["'](?:\.\./)*scripts/(\w+)\.py["']""")


def script_rules(workdir):
    """{script stem: [rule names]} from the workflow's .smk files."""
    mapping, rule = {}, None
    for smk in sorted((Path(workdir) / "workflow" / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            if m := _RULE.match(line.strip()):
                rule = m.group(1)
            elif (m := _SCRIPT.search(line)) and rule:
                mapping.setdefault(m.group(1), []).append(rule)
    return mapping
