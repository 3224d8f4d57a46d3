"""Statistics of paper A and beyond: paired Wilcoxon tests (image level and seed level), the paired DeLong
test of two AUCs, calibration (ECE, reliability bins) and the label co-occurrence matrix; for the arms of a
study, inference that respects hips and seeds: a paired bootstrap over subjects (both hips of a subject
resampled together), a hierarchical bootstrap over seeds and subjects, and Holm's correction.

Paper A's tables take prior minus baseline; the arm comparisons take arm minus reference. Lower is better
for every localisation metric.
"""

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from osteoloc.names import CONFIDENCE, MODELS, TARGETS

EXACT_MAX_N = 50  # scipy's own threshold for the exact signed-rank distribution (no ties, no zeros)
SIGN_FLIP_MAX_N = 16  # exact sign-flip enumeration with ties or zeros: 2^16 statistics, well under a second
PLACE_EPS = 1e-6  # chance and ceiling closer than this: no place (explain.metrics' EPS)

SEED_LEVEL_COLUMNS = ["seed", "metric", "target", "baseline_mean", "prior_mean"]
SEED_LEVEL_TABLE_COLUMNS = ["metric", "target", "n_runs", "baseline_mean", "prior_mean", "mean_diff",
                            "improved", "W", "p"]


def calibrated(value, chance, ceiling):
    """A value's place between chance (0) and ceiling (1): (value - chance) / (ceiling - chance); the
    direction is in the two levels (lower-is-better metrics have ceiling < chance). NaN when they meet."""
    value, chance, ceiling = (np.asarray(v, dtype=np.float64) for v in (value, chance, ceiling))
    span = ceiling - chance
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(span) > PLACE_EPS, (value - chance) / span, np.nan)


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


def delong_paired(labels, scores_a, scores_b, confidence=CONFIDENCE):
    """Paired DeLong test of AUC(a) - AUC(b) on the same hips (a the arm, b the reference), with its normal
    interval diff +- z_{(1+c)/2} se. Returns dict auc_a, auc_b, diff, se, z, p, ci_low, ci_high."""
    test = delong_test(labels, scores_b, scores_a)  # delong_test takes its second scores minus its first
    half = stats.norm.ppf((1 + confidence) / 2) * test["se"]
    return {"auc_a": test["auc_b"], "auc_b": test["auc_a"], "diff": test["diff"], "se": test["se"],
            "z": test["z"], "p": test["p"], "ci_low": float(test["diff"] - half),
            "ci_high": float(test["diff"] + half)}


# --- bootstrap inference over hips clustered by subject, and over seeds ---

def _as_columns(x):
    """A per-hip array, or a tuple/list of per-hip arrays (e.g. labels, scores), as a tuple of arrays."""
    return tuple(np.asarray(c) for c in x) if isinstance(x, (tuple, list)) else (np.asarray(x),)


def _cluster_layout(clusters):
    """Hip order sorted by cluster, each cluster's start in that order and its hip count."""
    codes = pd.factorize(pd.Series(np.asarray(clusters)), sort=True)[0]
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def _cluster_rows(order, starts, counts, draw):
    """Hip indices of the drawn clusters (a cluster drawn twice contributes its hips twice)."""
    n = counts[draw]
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return order[np.repeat(starts[draw], n) + offset]


def _bootstrap_p(distribution):
    """Two-sided p of a zero difference from a bootstrap distribution: twice the smaller tail share at 0,
    each tail counted as (1 + k) / (1 + B) so that p is never 0, at most 1."""
    b = len(distribution)
    below = (1 + np.sum(distribution <= 0)) / (1 + b)
    above = (1 + np.sum(distribution >= 0)) / (1 + b)
    return float(min(1.0, 2 * min(below, above)))


def _check_paired(columns_a, columns_b, clusters):
    n = len(clusters)
    lengths = {len(c) for c in (*columns_a, *columns_b)}
    if lengths != {n}:
        raise ValueError(f"paired bootstrap: arrays of lengths {sorted(lengths)} for {n} hips (clusters)")
    if pd.isna(clusters).any():
        raise ValueError(f"paired bootstrap: {int(pd.isna(clusters).sum())} hips without a cluster (subject)")
    for side, columns in (("a", columns_a), ("b", columns_b)):
        for k, column in enumerate(columns):
            if column.dtype.kind == "f" and not np.isfinite(column).all():
                bad = int((~np.isfinite(column)).sum())
                raise ValueError(f"paired bootstrap: {bad} undefined (NaN/inf) values in {side}[{k}]; score "
                                 "or exclude them explicitly before testing")


