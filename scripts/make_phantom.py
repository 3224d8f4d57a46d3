"""Rules phantom_shard (one shard of subjects into its folder) and phantom_cohort (gather the shards)."""

import json
from pathlib import Path

from osteoloc.cohort.phantom.cohort import gather_shards, make_shard
from osteoloc.runner import run_script


def main(smk):
    config = json.loads(smk.params.phantom)
    if smk.rule == "phantom_shard":
        make_shard(config, int(smk.wildcards.shard), smk.output.shard)
    else:
        gather_shards(config, list(smk.input.shards), Path(smk.output.manifest).parent)


run_script(snakemake, main)  # noqa: F821
