"""Rule bonefinder: the BoneFinder shards' manifests as one."""

from osteoloc.cohort.stages import gather_bonefinder
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: gather_bonefinder(smk.input.manifests, smk.output.manifest))  # noqa: F821
