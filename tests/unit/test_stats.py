"""Wilcoxon tables, the DeLong test, calibration and label correlation on cases with known answers."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from osteoloc.report.stats import (SEED_LEVEL_TABLE_COLUMNS, delong_covariance, delong_test,
                            expected_calibration_error, image_level_table, label_correlation,
                            paired_wilcoxon, reliability_bins, seed_level_table)
from osteoloc.names import TARGETS


def seed_frame(n_runs, improved):
    rows = []
    for seed in range(n_runs):
        baseline = 50.0 + seed
        # improved runs: prior lower by a distinct amount (no ties); others higher
        prior = baseline - (seed + 1) * 0.5 if seed < improved else baseline + (seed + 1) * 0.5
        rows.append({"seed": seed, "metric": "com_distance", "target": TARGETS[0],
                     "baseline_mean": baseline, "prior_mean": prior})
    return pd.DataFrame(rows)


def test_thirteen_of_thirteen_improved_gives_exact_p():
    table = seed_level_table(seed_frame(13, 13))
    assert list(table.columns) == SEED_LEVEL_TABLE_COLUMNS
    row = table.iloc[0]
    assert row["n_runs"] == 13 and row["improved"] == 13
    assert row["W"] == 0
    assert row["p"] == pytest.approx(2 / 2**13, rel=1e-12)
    assert row["mean_diff"] == pytest.approx(-np.mean(np.arange(1, 14) * 0.5))


def test_seed_level_mixed_and_bad_input():
    table = seed_level_table(seed_frame(6, 4))
    row = table.iloc[0]
    # diffs -0.5, -1, -1.5, -2, +2.5, +3: W+ = 5 + 6 = 11, W- = 10 -> W = min = 10
    assert row["improved"] == 4 and row["W"] == 10
    assert row["p"] == pytest.approx(sps.wilcoxon([-0.5, -1, -1.5, -2, 2.5, 3], method="exact").pvalue)
    with pytest.raises(ValueError, match="prior_mean"):
        seed_level_table(seed_frame(3, 3).drop(columns="prior_mean"))
    with pytest.raises(ValueError, match="repeated"):
        seed_level_table(pd.concat([seed_frame(3, 3)] * 2))


def brute_force_wilcoxon(diff):
    """Two-sided p of W+ by enumerating every sign flip of the non-zero differences (midranks of |d|)."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    null = np.array([ranks[np.array(signs)].sum() for signs in itertools.product([False, True], repeat=len(d))])
    p = 2 * min(np.mean(null <= observed + 1e-9), np.mean(null >= observed - 1e-9))
    return min(observed, ranks.sum() - observed), min(p, 1.0)


# Paper A, Table A2: peak distance at the superior acetabulum, seeds 0-11 and 123 (baseline, prior mean).
# Seeds 10 and 11 share (82.6, 21.8): their differences tie.
TABLE_A2_PEAK_ACET_SUP = [(91.3, 21.6), (90.9, 22.4), (94.5, 23.3), (76.7, 22.1), (94.9, 22.2), (97.5, 22.3),
                          (99.0, 22.4), (80.5, 22.4), (96.4, 21.4), (87.5, 22.0), (82.6, 21.8), (82.6, 21.8),
                          (96.1, 21.7)]


def test_paper_a_table_a2_ties_give_the_exact_p():
    baseline, prior = np.array(TABLE_A2_PEAK_ACET_SUP).T
    n, w, p = paired_wilcoxon(baseline, prior)
    assert n == 13 and w == 0
    assert p == pytest.approx(2 / 2**13, rel=1e-12)  # paper A's 0.000244, not the approximation's 0.0015
    assert sps.wilcoxon(prior - baseline, method="asymptotic").pvalue > 0.001


@pytest.mark.parametrize("diff", [
    [-1.0, -1.0, 2.0, -3.0, 3.0, -3.0, -0.5, 4.0],  # ties across signs
    [-1.0] * 5,  # all tied
    [0.0, -3.0, 0.0],  # one non-zero difference: p = 1
    [0.0, 0.0, -2.0, -2.0, 1.0, -4.0, -5.0, -5.0, -5.0, 6.0, -7.0],  # zeros and ties
    [0.5, -0.5, 1.5, -2.0, -2.5, 3.0, -3.5, -4.0, 4.0, -4.0, -5.0, -6.0, -7.0, 7.0, -8.0, -9.0],  # 16
])
def test_paired_wilcoxon_exact_with_ties_matches_enumeration(diff):
    diff = np.asarray(diff)
    baseline = np.linspace(10, 20, len(diff))
    n, w, p = paired_wilcoxon(baseline, baseline + diff)
    expected_w, expected_p = brute_force_wilcoxon(diff)
    assert n == len(diff)  # zero differences count as pairs, but not in the test
    assert w == pytest.approx(expected_w)
    assert p == pytest.approx(expected_p, rel=1e-12)


