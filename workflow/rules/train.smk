# Training (docs/training.md): a subject-level split per seed, the prior's grid search on the selection
# seed with automatic boundary extension (a checkpoint per selection round), then the baseline and the
# prior model for every seed, and every study arm (config `arms:`) for every seed with the prior's values
# (an arm's own radius / sigma where it sets them; none for an arm with prior.enabled false).
# Params carry the config as JSON blocks: the baseline's block holds no prior value, so changing the prior
# reruns only the prior's jobs (and the arms') and what follows them; an arm's training block is the shared
# one merged with that arm's settings alone, so editing one arm reruns only that arm.
import sys

from osteoloc.train.grid import (
    NO_PRIOR_POINT,
    final_round,
    grid_jobs_preview,
    grid_points,
    point_id,
    round_point_ids,
    trained_points,
)
from osteoloc.train.settings import training_block

TRAIN = config["train"]
PRIOR = TRAIN["prior"]
SELECTION_SEED = int(config["study"]["selection_seed"])
STUDY_H5 = results("preprocess", "study.h5")
SELECT_BY_GRID = PRIOR["select"] == "grid"

# What every run shares (the prior's values are added per job, never here), with the paper's two models' arm
# keys (an arm's own replace them in `run_training`).
TRAINING = training_block(config) | reference_arm_settings()
TENSORBOARD = TRAIN["logger"] == "tensorboard"
TRAIN_THREADS = TRAIN["resources"]["threads"]
TRAIN_RESOURCES = job_resources(TRAIN["resources"])
# Each run's fixed prior values (select: fixed): the prior's, with an arm's own radius / sigma where it sets one.
FIXED_PRIOR = {"prior": {axis: PRIOR[axis] for axis in ("lambda", "radius", "sigma")}}
FIXED_PRIOR |= arm_prior_values(config["arms"], FIXED_PRIOR["prior"])
if SELECT_BY_GRID and any(v != FIXED_PRIOR["prior"] for v in FIXED_PRIOR.values()):
    raise ValueError(
        "arms: an arm's own prior.radius or prior.sigma needs train.prior.select: fixed"
    )
GRID_STEPS = {axis: PRIOR["steps"][axis] for axis in ("lambda", "radius", "sigma")}
FIRST_GRID = [
    point_id(p)
    for p in grid_points(
        PRIOR["grid"]["lambda"], PRIOR["grid"]["radius"], PRIOR["grid"]["sigma"]
    )
]

# Every run (a dry run too) says how many grid-point jobs the first round will run: a dry run lists them, but
# not the extension rounds' points behind the select_prior_round checkpoint, nor the cost of a grid change.
if SELECT_BY_GRID and workflow.is_main_process:
    print(
        grid_jobs_preview(
            FIRST_GRID, trained_points(results("grid")), PRIOR["max_rounds"]
        ),
        file=sys.stderr,
    )


wildcard_constraints:
    point=r"lam[^_/]+_r[^_/]+_sig[^_/]+",
    round=r"\d+",


def grid_file(name, point="{point}"):
    """A grid point's run file (contracts.md section 4)."""
    return results("grid", point, name)


def _round_record(index):
    """The JSON of selection round `index` (raises Snakemake's 'checkpoint not done yet' until it is)."""
    with open(checkpoints.select_prior_round.get(round=index).output[0]) as f:
        return json.load(f)


def round_points(wildcards):
    """Histories of every point selection round `round` compares: the grid, plus each extension so far."""
    points = round_point_ids(int(wildcards.round), FIRST_GRID, _round_record)
    return [grid_file("history.csv", p) for p in points]


def all_rounds(wildcards):
    last, _ = final_round(_round_record)
    return [results("grid", "rounds", f"round{i}.json") for i in range(last + 1)]


def grid_histories(wildcards):
    _, record = final_round(_round_record)
    return [grid_file("history.csv", p) for p in record["losses"]]


def train_inputs(wildcards):
    inputs = {
        "h5": STUDY_H5,
        "split": results("splits", f"seed{wildcards.seed}.csv"),
        "code": library_code("train.py"),
    }
    if (
        wildcards.model not in ["baseline", *NO_PRIOR_ARMS] and SELECT_BY_GRID
    ):  # the prior and its arms
        inputs["selection"] = results("grid", "selection.json")
        if (
            wildcards.model == "prior" and int(wildcards.seed) == SELECTION_SEED
        ):  # the chosen grid point's run is this very run
            chosen = final_round(_round_record)[1]["best"]
            inputs["grid_best"] = grid_file("best.pt", chosen)
            inputs["grid_history"] = grid_file("history.csv", chosen)
    return inputs


def run_training(wildcards):
    """The training block of a per-seed run: the shared one, merged with the arm's settings for an arm."""
    return as_json({**TRAINING, **ARMS.get(wildcards.model, {})})


