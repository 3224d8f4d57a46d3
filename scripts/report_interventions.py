"""Rule report_interventions: the per-arm summary of every run's interventions and its figure."""

import json

from osteoloc.report.stages import report_interventions
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: report_interventions(  # noqa: F821
    json.loads(smk.params.runs), smk.input.effects, arms=json.loads(smk.params.arms),
    width_in=smk.params.width_in, table_path=smk.output.interventions, figure_path=smk.output.interventions_figure,
    n_boot=smk.params.n_boot, boot_seed=smk.params.boot_seed))
