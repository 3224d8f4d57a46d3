"""Rule bonefinder: run the configured BoneFinder command on every image of the cohort manifest."""

from osteoloc.bonefinder import run_bonefinder
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: run_bonefinder(smk.input.manifest, smk.params.command,  # noqa: F821
                                                 smk.output.manifest))
