"""Rule intervention_crops: the phantom's test radiographs of one split redrawn with each lesion removed or
moved, cropped once for every run of that split."""

import json

from osteoloc.explain.stages import render_intervention_crops
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: render_intervention_crops(  # noqa: F821
    smk.input.study, smk.input.split, phantom_config=json.loads(smk.params.phantom),
    shifts_mm=smk.params.shifts_mm, radiographs=smk.params.radiographs,
    directions=smk.params.directions, out_path=smk.output.crops))
