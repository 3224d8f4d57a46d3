"""The external evaluation of an apply run, where the new cohort has labels (docs/apply.md): AUC with a
bootstrap interval per target, model and seed (and the seed ensemble), the study's calibration and true
localisation tables, and the reliability diagram, each marked `evaluation = external`.

The tables are the study report's (`report.tables`: CSV, Markdown and LaTeX by `write_table`); the AUC is
sklearn's over the hips with a known label (-1 = unknown is left out). Its interval resamples subjects with
replacement (both hips of a subject together, as the study's bootstraps do); a resample without both classes
has no AUC and is left out, and `n_boot_defined` says how many were used (`report.stats.auc_interval`).
"""

import pandas as pd

from osteoloc.apply.ensemble import ENSEMBLE
from osteoloc.names import TARGETS
from osteoloc.report.figures import figure_reliability
from osteoloc.report.stats import auc_interval
from osteoloc.report.tables import calibration_table, true_localisation_table, write_table

EXTERNAL = "external"
AUC_COLUMNS = ["evaluation", "target", "model", "seed", "n_pos", "n_neg", "auc", "ci_low", "ci_high",
               "n_boot_defined"]
def auc_table(probabilities, ensemble, n_boot, boot_seed):
    """Per target, model and seed (then seed `ensemble`, the seed mean): n_pos, n_neg, AUC and interval."""
    per_seed = probabilities.assign(seed=probabilities["seed"].astype(str))
    pooled = ensemble.rename(columns={"mean": "prob"}).assign(seed=ENSEMBLE)
    columns = ["subject", "target", "label", "prob", "model", "seed"]
    frame = pd.concat([per_seed[columns], pooled[columns]], ignore_index=True)
    frame = frame[frame["label"] >= 0]
    rows = []
    for (target, model, seed), part in frame.groupby(["target", "model", "seed"], sort=False):
        auc, low, high, defined = auc_interval(part["label"], part["prob"], part["subject"], n_boot, boot_seed)
        rows.append({"evaluation": EXTERNAL, "target": target, "model": model, "seed": seed,
                     "n_pos": int((part["label"] == 1).sum()), "n_neg": int((part["label"] == 0).sum()),
                     "auc": auc, "ci_low": low, "ci_high": high, "n_boot_defined": defined})
    table = pd.DataFrame(rows, columns=AUC_COLUMNS)
    order = {t: i for i, t in enumerate(TARGETS)}
    return table.sort_values("target", key=lambda s: s.map(order), kind="stable", ignore_index=True)


def external(table):
    """`table` with `evaluation = external` as its first column."""
    return table.assign(evaluation=EXTERNAL)[["evaluation", *[c for c in table.columns if c != "evaluation"]]]


def evaluate(probabilities, metrics, ensemble, *, n_boot, boot_seed, calibration_bins, decimals, width_in,
             table_stems, figure_stem):
    """Write the external AUC, calibration and true localisation tables (`table_stems`: {"auc",
    "calibration", "localisation"} -> path stem) and the reliability diagram (`figure_stem`). Returns the
    tables."""
    tables = {"auc": auc_table(probabilities, ensemble, n_boot, boot_seed),
              "calibration": external(calibration_table(probabilities, calibration_bins)
                                      if (probabilities["label"] >= 0).any() else
                                      pd.DataFrame(columns=["seed", "model", "target", "n", "ece"])),
              "localisation": external(true_localisation_table(metrics))}
    for name, table in tables.items():
        write_table(table, table_stems[name], decimals, caption=f"{name} on an external cohort")
    figure_reliability(probabilities, calibration_bins, figure_stem, width_in)
    return tables