def paired_cluster_bootstrap(a, b, clusters, statistic=np.mean, n_boot=2000, seed=0, confidence=CONFIDENCE,
                             method="percentile"):
    """Paired bootstrap of statistic(a) - statistic(b) over the same hips, resampling whole clusters.

    a, b: per-hip arrays of the arm and the reference (row i = the same hip), or tuples of per-hip arrays
    passed to `statistic` as positional arguments (e.g. (labels, scores_arm) and (labels, scores_ref) with
    sklearn's roc_auc_score). clusters: per-hip cluster id (the subject: both hips of a subject are drawn
    together, so their correlation widens the interval as it should). `statistic` must be defined on every
    resample (an AUC needs both classes in it).
    Runs scipy.stats.bootstrap over the cluster ids (so method="BCa" gets its jackknife over clusters too),
    rng = numpy Generator(seed). Returns dict estimate, ci_low, ci_high, se (sd of the bootstrap
    distribution), p (two-sided, from the bootstrap distribution: `_bootstrap_p`), n_boot, n_clusters,
    n_hips, method.
    """
    columns_a, columns_b = _as_columns(a), _as_columns(b)
    clusters = np.asarray(clusters)
    _check_paired(columns_a, columns_b, clusters)
    order, starts, counts = _cluster_layout(clusters)

    def difference(rows):
        return statistic(*(c[rows] for c in columns_a)) - statistic(*(c[rows] for c in columns_b))

    def resampled(draw):
        return difference(_cluster_rows(order, starts, counts, draw))

    result = stats.bootstrap((np.arange(len(counts)),), resampled, n_resamples=n_boot, vectorized=False,
                             confidence_level=confidence, method=method, rng=np.random.default_rng(seed))
    distribution = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    undefined = int((~np.isfinite(distribution)).sum())
    if undefined:
        raise ValueError(f"paired bootstrap: the statistic is undefined on {undefined} of {n_boot} resamples "
                         "(an AUC needs both classes in every resample)")
    return {"estimate": float(difference(np.arange(len(clusters)))),
            "ci_low": float(result.confidence_interval.low), "ci_high": float(result.confidence_interval.high),
            "se": float(result.standard_error), "p": _bootstrap_p(distribution), "n_boot": int(n_boot),
            "n_clusters": int(len(counts)), "n_hips": int(len(clusters)), "method": method}


def _paired_hips(frame, value, arm_col, seed_col, cluster_col, unit_col, arm, reference):
    """Per seed, the arm's and the reference's rows of the same hips, side by side (value columns suffixed
    _arm and _ref); an unpaired hip or an undefined value is an error, never dropped."""
    values = [value] if isinstance(value, str) else list(value)
    needed = [arm_col, seed_col, cluster_col, unit_col, *values]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"hierarchical bootstrap: the frame lacks columns {missing}")
    keys = [seed_col, cluster_col, unit_col]
    sides = {}
    for name, label in ((arm, "arm"), (reference, "ref")):
        part = frame[frame[arm_col] == name]
        if part.empty:
            raise ValueError(f"hierarchical bootstrap: no rows of {arm_col} = {name!r}")
        repeated = part.duplicated(keys)
        if repeated.any():
            raise ValueError(f"hierarchical bootstrap: {int(repeated.sum())} repeated {keys} rows of {name!r}")
        undefined = part[values].isna().any(axis=1)
        if undefined.any():
            raise ValueError(f"hierarchical bootstrap: {int(undefined.sum())} rows of {name!r} with an "
                             f"undefined {values}; score or exclude them explicitly before testing")
        sides[label] = part[keys + values].rename(columns={v: f"{v}_{label}" for v in values})
    wide = sides["arm"].merge(sides["ref"], on=keys, how="outer", indicator=True)
    unpaired = wide["_merge"] != "both"
    if unpaired.any():
        raise ValueError(f"hierarchical bootstrap: {int(unpaired.sum())} hips of {arm!r} and {reference!r} "
                         f"are not paired by {keys}")
    return wide.drop(columns="_merge").sort_values(keys, kind="stable").reset_index(drop=True), values


