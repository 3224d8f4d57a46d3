"""Rule bonefinder: run the configured BoneFinder command on every image of the cohort manifest."""

import logging

from osteoloc.bonefinder import run_bonefinder

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
run_bonefinder(snakemake.input.manifest, snakemake.params.command, snakemake.output.manifest)
