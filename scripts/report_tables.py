"""Rule report_tables: Tables 1, 2, A1, A2, AUC (DeLong), calibration, true, calibrated and stratified
localisation."""

import json

from osteoloc.runner import run_script
from osteoloc.report.stages import report_tables

run_script(snakemake, lambda smk: report_tables(  # noqa: F821
    smk.params.runs, smk.input.predictions, smk.input.metrics, smk.input.study,
    selection_seed=smk.params.selection_seed, calibration_bins=smk.params.calibration_bins,
    n_boot=smk.params.n_boot, boot_seed=smk.params.boot_seed, strata_mm=smk.params.strata_mm,
    table_paths=smk.output, seed_input_path=smk.output.seed_level_input, **json.loads(smk.params.format)))
