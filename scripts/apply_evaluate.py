"""Rule apply_evaluate: the external AUC, calibration and localisation tables and the reliability diagram."""

from osteoloc.apply.stages import apply_evaluate
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: apply_evaluate(  # noqa: F821
    smk.params.runs, smk.input.probabilities, smk.input.metrics, smk.input.ensemble, n_boot=smk.params.n_boot,
    boot_seed=smk.params.boot_seed, calibration_bins=smk.params.calibration_bins, decimals=smk.params.decimals,
    width_in=smk.params.width_in,
    table_stems={name: smk.output[name] for name in ("auc", "calibration", "localisation")},
    figure_stem=smk.output.reliability))