def test_paired_wilcoxon_falls_back_to_approx_with_ties():
    n, w, p = paired_wilcoxon(np.arange(1, 18), np.arange(0, 17))  # 17 diffs of -1: tied, beyond 16
    assert n == 17 and w == 0
    assert p == pytest.approx(sps.wilcoxon([-1] * 17, method="asymptotic").pvalue)
    n, w, p = paired_wilcoxon([1, 2, 3, 4, 5], [0, 1, 2, 3, 4])  # 5 tied diffs: exact, 2 / 2^5
    assert n == 5 and w == 0 and p == pytest.approx(2 / 2**5)
    assert np.isnan(paired_wilcoxon([1, 2], [1, 2])[2])


def test_image_level_table_pairs_by_row():
    rows = []
    for r in range(8):
        for model, value in (("baseline", 10.0 + r), ("prior", 5.0 + r * 0.9)):
            for target in TARGETS:
                rows.append({"model": model, "row": r, "target": target, "com_distance": value,
                             "peak_distance": value, "spread": value})
    rows.append({"model": "baseline", "row": 99, "target": TARGETS[0], "com_distance": 1.0,
                 "peak_distance": 1.0, "spread": 1.0})  # unpaired: must be dropped
    table = image_level_table(pd.DataFrame(rows))
    assert len(table) == 12
    first = table.iloc[0]
    assert first["n"] == 8 and first["W"] == 0 and first["p"] == pytest.approx(2 / 2**8)


def naive_delong(labels, a, b):
    """O(mn) DeLong straight from the definition, for comparison."""
    labels = np.asarray(labels, bool)
    out = []
    for s in (a, b):
        x, y = s[labels], s[~labels]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    m, n = labels.sum(), (~labels).sum()
    var = (np.var(v10a, ddof=1) + np.var(v10b, ddof=1) - 2 * np.cov(v10a, v10b)[0, 1]) / m + \
          (np.var(v01a, ddof=1) + np.var(v01b, ddof=1) - 2 * np.cov(v01a, v01b)[0, 1]) / n
    return auc_b - auc_a, var


def test_delong_hand_checked_variance():
    # positives 0.9, 0.8; negatives 0.7, 0.85: components (1, .5) and (1, .5): AUC .75, var .125/2 + .125/2
    aucs, cov = delong_covariance([1, 1, 0, 0], [[0.9, 0.8, 0.7, 0.85]])
    assert aucs[0] == pytest.approx(0.75)
    assert cov[0, 0] == pytest.approx(0.125)


def test_delong_matches_mann_whitney_and_naive_implementation():
    rng = np.random.default_rng(0)
    labels = rng.random(120) < 0.4
    a = np.round(labels + rng.normal(0, 1.0, 120), 1)  # rounding makes ties
    b = np.round(labels + rng.normal(0, 0.7, 120), 1)
    result = delong_test(labels, a, b)
    u = sps.mannwhitneyu(a[labels], a[~labels]).statistic
    assert result["auc_a"] == pytest.approx(u / (labels.sum() * (~labels).sum()))
    assert result["auc_b"] == pytest.approx(roc_auc_score(labels, b))
    diff, var = naive_delong(labels, a, b)
    assert result["diff"] == pytest.approx(diff)
    assert result["se"] == pytest.approx(np.sqrt(var))
    assert result["p"] == pytest.approx(2 * sps.norm.sf(abs(diff) / np.sqrt(var)))
    same = delong_test(labels, a, a)
    assert same["p"] == pytest.approx(1.0, abs=1e-12) and same["diff"] == pytest.approx(0.0, abs=1e-12)


def test_calibration():
    probs = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    labels = np.array([0, 0, 1, 1, 1])
    bins = reliability_bins(labels, probs, n_bins=10)
    assert bins["n"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    # |0 - .05| * 1 + |.5 - .15| * 2 + |1 - .975| * 2, over 5
    assert expected_calibration_error(labels, probs, 10) == pytest.approx((0.05 + 0.7 + 0.05) / 5)


def test_label_correlation_ignores_unknown():
    labels = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, -1], [0, 0, 0, 0]])
    corr = label_correlation(labels)
    assert corr.shape == (4, 4)
    assert corr.iloc[0, 1] == pytest.approx(1.0)
    expected = np.corrcoef([0, 1, 0], [0, 1, 0])[0, 1]  # acet pair over rows 0, 1, 3 only
    assert corr.iloc[2, 3] == pytest.approx(expected)
