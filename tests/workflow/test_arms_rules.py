"""The workflow's arm jobs on CI's study: one train and explain job per (arm, seed), each arm reruns alone."""

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
