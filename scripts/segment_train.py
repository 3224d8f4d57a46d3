"""Rule segment_train: one site's U-Net, best validation epoch kept (paper B)."""

import json
import logging

import torch

from osteoloc.segment.stages import train_site

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
torch.set_num_threads(snakemake.threads)  # noqa: F821
try:
    train_site(snakemake.input.patches, json.loads(snakemake.params.cfg), snakemake.params.seed,  # noqa: F821
               snakemake.params.device, snakemake.output.model, snakemake.output.history)  # noqa: F821
except Exception:
    logging.exception("segment_train failed")
    raise
