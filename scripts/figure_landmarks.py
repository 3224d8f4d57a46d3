"""Rule `figure_landmarks`: Figure 1 (a right and a left hip with contour and target groups)."""

import json

from osteoloc.report.stages import figure_landmarks_stage
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: figure_landmarks_stage(  # noqa: F821
    smk.input.study, smk.output.png, rows=json.loads(smk.params.rows)))
