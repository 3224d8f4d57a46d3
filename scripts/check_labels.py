"""Rule `check_labels`: the label table read as the preprocessing reads it, before BoneFinder runs."""

import json

from osteoloc.cohort.stages import check_labels
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: check_labels(  # noqa: F821
    smk.input.labels, json.loads(smk.params.labels), smk.output.table))
