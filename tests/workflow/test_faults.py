"""Faults: a training job killed mid-run resumes from its last epoch checkpoint under --rerun-incomplete, and
a failing job is retried as the profile says (`retries`). The SLURM variant (scancel) is in test_slurm.py.
"""

import textwrap

import pytest
import torch
import yaml
from workflow_copy import (
    epochs_in_checkpoint,
    CI_CONFIG,
    REPO,
    TRAINED,
    comparable_csv,
    copy_profiles,
    kill_group,
    snakemake,
    start_snakemake,
    wait_for,
    write_override,
)

pytestmark = pytest.mark.workflow

RUN = "results/train/baseline/seed0"
EPOCHS = 4  # enough epochs that the kill lands mid-run


def kill_training_mid_run(workdir, args, log_path):
    """Start snakemake on `args`, SIGKILL its whole process group once last.pt holds >= 1 unfinished epoch."""
    proc = start_snakemake(workdir, *args, log_path=log_path)
    try:
        wait_for(lambda: epochs_in_checkpoint(workdir / RUN / "last.pt") >= 1, 600, "the first epoch", proc)
    finally:
        kill_group(proc)
    return epochs_in_checkpoint(workdir / RUN / "last.pt")


def test_killed_training_resumes_from_last_checkpoint(ci_copy, tmp_path):
    workdir = ci_copy(without=TRAINED)
    override = write_override(tmp_path, {"train": {"epochs": EPOCHS, "early_stopping_patience": 0}})
    config = ["--configfile", CI_CONFIG, override]
    snakemake(workdir, "results/splits/seed0.csv", "--cores", "2", *config)  # cohort, preprocessing, split: done

    target = f"{RUN}/best.pt"
    done_before_kill = kill_training_mid_run(workdir, [target, "--cores", "1", *config], tmp_path / "killed.log")
    assert 1 <= done_before_kill < EPOCHS, f"the kill landed after {done_before_kill} of {EPOCHS} epochs"
    assert not (workdir / target).exists()

    # Without --rerun-incomplete snakemake refuses to go on. Both profiles set it, so the profile is left out
    # here (`--workflow-profile none`) and the flag given explicitly.
    # A killed snakemake leaves its lock behind; --unlock removes it (docs/cluster.md).
    bare = ["--workflow-profile", "none", "--cores", "1"]
    snakemake(workdir, target, "--unlock", *bare, *config)
    refused = snakemake(workdir, target, *bare, *config, check=False)
    assert refused.returncode != 0 and "IncompleteFilesException" in refused.stdout + refused.stderr
    snakemake(workdir, target, *bare, "--rerun-incomplete", *config)

    log = (workdir / "results/logs/train/baseline/seed0.log").read_text()
    assert f"after epoch {done_before_kill}" in log and "resuming" in log, "the rerun did not resume:\n" + log
    resumed = comparable_csv(workdir / RUN / "history.csv")
    best_resumed = torch.load(workdir / target, map_location="cpu", weights_only=True)

    # The same run uninterrupted gives the same history and weights (CPU runs are bit-identical).
    (workdir / RUN / "last.pt").unlink()  # the best weights so far live inside last.pt
    snakemake(workdir, target, "--cores", "1", "--forcerun", "train", *config)
    assert comparable_csv(workdir / RUN / "history.csv") == resumed
    assert len(resumed.strip().splitlines()) == EPOCHS + 1
    best = torch.load(workdir / target, map_location="cpu", weights_only=True)
    assert best["epoch"] == best_resumed["epoch"]
    for key, tensor in best["state_dict"].items():
        assert torch.equal(tensor, best_resumed["state_dict"][key]), key


FLAKY = textwrap.dedent(
    """
    rule all:
        input:
            "out/result.txt",


    rule train:
        output:
            "out/result.txt",
        resources:
            mem_mb=1000,  # the rule's portable request; profiles/slurm's set-resources replace it
            try_number=lambda wildcards, attempt: attempt,
        shell:
            # fails on its first attempt only; {resources.mem_mb} shows the attempt-scaled request
            "echo attempt {resources.try_number} mem_mb {resources.mem_mb} >> out/attempts.txt; "
            "test {resources.try_number} -ge 2 && echo ok > {output}"
    """
)


def test_failing_job_is_retried_with_more_memory_per_the_slurm_profile(tmp_path):
    """profiles/slurm's `retries` and attempt-scaled mem_mb, run by the local executor on a scratch rule."""
    (tmp_path / "Snakefile").write_text(FLAKY)
    copy_profiles(tmp_path)
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["retries"] >= 1
    snakemake(tmp_path, "--profile", tmp_path / "profiles/slurm", "--executor", "local", "--cores", "1")
    attempts = (tmp_path / "out/attempts.txt").read_text().split("\n")
    base = eval(profile["set-resources"]["train"]["mem_mb"], {"attempt": 1})  # noqa: S307 (our own file)
    assert attempts[:2] == [f"attempt 1 mem_mb {base}", f"attempt 2 mem_mb {2 * base}"]
    assert (tmp_path / "out/result.txt").read_text() == "ok\n"


def test_without_retries_the_same_failure_stops_the_run(tmp_path):
    """The default (local) profile sets no retries: the flaky rule fails, which shows the retry mattered."""
    (tmp_path / "Snakefile").write_text(FLAKY)
    copy_profiles(tmp_path)
    run = snakemake(tmp_path, "--profile", tmp_path / "profiles/default", "--cores", "1", check=False)
    assert run.returncode != 0
    assert (tmp_path / "out/attempts.txt").read_text().split("\n")[0].startswith("attempt 1")
    assert not (tmp_path / "out/result.txt").exists()
