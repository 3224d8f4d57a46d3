"""Statistics of paper A and beyond: paired Wilcoxon tests (image level and seed level), the paired DeLong
test of two AUCs, calibration (ECE, reliability bins) and the label co-occurrence matrix.

Differences are always prior minus baseline; lower is better for every localisation metric.
"""

import numpy as np
import pandas as pd
from scipy import stats

from osteoloc.names import MODELS, TARGETS

EXACT_MAX_N = 50  # scipy's own threshold for the exact signed-rank distribution (no ties, no zeros)
SIGN_FLIP_MAX_N = 16  # exact sign-flip enumeration with ties or zeros: 2^16 statistics, well under a second

SEED_LEVEL_COLUMNS = ["seed", "metric", "target", "baseline_mean", "prior_mean"]
SEED_LEVEL_TABLE_COLUMNS = ["metric", "target", "n_runs", "baseline_mean", "prior_mean", "mean_diff",
                            "improved", "W", "p"]


def paired_wilcoxon(baseline, prior):
    """Two-sided Wilcoxon signed-rank test of prior - baseline over complete pairs.

    Zero differences are dropped before ranking (Wilcoxon's method, scipy's zero_method="wilcox"); tied
    absolute differences get midranks. The p-value is exact while it is cheap: scipy's exact signed-rank
    distribution when no difference is zero or tied and n <= EXACT_MAX_N (50); otherwise, with
    m <= SIGN_FLIP_MAX_N (16) non-zero differences, the exact permutation distribution over all 2^m sign
    flips of the non-zero differences (so 13 of 13 improved gives p = 2 / 2^13 whatever the ties); beyond
    that the normal approximation with tie correction, no continuity correction.
    Returns (n_pairs, W, p); n_pairs counts zero differences too; W = min(W+, W-). NaNs when no pair
    differs.
    """
    baseline = np.asarray(baseline, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    keep = np.isfinite(baseline) & np.isfinite(prior)
    diff = prior[keep] - baseline[keep]
    n = int(keep.sum())
    nonzero = diff[diff != 0]
    if len(nonzero) == 0:
        return n, float("nan"), float("nan")
    ties = len(np.unique(np.abs(nonzero))) < len(nonzero)
    if len(nonzero) == len(diff) and not ties and n <= EXACT_MAX_N:
        result = stats.wilcoxon(diff, alternative="two-sided", method="exact")
        return n, float(result.statistic), float(result.pvalue)
    if len(nonzero) <= SIGN_FLIP_MAX_N:
        return (n, *_sign_flip_wilcoxon(nonzero))
    result = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided", method="asymptotic")
    return n, float(result.statistic), float(result.pvalue)


def _sign_flip_wilcoxon(nonzero):
    """(W, two-sided p) over every sign flip of the non-zero differences: the exact null distribution of
    W+ (sum of the midranks of |d| where d > 0) also when |d| ties, by scipy's permutation_test."""
    if len(nonzero) == 1:  # W+ is 0 or 1 with probability 1/2 each (scipy needs two observations)
        return 0.0, 1.0
    ranks = stats.rankdata(np.abs(nonzero))  # a sign flip leaves |d| and so the ranks unchanged

    def w_plus(d, axis):
        return np.sum(ranks * (d > 0), axis=axis)

    result = stats.permutation_test((nonzero,), w_plus, permutation_type="samples", vectorized=True,
                                    n_resamples=np.inf, alternative="two-sided")
    w = min(result.statistic, ranks.sum() - result.statistic)
    return float(w), float(result.pvalue)


def image_level_table(metrics, metric_names=("com_distance", "peak_distance", "spread")):
    """Table 1: per metric and target, paired over the images both models explain.

    metrics: long frame with columns model, row, target and the metric columns (one seed, positives only).
    """
    rows = []
    for metric in metric_names:
        for target in TARGETS:
            part = metrics[metrics["target"] == target]
            wide = part.pivot_table(index="row", columns="model", values=metric, aggfunc="first")
            wide = wide.reindex(columns=list(MODELS)).dropna()
            n, w, p = paired_wilcoxon(wide["baseline"], wide["prior"])
            rows.append({"metric": metric, "target": target, "n": n,
                         "baseline_mean": wide["baseline"].mean(), "baseline_sd": wide["baseline"].std(),
                         "prior_mean": wide["prior"].mean(), "prior_sd": wide["prior"].std(),
                         "mean_diff": (wide["prior"] - wide["baseline"]).mean(), "W": w, "p": p})
    return pd.DataFrame(rows)


def seed_level_table(df):
    """Table A1 from a frame with columns seed, metric, target, baseline_mean, prior_mean (one row per run).

    Per metric and target: n_runs, the mean over runs of each model's mean, mean_diff (prior - baseline),
    improved (runs with prior < baseline), Wilcoxon W and two-sided p over runs. With 13 of 13 improved the
    exact test gives W = 0 and p = 2 / 2^13.
    """
    missing = [c for c in SEED_LEVEL_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"seed-level input lacks columns {missing}; needs {SEED_LEVEL_COLUMNS}")
    duplicated = df.duplicated(["seed", "metric", "target"])
    if duplicated.any():
        raise ValueError(f"seed-level input has {int(duplicated.sum())} repeated (seed, metric, target) rows")
    rows = []
    for (metric, target), part in df.groupby(["metric", "target"], sort=False):
        part = part.dropna(subset=["baseline_mean", "prior_mean"])
        n, w, p = paired_wilcoxon(part["baseline_mean"], part["prior_mean"])
        rows.append({"metric": metric, "target": target, "n_runs": n,
                     "baseline_mean": part["baseline_mean"].mean(), "prior_mean": part["prior_mean"].mean(),
                     "mean_diff": (part["prior_mean"] - part["baseline_mean"]).mean(),
                     "improved": int((part["prior_mean"] < part["baseline_mean"]).sum()), "W": w, "p": p})
    return pd.DataFrame(rows, columns=SEED_LEVEL_TABLE_COLUMNS)


# --- paired DeLong test (DeLong et al. 1988; fast algorithm of Sun & Xu, IEEE SPL 21(11), 2014) ---

def _midranks(x):
    """Midranks (1-based, ties averaged) of a 1-D array, O(n log n)."""
    return stats.rankdata(x, method="average")


def delong_covariance(labels, scores):
    """AUCs and their DeLong covariance matrix for k score vectors on the same cases.

    labels: (n,) 0/1; scores: (k, n). Returns aucs (k,), covariance (k, k).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positives, negatives = scores[:, labels], scores[:, ~labels]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least two positives and two negatives, got {m} and {n}")
    k = scores.shape[0]
    tx = np.stack([_midranks(positives[r]) for r in range(k)])
    ty = np.stack([_midranks(negatives[r]) for r in range(k)])
    tz = np.stack([_midranks(np.concatenate([positives[r], negatives[r]])) for r in range(k)])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n          # structural components of the positives
    v10 = 1.0 - (tz[:, m:] - ty) / m    # ... and of the negatives
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    return aucs, cov


def delong_test(labels, scores_a, scores_b):
    """Paired two-sided DeLong test of AUC(b) - AUC(a). Returns dict auc_a, auc_b, diff, se, z, p."""
    aucs, cov = delong_covariance(labels, np.vstack([scores_a, scores_b]))
    diff = aucs[1] - aucs[0]
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if variance <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-15 else (np.inf * np.sign(diff), 0.0)
    else:
        z = diff / np.sqrt(variance)
        p = 2 * stats.norm.sf(abs(z))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": float(diff),
            "se": float(np.sqrt(max(variance, 0.0))), "z": float(z), "p": float(p)}


# --- calibration ---

def reliability_bins(labels, probs, n_bins=10):
    """Equal-width probability bins: lower, upper, n, mean_prob, fraction_positive (last bin closed)."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = index == b
        rows.append({"bin": b, "lower": edges[b], "upper": edges[b + 1], "n": int(inside.sum()),
                     "mean_prob": probs[inside].mean() if inside.any() else np.nan,
                     "fraction_positive": labels[inside].mean() if inside.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(labels, probs, n_bins=10):
    """ECE = sum_b (n_b / N) |fraction_positive_b - mean_prob_b| over equal-width bins."""
    bins = reliability_bins(labels, probs, n_bins)
    filled = bins[bins["n"] > 0]
    return float((filled["n"] * (filled["fraction_positive"] - filled["mean_prob"]).abs()).sum()
                 / filled["n"].sum())


def label_correlation(labels):
    """Pearson correlation of the binary labels (n, 4), pairwise over hips where both are known (-1 = unknown)."""
    frame = pd.DataFrame(np.asarray(labels, dtype=np.float64), columns=list(TARGETS))
    return frame.where(frame >= 0).corr(method="pearson")
