"""Rule `figure_learning_curves`: every training run's losses and validation AUCs per epoch."""

import json

from osteoloc.report.stages import learning_curves_stage
from osteoloc.runner import run_script


def main(smk):
    figures = [getattr(smk.output, name) for name in json.loads(smk.params.figures)]  # in the runs' order
    learning_curves_stage(smk.params.runs, smk.input.histories, figures)


run_script(snakemake, main)  # noqa: F821
