"""Rules `train_grid_point` and `train`: one ResNet-18 run (baseline, a grid point, the prior or an arm)."""

from osteoloc.runner import run_script
from osteoloc.train.stages import train_stage

run_script(snakemake, lambda smk: train_stage(  # noqa: F821
    smk.input.h5, smk.input.split, smk.params.training, smk.params.seed, smk.params.point,
    selection_path=smk.input.get("selection"), history_path=smk.output.history, best_path=smk.output.best,
    last_path=smk.params.last, reuse_best=smk.input.get("grid_best"), reuse_history=smk.input.get("grid_history"),
    tensorboard_dir=smk.params.tensorboard))
