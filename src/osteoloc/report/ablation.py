"""The ablation table: every study arm against the paper's prior arm, paired over seeds.

Inputs are the long frames of `osteoloc.io.runs.read_runs` over the runs of every arm (column `model` = the
arm: `baseline`, `prior` or a configured arm name; column `seed`), from `results/explain/{arm}/seed{seed}/`
(docs/contracts.md section 5; the arms' contract in docs/evaluation.md, "Ablation table").

Two steps:
1. `seed_level_values`: per (arm, seed, target, metric) one number, the run's value of the metric
   (ABLATION_METRICS says where it comes from);
2. `ablation_table`: per (metric, target, arm) the mean +- sd over seeds and, paired by seed against the
   reference arm (`prior`), the mean difference arm - reference with its 95 % t interval over seeds, the
   seeds in which the arm is better (in the metric's direction), and the two-sided Wilcoxon signed-rank
   test over seeds (`stats.paired_wilcoxon`: exact for small n, also with ties).
`bootstrap_comparisons` gives columns to merge into that table from the hips themselves: the crossed
random-effects interval and analytic p over seeds and subjects (`stats.crossed_inference`), on which Holm's
correction across its rows rests, beside the hierarchical bootstrap's percentile interval
(`stats.hierarchical_bootstrap`, descriptive).
Distances and spread are in crop pixels; AUC, pointing game and energy shares are fractions (0-1).
"""

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from osteoloc.io.runs import read_runs, with_prediction_columns
from osteoloc.report.stats import calibrated, crossed_inference, hierarchical_bootstrap, holm, paired_wilcoxon
from osteoloc.report.comparisons import comparison_arms
from osteoloc.names import ABLATION_METRICS, CALIBRATED_METRICS, CONFIDENCE, PENALTY_WARNING, REFERENCE_ARM, TARGETS


RUN_KEYS = ["model", "seed", "target"]
LEVEL_COLUMNS = ["chance", "random_cell", "ceiling", "control"]  # beside a calibrated metric's run value
SEED_LEVEL_COLUMNS = ["arm", "seed", "target", "metric", "value", "n", "n_undefined", *LEVEL_COLUMNS]
ABLATION_COLUMNS = ["metric", "better", "target", "arm", "versus", "n_seeds", "n_hips", "n_undefined", "mean", "sd",
                    "chance", "ceiling",
                    "place", "control", "control_place", "diff", "ci_low", "ci_high", "improved", "n_pairs", "W", "p"]
# explain's column suffix of each level (`explain.metrics.LEVELS`, `CONTROL`): chance is the uniform map's
LEVEL_SUFFIXES = {"chance": "uniform", "random_cell": "random_cell", "ceiling": "ceiling", "control": "control"}


def _auc(part):
    """AUC of one run and target over its hips with a known label; NaN when one class is missing."""
    known = part[part["label"] >= 0]
    if known["label"].nunique() < 2:
        return pd.Series({"value": np.nan, "n": len(known)})
    return pd.Series({"value": roc_auc_score(known["label"], known["prob"]), "n": len(known)})


def _run_auc(predictions):
    return predictions.groupby(RUN_KEYS, sort=False)[["label", "prob"]].apply(_auc).reset_index()


def _run_means(frame, column):
    """Mean and count of the defined values of `column` per run and target, and n_undefined, how many of
    those hips have an all-zero map (explain scores it as the uniform map; NaN without `map_defined`); for
    a calibrated metric also the run means of its levels (LEVEL_COLUMNS) over the same hips. NaN means no
    reference (no lesion, no exact landmark, lesion and landmark too close for lesion_vs_landmark): such a
    hip has no value and no level, and is left out of both."""
    levels = {level: f"{column}_{suffix}" for level, suffix in LEVEL_SUFFIXES.items()
              if column in CALIBRATED_METRICS and f"{column}_{suffix}" in frame}
    kept = frame[[column, *(levels[k] for k in ("chance", "ceiling") if k in levels)]].notna().all(axis=1)
    frame = frame.assign(**{name: frame[name].where(kept) for name in [column, *levels.values()]},
                         _flat=(1.0 - frame["map_defined"]).where(kept) if "map_defined" in frame else np.nan)
    grouped = frame.groupby(RUN_KEYS, sort=False)
    parts = [grouped[column].mean().rename("value"), grouped[column].count().rename("n"),
             grouped["_flat"].sum(min_count=1).rename("n_undefined")]
    for level, name in levels.items():
        parts.append(grouped[name].mean().rename(level))
    return pd.concat(parts, axis=1).reset_index()