def _subject_kernel(block, values, statistic, codes, k):
    """For one seed's paired hips (`_paired_hips` rows) whose subjects carry codes 0..k-1: a function from
    subject draw counts (n, k) to the n resampled differences arm - reference. The mean and the AUC are
    weighted sums over subjects (a subject drawn w times contributes its hips w times, and its hip pairs
    w_k w_l times: each positive weighs the negatives below it by cumulative sums); any other statistic is
    evaluated on each resample's hips."""
    arm = [block[f"{v}_arm"].to_numpy() for v in values]
    ref = [block[f"{v}_ref"].to_numpy() for v in values]
    if statistic is None:
        sums = np.bincount(codes, weights=arm[0] - ref[0], minlength=k)
        hips = np.bincount(codes, minlength=k)
        return lambda weights: (weights @ sums) / (weights @ hips)
    if isinstance(statistic, str):  # "auc": labels ref[0] (as arm[0]), scores arm[1] vs ref[1]
        if not np.array_equal(arm[0], ref[0]):
            raise ValueError("hierarchical bootstrap: the AUC needs the same labels for the arm and the reference")
        if not np.isin(arm[0], (0, 1)).all():
            raise ValueError("hierarchical bootstrap: AUC labels must be 0 or 1 (leave unknown labels out)")
        positive = arm[0].astype(bool)
        ranks = []  # per score vector: negatives sorted, and each positive's place among them (ties: both ends)
        for scores in (arm[1], ref[1]):
            order = np.argsort(scores[~positive], kind="stable")
            below = np.sort(scores[~positive])
            ranks.append((order, np.searchsorted(below, scores[positive], "left"),
                          np.searchsorted(below, scores[positive], "right")))

        def auc_difference(weights):  # Mann-Whitney with hip weights: sum_i w_i (W_neg below + W_neg tied / 2)
            hip_weights = weights[:, codes]
            w_pos, w_neg = hip_weights[:, positive], hip_weights[:, ~positive]
            aucs = []
            for order, lower, upper in ranks:
                cumulative = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(w_neg[:, order], axis=1)],
                                            axis=1)
                below = cumulative[:, lower] + 0.5 * (cumulative[:, upper] - cumulative[:, lower])
                aucs.append((w_pos * below).sum(axis=1))
            return (aucs[0] - aucs[1]) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))
        return auc_difference
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=k)  # indexed by the codes themselves: a subject may have no hip here
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def loop(weights):
        out = np.empty(len(weights))
        for r, w in enumerate(weights):
            rows = _cluster_rows(order, starts, counts, np.repeat(np.arange(k), w))
            out[r] = statistic(*(c[rows] for c in arm)) - statistic(*(c[rows] for c in ref))
        return out
    return loop


