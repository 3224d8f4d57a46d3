"""Rule explain: predictions, Grad-CAM maps and localisation metrics of one model on its test split."""

import logging

import torch

from osteoloc.explain import explain_run
from osteoloc.io.atomic import write_csv

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
torch.set_num_threads(snakemake.threads)  # noqa: F821
torch.manual_seed(0)
params = snakemake.params  # noqa: F821
try:
    inputs, outputs = snakemake.input, snakemake.output  # noqa: F821
    run = explain_run(inputs.study, inputs.split, inputs.checkpoint, outputs.maps,
                      batch_size=params.batch_size, pointing_tolerance_px=params.pointing_tolerance_px,
                      device=params.device)
    write_csv(run["predictions"], outputs.predictions)
    write_csv(run["metrics"], outputs.metrics, float_format="%.6g")
    logging.info("explained %d test hips of %s", len(run["rows"]), inputs.checkpoint)
except Exception:
    logging.exception("explain failed")
    raise
