"""Rules `train_grid_point` and `train`: one ResNet-18 run (baseline, a grid point, or the selected prior)."""

import json
import logging
from pathlib import Path

import torch

from osteoloc.grid import parse_point_id
from osteoloc.train import TrainSettings, reuse_run, train_on_study

smk = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
torch.set_num_threads(smk.threads)

# The prior's values: from the grid point's id, the selection, the fixed config block, or none (baseline).
if smk.params.point:
    prior = parse_point_id(smk.params.point)
elif smk.input.get("selection"):
    prior = json.loads(Path(smk.input.selection).read_text())
elif smk.params.prior:
    prior = json.loads(smk.params.prior)
else:
    prior = {"lambda": 0.0, "radius": 0.0, "sigma": 0.0}

settings = TrainSettings(seed=int(smk.params.seed), **json.loads(smk.params.training),
                         prior_lambda=float(prior["lambda"]), prior_radius=float(prior["radius"]),
                         prior_sigma=float(prior["sigma"]))
out_dir = Path(smk.output.best).parent
# The prior run of the selection seed is the chosen grid point's run: copy it rather than train it again.
grid_best = smk.input.get("grid_best")
if not (grid_best and reuse_run(grid_best, smk.input.grid_history, settings, out_dir)):
    train_on_study(smk.input.h5, smk.input.split, settings, out_dir)
