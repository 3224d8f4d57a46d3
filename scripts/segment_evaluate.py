"""Rule segment_evaluate: one site's test predictions, per-patch metrics and Table-2 row (paper B)."""

import json
import logging

import torch

from osteoloc.segment.stages import evaluate_site

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
torch.set_num_threads(snakemake.threads)  # noqa: F821
out = snakemake.output  # noqa: F821
try:
    evaluate_site(snakemake.input.patches, snakemake.input.model, snakemake.wildcards.site,  # noqa: F821
                  json.loads(snakemake.params.cfg), snakemake.params.device,  # noqa: F821
                  out.predictions, out.metrics, out.summary)
except Exception:
    logging.exception("segment_evaluate failed")
    raise
