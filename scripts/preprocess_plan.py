"""Checkpoint `preprocess_plan`: which units (manifest rows, group scans) each preprocess_shard job takes."""

from osteoloc.preprocess.stages import write_shard_plan
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: write_shard_plan(  # noqa: F821
    smk.params.source, dict(smk.input.items()), smk.params.shard_size, smk.output.plan))
