"""Rules `train_grid_point` and `train`: one ResNet-18 run (baseline, a grid point, or the selected prior)."""

from osteoloc.train.grid import prior_values
from osteoloc.runner import run_script
from osteoloc.train.loop import TrainSettings, train_run


def main(smk):
    prior = prior_values(smk.params.point, smk.input.get("selection"), smk.params.prior)
    settings = TrainSettings.for_run(smk.params.training, smk.params.seed, prior)
    # The prior run of the selection seed is the chosen grid point's run: copied rather than trained again.
    reuse = (smk.input.grid_best, smk.input.grid_history) if smk.input.get("grid_best") else None
    train_run(smk.input.h5, smk.input.split, settings, history_path=smk.output.history,
              best_path=smk.output.best, last_path=smk.params.last, reuse=reuse,
              tensorboard_dir=smk.params.tensorboard)


run_script(snakemake, main)  # noqa: F821
