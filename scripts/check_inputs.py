"""Rule `check_inputs`: manifest, labels, DICOM headers and .pts files checked before any preprocessing job."""

import json

from osteoloc.preprocess.stages import check_inputs
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: check_inputs(  # noqa: F821
    smk.params.source, dict(smk.input.items()), json.loads(smk.params.settings), smk.output.table))
