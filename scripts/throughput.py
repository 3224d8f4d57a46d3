"""Rule `throughput`: training and explain images per second of the study's runs, and what they ran on."""

from osteoloc.report.stages import write_throughput
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: write_throughput(  # noqa: F821
    smk.params.runs, smk.input.best, smk.input.predictions, smk.input.benchmarks, smk.output[0]))