def hierarchical_bootstrap(frame, value, arm_col, seed_col, cluster_col, unit_col, arm, reference,
                           statistic=None, n_boot=2000, seed=0, confidence=CONFIDENCE, crossed=False):
    """Arm - reference across seeds: the mean over seeds of each seed's paired difference over its hips,
    with a two-level bootstrap interval (seeds drawn with replacement, then subjects within each drawn seed).

    frame: long, one row per (arm, seed, hip): columns arm_col, seed_col, cluster_col (subject), unit_col
    (the hip within the subject, e.g. the side) and `value` (a column name, or a list of columns handed to
    `statistic`). statistic=None: the per-hip mean difference; statistic="auc" with value=[label, score]:
    the difference of the Mann-Whitney AUCs over the same hips (labels 0/1, shared by both arms); both are
    vectorised as subject-weighted sums (multinomial draw counts). Otherwise a callable,
    statistic(*value columns of the resampled hips) of the arm minus the same of the reference (e.g.
    sklearn's roc_auc_score), evaluated in a Python loop over n_boot x seeds.
    crossed=False (nested): every drawn seed copy gets its own subject resample, for test sets that differ
    between seeds. crossed=True: one subject draw per replicate shared by every seed (seeds x subjects
    crossed), for one fixed test cohort scored by every seed, whose subject effects are shared across seeds.
    Percentile interval; p two-sided from the bootstrap distribution (`_bootstrap_p`); rng = numpy
    Generator(seed). Returns dict estimate, ci_low, ci_high, se, p, n_boot, n_seeds, n_subjects, n_hips,
    per_seed (Series: each seed's difference).
    """
    wide, values = _paired_hips(frame, value, arm_col, seed_col, cluster_col, unit_col, arm, reference)
    if statistic is None and len(values) != 1:
        raise ValueError("hierarchical bootstrap: the default statistic (mean) takes one value column")
    if isinstance(statistic, str) and (statistic != "auc" or len(values) != 2):
        raise ValueError(f"hierarchical bootstrap: statistic {statistic!r}: the named statistic is 'auc', "
                         "with value = [label column, score column]")
    rng = np.random.default_rng(seed)
    seeds = list(pd.unique(wide[seed_col]))
    subjects = np.sort(pd.unique(wide[cluster_col]))
    blocks = [wide[wide[seed_col] == s] for s in seeds]
    n_seeds, n_subjects = len(seeds), len(subjects)

    def kernel(block, codes, k):
        return _subject_kernel(block, values, statistic, codes, k)

    per_seed = pd.Series(
        [kernel(block, np.zeros(len(block), dtype=int), 1)(np.ones((1, 1), dtype=int))[0] for block in blocks],
        index=seeds, name="diff", dtype=np.float64)  # all hips as one subject drawn once: the plain difference
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    if crossed:
        weights = rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=n_boot)
        seed_values = np.empty((n_boot, n_seeds))
        with np.errstate(invalid="ignore", divide="ignore"):
            for s, block in enumerate(blocks):
                codes = np.searchsorted(subjects, block[cluster_col].to_numpy())
                seed_values[:, s] = kernel(block, codes, n_subjects)(weights)
        estimates = np.take_along_axis(seed_values, seed_draws, axis=1)
    else:
        estimates = np.empty((n_boot, n_seeds))
        with np.errstate(invalid="ignore", divide="ignore"):
            for s, block in enumerate(blocks):
                picked = seed_draws == s
                codes = pd.factorize(block[cluster_col], sort=True)[0]
                k = int(codes.max()) + 1
                weights = rng.multinomial(k, np.full(k, 1.0 / k), size=int(picked.sum()))
                estimates[picked] = kernel(block, codes, k)(weights)
    distribution = estimates.mean(axis=1)
    if not np.isfinite(distribution).all():
        raise ValueError(f"hierarchical bootstrap: {int((~np.isfinite(distribution)).sum())} of {n_boot} "
                         "replicates undefined (a seed with no drawn hip, or a statistic undefined on a resample)")
    tail = (1 - confidence) / 2
    low, high = np.quantile(distribution, [tail, 1 - tail])
    return {"estimate": float(per_seed.mean()), "ci_low": float(low), "ci_high": float(high),
            "se": float(distribution.std(ddof=1)), "p": _bootstrap_p(distribution), "n_boot": int(n_boot),
            "n_seeds": n_seeds, "n_subjects": int(n_subjects), "n_hips": int(len(wide)), "per_seed": per_seed}


def _placements(labels, scores):
    """Per hip, its Mann-Whitney placement value: a positive's share of the negatives scored below it, a
    negative's share of the positives scored above it (ties count half); the AUC is the mean of either
    side's placements (DeLong et al. 1988's structural components)."""
    positive = labels.astype(bool)
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    out = np.empty(len(scores))
    out[positive] = (np.searchsorted(neg, scores[positive], "left")
                     + np.searchsorted(neg, scores[positive], "right")) / (2.0 * len(neg))
    out[~positive] = (2 * len(pos) - np.searchsorted(pos, scores[~positive], "left")
                      - np.searchsorted(pos, scores[~positive], "right")) / (2.0 * len(pos))
    return out


