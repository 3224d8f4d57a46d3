"""Checkpoint select_prior_round: one selection over the grid points tried so far, naming the extension points."""

import json

from osteoloc.runner import run_script
from osteoloc.train.stages import select_round_stage

run_script(snakemake, lambda smk: select_round_stage(  # noqa: F821
    smk.input.histories, smk.params.criterion, json.loads(smk.params.steps), smk.params.round,
    smk.params.max_rounds, smk.output[0]))
