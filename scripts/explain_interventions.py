"""Rule explain_interventions: how far one model's maps follow the phantom's moved and removed lesions on its
test radiographs."""

import json

from osteoloc.explain.interventions import explain_interventions
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: explain_interventions(  # noqa: F821
    smk.input.study, smk.input.split, smk.input.checkpoint, phantom_config=json.loads(smk.params.phantom),
    groups=json.loads(smk.params.groups), shifts_mm=smk.params.shifts_mm, radiographs=smk.params.radiographs,
    peak=smk.params.peak, device=smk.params.device, out_path=smk.output.effects))
