"""The external evaluation of an apply run, where the new cohort has labels (docs/apply.md): AUC with a
bootstrap interval per target, model and seed (and the seed ensemble), the study's calibration and true
localisation tables, and the reliability diagram, each marked `evaluation = external`.

The tables are the study report's (`report.tables`: CSV, Markdown and LaTeX by `write_table`); the AUC is
sklearn's over the hips with a known label (-1 = unknown is left out). Its interval resamples subjects with
replacement (both hips of a subject together, as the study's bootstraps do); a resample without both classes
has no AUC and is left out, and `n_boot_defined` says how many were used.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from osteoloc.apply.ensemble import ENSEMBLE
from osteoloc.names import CONFIDENCE, TARGETS
from osteoloc.report.figures import figure_reliability
from osteoloc.report.tables import calibration_table, true_localisation_table, write_table

EXTERNAL = "external"
AUC_COLUMNS = ["evaluation", "target", "model", "seed", "n_pos", "n_neg", "auc", "ci_low", "ci_high",
               "n_boot_defined"]
BOOT_CHUNK = 100  # resamples scored at once: memory is BOOT_CHUNK x hips weights, whatever n_boot


def resampled_aucs(labels, scores, codes, draws):
    """The AUC of each resample (NaN where it holds one class): `draws` (B, k) cluster indices drawn with
    replacement, `codes` each hip's cluster. A resample weights each hip by how often its cluster was drawn;
    the weighted Mann-Whitney count over the hips sorted once by score (ties count one half) is sklearn's
    AUC of the resample, for every resample at once."""
    n_clusters = codes.max() + 1
    counts = np.stack([np.bincount(row, minlength=n_clusters) for row in draws]).astype(np.float64)
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # one group per distinct score
    weights = counts[:, codes[order]]
    positive = labels[order] == 1
    pos = np.add.reduceat(weights * positive, starts, axis=1)
    neg = np.add.reduceat(weights * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def auc_interval(labels, scores, clusters, n_boot, seed, confidence=CONFIDENCE):
    """(auc, low, high, n defined): sklearn's AUC and its percentile interval from `n_boot` resamples of the
    clusters (subjects); NaN where the hips hold one class only."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return np.nan, np.nan, np.nan, 0
    auc = float(roc_auc_score(labels, scores))
    if n_boot == 0:
        return auc, np.nan, np.nan, 0
    codes, _ = pd.factorize(pd.Series(np.asarray(clusters)), sort=True)
    n_clusters = codes.max() + 1
    rng = np.random.default_rng(seed)
    draws = np.concatenate([resampled_aucs(labels, scores, codes,
                                           rng.integers(0, n_clusters, (min(BOOT_CHUNK, n_boot - done), n_clusters)))
                            for done in range(0, n_boot, BOOT_CHUNK)])
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return auc, np.nan, np.nan, 0
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return auc, float(low), float(high), len(draws)


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
