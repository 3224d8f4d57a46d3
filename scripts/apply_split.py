"""Rule apply_split: every subject of the new cohort in the test split (the split the explain stage scores)."""

from osteoloc.apply.stages import whole_cohort_split
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: whole_cohort_split(smk.input.study, smk.output.split))  # noqa: F821
