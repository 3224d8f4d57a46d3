"""Every table of paper A (and the extra ones) from the explain outputs, written as CSV + Markdown + LaTeX.

Inputs are the long frames of `osteoloc.io.runs.read_runs` (columns model, seed, row, target, label, ...).
Localisation statistics use positive images only (label 1); a metric that is NaN for either model (no
reference) drops the pair. An all-zero map is no NaN: explain scores it as the uniform map
(`explain.metrics.localisation_table`), so it stays in every mean, and every localisation table shows how
many of its images had one (`undefined` columns, from metrics.csv's `map_defined`). Which seeds each table
uses:
- Table 1: the selection seed (one run, paired Wilcoxon over its test images, as the paper);
- Tables A1 / A2, AUC, calibration and true localisation: every seed (per seed, and over seeds);
- Table 2: every hip of the study (labels do not depend on a seed).
"""

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from osteoloc.io.atomic import write_csv, write_text
from osteoloc.io.runs import with_prediction_columns
from osteoloc.report.stats import (calibrated, crossed_bootstrap_mean, delong_test, expected_calibration_error,
                                   image_level_table, label_correlation, paired_wilcoxon, seed_level_table)
from osteoloc.names import ABLATION_METRICS, CALIBRATED_METRICS, MODELS, PENALTY_WARNING, SHORT_NAMES, TARGETS

METRICS = ("com_distance", "peak_distance", "spread")
# Every table the report rule writes, with its label in the HTML report: names.TABLES.


def positives(frame):
    return frame[frame["label"] == 1]


def all_zero(frame):
    """1.0 where the row's map has zero mass (scored as the uniform map), else 0.0 (metrics.csv without
    `map_defined`: none)."""
    return 1.0 - frame["map_defined"] if "map_defined" in frame else pd.Series(0.0, index=frame.index)


def _undefined_by_model(frame, keys):
    """Per `keys`: the all-zero maps of each model as columns `<model>_undefined`."""
    counts = frame.assign(undefined=all_zero(frame)).pivot_table(index=keys, columns="model", values="undefined",
                                                                   aggfunc="sum")
    counts = counts.reindex(columns=list(MODELS)).fillna(0).astype(int)
    return counts.rename(columns=lambda m: f"{m}_undefined").reset_index()


def table1(metrics, selection_seed):
    """Per metric and target: n, mean +- sd of both models, mean difference, Wilcoxon W and p, and each
    model's all-zero maps among the run's positive images (scored as the uniform map, in the means)."""
    run = positives(metrics[metrics["seed"] == selection_seed])
    if run.empty:
        raise ValueError(f"no positive test image for the selection seed {selection_seed}")
    return image_level_table(run, METRICS).merge(_undefined_by_model(run, ["target"]), on="target", how="left")


def table2(labels):
    """Label co-occurrence: Pearson correlation of the four binary labels over every hip."""
    corr = label_correlation(labels)
    corr.index = [SHORT_NAMES[t] for t in corr.index]
    corr.columns = [SHORT_NAMES[t] for t in corr.columns]
    return corr.rename_axis("target").reset_index()


def seed_level_input(metrics):
    """The documented seed-level CSV: seed, metric, target, baseline_mean, prior_mean (+ n_images,
    baseline_undefined, prior_undefined).

    Per run, the mean of each metric over the positive test images both models define (an all-zero map is
    scored as the uniform map), and how many of those images each model's map was all zero."""
    rows = []
    pos = positives(metrics)
    pos = pos.assign(all_zero=all_zero(pos))
    for (seed, target), part in pos.groupby(["seed", "target"], sort=True):
        for metric in METRICS:
            wide = part.pivot_table(index="row", columns="model", values=[metric, "all_zero"], aggfunc="first")
            wide = wide.reindex(columns=pd.MultiIndex.from_product([[metric, "all_zero"], MODELS]))
            wide = wide[wide[metric].notna().all(axis=1)]
            rows.append({"seed": int(seed), "metric": metric, "target": target,
                         "baseline_mean": wide[metric]["baseline"].mean() if len(wide) else np.nan,
                         "prior_mean": wide[metric]["prior"].mean() if len(wide) else np.nan,
                         "n_images": len(wide), **{f"{model}_undefined": int(wide["all_zero"][model].sum())
                                                   for model in MODELS}})
    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METRICS)} | {t: i for i, t in enumerate(TARGETS)}
    return frame.sort_values(["metric", "target", "seed"], key=lambda s: s.map(order) if s.name != "seed"
                             else s, ignore_index=True)


