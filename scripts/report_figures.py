"""Rule report_figures: Figures 2-6, A2 and the reliability diagrams."""

import json
import logging
from pathlib import Path

from osteoloc.explain import read_all_runs
from osteoloc.figures.paper import build_figures

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
inputs, outputs, params = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
try:
    predictions, metrics = read_all_runs(params.runs, inputs.predictions, inputs.metrics)
    options = json.loads(params.format)
    cases = build_figures(predictions, metrics, inputs.study,
                          {"baseline": inputs.maps_baseline, "prior": inputs.maps_prior},
                          params.selection_seed, Path(outputs.figure2).parent, width_in=options["width_in"],
                          case_threshold=options["case_threshold"], figure5_row_index=options["figure5_row"],
                          n_bins=params.calibration_bins)
    for case in cases:
        logging.info("figure 6 case %s: %s%s", case.key, case.rule, " (fallback)" if case.fallback else "")
except Exception:
    logging.exception("report_figures failed")
    raise
