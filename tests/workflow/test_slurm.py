"""The workflow through profiles/slurm on a real single-node SLURM (tests/local_slurm/start.sh).

Skips, saying so, when `sbatch` is missing (tests/local_slurm/install.sh installs it; CI does) or when the
daemons cannot be started (not root). Stops the daemons it started, also when a test fails.
"""

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from workflow_copy import (
    epochs_in_checkpoint,
    CI_CONFIG,
    REPO,
    TRAINED,
    copy_profiles,
    copy_study,
    csv_outputs,
    kill_group,
    local_slurm_profile,
    snakemake,
    start_snakemake,
    wait_for,
    write_override,
)

# One xdist worker runs every SLURM test (make test uses --dist loadgroup): the daemons this module starts and
# stops are the machine's, so a second worker's teardown would stop them under the first one's jobs.
pytestmark = [pytest.mark.workflow, pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

LOCAL_SLURM = REPO / "tests" / "local_slurm"


def _controller_up():
    return subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0


@pytest.fixture(scope="module")
def local_slurm():
    """A running single-node SLURM; the daemons this fixture started are stopped afterwards."""
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not found: no SLURM here (bash tests/local_slurm/install.sh installs it; CI does)")
    if os.geteuid() != 0:
        if not _controller_up():
            pytest.skip("no SLURM controller running and starting one (tests/local_slurm/start.sh) needs root")
        yield
        return
    started = subprocess.run(["bash", str(LOCAL_SLURM / "start.sh")], capture_output=True, text=True)
    try:
        assert started.returncode == 0, f"start.sh failed:\n{started.stdout}\n{started.stderr}"
        yield
    finally:
        subprocess.run(["bash", str(LOCAL_SLURM / "stop.sh")], capture_output=True, text=True)


SCRATCH = textwrap.dedent(
    """
    localrules:
        report_tables,


    rule all:
        input:
            "out/summary.csv",


    rule train:
        output:
            "out/train_{seed}.csv",
        resources:
            mem_mb=100,
            runtime=5,
        shell:
            "python -c 'import os, sys; print(\\"seed,value,partition,gpus,python\\"); "
            "print({wildcards.seed}, {wildcards.seed} ** 2, os.environ.get(\\"SLURM_JOB_PARTITION\\", \\"\\"), "
            "os.environ.get(\\"CUDA_VISIBLE_DEVICES\\", \\"\\"), sys.prefix, sep=\\",\\")' > {output}"


    rule report_tables:
        input:
            expand("out/train_{seed}.csv", seed=[0, 1]),
        output:
            "out/summary.csv",
        shell:
            "(echo slurm_job; echo ${{SLURM_JOB_ID:-none}}) > {output}"
    """
)


def test_scratch_workflow_heavy_rule_on_gpu_partition_cheap_rule_local(local_slurm, tmp_path):
    """A `train` job goes to the profile's GPU partition with one GPU, the localrule stays local."""
    (tmp_path / "Snakefile").write_text(SCRATCH)
    copy_profiles(tmp_path)
    profile = local_slurm_profile(tmp_path)
    snakemake(tmp_path, "--profile", profile, timeout=300, slurm=True)

    for seed in (0, 1):
        header, row = (tmp_path / f"out/train_{seed}.csv").read_text().split()
        fields = dict(zip(header.split(","), row.split(",")))
        assert fields["value"] == str(seed**2)
        assert fields["partition"] == "gpu-a100", "train must run on the profile's GPU partition"
        assert fields["gpus"] != "", "train must be given a GPU (CUDA_VISIBLE_DEVICES set by SLURM)"
        assert Path(fields["python"]).resolve() == Path(os.sys.prefix).resolve(), "jobs use the venv"
    assert (tmp_path / "out/summary.csv").read_text().split() == ["slurm_job", "none"], "localrule ran local"


def test_tiny_study_through_slurm_matches_a_local_run(local_slurm, ci_study, tmp_path):
    """The tiny study's baseline through profiles/slurm (phantom and preprocessing reused from the local run,
    its training and Grad-CAM as SLURM jobs) gives the same CSVs as the local run of the whole study (CPU,
    seeded); timing columns aside. (The prior's grid points and training are SLURM jobs of the same rule
    kind and resources; they run here only locally, to keep the suite's time: each SLURM job in a chain
    waits for the executor's next status check.)"""
    local = ci_study
    cluster = copy_study(ci_study, tmp_path / "slurm", without=TRAINED)  # the phantom and preprocessing: done
    profile = local_slurm_profile(cluster)
    targets = [f"results/explain/baseline/seed0/{name}" for name in ("metrics.csv", "predictions.csv")]
    run = snakemake(cluster, *targets, "--profile", profile, "--configfile", CI_CONFIG, timeout=1800, slurm=True)
    assert "SLURM" in run.stdout + run.stderr, "jobs must have been submitted to SLURM"
    submitted = set(re.findall(r"rule (\w+):", run.stdout + run.stderr))
    assert {"train", "explain"} <= submitted, submitted

    local_csv = csv_outputs(local / "results")
    # what the cluster run wrote (the copied phantom and preprocessing name the local study's folder)
    cluster_csv = {name: text for name, text in csv_outputs(cluster / "results").items()
                   if Path(name).parts[0] in TRAINED}
    assert local_csv, "the local run wrote no CSV"
    assert set(targets) < {f"results/{name}" for name in cluster_csv}
    assert set(cluster_csv) <= set(local_csv)
    differing = [name for name in cluster_csv if local_csv[name] != cluster_csv[name]]
    assert not differing, f"SLURM and local runs differ in {differing}"


def test_scancelled_training_is_retried_and_resumes_from_its_checkpoint(local_slurm, ci_copy, tmp_path):
    """scancel a training job mid-run: the profile's retry resubmits it and training resumes at its last
    epoch instead of starting over; the run then completes."""
    workdir = ci_copy(without=TRAINED)
    override = write_override(tmp_path, {"train": {"epochs": 6, "early_stopping_patience": 0}})
    config = ["--configfile", CI_CONFIG, override]
    snakemake(workdir, "results/splits/seed0.csv", "--cores", "2", *config)  # prerequisites: done in the copy
    run_dir = workdir / "results/train/baseline/seed0"
    profile = local_slurm_profile(workdir)
    log_path = tmp_path / "slurm_run.log"
    proc = start_snakemake(workdir, "results/train/baseline/seed0/best.pt", "--profile", profile, *config,
                           log_path=log_path, slurm=True)
    try:
        wait_for(lambda: epochs_in_checkpoint(run_dir / "last.pt") >= 1, 600, "the first epoch on SLURM", proc)
        job_ids = re.findall(r"SLURM jobid (\d+)", log_path.read_text())
        assert job_ids, "no SLURM job id in snakemake's output"
        epochs_before = epochs_in_checkpoint(run_dir / "last.pt")
        subprocess.run(["scancel", job_ids[-1]], check=True)
        assert proc.wait(timeout=900) == 0, log_path.read_text()[-5000:]
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert epochs_before < 6, "the job finished before it could be cancelled"
    log = (workdir / "results/logs/train/baseline/seed0.log").read_text()
    assert "resuming" in log, "the retried job started over instead of resuming:\n" + log
    assert (run_dir / "best.pt").exists()
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 7