def run_runtime(wildcards):
    """A per-target arm trains four models in sequence: four times the wall time."""
    arm = ARMS.get(wildcards.model, {})
    return TRAIN_RESOURCES["runtime"] * (4 if arm.get("per_target") else 1)


def run_point(wildcards):
    """The prior's values of a per-seed run as a grid point id (`point_id`): zeros (NO_PRIOR_POINT) for the
    baseline and the arms without the prior; for the prior and every other arm the config's fixed values, or
    "" when the grid chooses them (input `selection`, whose point the job reads).
    """
    if wildcards.model in ["baseline", *NO_PRIOR_ARMS]:
        return NO_PRIOR_POINT
    if SELECT_BY_GRID:
        return ""
    return point_id(FIXED_PRIOR.get(wildcards.model, FIXED_PRIOR["prior"]))


rule split:
    input:
        h5=STUDY_H5,
        user_split=TRAIN["split"]["file"] or [],
        code=library_code("split.py"),
    output:
        results("splits", "seed{seed}.csv"),
    params:
        fractions=as_json([TRAIN["split"][k] for k in ("train", "val", "test")]),
        seed=lambda wildcards: int(wildcards.seed),
        test_seed=TRAIN["split"]["test_seed"],
    log:
        log_path("split", "seed{seed}.log"),
    localrule: True
    script:
        "../../scripts/split.py"


rule train_grid_point:
    input:
        h5=STUDY_H5,
        split=results("splits", f"seed{SELECTION_SEED}.csv"),
        code=library_code("train.py"),
    output:
        history=grid_file("history.csv"),
        best=grid_file("best.pt"),
    params:
        training=as_json(TRAINING),
        seed=SELECTION_SEED,
        point=lambda wildcards: wildcards.point,
        # resumable checkpoint: not an output, so a killed job's cleanup keeps it
        last=grid_file("last.pt"),
        # TensorBoard's event files (train.logger): not an output either, a rerun appends to them
        tensorboard=grid_file("tensorboard") if TENSORBOARD else "",
    log:
        log_path("grid", "{point}.log"),
    threads: TRAIN_THREADS
    resources:
        **TRAIN_RESOURCES,
    # before the baselines when both wait for a core: the grid's rounds, then the prior's seeds, are the
    # study's longest chain of jobs
    priority: 10
    script:
        "../../scripts/train.py"


checkpoint select_prior_round:
    input:
        histories=round_points,
        code=library_code("select_prior_round.py"),
    output:
        results("grid", "rounds", "round{round}.json"),
    params:
        criterion=PRIOR["criterion"],
        steps=as_json(GRID_STEPS),
        max_rounds=PRIOR["max_rounds"],
        round=lambda wildcards: int(wildcards.round),
    log:
        log_path("grid", "round{round}.log"),
    localrule: True
    script:
        "../../scripts/select_prior_round.py"


rule select_prior:
    input:
        rounds=all_rounds,
        code=library_code("select_prior.py"),
    output:
        results("grid", "selection.json"),
    params:
        criterion=PRIOR["criterion"],
    log:
        log_path("grid", "selection.log"),
    localrule: True
    script:
        "../../scripts/select_prior.py"


rule train:
    input:
        unpack(train_inputs),
    output:
        history=report(
            train_file("history.csv"),
            caption="../report/train_history.rst",
            category="Training",
            labels={"model": "{model}", "seed": "{seed}"},
        ),
        best=train_file("best.pt"),
    params:
        training=run_training,
        seed=lambda wildcards: int(wildcards.seed),
        point=run_point,
        last=train_file("last.pt"),
        tensorboard=train_file("tensorboard") if TENSORBOARD else "",
    log:
        log_path("train", "{model}", "seed{seed}.log"),
    threads: TRAIN_THREADS
    resources:
        mem_mb=TRAIN_RESOURCES["mem_mb"],
        runtime=run_runtime,
        gpu=TRAIN_RESOURCES["gpu"],
    script:
        "../../scripts/train.py"


rule figure_grid:
    input:
        selection=results("grid", "selection.json"),
        histories=grid_histories,
        code=library_code("figure_grid.py"),
    output:
        **report_outputs(
            "figures",
            {"figureA1": {"figure": "A1", "content": "prior grid search"}},
            "Figures",
            subcategory="Appendix",
        ),
    log:
        log_path("report", "figureA1.log"),
    localrule: True
    script:
        "../../scripts/figure_grid.py"


ALL_TARGETS.extend(
    train_file(name, model, seed)
    for model in RUNS
    for seed in SEEDS
    for name in ("best.pt", "history.csv")
)
if SELECT_BY_GRID:
    ALL_TARGETS.extend(
        [
            results("grid", "selection.json"),
            results("report", "figures", "figureA1.png"),
        ]
    )
