"""Rule phantom_shard: one shard of the phantom's subjects into its folder."""

from osteoloc.cohort.stages import phantom_shard
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: phantom_shard(  # noqa: F821
    smk.params.phantom, int(smk.wildcards.shard), smk.output.shard))
