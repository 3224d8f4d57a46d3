"""Rule report_ablation: the ablation table (every arm against prior, or the arm report.comparisons names,
paired over seeds) and its forest plot."""

import json

from osteoloc.report.stages import report_ablation
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: report_ablation(  # noqa: F821
    json.loads(smk.params.runs), smk.input.predictions, smk.input.metrics, smk.input.twin_predictions,
    arms=json.loads(smk.params.arms), decimals=smk.params.decimals, width_in=smk.params.width_in,
    table_path=smk.output.ablation, figure_path=smk.output.ablation_forest,
    statistics=json.loads(smk.params.statistics), comparisons=json.loads(smk.params.comparisons),
    lesion_placement=smk.params.lesion_placement, effects_paths=smk.input.effects))