def tableA1(seed_input):
    """Table A1 (`stats.seed_level_table`) with each model's all-zero maps summed over the runs (when the
    seed-level input counts them)."""
    table = seed_level_table(seed_input)
    counts = [f"{model}_undefined" for model in MODELS]
    if not set(counts) <= set(seed_input.columns):
        return table
    sums = seed_input.groupby(["metric", "target"], sort=False)[counts].sum().reset_index()
    return table.merge(sums, on=["metric", "target"], how="left")


def tableA2(seed_input):
    """Per seed, metric and target: the two models' means and their difference, and their all-zero maps."""
    counts = [c for c in (f"{model}_undefined" for model in MODELS) if c in seed_input]
    return seed_input.assign(diff=seed_input["prior_mean"] - seed_input["baseline_mean"])[
        ["seed", "metric", "target", "n_images", "baseline_mean", "prior_mean", "diff", *counts]]


def auc_table(predictions):
    """Per seed and target: AUC of both models, their difference and the paired DeLong test; then one row
    per target with the mean over seeds (seed = "mean")."""
    rows = []
    known = predictions[predictions["label"] >= 0]
    for (seed, target), part in known.groupby(["seed", "target"], sort=True):
        wide = part.pivot_table(index="row", columns="model", values=["prob", "label"], aggfunc="first")
        labels = wide["label"]["baseline"].to_numpy().astype(int)
        n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
        row = {"seed": str(seed), "target": target, "n_pos": n_pos, "n_neg": n_neg}
        if min(n_pos, n_neg) >= 2:
            test = delong_test(labels, wide["prob"]["baseline"].to_numpy(), wide["prob"]["prior"].to_numpy())
            row |= {"auc_baseline": test["auc_a"], "auc_prior": test["auc_b"], "diff": test["diff"],
                    "delong_z": test["z"], "delong_p": test["p"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("auc_baseline", "auc_prior", "diff", "delong_z", "delong_p"):
        if column not in table:
            table[column] = np.nan
    mean = (table.groupby("target", sort=False)[["n_pos", "n_neg", "auc_baseline", "auc_prior", "diff"]]
            .mean().reset_index().assign(seed="mean"))
    table = pd.concat([table, mean], ignore_index=True)
    return table.sort_values("target", key=lambda s: s.map({t: i for i, t in enumerate(TARGETS)}),
                             kind="stable", ignore_index=True)


def calibration_table(predictions, n_bins):
    """Expected calibration error per seed, model and target, and pooled over seeds (seed = "pooled")."""
    rows = []
    known = predictions[predictions["label"] >= 0]
    for (seed, model, target), part in known.groupby(["seed", "model", "target"], sort=True):
        rows.append({"seed": str(seed), "model": model, "target": target, "n": len(part),
                     "ece": expected_calibration_error(part["label"], part["prob"], n_bins)})
    for (model, target), part in known.groupby(["model", "target"], sort=True):
        rows.append({"seed": "pooled", "model": model, "target": target, "n": len(part),
                     "ece": expected_calibration_error(part["label"], part["prob"], n_bins)})
    return pd.DataFrame(rows)


def true_localisation_table(metrics):
    """Pointing game and energy in the lesion mask per target and model: the mean over positive test images
    of every seed (pooled) that carry a lesion mask or expert reference, the sd of the per-seed means, and
    the paired Wilcoxon over the pooled images. An image without one (NaN: no reference for that hip and
    target) is left out: n_images counts the images used, n_positive every positive test image, so partial
    references show how many carried one; n_undefined: how many of the images used had an all-zero map
    (scored as the uniform map: its expected pointing game over the grid's cells, its energy share)."""
    columns = ["target", "model", "n_runs", "n_positive", "n_images", "n_undefined", "pointing_game",
               "pointing_game_sd_runs", "energy_in_mask", "energy_in_mask_sd_runs"]
    if "pointing_hit" not in metrics:
        return pd.DataFrame(columns=columns)
    every = positives(metrics)
    pos = every.dropna(subset=["pointing_hit", "energy_in_mask"])
    rows = []
    for target in TARGETS:
        for model in MODELS:
            part = pos[(pos["target"] == target) & (pos["model"] == model)]
            per_seed = part.groupby("seed")[["pointing_hit", "energy_in_mask"]].mean()
            n_positive = int(((every["target"] == target) & (every["model"] == model)).sum())
            rows.append({"target": target, "model": model, "n_runs": len(per_seed), "n_positive": n_positive,
                         "n_images": len(part), "n_undefined": int(all_zero(part).sum()),
                         "pointing_game": part["pointing_hit"].mean(),
                         "pointing_game_sd_runs": per_seed["pointing_hit"].std(),
                         "energy_in_mask": part["energy_in_mask"].mean(),
                         "energy_in_mask_sd_runs": per_seed["energy_in_mask"].std()})
        wide = pos[pos["target"] == target].pivot_table(index=["seed", "row"], columns="model",
                                                        values="energy_in_mask", aggfunc="first")
        wide = wide.reindex(columns=list(MODELS)).dropna()
        _, w, p = paired_wilcoxon(wide["baseline"], wide["prior"])
        rows[-1] |= {"energy_W": w, "energy_p": p}
    return pd.DataFrame(rows, columns=[*columns, "energy_W", "energy_p"])


CONTROL_MODEL = "landmark control"  # the landmark-only control map's rows in the calibrated table
CALIBRATED_COLUMNS = ["target", "metric", "better", "model", "n_positive", "n_undefined", "n_images", "value",
                      "ci_low", "ci_high", "chance", "random_cell", "ceiling", "place", "place_low", "place_high"]


LEVEL_SUFFIXES = (("chance", "uniform"), ("random_cell", "random_cell"), ("ceiling", "ceiling"))


def _calibrated_row(part, column, n_positive, n_boot, seed):
    """One row's numbers over the hips where `column` and its levels are defined (the same hips for value,
    chance and ceiling; an all-zero map is among them, scored as the uniform map, and counted in
    n_undefined): the mean with its interval (`stats.crossed_bootstrap_mean` over seeds and subjects,
    each hip weighted as in the mean), the levels' means, the places of the value and of its interval's
    ends. The control's rows count no all-zero maps (n_undefined 0: its map is not the model's)."""
    metric = column.removesuffix("_control")
    level_columns = [f"{metric}_{suffix}" for _, suffix in LEVEL_SUFFIXES if f"{metric}_{suffix}" in part]
    part = part.dropna(subset=[column, *level_columns])
    levels = {level: part[f"{metric}_{suffix}"].mean() if f"{metric}_{suffix}" in part else np.nan
              for level, suffix in LEVEL_SUFFIXES}
    value, low, high = crossed_bootstrap_mean(part, column, "seed", "subject", n_boot=n_boot, seed=seed, per_row=True)
    place = calibrated([value, low, high], levels["chance"], levels["ceiling"])
    n_undefined = 0 if column.endswith("_control") else int(all_zero(part).sum())
    # a lower-is-better metric has ceiling < chance: the interval's low end has the higher place
    return {"n_positive": n_positive, "n_undefined": n_undefined, "n_images": len(part),
            "value": value, "ci_low": low, "ci_high": high, **levels, "place": float(place[0]),
            "place_low": float(np.minimum(place[1], place[2])), "place_high": float(np.maximum(place[1], place[2]))}


def _calibrated_rows(pos, present, n_boot, seed, head=None):
    """The calibrated table's rows of `pos` (positives with subject) for the metrics `present`: per target
    and metric the baseline, the prior and the landmark-only control (on the prior's hips)."""
    rows = []
    for target in TARGETS:
        for metric in present:
            start = (head or {}) | {"target": target, "metric": metric, "better": ABLATION_METRICS[metric].better}
            for model in MODELS:
                part = pos[(pos["target"] == target) & (pos["model"] == model)]
                rows.append(start | {"model": model} | _calibrated_row(part, metric, len(part), n_boot, seed))
            control = f"{metric}_control"
            if control in pos:
                part = pos[(pos["target"] == target) & (pos["model"] == "prior")]
                rows.append(start | {"model": CONTROL_MODEL} | _calibrated_row(part, control, len(part), n_boot, seed))
    return rows


def calibrated_table(metrics, predictions, n_boot=2000, seed=0):
    """Per target and calibrated metric (names.CALIBRATED_METRICS, those metrics.csv has): the baseline,
    the prior and the landmark-only control (scored on the prior's grid and hips), over the positive test
    images of every seed pooled: n_positive, n_images (where the value and its levels are defined: a
    reference exists), n_undefined (all-zero maps among them: scored as the uniform map, so at the chance
    level), the mean value and its interval (ci_low, ci_high: `stats.crossed_bootstrap_mean` over seeds
    and subjects, the subject from `predictions`; n_boot 0: none), its chance (uniform map), random-cell
    level and ceiling (best single-cell map of the run's grid, or mixture for centre-of-mass metrics) over
    the same images, and place = (value - chance) / (ceiling - chance): 0 = chance, 1 = the ceiling,
    whatever the direction; place_low <= place_high the places of the interval's ends."""
    present = [m for m in CALIBRATED_METRICS if m in metrics]
    if not present:
        return pd.DataFrame(columns=CALIBRATED_COLUMNS)
    pos = with_prediction_columns(positives(metrics), predictions, ["subject"], "calibrated table")
    return pd.DataFrame(_calibrated_rows(pos, present, n_boot, seed), columns=CALIBRATED_COLUMNS)


STRATIFIED_COLUMNS = ["stratum", "lesion_landmark_mm", *CALIBRATED_COLUMNS]


def strata_labels(edges_mm):
    """'< a mm', 'a-b mm', ..., '>= z mm' for the increasing edges (mm)."""
    edges = [f"{e:g}" for e in edges_mm]
    return ([f"< {edges[0]} mm"] + [f"{a}-{b} mm" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]} mm"]
            if edges else ["all"])


def stratified_table(metrics, predictions, strata_mm, spacing_mm, n_boot=2000, seed=0):
    """The calibrated table (`calibrated_table`'s columns) within strata of the lesion's distance to its
    closest exact landmark (metrics.csv's lesion_landmark_px, crop pixels, times spacing_mm): strata_mm
    the increasing edges (mm), a hip in [edge_k, edge_k+1); columns stratum (`strata_labels`) and
    lesion_landmark_mm (the stratum's mean distance over its positive images). Empty without the column
    (no lesion truth or no exact landmarks); a stratum without a hip has no rows."""
    present = [m for m in CALIBRATED_METRICS if m in metrics]
    if not present or "lesion_landmark_px" not in metrics:
        return pd.DataFrame(columns=STRATIFIED_COLUMNS)
    edges = np.asarray(sorted(strata_mm), dtype=np.float64)
    labels = strata_labels(edges)
    pos = with_prediction_columns(positives(metrics), predictions, ["subject"], "stratified table")
    distance_mm = pos["lesion_landmark_px"] * spacing_mm
    stratum = pd.Series(np.searchsorted(edges, distance_mm, side="right"), index=pos.index).where(distance_mm.notna())
    rows = []
    for k, label in enumerate(labels):
        part = pos[stratum == k]
        if part.empty:
            continue
        head = {"stratum": label, "lesion_landmark_mm": float(distance_mm[part.index].mean())}
        rows += _calibrated_rows(part, present, n_boot, seed, head)
    return pd.DataFrame(rows, columns=STRATIFIED_COLUMNS)


def constant_penalty_shares(metrics):
    """Per model (with a prior) and target: the share of test hips whose prior penalty is constant over
    the map grid (`penalty_constant`), over every seed."""
    if "penalty_constant" not in metrics:
        return {}
    flagged = metrics.dropna(subset=["penalty_constant"])
    return {key: float(part["penalty_constant"].mean())
            for key, part in flagged.groupby(["model", "target"], sort=True)}


def write_table(table, stem, decimals, caption=""):
    """`<stem>.csv` at full precision, `<stem>.md` and `<stem>.tex` rounded to `decimals` (stem may carry
    any of the three suffixes)."""
    stem = Path(stem).with_suffix("")
    write_csv(table, stem.with_suffix(".csv"))
    shown = table.copy()
    for column in shown.columns:
        if column in ("p", "delong_p", "energy_p"):  # small p-values keep their magnitude
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.2g}")
        elif pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].round(decimals)
    # tabulate's missingval replaces None only: NaN and pd.NA become None so that they show blank too.
    markdown = shown.astype(object).where(shown.notna(), None).to_markdown(index=False, missingval="")
    write_text(markdown + "\n", stem.with_suffix(".md"))
    latex = shown.to_latex(index=False, na_rep="", caption=caption or None, label=f"tab:{stem.name}",
                           float_format=f"%.{decimals}f", escape=True)
    write_text(latex, stem.with_suffix(".tex"))


