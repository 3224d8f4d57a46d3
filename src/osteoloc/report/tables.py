"""Every table of paper A (and the extra ones) from the explain outputs, written as CSV + Markdown + LaTeX.

Inputs are the long frames of `osteoloc.io.runs.read_runs` (columns model, seed, row, target, label, ...).
Localisation statistics use positive images only (label 1); a metric that is NaN for either model drops the
pair. Which seeds each table uses:
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
from osteoloc.report.stats import (crossed_bootstrap_mean, delong_test, expected_calibration_error, image_level_table,
                                   label_correlation, paired_wilcoxon, seed_level_table)
from osteoloc.explain.metrics import calibrated
from osteoloc.names import ABLATION_METRICS, CALIBRATED_METRICS, MODELS, PENALTY_WARNING, SHORT_NAMES, TARGETS

METRICS = ("com_distance", "peak_distance", "spread")
# Every table the report rule writes, with its label in the HTML report: names.TABLES.


def positives(frame):
    return frame[frame["label"] == 1]


def table1(metrics, selection_seed):
    """Per metric and target: n, mean +- sd of both models, mean difference, Wilcoxon W and p."""
    run = positives(metrics[metrics["seed"] == selection_seed])
    if run.empty:
        raise ValueError(f"no positive test image for the selection seed {selection_seed}")
    return image_level_table(run, METRICS)


def table2(labels):
    """Label co-occurrence: Pearson correlation of the four binary labels over every hip."""
    corr = label_correlation(labels)
    corr.index = [SHORT_NAMES[t] for t in corr.index]
    corr.columns = [SHORT_NAMES[t] for t in corr.columns]
    return corr.rename_axis("target").reset_index()


def seed_level_input(metrics):
    """The documented seed-level CSV: seed, metric, target, baseline_mean, prior_mean (+ n_images).

    Per run, the mean of each metric over the positive test images both models define."""
    rows = []
    for (seed, target), part in positives(metrics).groupby(["seed", "target"], sort=True):
        for metric in METRICS:
            wide = part.pivot_table(index="row", columns="model", values=metric, aggfunc="first")
            wide = wide.reindex(columns=list(MODELS)).dropna()
            rows.append({"seed": int(seed), "metric": metric, "target": target,
                         "baseline_mean": wide["baseline"].mean() if len(wide) else np.nan,
                         "prior_mean": wide["prior"].mean() if len(wide) else np.nan,
                         "n_images": len(wide)})
    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METRICS)} | {t: i for i, t in enumerate(TARGETS)}
    return frame.sort_values(["metric", "target", "seed"], key=lambda s: s.map(order) if s.name != "seed"
                             else s, ignore_index=True)


def tableA2(seed_input):
    """Per seed, metric and target: the two models' means and their difference."""
    return seed_input.assign(diff=seed_input["prior_mean"] - seed_input["baseline_mean"])[
        ["seed", "metric", "target", "n_images", "baseline_mean", "prior_mean", "diff"]]


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
    target, or an all-zero map) is left out: n_images counts the images used, n_positive every positive
    test image, so partial references show how many carried one."""
    columns = ["target", "model", "n_runs", "n_positive", "n_images", "pointing_game", "pointing_game_sd_runs",
               "energy_in_mask", "energy_in_mask_sd_runs"]
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
                         "n_images": len(part), "pointing_game": part["pointing_hit"].mean(),
                         "pointing_game_sd_runs": per_seed["pointing_hit"].std(),
                         "energy_in_mask": part["energy_in_mask"].mean(),
                         "energy_in_mask_sd_runs": per_seed["energy_in_mask"].std()})
        wide = pos[pos["target"] == target].pivot_table(index=["seed", "row"], columns="model",
                                                        values="energy_in_mask", aggfunc="first")
        wide = wide.reindex(columns=list(MODELS)).dropna()
        _, w, p = paired_wilcoxon(wide["baseline"], wide["prior"])
        rows[-1] |= {"energy_W": w, "energy_p": p}
    return pd.DataFrame(rows)


CONTROL_MODEL = "landmark control"  # the landmark-only control map's rows in the calibrated table
CALIBRATED_COLUMNS = ["target", "metric", "better", "model", "n_positive", "n_undefined", "n_images", "value",
                      "ci_low", "ci_high", "chance", "random_cell", "ceiling", "place", "place_low", "place_high"]


def _calibrated_row(part, column, n_positive, n_undefined, n_boot, seed):
    """One row's numbers: `column`'s mean over the hips where it is defined, with its interval
    (`stats.crossed_bootstrap_mean` over seeds and subjects, each hip weighted as in the mean); the levels
    (which do not depend on the map) over every hip with the reference; the places of the value and of
    its interval's ends."""
    metric = column.removesuffix("_control")
    levels = {level: part[f"{metric}_{suffix}"].mean() if f"{metric}_{suffix}" in part else np.nan
              for level, suffix in (("chance", "uniform"), ("random_cell", "random_cell"), ("ceiling", "ceiling"))}
    value, low, high = crossed_bootstrap_mean(part, column, "seed", "subject", n_boot=n_boot, seed=seed, per_row=True)
    place = calibrated([value, low, high], levels["chance"], levels["ceiling"])
    # a lower-is-better metric has ceiling < chance: the interval's low end has the higher place
    return {"n_positive": n_positive, "n_undefined": n_undefined, "n_images": int(part[column].notna().sum()),
            "value": value, "ci_low": low, "ci_high": high, **levels, "place": float(place[0]),
            "place_low": float(np.minimum(place[1], place[2])), "place_high": float(np.maximum(place[1], place[2]))}


