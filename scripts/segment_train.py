"""Rule segment_train: one site's U-Net, best validation epoch kept (paper B)."""

import json

import torch  # noqa: F401  (imported before run_script so that it sets torch's thread count)

from osteoloc.runner import run_script
from osteoloc.segment.stages import train_site

run_script(snakemake, lambda smk: train_site(  # noqa: F821
    smk.input.patches, json.loads(smk.params.cfg), smk.params.seed, smk.params.device, smk.output.model,
    smk.output.history, last_path=smk.params.last, deterministic=smk.params.deterministic))
