"""Rule report_figures: Figures 2-6, A2 and the reliability diagrams."""

import json

from osteoloc.report.stages import report_figures
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: report_figures(  # noqa: F821
    smk.params.runs, smk.input.predictions, smk.input.metrics, smk.input.study,
    {"baseline": smk.input.maps_baseline, "prior": smk.input.maps_prior},
    selection_seed=smk.params.selection_seed, calibration_bins=smk.params.calibration_bins,
    figure_paths=smk.output, **json.loads(smk.params.format)))
