"""Rules bonefinder_shard (the configured BoneFinder command on one shard of the manifest) and bonefinder
(the shards' manifests as one)."""

from osteoloc.cohort.bonefinder import gather_bonefinder, run_bonefinder_shard
from osteoloc.runner import run_script


def main(smk):
    if smk.rule == "bonefinder_shard":
        return run_bonefinder_shard(smk.input.manifest, smk.params.command, smk.output.manifest,
                                    int(smk.wildcards.shard), smk.params.shard_size)
    return gather_bonefinder(smk.input.manifests, smk.output.manifest)


run_script(snakemake, main)  # noqa: F821
