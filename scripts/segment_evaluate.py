"""Rule segment_evaluate: one site's test predictions, per-patch metrics and Table-2 row (paper B)."""

import json

import torch  # noqa: F401  (imported before run_script so that it sets torch's thread count)

from osteoloc.runner import run_script
from osteoloc.segment.stages import evaluate_site

run_script(snakemake, lambda smk: evaluate_site(  # noqa: F821
    smk.input.patches, smk.input.model, smk.wildcards.site, json.loads(smk.params.cfg), smk.params.device,
    smk.output.predictions, smk.output.metrics, smk.output.summary))
