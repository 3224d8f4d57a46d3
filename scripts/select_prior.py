"""Rules `select_prior_round` (one selection over the points tried so far, naming the extension points)
and `select_prior` (selection.json from all rounds)."""

import json

from osteoloc.train.grid import select_prior_stage, select_round_stage
from osteoloc.runner import run_script


def main(smk):
    if smk.rule == "select_prior_round":
        select_round_stage(smk.input.histories, smk.params.criterion, json.loads(smk.params.steps),
                           smk.params.round, smk.params.max_rounds, smk.output[0])
    else:
        select_prior_stage(smk.input.rounds, smk.params.criterion, smk.output[0])


run_script(snakemake, main)  # noqa: F821
