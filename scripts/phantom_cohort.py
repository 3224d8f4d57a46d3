"""Rule phantom_cohort: the phantom's shards gathered into the cohort folder."""

from pathlib import Path

from osteoloc.cohort.stages import phantom_cohort
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: phantom_cohort(  # noqa: F821
    smk.params.phantom, list(smk.input.shards), Path(smk.output.manifest).parent))
