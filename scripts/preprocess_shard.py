"""Rule `preprocess_shard`: one shard of the plan -> its crops, its units table and its own exclusions."""

import json
from pathlib import Path

from osteoloc.preprocess.stages import preprocess_shard
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: preprocess_shard(  # noqa: F821
    smk.params.source, dict(smk.input.items()), json.loads(smk.params.settings), smk.input.plan,
    int(smk.wildcards.shard), Path(smk.output.crops).parent, content=smk.params.content))