def build_tables(predictions, metrics, labels, selection_seed, n_bins, seed_input_path, n_boot=2000, boot_seed=0,
                 strata_mm=(7.5, 15.0), spacing_mm=1.0):
    """Every table, in names.TABLE_IDS order. The seed-level CSV is written to `seed_input_path` and Table A1 is
    computed from the file as read back, so the same function serves numbers from elsewhere. n_boot,
    boot_seed: the calibrated tables' bootstrap intervals (`report.statistics`; n_boot 0: none); strata_mm,
    spacing_mm: the stratified table's lesion-landmark distance edges (mm) and the crop's pixel size (mm)."""
    seed_input = seed_level_input(metrics)
    write_csv(seed_input, seed_input_path)
    tables = {"table1": table1(metrics, selection_seed), "table2": table2(labels),
              "tableA1": tableA1(pd.read_csv(seed_input_path)), "tableA2": tableA2(seed_input),
              "auc": auc_table(predictions), "calibration": calibration_table(predictions, n_bins),
              "true_localisation": true_localisation_table(metrics),
              "calibrated": calibrated_table(metrics, predictions, n_boot, boot_seed),
              "stratified": stratified_table(metrics, predictions, strata_mm, spacing_mm, n_boot, boot_seed)}
    return tables


def read_table(path):
    """A table CSV written by `write_table` (the `seed` column, "0" or "mean", stays text)."""
    return pd.read_csv(path, dtype={"seed": str})


