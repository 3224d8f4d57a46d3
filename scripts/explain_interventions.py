"""Rule explain_interventions: how far one model's maps follow the phantom's moved and removed lesions on its
test radiographs (the split's intervention crops)."""

import json

from osteoloc.explain.stages import explain_interventions
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: explain_interventions(  # noqa: F821
    smk.input.crops, smk.input.checkpoint, groups=json.loads(smk.params.groups), peak=smk.params.peak,
    device=smk.params.device, out_path=smk.output.effects, study_path=smk.input.study))
