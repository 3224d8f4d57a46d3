"""Rule report_tables: Tables 1, 2, A1, A2, AUC (DeLong), calibration and true localisation."""

import json
import logging
from pathlib import Path

from osteoloc.explain import read_all_runs, study_labels
from osteoloc.tables import build_tables, write_table

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
inputs, outputs, params = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
try:
    predictions, metrics = read_all_runs(params.runs, inputs.predictions, inputs.metrics)
    labels = study_labels(inputs.study)
    tables = build_tables(predictions, metrics, labels, params.selection_seed, params.calibration_bins,
                          outputs.seed_level_input)
    decimals = json.loads(params.format)["decimals"]
    for table_id, table in tables.items():
        write_table(table, Path(outputs[table_id]).with_suffix(""), decimals=decimals)
        logging.info("%s: %d rows", table_id, len(table))
except Exception:
    logging.exception("report_tables failed")
    raise