def _seed_influence(block, values, statistic, codes, k):
    """One seed's paired hips: (the difference arm - reference, per subject code 0..k-1 its first-order
    influence on that difference). The mean's influence of a subject is (its hips' summed difference - its
    hip count x the difference) / all hips; the AUC's is the difference of its hips' centred placement
    values over the positives' (or negatives') count (the Hajek projection behind DeLong's variance)."""
    if statistic is None:
        d = block[f"{values[0]}_arm"].to_numpy(np.float64) - block[f"{values[0]}_ref"].to_numpy(np.float64)
        diff = d.mean()
        return diff, np.bincount(codes, weights=(d - diff) / len(d), minlength=k)
    labels = block[f"{values[0]}_arm"].to_numpy()
    if not np.array_equal(labels, block[f"{values[0]}_ref"].to_numpy()):
        raise ValueError("crossed inference: the AUC needs the same labels for the arm and the reference")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("crossed inference: AUC labels must be 0 or 1 (leave unknown labels out)")
    positive = labels.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError(f"crossed inference: the AUC needs both classes in every seed, got {m} positive and "
                         f"{n} negative hips")
    diff, influence = 0.0, np.zeros(len(labels))
    for side, sign in (("arm", 1.0), ("ref", -1.0)):
        place = _placements(labels, block[f"{values[1]}_{side}"].to_numpy(np.float64))
        auc = place[positive].mean()
        diff += sign * auc
        influence += sign * (place - auc) / np.where(positive, m, n)
    return diff, np.bincount(codes, weights=influence, minlength=k)


def crossed_inference(frame, value, arm_col, seed_col, cluster_col, unit_col, arm, reference, statistic=None,
                      confidence=CONFIDENCE, crossed=True):
    """Arm - reference across seeds, the mean over seeds of each seed's paired difference over its hips
    (the estimate of `hierarchical_bootstrap`), with an analytic interval and p from the crossed
    random-effects model of seeds and subjects: no resampling, so the verdict cannot depend on a
    resampling seed.

    Each seed's difference D_s is split, to first order, into per-subject influences g_si (the mean
    difference's, or the Mann-Whitney AUC difference's placement values; statistic None or "auc" as in
    `hierarchical_bootstrap`). With S seeds and N subjects (S x N cells, one fixed test cohort scored by
    every seed) the method-of-moments (two-way random-effects ANOVA) estimate of the variance of the mean is
        v_seed = sum_s (D_s - D)^2 / (S (S-1))                    seed effects + seed x subject / N
        v_subj = sum_i z_i^2 / (N (N-1)),  z_i = N/S sum_s g_si   subject effects + seed x subject / S
        v_int  = sum_si (N g_si - z_i)^2 / ((S-1) (N-1) S N)      seed x subject / (S N)
        var    = v_seed + max(0, v_subj - v_int)
    (for balanced cells exactly the restricted-likelihood estimate of a crossed mixed model when no
    variance component is negative), with Satterthwaite's degrees of freedom, so with seed variance
    dominating the interval is a t interval on about S - 1 df. crossed=False (every seed its own
    subjects): the seed means are independent and carry all subject sampling, var = v_seed on S - 1 df.
    A single seed: the subjects' variance alone, N/(N-1) sum_i g_i^2 on N - 1 df (conditional on that seed).
    Interval estimate +- t_{(1+c)/2, df} se; p two-sided from t = estimate / se on df. A zero variance
    gives a point interval with p = 1 (estimate 0) or 0.
    Returns dict estimate, se, df, ci_low, ci_high, p, n_seeds, n_subjects, n_hips, seed_share (v_seed /
    var: the share of the variance the seeds carry), per_seed (Series: each seed's difference).
    """
    wide, values = _paired_hips(frame, value, arm_col, seed_col, cluster_col, unit_col, arm, reference)
    if statistic is None and len(values) != 1:
        raise ValueError("crossed inference: the mean difference takes one value column")
    if statistic is not None and (statistic != "auc" or len(values) != 2):
        raise ValueError(f"crossed inference: statistic {statistic!r}: use None (mean) or 'auc' with "
                         "value = [label column, score column]")
    seeds = list(pd.unique(wide[seed_col]))
    subjects = np.sort(pd.unique(wide[cluster_col]))
    n_seeds, n_subjects = len(seeds), len(subjects)
    diffs, influence = np.empty(n_seeds), np.zeros((n_seeds, n_subjects))
    for s, seed in enumerate(seeds):
        block = wide[wide[seed_col] == seed]
        codes = np.searchsorted(subjects, block[cluster_col].to_numpy())
        diffs[s], influence[s] = _seed_influence(block, values, statistic, codes, n_subjects)
    estimate = diffs.mean()
    if n_seeds == 1:  # the seed's own variance is unknown: the subjects' alone, conditional on this seed
        v_seed, variance, df = 0.0, np.sum(influence ** 2) * n_subjects / (n_subjects - 1), n_subjects - 1.0
    else:
        v_seed = diffs.var(ddof=1) / n_seeds
        variance, df = v_seed, n_seeds - 1.0
    if crossed and n_seeds > 1:
        z = influence.sum(axis=0) * n_subjects / n_seeds
        v_subj = np.sum(z ** 2) / (n_subjects * (n_subjects - 1))
        v_int = np.sum((n_subjects * influence - z) ** 2) / ((n_seeds - 1) * (n_subjects - 1) * n_seeds * n_subjects)
        if v_subj > v_int:
            variance = v_seed + v_subj - v_int
            denominator = (v_seed ** 2 / (n_seeds - 1) + v_subj ** 2 / (n_subjects - 1)
                           + v_int ** 2 / ((n_seeds - 1) * (n_subjects - 1)))
            df = variance ** 2 / denominator if denominator > 0 else n_seeds - 1.0
    se = float(np.sqrt(variance))
    if se > 1e-15:
        half = stats.t.ppf((1 + confidence) / 2, df) * se
        p = float(2 * stats.t.sf(abs(estimate) / se, df))
    else:
        half, p = 0.0, 1.0 if abs(estimate) < 1e-15 else 0.0
    return {"estimate": float(estimate), "se": se, "df": float(df), "ci_low": float(estimate - half),
            "ci_high": float(estimate + half), "p": p, "n_seeds": n_seeds, "n_subjects": int(n_subjects),
            "n_hips": int(len(wide)), "seed_share": float(v_seed / variance) if variance > 0 else np.nan,
            "per_seed": pd.Series(diffs, index=seeds, name="diff")}


