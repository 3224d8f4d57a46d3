"""Rule explain: predictions, Grad-CAM maps and localisation metrics of one model on its test split."""

import logging

import torch

from osteoloc.explain import explain_run, write_maps
from osteoloc.io.atomic import write_csv

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
torch.set_num_threads(snakemake.threads)  # noqa: F821
torch.manual_seed(0)
params = snakemake.params  # noqa: F821
try:
    run = explain_run(snakemake.input.study, snakemake.input.split, snakemake.input.checkpoint,  # noqa: F821
                      batch_size=params.batch_size, pointing_tolerance_px=params.pointing_tolerance_px,
                      device=params.device)
    write_csv(run["predictions"], snakemake.output.predictions)  # noqa: F821
    write_csv(run["metrics"], snakemake.output.metrics, float_format="%.6g")  # noqa: F821
    write_maps(snakemake.output.maps, run["maps"], run["rows"])  # noqa: F821
    logging.info("explained %d test hips of %s", len(run["rows"]), snakemake.input.checkpoint)  # noqa: F821
except Exception:
    logging.exception("explain failed")
    raise
