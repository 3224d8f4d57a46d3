"""Rule `split`: the subject-level split of one seed (or the user's split file, checked)."""

import json

from osteoloc.runner import run_script
from osteoloc.train.stages import split_stage

run_script(snakemake, lambda smk: split_stage(  # noqa: F821
    smk.input.h5, smk.output[0], user_split=smk.input.get("user_split"),
    fractions=json.loads(smk.params.fractions), seed=smk.params.seed,
    test_seed=smk.params.test_seed))
