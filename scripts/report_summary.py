"""Rule report_summary: the study's key numbers and its exclusions in Markdown."""

import json
import logging

import pandas as pd

from osteoloc.explain import read_runs, study_labels
from osteoloc.io.atomic import write_text
from osteoloc.tables import summary_markdown

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
inputs, params = snakemake.input, snakemake.params  # noqa: F821
try:
    tables = {"tableA1": pd.read_csv(inputs.tableA1),
              "auc": pd.read_csv(inputs.auc, dtype={"seed": str}),
              "true_localisation": pd.read_csv(inputs.true_localisation)}
    exclusions = pd.read_csv(inputs.exclusions, dtype=str, keep_default_na=False)
    n_hips = len(study_labels(inputs.study))
    runs = [tuple(run) for run in json.loads(params.runs)]
    metrics = read_runs(dict(zip(runs, inputs.metrics)), "metrics")
    text = summary_markdown(params.study_name, tables, exclusions, n_hips, json.loads(params.seeds), metrics)
    write_text(text, snakemake.output.summary)  # noqa: F821
except Exception:
    logging.exception("report_summary failed")
    raise