def crossed_bootstrap_mean(frame, value, seed_col, cluster_col, n_boot=2000, seed=0, confidence=CONFIDENCE,
                           per_row=False):
    """(mean, low, high): the mean of `value` over the (seed, cluster) cells of `frame` (each cell its own
    mean first; per_row: every row its own weight, so the mean is the plain mean of the rows), with a
    percentile interval from resampling seeds and clusters (e.g. subjects) with replacement, crossed: the
    same clusters scored by every seed (one fixed test set) are drawn once for all seeds. Cells a seed did
    not score are left out of that draw's mean."""
    grouped = frame.groupby([seed_col, cluster_col])[value]
    # per cell: the total it adds to a draw's numerator and the weight it adds to its denominator
    totals, weights = (grouped.sum(min_count=1), grouped.count()) if per_row else (grouped.mean(), grouped.count() > 0)
    totals = totals.unstack(cluster_col).to_numpy(dtype=np.float64)  # seeds x clusters, NaN where no value
    weights = weights.astype(np.float64).unstack(cluster_col).fillna(0.0).to_numpy()
    if not (weights > 0).any():
        return np.nan, np.nan, np.nan
    totals = np.where(weights > 0, totals, 0.0)
    mean = float(totals.sum() / weights.sum())
    if n_boot == 0:  # no bootstrap asked for: the mean without an interval
        return mean, np.nan, np.nan
    rng = np.random.default_rng(seed)
    n_seeds, n_clusters = totals.shape
    estimates = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, n_seeds, n_seeds)
        cols = rng.integers(0, n_clusters, n_clusters)
        weight = weights[np.ix_(rows, cols)].sum()
        estimates[b] = totals[np.ix_(rows, cols)].sum() / weight if weight else np.nan
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(estimates, [alpha, 1 - alpha])
    return mean, float(low), float(high)


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


def holm(pvalues, alpha=0.05):
    """Holm's step-down correction across a family of claims (statsmodels multipletests, method "holm").

    pvalues: sequence or Series (its index names the claims). Returns a frame indexed like the input:
    p, p_holm (adjusted, monotone in p, at most 1), survives (p_holm <= alpha)."""
    p = pd.Series(pvalues, dtype=np.float64)
    if p.empty:
        raise ValueError("holm: no p-values")
    if not (p.notna().all() and p.between(0, 1).all()):
        raise ValueError(f"holm: p-values must lie in [0, 1] and be defined, got {p[~p.between(0, 1)].tolist()}")
    reject, adjusted, _, _ = multipletests(p.to_numpy(), alpha=alpha, method="holm")
    return pd.DataFrame({"p": p, "p_holm": adjusted, "survives": reject}, index=p.index)


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
