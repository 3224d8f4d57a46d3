"""Rule `preprocess_twin`: the phantom's counterfactual twins -> study_twin.h5 (+ its exclusions)."""

import json

from osteoloc.preprocess.stages import preprocess_twin
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: preprocess_twin(  # noqa: F821
    dict(smk.input.items()), json.loads(smk.params.settings), smk.output.study, smk.output.exclusions))