def seed_level_values(predictions, metrics, twin_predictions=None):
    """One value per (arm, seed, target, metric): columns SEED_LEVEL_COLUMNS (n = hips it averages over).

    predictions, metrics: `runs.read_runs` frames of every arm's runs; twin_predictions: the same runs'
    twin_predictions.csv (the test hips without the cue), or None. Localisation metrics average the positive
    test hips whose value is defined, i.e. that carry the reference; an all-zero map is among them, scored
    as the uniform map (every calibrated metric at its chance level), counted in n_undefined and, as a
    share of the positive hips, by `undefined_map`; the true-localisation metrics and the cue energy appear only when metrics.csv has their
    columns, AUC without the cue and the AUC drop (AUC - AUC without the cue) only with twin predictions.
    A calibrated metric (names.CALIBRATED_METRICS) carries the run means of its chance (the uniform map),
    random-cell level, ceiling (the best single-cell map of the run's grid) and the landmark-only
    control over the same hips; other metrics leave them NaN. `penalty_constant`: the share of every test
    hip (with a prior and a valid landmark) whose penalty is constant over the map grid."""
    parts = {"auc": _run_auc(predictions)}
    pos = metrics[metrics["label"] == 1]
    for metric, spec in ABLATION_METRICS.items():
        if spec.source == "positives" and metric in metrics:
            parts[metric] = _run_means(pos, metric)
        elif spec.source in ("cue", "all") and metric in metrics:
            parts[metric] = _run_means(metrics, metric)
        elif spec.source == "undefined" and "map_defined" in metrics:
            parts[metric] = _run_means(pos.assign(**{metric: 1.0 - pos["map_defined"]}), metric)
    if twin_predictions is not None:
        twin = _run_auc(twin_predictions)
        parts["auc_no_cue"] = twin
        both = parts["auc"].merge(twin, on=RUN_KEYS, suffixes=("", "_twin"), validate="one_to_one")
        parts["auc_drop"] = both.assign(value=both["value"] - both["value_twin"])[[*RUN_KEYS, "value", "n"]]
    frame = pd.concat([part.assign(metric=metric) for metric, part in parts.items()], ignore_index=True)
    frame = frame.rename(columns={"model": "arm"})
    frame["n"] = frame["n"].fillna(0).astype(int)
    return frame.reindex(columns=SEED_LEVEL_COLUMNS)


def place(value, chance, ceiling):
    """A value's place between chance (0) and ceiling (1), `explain.metrics.calibrated`."""
    return float(calibrated(value, chance, ceiling))


