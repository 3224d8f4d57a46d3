"""Inference over hips clustered by subject and over seeds: paired cluster bootstrap, delong_paired,
hierarchical bootstrap, Holm. Synthetic cases with a known truth; every comparison states its tolerance."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.formula import api as smf

from osteoloc.names import TARGETS
from osteoloc.report.ablation import BOOTSTRAP_COLUMNS, ablation_table, bootstrap_comparisons, seed_level_values
from osteoloc.report.stats import (crossed_bootstrap_mean, crossed_inference, delong_paired, delong_test,
                                   hierarchical_bootstrap, holm, paired_cluster_bootstrap)

EFFECT = 0.3


def two_hip_subjects(rng, n_subjects=200, effect=EFFECT, subject_sd=1.0, shared_sd=0.5, hip_sd=0.5):
    """Per-hip metric of a reference and an arm over n_subjects x 2 hips: a subject effect on the metric and
    a subject effect on the difference (shared by both hips), plus hip noise; true mean difference `effect`."""
    subject = np.repeat(np.arange(n_subjects), 2)
    level = rng.normal(0, subject_sd, n_subjects)[subject]
    shift = rng.normal(0, shared_sd, n_subjects)[subject]
    reference = level + rng.normal(0, hip_sd, 2 * n_subjects)
    arm = reference + effect + shift + rng.normal(0, hip_sd, 2 * n_subjects)
    return arm, reference, subject


def rank_auc(labels, scores):
    """AUC by the Mann-Whitney rank sum (ties averaged): quick enough to bootstrap in a test."""
    labels = np.asarray(labels, bool)
    ranks = sps.rankdata(scores)
    m, n = labels.sum(), (~labels).sum()
    return (ranks[labels].sum() - m * (m + 1) / 2) / (m * n)


# --- paired cluster bootstrap ---

def test_cluster_bootstrap_covers_a_known_effect():
    arm, reference, subject = two_hip_subjects(np.random.default_rng(3))
    result = paired_cluster_bootstrap(arm, reference, subject, n_boot=1000, seed=0)
    assert result["estimate"] == pytest.approx((arm - reference).mean())
    assert result["ci_low"] < EFFECT < result["ci_high"]
    assert result["ci_low"] > 0 and result["p"] < 0.01
    assert result["n_clusters"] == 200 and result["n_hips"] == 400
    # the same seed gives the same numbers; BCa (scipy's jackknife over clusters) agrees within 0.02
    assert paired_cluster_bootstrap(arm, reference, subject, n_boot=1000, seed=0) == result
    bca = paired_cluster_bootstrap(arm, reference, subject, n_boot=1000, seed=0, method="BCa")
    assert bca["ci_low"] == pytest.approx(result["ci_low"], abs=0.02)
    assert bca["ci_high"] == pytest.approx(result["ci_high"], abs=0.02)


def test_cluster_bootstrap_null_coverage_near_nominal():
    """100 null data sets x 200 resamples: the 95 % interval covers 0 in 88-99 of 100 (binomial sd of the
    count at 95 % is 2.2) and p < 0.05 exactly when it does not (up to resampling granularity: within 3)."""
    rng = np.random.default_rng(11)
    covered = significant = 0
    for rep in range(100):
        arm, reference, subject = two_hip_subjects(rng, n_subjects=100, effect=0.0)
        result = paired_cluster_bootstrap(arm, reference, subject, n_boot=200, seed=rep)
        covered += result["ci_low"] <= 0 <= result["ci_high"]
        significant += result["p"] < 0.05
    assert 88 <= covered <= 99
    assert abs((100 - covered) - significant) <= 3


def test_cluster_bootstrap_keeps_both_hips_of_a_subject_together():
    arm, reference, subject = two_hip_subjects(np.random.default_rng(5), n_subjects=60)

    def both_hips_drawn(values, subjects):  # every drawn subject brings its two hips, once per draw
        assert np.all(np.bincount(subjects) % 2 == 0)
        return values.mean()

    paired_cluster_bootstrap((arm, subject), (reference, subject), subject, both_hips_drawn, n_boot=50)
    with pytest.raises(AssertionError):  # hips drawn one by one split subjects
        paired_cluster_bootstrap((arm, subject), (reference, subject), np.arange(len(subject)),
                                 both_hips_drawn, n_boot=50)


def test_ignoring_clusters_narrows_the_interval():
    """Both hips of a subject carry the same difference: 200 subjects hold 200 independent differences, not
    400. The clustered interval is sqrt(2) = 1.41 times the one that treats hips as independent (accepted:
    1.25-1.7; this case gives 1.50)."""
    rng = np.random.default_rng(7)
    difference = np.repeat(rng.normal(EFFECT, 1.0, 200), 2)
    subject = np.repeat(np.arange(200), 2)
    reference = rng.normal(0, 1, 400)
    clustered = paired_cluster_bootstrap(reference + difference, reference, subject, n_boot=1000)
    naive = paired_cluster_bootstrap(reference + difference, reference, np.arange(400), n_boot=1000)
    ratio = (clustered["ci_high"] - clustered["ci_low"]) / (naive["ci_high"] - naive["ci_low"])
    assert 1.25 < ratio < 1.7


def test_cluster_bootstrap_refuses_undefined_and_unpaired_values():
    arm, reference, subject = two_hip_subjects(np.random.default_rng(0), n_subjects=10)
    arm[3] = np.nan
    with pytest.raises(ValueError, match="1 undefined"):
        paired_cluster_bootstrap(arm, reference, subject, n_boot=10)
    with pytest.raises(ValueError, match="lengths"):
        paired_cluster_bootstrap(reference[:-1], reference, subject, n_boot=10)
    with pytest.raises(ValueError, match="without a cluster"):
        paired_cluster_bootstrap(reference, reference, np.where(subject == 2, np.nan, subject), n_boot=10)


# --- DeLong ---

def test_delong_paired_se_matches_the_bootstrap():
    """DeLong's SE of AUC(a) - AUC(b) against the paired bootstrap SE over the same hips (500 resamples:
    the bootstrap SE itself is uncertain by ~3 %); tolerance 15 %."""
    rng = np.random.default_rng(2)
    labels = rng.random(300) < 0.3
    latent = rng.normal(0, 1, 300)  # shared by both scores: the AUCs are correlated
    scores_a = labels + latent + rng.normal(0, 0.6, 300)
    scores_b = labels + latent + rng.normal(0, 1.0, 300)
    result = delong_paired(labels, scores_a, scores_b)
    assert result["diff"] == pytest.approx(rank_auc(labels, scores_a) - rank_auc(labels, scores_b))
    assert result["auc_a"] == pytest.approx(rank_auc(labels, scores_a))
    boot = paired_cluster_bootstrap((labels, scores_a), (labels, scores_b), np.arange(300), rank_auc,
                                    n_boot=500, seed=1)
    assert result["se"] == pytest.approx(boot["se"], rel=0.15)
    assert result["ci_low"] == pytest.approx(result["diff"] - 1.959964 * result["se"], abs=1e-6)
    assert result["ci_low"] < result["diff"] < result["ci_high"]
    # the same test as delong_test, with the sign of the arm minus the reference
    legacy = delong_test(labels, scores_b, scores_a)
    assert (result["diff"], result["p"]) == pytest.approx((legacy["diff"], legacy["p"]), abs=1e-12)
    assert (result["ci_low"] < 0 < result["ci_high"]) == (result["p"] >= 0.05)


# --- hierarchical bootstrap ---

def seeds_frame(rng, n_seeds=8, n_subjects=100, effect=EFFECT, seed_sd=0.1, crossed=False):
    """Long frame (arm, seed, subject, side, value): each seed's arm - prior difference is effect + a seed
    effect (sd seed_sd) + subject and hip noise; crossed=True scores the same subjects in every seed."""
    rows = []
    level_shared = rng.normal(0, 1, n_subjects)
    for s in range(n_seeds):
        subject = np.arange(n_subjects) + (0 if crossed else 1000 * s)
        level = level_shared if crossed else rng.normal(0, 1, n_subjects)
        shift = rng.normal(effect + rng.normal(0, seed_sd), 0.5, n_subjects)
        for side in ("left", "right"):
            reference = level + rng.normal(0, 0.5, n_subjects)
            arm = reference + shift + rng.normal(0, 0.5, n_subjects)
            for name, value in (("prior", reference), ("arm", arm)):
                rows.append(pd.DataFrame({"model": name, "seed": s, "subject": subject, "side": side,
                                          "value": value}))
    return pd.concat(rows, ignore_index=True)


def run_hierarchical(frame, **kwargs):
    return hierarchical_bootstrap(frame, "value", "model", "seed", "subject", "side", "arm", "prior", **kwargs)


@pytest.mark.parametrize("crossed", [False, True])
def test_hierarchical_bootstrap_covers_a_known_effect(crossed):
    frame = seeds_frame(np.random.default_rng(4), crossed=crossed)
    result = run_hierarchical(frame, n_boot=2000, crossed=crossed)
    per_seed = frame.pivot_table(index="seed", columns="model", values="value", aggfunc="mean")
    assert result["estimate"] == pytest.approx((per_seed["arm"] - per_seed["prior"]).mean())
    assert result["ci_low"] < EFFECT < result["ci_high"] and result["ci_low"] > 0
    assert result["n_seeds"] == 8 and result["n_hips"] == 1600
    # the loop over a callable statistic draws the same resamples as the weighted sums: same interval (1e-9)
    looped = run_hierarchical(frame, statistic=np.mean, n_boot=300, crossed=crossed)
    weighted = run_hierarchical(frame, n_boot=300, crossed=crossed)
    assert looped["estimate"] == pytest.approx(result["estimate"])
    assert (looped["ci_low"], looped["ci_high"]) == pytest.approx((weighted["ci_low"], weighted["ci_high"]),
                                                                  abs=1e-9)


def test_hierarchical_bootstrap_carries_the_seed_variance():
    """With a seed effect of sd 0.3 over 8 seeds the difference's SE is at least 0.3 / sqrt(8) = 0.106,
    whatever the number of hips; a bootstrap over hips alone (seeds pooled) would give ~0.03. Accepted:
    the bootstrap SE within 0.07-0.2 (the sample sd of 8 seed effects varies by ~25 %)."""
    frame = seeds_frame(np.random.default_rng(9), seed_sd=0.3)
    result = run_hierarchical(frame, n_boot=2000)
    assert 0.07 < result["se"] < 0.2
    assert result["se"] == pytest.approx(result["per_seed"].std(ddof=1) / np.sqrt(8), rel=0.25)


def test_hierarchical_bootstrap_refuses_unpaired_or_undefined_hips():
    frame = seeds_frame(np.random.default_rng(0), n_seeds=2, n_subjects=5)
    with pytest.raises(ValueError, match="not paired"):
        run_hierarchical(frame.drop(index=frame.index[(frame["model"] == "arm")][0]), n_boot=10)
    undefined = frame.copy()
    undefined.loc[undefined.index[0], "value"] = np.nan
    with pytest.raises(ValueError, match="undefined"):
        run_hierarchical(undefined, n_boot=10)
    with pytest.raises(ValueError, match="no rows"):
        hierarchical_bootstrap(frame, "value", "model", "seed", "subject", "side", "crops", "prior", n_boot=10)


# --- Holm ---

def test_holm_hand_worked():
    """p = .01, .04, .03, .005 (m = 4): sorted .005, .01, .03, .04 times 4, 3, 2, 1 = .02, .03, .06, .04;
    step-down keeps the running maximum: .02, .03, .06, .06. At alpha .05 the first two survive."""
    result = holm(pd.Series([0.01, 0.04, 0.03, 0.005], index=["a", "b", "c", "d"]))
    assert result["p_holm"].to_dict() == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert result["survives"].to_dict() == {"a": True, "b": False, "c": False, "d": True}
    assert holm([0.5, 0.9])["p_holm"].max() == 1.0  # capped at 1
    with pytest.raises(ValueError):
        holm([0.01, np.nan])


def test_hierarchical_bootstrap_of_an_auc():
    """value = [label, prob] with an AUC statistic: per seed AUC(arm) - AUC(prior) over the same hips; an arm
    whose scores carry the label more strongly has a positive difference, the interval excludes 0."""
    rng = np.random.default_rng(6)
    rows = []
    for s in range(4):
        subject = np.repeat(np.arange(150) + 1000 * s, 2)
        label = rng.random(300) < 0.3
        for name, noise in (("prior", 1.5), ("arm", 0.7)):
            rows.append(pd.DataFrame({"model": name, "seed": s, "subject": subject, "side": np.tile([0, 1], 150),
                                      "label": label, "prob": label + rng.normal(0, noise, 300)}))
    frame = pd.concat(rows, ignore_index=True)
    result = hierarchical_bootstrap(frame, ["label", "prob"], "model", "seed", "subject", "side", "arm", "prior",
                                    statistic=rank_auc, n_boot=100)
    first = frame[frame["seed"] == 0]
    expected = rank_auc(*first[first["model"] == "arm"][["label", "prob"]].T.to_numpy()) - \
        rank_auc(*first[first["model"] == "prior"][["label", "prob"]].T.to_numpy())
    assert result["per_seed"].iloc[0] == pytest.approx(expected)
    assert result["ci_low"] > 0 and result["ci_low"] < result["estimate"] < result["ci_high"]


@pytest.mark.parametrize("crossed", [False, True])
def test_hierarchical_auc_weighted_sums_match_the_loop(crossed):
    """statistic="auc" (subject-weighted Mann-Whitney sums) against a callable AUC evaluated on each
    resample: both draw the same resamples, so the same per-seed differences and intervals (1e-9). In the crossed
    case seed 1 lacks two subjects of the union, so subject codes with no hip are exercised."""
    rng = np.random.default_rng(8)
    rows = []
    for s in range(3):
        subject = np.repeat(np.arange(60) + (0 if crossed else 100 * s), 2)
        label = (rng.random(120) < 0.4).astype(int)
        for name, noise in (("prior", 1.2), ("arm", 0.8)):
            part = pd.DataFrame({"model": name, "seed": s, "subject": subject, "side": np.tile([0, 1], 60),
                                 "label": label, "prob": np.round(label + rng.normal(0, noise, 120), 1)})
            rows.append(part[~part["subject"].isin([5, 6])] if crossed and s == 1 else part)
    frame = pd.concat(rows, ignore_index=True)
    args = (frame, ["label", "prob"], "model", "seed", "subject", "side", "arm", "prior")
    fast = hierarchical_bootstrap(*args, statistic="auc", n_boot=300, crossed=crossed)
    looped = hierarchical_bootstrap(*args, statistic=rank_auc, n_boot=300, crossed=crossed)
    np.testing.assert_allclose(fast["per_seed"], looped["per_seed"], atol=1e-12)
    assert (fast["ci_low"], fast["ci_high"], fast["p"]) == pytest.approx(
        (looped["ci_low"], looped["ci_high"], looped["p"]), abs=1e-9)
    assert fast["ci_low"] < fast["estimate"] < fast["ci_high"]
    with pytest.raises(ValueError, match="0 or 1"):
        hierarchical_bootstrap(frame.assign(label=frame["label"] - 1), *args[1:], statistic="auc", n_boot=10)


# --- the ablation table's bootstrap columns ---

def ablation_runs(crossed, n_seeds=4, n_subjects=30):
    """predictions and metrics of arms prior, better (CoM 2 px closer, scores that separate better) and same
    (a copy of prior); hip 0 of seed 0 has an all-zero map for `better` (its value the uniform map's), hip 0
    of seed 1 no reference (NaN in every arm)."""
    rng = np.random.default_rng(12)
    predictions, metrics = [], []
    for s in range(n_seeds):
        subject = np.repeat(np.arange(n_subjects) + (0 if crossed else 100 * s), 2).astype(str)
        n = 2 * n_subjects
        label = (rng.random(n) < 0.4).astype(int)
        label[0], label[-1] = 1, -1  # hip 0: a positive (undefined map below); the last: unknown label
        latent, com = rng.normal(0, 1, n), rng.uniform(5, 15, n)
        for arm in ("prior", "better", "same"):
            prob = label.clip(0) + latent * (0.6 if arm == "better" else 1.5)
            shift = -2.0 + rng.normal(0, 0.5, n) if arm == "better" else 0.0
            base = {"model": arm, "seed": s, "row": np.arange(n), "target": TARGET, "label": label}
            predictions.append(pd.DataFrame(base | {"subject": subject, "visit": "V00",
                                                    "side": np.tile(["left", "right"], n_subjects), "prob": prob}))
            metrics.append(pd.DataFrame(base | {"com_distance": com + shift, "map_defined": 1.0}))
    metrics[1].loc[0, ["com_distance", "map_defined"]] = (20.0, 0.0)  # all zero: scored as the uniform map
    for frame in metrics[3:6]:  # seed 1's hip 0 without a reference (every arm: it is the hip's)
        frame.loc[0, "com_distance"] = np.nan
    return pd.concat(predictions, ignore_index=True), pd.concat(metrics, ignore_index=True)


TARGET = TARGETS[0]


@pytest.mark.parametrize("crossed", [False, True])
def test_ablation_bootstrap_columns(crossed):
    predictions, metrics = ablation_runs(crossed)
    table = bootstrap_comparisons(predictions, metrics, ["prior", "better", "same"], "prior",
                                  ["auc", "com_distance"], n_boot=400, seed=0).set_index(["metric", "arm"])
    assert sorted(table.reset_index().columns) == sorted(BOOTSTRAP_COLUMNS) and len(table) == 4  # one target
    assert table["crossed"].tolist() == [crossed] * 4
    # the AUC difference is the ablation table's mean over seeds of the per-run AUC difference
    seed_values = seed_level_values(predictions, metrics)
    reference = ablation_table(seed_values, ["prior", "better", "same"]).set_index(["metric", "target", "arm"])
    assert table.loc[("auc", "better"), "boot_diff"] == pytest.approx(reference.loc[("auc", TARGET, "better"),
                                                                                      "diff"], abs=1e-12)
    better = table.loc[("com_distance", "better")]
    assert better["boot_low"] < -2.0 < better["boot_high"] and better["boot_high"] < 0 and better["survives"]
    positives = int(((metrics["model"] == "prior") & (metrics["label"] == 1)).sum())
    # the all-zero map is counted and compared; the hip without a reference leaves, counted
    assert better["undefined"] == 1 and better["no_reference"] == 1 and better["boot_hips"] == positives - 1
    assert table.loc[("auc", "better"), "boot_low"] > 0
    same = table.loc[("com_distance", "same")]  # identical arms: a point interval at 0, p = 1, no claim
    assert (same["boot_low"], same["boot_high"], same["boot_p"], same["survives"]) == (0, 0, 1, False)
    assert (table["p_holm"] >= table["re_p"]).all()
    assert (same["re_low"], same["re_high"], same["re_p"]) == (0, 0, 1)


def test_ablation_bootstrap_scores_the_cue_free_auc_on_the_twins():
    """auc_no_cue is compared on the twin predictions: the twins' own AUC difference, not the cued one."""
    predictions, metrics = ablation_runs(crossed=True)
    # twins: the cued predictions with better and prior swapped, so the cue-free effect has the other sign
    twins = predictions.assign(model=predictions["model"].replace({"better": "prior", "prior": "better"}))
    table = bootstrap_comparisons(predictions, metrics, ["prior", "better"], "prior", ["auc", "auc_no_cue"],
                                  n_boot=300, seed=0, twin_predictions=twins).set_index("metric")
    assert table.loc["auc", "boot_diff"] == pytest.approx(-table.loc["auc_no_cue", "boot_diff"], abs=1e-12)
    assert table.loc["auc_no_cue", "boot_high"] < 0 < table.loc["auc", "boot_low"]
    with pytest.raises(ValueError, match="twin"):
        bootstrap_comparisons(predictions, metrics, ["prior", "better"], "prior", ["auc_no_cue"], n_boot=10, seed=0)


def test_an_arm_is_compared_with_the_arm_report_comparisons_names():
    """comparisons {better: same}: better's rows are better - same (column versus), in the seed-level
    table and in the bootstrap; an unknown arm is refused."""
    predictions, metrics = ablation_runs(crossed=True)
    arms = ["prior", "better", "same"]
    table = ablation_table(seed_level_values(predictions, metrics), arms, "prior", {"better": "same"})
    default = ablation_table(seed_level_values(predictions, metrics), arms, "prior")
    com = table[table["metric"] == "com_distance"].set_index("arm")
    assert com.loc["better", "versus"] == "same" and com.loc["same", "versus"] == "prior"
    # same is a copy of prior: against either, the difference is the same number
    assert com.loc["better", "diff"] == pytest.approx(
        default.set_index(["metric", "arm"]).loc[("com_distance", "better"), "diff"], abs=1e-12)
    boot = bootstrap_comparisons(predictions, metrics, arms, "prior", ["com_distance"], n_boot=200, seed=0,
                                 comparisons={"same": "better"}).set_index("arm")
    assert boot.loc["same", "boot_low"] > 0  # same - better: the 2 px the better arm gains, reversed
    with pytest.raises(ValueError, match="unknown arm"):
        ablation_table(seed_level_values(predictions, metrics), arms, "prior", {"better": "nope"})
    with pytest.raises(ValueError, match="compared with nothing"):
        bootstrap_comparisons(predictions, metrics, arms, "prior", ["auc"], n_boot=10, seed=0,
                              comparisons={"prior": "better"})


def test_crossed_bootstrap_mean_covers_the_true_mean_and_collapses_without_spread():
    """Seeds x subjects with a known mean 0.5 (a seed effect and a subject effect): the interval covers it
    and is wider than the subjects alone would make it; a constant value gives a point interval."""
    rng = np.random.default_rng(3)
    seeds, subjects = np.arange(8), np.arange(30)
    seed_effect, subject_effect = rng.normal(0, 0.1, 8), rng.normal(0, 0.3, 30)
    frame = pd.DataFrame([{"seed": s, "subject": c, "v": 0.5 + seed_effect[s] + subject_effect[c]
                           + rng.normal(0, 0.05)} for s in seeds for c in subjects])
    mean, low, high = crossed_bootstrap_mean(frame, "v", "seed", "subject", n_boot=1000, seed=0)
    assert mean == pytest.approx(frame["v"].mean(), abs=1e-12)
    assert low < 0.5 < high and high - low > 0.1
    assert crossed_bootstrap_mean(frame.assign(v=0.7), "v", "seed", "subject", n_boot=200) == pytest.approx(
        (0.7, 0.7, 0.7), abs=1e-12)


def test_crossed_bootstrap_mean_per_row_is_the_plain_mean_of_unequal_clusters():
    """Subjects with one or two rows: per_row gives the rows' plain mean (each row its own weight), the
    default the mean of subject means; both intervals cover their own estimate."""
    rng = np.random.default_rng(5)
    rows = [{"seed": s, "subject": c, "v": float(rng.normal(2.0 if c % 2 else 4.0, 0.5))}
            for s in range(4) for c in range(40) for _ in range(1 + c % 2)]
    frame = pd.DataFrame(rows)
    mean, low, high = crossed_bootstrap_mean(frame, "v", "seed", "subject", n_boot=500, seed=1, per_row=True)
    assert mean == pytest.approx(frame["v"].mean(), abs=1e-12)
    assert low < mean < high
    cell_mean, _, _ = crossed_bootstrap_mean(frame, "v", "seed", "subject", n_boot=0)
    assert cell_mean == pytest.approx(frame.groupby(["seed", "subject"])["v"].mean().mean(), abs=1e-12)
    assert abs(cell_mean - mean) > 0.1  # the two-row subjects (mean 2) weigh more per row


# --- crossed random-effects inference (the primary comparisons' interval and p) ---

def crossed_study(rng, seed_sd, subject_sd, n_seeds=8, n_subjects=40, cell_sd=1.0, hip_sd=1.0, undefined=0.0,
                  effect=EFFECT):
    """Long frame (model, seed, subject, side, value): one test cohort scored by every seed (crossed); the
    difference arm - prior of a hip is effect + seed effect + subject effect + seed x subject + hip noise;
    a share `undefined` of the hips is missing per seed (maps left out)."""
    subject = np.repeat(np.arange(n_subjects), 2)
    side = np.tile([0, 1], n_subjects)
    subject_effect = rng.normal(0, subject_sd, n_subjects)
    rows = []
    for s in range(n_seeds):
        keep = rng.random(2 * n_subjects) >= undefined
        diff = (effect + rng.normal(0, seed_sd) + subject_effect[subject] + rng.normal(0, cell_sd, n_subjects)[subject]
                + rng.normal(0, hip_sd, 2 * n_subjects))
        reference = rng.normal(10, 2, 2 * n_subjects)
        for name, value in (("prior", reference), ("arm", reference + diff)):
            rows.append(pd.DataFrame({"model": name, "seed": s, "subject": subject[keep], "side": side[keep],
                                      "value": value[keep]}))
    return pd.concat(rows, ignore_index=True)


def run_crossed(frame, **kwargs):
    return crossed_inference(frame, "value", "model", "seed", "subject", "side", "arm", "prior", **kwargs)


def test_crossed_inference_is_the_crossed_mixed_model_on_balanced_cells():
    """One hip per (seed, subject) cell, every cell present: the standard error is the one of statsmodels'
    MixedLM (REML, seed and subject variance components) to 1e-3 relative, the estimate its intercept."""
    frame = crossed_study(np.random.default_rng(21), seed_sd=0.5, subject_sd=1.0, n_subjects=40)
    frame = frame[frame["side"] == 0]
    result = run_crossed(frame)
    wide = frame.pivot_table(index=["seed", "subject"], columns="model", values="value").reset_index()
    wide = wide.assign(d=wide["arm"] - wide["prior"], group=1)
    fit = smf.mixedlm("d ~ 1", wide, groups="group",
                      vc_formula={"seed": "0 + C(seed)", "subject": "0 + C(subject)"}).fit(reml=True)
    assert result["estimate"] == pytest.approx(fit.params["Intercept"], abs=1e-9)
    assert result["se"] == pytest.approx(fit.bse["Intercept"], rel=1e-3)
    assert 7 <= result["df"] <= 39  # Satterthwaite: between the seeds' and the subjects' degrees of freedom
    assert result["ci_low"] < result["estimate"] < result["ci_high"]


def test_crossed_inference_covers_where_the_percentile_bootstrap_does_not():
    """200 simulated studies of 8 seeds x 40 subjects (80 hips, 5 % of them undefined per seed) where the
    seed effect (sd 1.5) dominates: the crossed interval covers the true difference in at least 0.93 of
    them (binomial sd at 0.95: 0.015); the percentile bootstrap of the same studies in fewer than 0.93
    (it behaves like a z interval on the 8 seeds' sd / sqrt(8) with divisor 8: ~0.89)."""
    rng = np.random.default_rng(0)
    crossed_hits = boot_hits = 0
    for sim in range(200):
        frame = crossed_study(rng, seed_sd=1.5, subject_sd=1.0, hip_sd=2.0, undefined=0.05)
        result = run_crossed(frame)
        crossed_hits += result["ci_low"] <= EFFECT <= result["ci_high"]
        boot = run_hierarchical(frame, n_boot=400, seed=sim, crossed=True)
        boot_hits += boot["ci_low"] <= EFFECT <= boot["ci_high"]
    assert crossed_hits / 200 >= 0.93
    assert boot_hits / 200 < 0.93


def test_crossed_inference_carries_the_subject_variance_the_seeds_share():
    """One fixed cohort with a large subject effect on the difference and almost no seed effect: the 8
    seed means move together, so a t interval over seeds is far too narrow; the crossed interval keeps the
    subjects' variance (about subject_sd / sqrt(40) = 0.47; accepted 0.3-0.7) and most of it is theirs."""
    frame = crossed_study(np.random.default_rng(5), seed_sd=0.05, subject_sd=3.0)
    result = run_crossed(frame)
    assert result["per_seed"].std(ddof=1) / np.sqrt(8) < 0.1
    assert 0.3 < result["se"] < 0.7 and result["seed_share"] < 0.1
    nested = run_crossed(frame, crossed=False)  # treated as independent seeds: the seeds' variance only
    assert nested["se"] == pytest.approx(result["per_seed"].std(ddof=1) / np.sqrt(8), rel=1e-9)
    assert nested["df"] == 7


def test_crossed_inference_of_an_auc_has_delong_s_standard_error():
    """statistic="auc" with one seed and every hip its own subject: the subjects' variance of the AUC
    difference is DeLong's paired variance (to the m / (m - 1) factors: 2 % here); the difference is
    the Mann-Whitney AUCs'."""
    rng = np.random.default_rng(2)
    labels = (rng.random(300) < 0.3).astype(int)
    latent = rng.normal(0, 1, 300)
    arm, reference = labels + latent + rng.normal(0, 0.6, 300), labels + latent + rng.normal(0, 1.0, 300)
    frame = pd.concat([pd.DataFrame({"model": name, "seed": 0, "subject": np.arange(300), "side": 0,
                                     "label": labels, "prob": scores})
                       for name, scores in (("arm", arm), ("prior", reference))], ignore_index=True)
    result = crossed_inference(frame, ["label", "prob"], "model", "seed", "subject", "side", "arm", "prior",
                               statistic="auc")
    delong = delong_paired(labels, arm, reference)
    assert result["estimate"] == pytest.approx(delong["diff"], abs=1e-12)
    assert result["se"] == pytest.approx(delong["se"], rel=0.02)
    assert result["df"] == 299


def test_holm_verdicts_do_not_depend_on_the_resampling_seed():
    """A fixed table of runs: two bootstrap seeds move the percentile intervals but not p_holm or the
    verdicts (Holm takes the analytic p)."""
    predictions, metrics = ablation_runs(crossed=True)
    arms = ["prior", "better", "same"]
    first, second = (bootstrap_comparisons(predictions, metrics, arms, "prior", ["auc", "com_distance"],
                                           n_boot=200, seed=seed) for seed in (0, 1))
    assert not np.allclose(first["boot_low"], second["boot_low"])  # the resampling seed did change something
    pd.testing.assert_series_equal(first["p_holm"], second["p_holm"], check_exact=True)
    pd.testing.assert_series_equal(first["survives"], second["survives"], check_exact=True)
    assert first["survives"].any() and not first["survives"].all()
