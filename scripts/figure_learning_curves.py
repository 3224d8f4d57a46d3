"""Rule `figure_learning_curves`: one training run's losses and validation AUCs per epoch."""

from osteoloc.report.figure_curves import learning_curves_stage
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: learning_curves_stage(  # noqa: F821
    smk.input.history, smk.wildcards.model, smk.wildcards.seed, smk.output.png))
