"""Rule bonefinder_shard: the configured BoneFinder command on one shard of the manifest."""

from osteoloc.cohort.stages import run_bonefinder_shard
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: run_bonefinder_shard(  # noqa: F821
    smk.input.manifest, smk.params.command, smk.output.manifest, smk.output.points, int(smk.wildcards.shard),
    smk.params.shard_size))