def undefined_maps(metrics):
    """Per model: positive (image, target) pairs of every run and how many have a Grad-CAM map with zero
    mass (all evidence negative), scored as the uniform map (`explain.metrics.localisation_table`)."""
    pos = positives(metrics)
    undefined = pos["map_defined"] == 0 if "map_defined" in pos else pos["spread"].isna()
    return {model: (int((pos["model"] == model).sum()), int(undefined[pos["model"] == model].sum())) for model in MODELS}


def markdown_text(value):
    """`value` (an id, a file name, a cell of the user's) as inert Markdown text: HTML's <, > and & as
    entities (a renderer passes raw HTML through), Markdown's markup characters and a table's | escaped."""
    return re.sub(r"([\\`*_\[\]|~#!])", r"\\\1", html.escape(str(value), quote=False))


def summary_markdown(study_name, tables, exclusions, n_hips, seeds, metrics=None):
    """A short Markdown summary: the study, the key numbers, and every exclusion (its cells, the user's ids,
    file names and reasons, as inert text: `markdown_text`)."""
    table_a1, auc = tables["tableA1"], tables["auc"]
    lines = [f"# {markdown_text(study_name)}: summary", "",
             f"- hips in the study: {n_hips}; runs (seeds): {len(seeds)} ({', '.join(map(str, seeds))})",
             f"- excluded: {len(exclusions)} (listed below)"]
    if metrics is not None:
        for model, (n, undefined) in undefined_maps(metrics).items():
            lines.append(f"- {model}: {undefined} of {n} positive (image, target) test pairs have an all-zero "
                         "Grad-CAM map (scored as the uniform map: every calibrated metric at its chance level)")
        for (model, target), share in constant_penalty_shares(metrics).items():
            warning = f" **WARNING: above {PENALTY_WARNING:.0%}, the prior gives these hips no gradient**" \
                if share > PENALTY_WARNING else ""
            lines.append(f"- {model} {SHORT_NAMES[target]}: the prior's penalty is constant over the map grid "
                         f"for {share:.0%} of the test hips{warning}")
    lines += ["",
             "## Localisation over runs (Table A1; prior - baseline, negative = better)", ""]
    for _, r in table_a1.iterrows():
        lines.append(f"- {r['metric']} {SHORT_NAMES.get(r['target'], r['target'])}: baseline "
                     f"{r['baseline_mean']:.1f}, prior {r['prior_mean']:.1f}, diff {r['mean_diff']:+.1f} px, "
                     f"improved in {r['improved']}/{r['n_runs']} runs, p = {r['p']:.3g}")
    lines += ["", "## AUC (mean over runs)", ""]
    for _, r in auc[auc["seed"] == "mean"].iterrows():
        lines.append(f"- {SHORT_NAMES[r['target']]}: baseline {r['auc_baseline']:.3f}, prior "
                     f"{r['auc_prior']:.3f}, diff {r['diff']:+.3f}")
    true_loc = tables.get("true_localisation")
    if true_loc is not None and len(true_loc):
        lines += ["", "## True localisation (lesion masks or expert references, pooled over runs)", ""]
        for _, r in true_loc.iterrows():
            lines.append(f"- {SHORT_NAMES[r['target']]} {r['model']}: pointing game "
                         f"{r['pointing_game']:.2f}, energy in mask {r['energy_in_mask']:.3f} "
                         f"(n = {r['n_images']} of {r['n_positive']} positive images)")
    calibrated_rows = tables.get("calibrated")
    if calibrated_rows is not None and len(calibrated_rows):
        lines += ["", "## Calibrated localisation (mean [95 % interval over seeds and subjects]; place between "
                  "chance 0 and the grid's ceiling 1; pooled over runs)", ""]
        for (target, metric), part in calibrated_rows.groupby(["target", "metric"], sort=False):
            shown = ", ".join(f"{r['model']} {r['value']:.3g}"
                              + (f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]" if pd.notna(r["ci_low"]) else "")
                              + f" (place {r['place']:.2f})" for _, r in part.iterrows())
            first = part.iloc[0]
            lines.append(f"- {SHORT_NAMES[target]} {metric} (chance {first['chance']:.3g}, ceiling "
                         f"{first['ceiling']:.3g}): {shown}")
    lines += ["", "## Exclusions", ""]
    if len(exclusions):
        lines.append(exclusions.fillna("").astype(str).map(markdown_text).to_markdown(index=False))
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"
