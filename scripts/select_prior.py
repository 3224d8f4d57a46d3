"""Rule select_prior: selection.json from every selection round."""

from osteoloc.runner import run_script
from osteoloc.train.stages import select_prior_stage

run_script(snakemake, lambda smk: select_prior_stage(  # noqa: F821
    smk.input.rounds, smk.params.criterion, smk.output[0]))
