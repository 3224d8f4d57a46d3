"""The workflow's arm jobs on CI's study: one train and explain job per (arm, seed), each arm reruns alone."""

import torch
from workflow_copy import CI_CONFIG, TRAINED, planned, snakemake, write_override


def _config(folder, block):
    folder.mkdir(parents=True, exist_ok=True)
    return write_override(folder, block)


def test_every_arm_runs_per_seed_and_editing_one_reruns_only_it(ci_copy, tmp_path):
    """On the tiny study with two arms and two seeds: snakemake plans a train and an explain job per
    (model, seed) for the baseline, the prior and each arm; after the seed-0 runs (trained here, to keep the
    suite's time), editing one arm (or adding one) plans only that arm's jobs, the other arm and the
    paper's models are reused."""
    workdir = ci_copy(without=TRAINED)  # the phantom and preprocessing done; every model trains here
    shared = {"study": {"seeds": [0, 1]}, "train": {"epochs": 1, "prior": {"select": "fixed"}}}
    arms = {"disc": {"prior": {"shape": "disc"}}, "stride16": {"model": {"output_stride": 16}}}
    config = _config(tmp_path / "two_arms", {**shared, "arms": arms})

    def run(configfile, *targets):  # targets first: --configfile takes every value after it
        return (*targets, "--cores", "2", "--configfile", CI_CONFIG, configfile)

    jobs = planned(workdir, *run(config))
    expected = {(model, seed) for model in ("baseline", "prior", *arms) for seed in ("0", "1")}
    for rule in ("train", "explain"):
        assert {(w["model"], w["seed"]) for r, w in jobs if r == rule} == expected, rule

    def targets(*names):
        return [f"results/{stage}/{name}/seed0/{file}" for name in names
                for stage, file in (("train", "best.pt"), ("explain", "metrics.csv"))]

    done = targets("baseline", "disc", "stride16")
    snakemake(workdir, *run(config, *done), timeout=1800)
    assert planned(workdir, *run(config, *done)) == []

    edited = _config(tmp_path / "edited", {**shared, "arms": {**arms, "disc": {"prior": {"shape": "linear"}}}})
    jobs = planned(workdir, *run(edited, *done))
    assert {(r, w["model"], w["seed"]) for r, w in jobs} == {(rule, "disc", "0") for rule in ("train", "explain")}

    added = _config(tmp_path / "added", {**shared, "arms": {**arms, "cauchy": {"prior": {"shape": "cauchy"}}}})
    jobs = planned(workdir, *run(added, *done, *targets("cauchy")))
    assert {(r, w["model"], w["seed"]) for r, w in jobs} == {(rule, "cauchy", "0") for rule in ("train", "explain")}


def test_arm_prior_values_and_one_set_of_intervention_crops_for_a_held_out_test_set(ci_copy, tmp_path):
    """An arm without the prior trains with no prior values, an arm with its own r trains with it; with
    one held-out test set (train.split.test_seed) the intervention crops are rendered once, for the
    selection seed, and serve every seed; an arm's own r under the grid search is refused while parsing."""
    workdir = ci_copy(without=TRAINED)
    arms = {"s16_base": {"prior": {"enabled": False}, "model": {"output_stride": 16}},
            "wide_disc": {"prior": {"shape": "disc", "radius": 12.0}}}
    block = {"study": {"seeds": [0, 1]}, "train": {"epochs": 1, "prior": {"select": "fixed"},
                                                   "split": {"test_seed": 7}},
             "arms": arms, "explain": {"interventions": {"enabled": True, "radiographs": 2}}}
    config = ("--cores", "2", "--configfile", CI_CONFIG, _config(tmp_path / "arms", block))
    jobs = planned(workdir, *config)
    assert [w.get("seed") for r, w in jobs if r == "intervention_crops"] == ["0"]
    assert {(w["model"], w["seed"]) for r, w in jobs if r == "explain_interventions"} == {
        (m, s) for m in ("baseline", "prior", *arms) for s in ("0", "1")}

    targets = [f"results/train/{arm}/seed0/best.pt" for arm in arms]
    snakemake(workdir, *targets, *config, timeout=1800)
    settings = {arm: torch.load(workdir / target, weights_only=True)["config"] for arm, target in zip(arms, targets)}
    assert settings["s16_base"]["prior_lambda"] == 0 and settings["s16_base"]["output_stride"] == 16
    assert (settings["wide_disc"]["prior_radius"], settings["wide_disc"]["prior_shape"]) == (12.0, "disc")
    assert settings["wide_disc"]["prior_lambda"] == 1.0  # the prior's other values: train.prior's

    grid = _config(tmp_path / "grid", {**block, "train": {"prior": {"select": "grid"}}})
    refused = snakemake(workdir, "-n", "--cores", "1", "--configfile", CI_CONFIG, grid, check=False)
    assert refused.returncode != 0 and "needs train.prior.select: fixed" in refused.stdout + refused.stderr