def t_interval(diffs, confidence=CONFIDENCE):
    """(low, high) t interval of the mean of `diffs` (mean +- t_{(1+c)/2, n-1} sd / sqrt(n)); NaNs when
    n < 2. Identical differences give the degenerate interval [d, d]."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if len(diffs) < 2:
        return np.nan, np.nan
    half = stats.t.ppf((1 + confidence) / 2, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return diffs.mean() - half, diffs.mean() + half


def _compare(values, reference, better):
    """Paired over seeds: arm - reference. values, reference: Series indexed by seed. A seed whose run
    value is NaN for either (no hip with the reference in that run, e.g. no positive test hip) has nothing
    to pair and leaves; an all-zero map is no NaN (explain scores it as the uniform map)."""
    pairs = pd.concat([reference.rename("ref"), values.rename("arm")], axis=1, join="inner").dropna()
    diffs = pairs["arm"] - pairs["ref"]
    n, w, p = paired_wilcoxon(pairs["ref"], pairs["arm"])
    low, high = t_interval(diffs)
    improved = int((diffs < 0).sum() if better == "lower" else (diffs > 0).sum())
    return {"diff": diffs.mean() if n else np.nan, "ci_low": low, "ci_high": high, "improved": improved,
            "n_pairs": n, "W": w, "p": p}


def ablation_table(seed_values, arms, reference=REFERENCE_ARM, comparisons=None):
    """Per metric, target and arm (in `arms` order): n_seeds, n_hips (the hips a run's value is over, mean
    over seeds: with expert references for a subset of hips, those that carry one), n_undefined (the
    all-zero maps among them, mean over seeds; scored as the uniform map), mean and sd over seeds
    of the run values, and against `reference` (paired by seed, NaN values dropped): diff = mean of arm -
    reference, its t interval (ci_low, ci_high; CONFIDENCE), improved = seeds in which the arm is better in
    the metric's direction (column `better`), n_pairs, Wilcoxon W and two-sided p; `comparisons` ({arm: other
    arm}) compares an arm with another arm instead (column `versus`). The reference arm's own rows leave
    the comparison empty (improved and n_pairs are nullable integers). For a calibrated metric: chance and
    ceiling (mean over the arm's seeds, at the arm's own map grid), place = (mean - chance) / (ceiling -
    chance) (0 = chance, 1 = the best single-cell map; NaN when the grid's ceiling is chance), control =
    the landmark-only control map's value on the arm's grid and hips, control_place its place."""
    arms = list(arms)
    if reference not in arms:
        raise ValueError(f"ablation: the reference arm {reference!r} is not among the arms {arms}")
    present = set(seed_values["arm"])
    missing = [arm for arm in arms if arm not in present]
    if missing:
        raise ValueError(f"ablation: no run of the arms {missing} (runs of {sorted(present)})")
    versus = comparison_arms(arms, reference, comparisons)
    rows = []
    for metric, spec in ABLATION_METRICS.items():
        for target in TARGETS:
            block = seed_values[(seed_values["metric"] == metric) & (seed_values["target"] == target)]
            if block.empty:
                continue
            by_arm = {arm: part.set_index("seed")["value"] for arm, part in block.groupby("arm")}
            hips = {arm: part["n"] for arm, part in block.groupby("arm")}
            flat = {arm: part["n_undefined"] for arm, part in block.groupby("arm")}
            for arm in arms:
                values = by_arm.get(arm, pd.Series(dtype=float))
                levels = block[block["arm"] == arm][LEVEL_COLUMNS].mean()
                row = {"metric": metric, "better": spec.better, "target": target, "arm": arm,
                       "versus": versus.get(arm, ""), "n_seeds": int(values.notna().sum()), "n_hips": hips.get(arm, pd.Series(dtype=float)).mean(),
                       "n_undefined": flat.get(arm, pd.Series(dtype=float)).mean(),
                       "mean": values.mean(), "sd": values.std(ddof=1), "chance": levels["chance"],
                       "ceiling": levels["ceiling"], "place": place(values.mean(), levels["chance"], levels["ceiling"]),
                       "control": levels["control"],
                       "control_place": place(levels["control"], levels["chance"], levels["ceiling"])}
                if arm != reference:
                    row |= _compare(values, by_arm.get(versus[arm], pd.Series(dtype=float)), spec.better)
                rows.append(row)
    table = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    for column in ("improved", "n_pairs"):
        table[column] = table[column].astype("Int64")
    return table


def penalty_warnings(table, threshold=PENALTY_WARNING):
    """A warning per (arm, target) whose mean share of test hips with a constant prior penalty exceeds
    `threshold`: the prior gives those hips no gradient, so the arm trains partly without its prior."""
    rows = table[(table["metric"] == "penalty_constant") & (table["mean"] > threshold)]
    return [f"{r['arm']} {r['target']}: the prior's penalty is constant over the map grid for "
            f"{r['mean']:.0%} of the test hips (> {threshold:.0%}): no prior gradient there" for _, r in rows.iterrows()]


def read_arm_runs(runs, paths, kind):
    """`runs.read_runs` for parallel lists: runs [(arm, seed)], paths in the same order."""
    runs = [tuple(run) for run in runs]
    if len(runs) != len(paths):
        raise ValueError(f"ablation: {len(runs)} runs but {len(paths)} {kind} files")
    return read_runs(dict(zip(runs, paths)), kind)


BOOTSTRAP_COLUMNS = ["metric", "target", "arm", "boot_seeds", "boot_hips", "undefined", "no_reference", "crossed",
                     "boot_diff",
                     "boot_low", "boot_high", "boot_p", "p_holm", "survives", "re_se", "re_df", "re_low", "re_high",
                     "re_p", "seed_share"]


def bootstrap_comparisons(predictions, metrics, arms, reference=REFERENCE_ARM, metric_names=None, *, n_boot,
                          seed, alpha=0.05, confidence=CONFIDENCE, twin_predictions=None, comparisons=None,
                          interventions=None):
    """Columns to merge into `ablation_table` on (metric, target, arm): each arm - reference by
    `stats.hierarchical_bootstrap` over seeds and subjects (both hips, every visit of a subject together).

    predictions, metrics: the `runs.read_runs` frames (predictions give subject, visit, side). metric_names:
    the AUC ("auc", over hips with a known label) and "positives" metrics of ABLATION_METRICS (default: all
    of them present); the Holm family is every row returned, so pass the pre-specified primary metrics only.
    comparisons: {arm: other arm} as in `ablation_table`. "auc_no_cue" is the AUC on `twin_predictions` (the same runs on the test hips without the shortcut cue).
    An "interventions" metric (the follow rate) is compared on `interventions` (`report.interventions.follow_hips`:
    one row per run and moved lesion, column hip = the intervention, paired across arms).
    An all-zero map stays in the comparison (explain scores it as the uniform map) and is counted in
    `undefined` (hips where the arm's or the reference's map is all zero); a hip whose value is NaN for the
    arm or the reference has no reference (no lesion or exact landmark there, lesion and landmark too close
    for lesion_vs_landmark): nothing to compare, it leaves and is counted in `no_reference`. Seeds and subjects are crossed when a subject is scored in more than one seed (one fixed
    test cohort, or test splits that overlap), nested when every seed has its own subjects. Columns
    BOOTSTRAP_COLUMNS: boot_diff (mean over seeds), its percentile bootstrap interval and two-sided bootstrap p
    (`stats.hierarchical_bootstrap`, n_boot resamples; n_boot 0: none); re_se, re_df, re_low, re_high, re_p:
    the same difference's standard error, degrees of freedom, interval and two-sided p from the crossed
    random-effects model (`stats.crossed_inference`; no resampling), seed_share the share of its variance
    the seeds carry; p_holm (Holm across the rows' re_p) and whether the claim survives at alpha. The
    percentile bootstrap over 8 seeds undercovers when seed variance dominates (benchmarks/
    simulate_inference.py), and its p in Holm's first steps rests on a handful of tail resamples: the
    verdicts take the analytic p, which no resampling seed changes."""
    def with_hip(frame):
        return frame.assign(hip=frame["visit"].astype(str) + "/" + frame["side"].astype(str))

    scored = with_hip(predictions)
    hips = with_prediction_columns(metrics, scored, ["subject", "hip"], "ablation bootstrap")
    names = metric_names or [m for m, spec in ABLATION_METRICS.items()
                             if (spec.source == "positives" and m in metrics) or m == "auc"]
    versus = comparison_arms(arms, reference, comparisons)
    rows = []
    for metric in names:
        if metric == "auc":
            value, statistic, part = ["label", "prob"], "auc", scored[scored["label"] >= 0]
        elif metric == "auc_no_cue":
            if twin_predictions is None:
                raise ValueError("ablation bootstrap: auc_no_cue needs the twin predictions (cue.twins)")
            twins = with_hip(twin_predictions)
            value, statistic, part = ["label", "prob"], "auc", twins[twins["label"] >= 0]
        elif ABLATION_METRICS[metric].source == "positives":
            value, statistic, part = metric, None, hips[hips["label"] == 1]
        elif ABLATION_METRICS[metric].source == "interventions":
            if interventions is None:
                raise ValueError(f"ablation bootstrap: {metric} needs the runs' interventions (explain.interventions)")
            value, statistic, part = metric, None, interventions
        else:
            raise ValueError(f"ablation bootstrap: {metric!r} is neither the AUC nor a positives metric")
        for target in TARGETS:
            for arm, other in versus.items():
                pair = part[(part["target"] == target) & part["model"].isin([arm, other])]
                seeds = set(pair.loc[pair["model"] == arm, "seed"]) & set(
                    pair.loc[pair["model"] == other, "seed"])
                if not seeds:  # no run of the arm beside the reference's: no row, as in ablation_table
                    continue
                pair = pair[pair["seed"].isin(seeds)]
                keys = ["seed", "subject", "hip"]
                missing = pair[pair[value].isna().any(axis=1) if isinstance(value, list) else pair[value].isna()]
                drop = pair.set_index(keys).index.isin(missing.set_index(keys).index)
                pair = pair[~drop]
                flat = pair[pair["map_defined"] == 0] if "map_defined" in pair else pair.iloc[:0]
                row = {"metric": metric, "target": target, "arm": arm, "boot_seeds": len(seeds),
                       "boot_hips": len(pair) // 2, "undefined": len(flat[keys].drop_duplicates()),
                       "no_reference": len(missing[keys].drop_duplicates())}
                if not pair.empty:
                    # a subject scored in several seeds carries its effect into each: resample it once for all
                    crossed = bool(pair[["seed", "subject"]].drop_duplicates()["subject"].duplicated().any())
                    args = (pair, value, "model", "seed", "subject", "hip", arm, other)
                    model = crossed_inference(*args, statistic=statistic, confidence=confidence, crossed=crossed)
                    row |= {"crossed": crossed, "boot_diff": model["estimate"], "re_se": model["se"],
                            "re_df": model["df"], "re_low": model["ci_low"], "re_high": model["ci_high"],
                            "re_p": model["p"], "seed_share": model["seed_share"]}
                    if n_boot > 0:
                        boot = hierarchical_bootstrap(*args, statistic=statistic, n_boot=n_boot, seed=seed,
                                                      confidence=confidence, crossed=crossed)
                        row |= {"boot_low": boot["ci_low"], "boot_high": boot["ci_high"], "boot_p": boot["p"]}
                rows.append(row)
    table = pd.DataFrame(rows, columns=BOOTSTRAP_COLUMNS)
    tested = table["re_p"].notna()
    if tested.any():
        corrected = holm(table.loc[tested, "re_p"], alpha=alpha)
        table["p_holm"] = corrected["p_holm"].reindex(table.index)
        table["survives"] = corrected["survives"].reindex(table.index).astype("boolean")
    return table
