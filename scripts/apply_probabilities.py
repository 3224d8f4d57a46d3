"""Rule apply_probabilities: every model's probability per seed, and the seed ensemble per hip and target."""

from osteoloc.apply.stages import apply_probabilities
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: apply_probabilities(  # noqa: F821
    smk.params.runs, smk.input.predictions, probabilities_path=smk.output.probabilities,
    ensemble_path=smk.output.ensemble))
