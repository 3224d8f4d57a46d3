"""Checkpoint `bonefinder_plan`: which manifest rows each bonefinder_shard job takes."""

from osteoloc.cohort.stages import write_bonefinder_plan
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: write_bonefinder_plan(  # noqa: F821
    smk.input.manifest, smk.params.shard_size, smk.output.plan))