def calibrated_table(metrics, predictions, n_boot=2000, seed=0):
    """Per target and calibrated metric (names.CALIBRATED_METRICS, those metrics.csv has): the baseline,
    the prior and the landmark-only control (scored on the prior's grid and hips), over the positive test
    images of every seed pooled: n_positive, n_undefined (all-zero maps: counted, scored 0 by the pointing
    game and energies, without a distance), n_images (where the value is defined), the mean value and its
    interval (ci_low, ci_high: `stats.crossed_bootstrap_mean` over seeds and subjects, the subject from
    `predictions`; n_boot 0: none), its chance (uniform map), random-cell level and ceiling (best
    single-cell map of the run's grid), and place = (value - chance) / (ceiling - chance): 0 = chance,
    1 = the ceiling, whatever the direction; place_low <= place_high the places of the interval's ends."""
    present = [m for m in CALIBRATED_METRICS if m in metrics]
    if not present:
        return pd.DataFrame(columns=CALIBRATED_COLUMNS)
    pos = positives(metrics)
    pos = with_prediction_columns(pos, predictions, ["subject"], "calibrated table")
    defined = pos["map_defined"] if "map_defined" in pos else pd.Series(1.0, index=pos.index)
    rows = []
    for target in TARGETS:
        for metric in present:
            head = {"target": target, "metric": metric, "better": ABLATION_METRICS[metric].better}
            for model in MODELS:
                part = pos[(pos["target"] == target) & (pos["model"] == model)]
                n_undefined = int((defined[part.index] == 0).sum())
                rows.append(head | {"model": model}
                            | _calibrated_row(part, metric, len(part), n_undefined, n_boot, seed))
            control = f"{metric}_control"
            if control in pos:
                part = pos[(pos["target"] == target) & (pos["model"] == "prior")]
                rows.append(head | {"model": CONTROL_MODEL}
                            | _calibrated_row(part, control, len(part), 0, n_boot, seed))
    return pd.DataFrame(rows, columns=CALIBRATED_COLUMNS)


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


def build_tables(predictions, metrics, labels, selection_seed, n_bins, seed_input_path, n_boot=2000, boot_seed=0):
    """Every table, in names.TABLE_IDS order. The seed-level CSV is written to `seed_input_path` and Table A1 is
    computed from the file as read back, so the same function serves numbers from elsewhere. n_boot,
    boot_seed: the calibrated table's bootstrap intervals (`report.statistics`; n_boot 0: none)."""
    seed_input = seed_level_input(metrics)
    write_csv(seed_input, seed_input_path)
    tables = {"table1": table1(metrics, selection_seed), "table2": table2(labels),
              "tableA1": seed_level_table(pd.read_csv(seed_input_path)), "tableA2": tableA2(seed_input),
              "auc": auc_table(predictions), "calibration": calibration_table(predictions, n_bins),
              "true_localisation": true_localisation_table(metrics),
              "calibrated": calibrated_table(metrics, predictions, n_boot, boot_seed)}
    return tables


def read_table(path):
    """A table CSV written by `write_table` (the `seed` column, "0" or "mean", stays text)."""
    return pd.read_csv(path, dtype={"seed": str})


def undefined_maps(metrics):
    """Per model: positive (image, target) pairs of every run and how many have a Grad-CAM map with zero
    mass (all evidence negative): no distance, a miss in the pointing game, no energy in the lesion."""
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
                         "Grad-CAM map (no distance; a miss in the pointing game, 0 energy in the lesion)")
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
