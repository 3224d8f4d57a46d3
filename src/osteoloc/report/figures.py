"""Figures 2-6, A2 and the reliability diagrams of paper A (Figure 1 comes from preprocessing, A1 from
training). Seeds: ROC (Fig 2) draws every seed, the selection seed bold; the distributions (Figs 3, A2) and
the reliability diagrams pool the positive test images / predictions of every seed; the single-run figures
(4, 5, 6) use the selection seed, as the paper shows one run. The figures take arrays and records;
`report.stages` reads the files and the cases' images and maps.
"""

import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import roc_auc_score, roc_curve

from osteoloc.report.style import MODEL_COLOURS, PAPER_RC, save_figure
from osteoloc.report.stats import reliability_bins
from osteoloc.names import MODELS, SHORT_NAMES, TARGETS


METRIC_LABELS = {"com_distance": "CoM distance (px)", "peak_distance": "peak distance (px)",
                 "spread": "spread (px)"}


def _panel_grid(n_rows, n_cols, width_in, height_per_row, **kwargs):
    return plt.subplots(n_rows, n_cols, figsize=(width_in, height_per_row * n_rows), squeeze=False,
                        layout="constrained", **kwargs)


def figure2_roc(predictions, selection_seed, stem, width_in):
    """ROC per target: every seed thin, the selection seed bold; legend = selection-seed AUC and the
    mean +- sd over seeds."""
    with plt.rc_context(PAPER_RC):
        fig, axes = _panel_grid(1, 4, width_in, width_in / 4 + 0.3, sharey=True)
        known = predictions[predictions["label"] >= 0]
        for ax, target in zip(axes[0], TARGETS):
            for model in MODELS:
                curves = {}
                for seed, part in known[(known["target"] == target) & (known["model"] == model)].groupby("seed"):
                    if part["label"].nunique() == 2:
                        curves[seed] = (*roc_curve(part["label"], part["prob"])[:2],
                                        roc_auc_score(part["label"], part["prob"]))
                aucs = [auc for _, _, auc in curves.values()]
                for seed, (fpr, tpr, auc) in curves.items():
                    if seed != selection_seed:
                        ax.plot(fpr, tpr, color=MODEL_COLOURS[model], lw=0.6, alpha=0.3)
                if selection_seed in curves:
                    fpr, tpr, auc = curves[selection_seed]
                    ax.plot(fpr, tpr, color=MODEL_COLOURS[model], lw=1.5,
                            label=f"{model} {auc:.2f} ({np.mean(aucs):.2f}±{np.std(aucs):.2f})")
            ax.plot([0, 1], [0, 1], color="black", lw=0.5, ls=":")
            ax.set(title=SHORT_NAMES[target], aspect="equal", xlim=(0, 1), ylim=(0, 1))
            ax.legend(loc="lower right", fontsize=5, handlelength=1.0, borderpad=0.3, framealpha=0.8,
                      title="AUC (runs mean±sd)", title_fontsize=5)
        axes[0, 0].set_ylabel("true positive rate")
        fig.supxlabel("false positive rate", fontsize=PAPER_RC["axes.labelsize"])
        save_figure(fig, stem)


def _distribution_figure(metrics, metric_names, stem, width_in):
    """Boxes per target and model; each target's label gives its images (n) and the all-zero maps of the
    baseline / prior among them (scored as the uniform map, inside the boxes)."""
    pos = metrics[metrics["label"] == 1].copy()
    pos["target"] = pos["target"].map(SHORT_NAMES)
    pos["all_zero"] = 1.0 - pos["map_defined"] if "map_defined" in pos else 0.0
    with plt.rc_context(PAPER_RC):
        fig, axes = _panel_grid(1, len(metric_names), width_in, 2.4)
        for ax, metric in zip(axes[0], metric_names):
            data = pos.dropna(subset=[metric])
            sns.boxplot(data=data, x="target", y=metric, hue="model", hue_order=list(MODELS),
                        order=[SHORT_NAMES[t] for t in TARGETS], palette=MODEL_COLOURS, ax=ax,
                        fliersize=1.5, linewidth=0.7)
            counts = data[data["model"] == "baseline"].groupby("target").size()
            flat = data.groupby(["target", "model"])["all_zero"].sum()
            ax.set_xticks(range(4), [f"{SHORT_NAMES[t]}\nn={counts.get(SHORT_NAMES[t], 0)}\nall-zero "
                                     + "/".join(f"{int(flat.get((SHORT_NAMES[t], m), 0))}" for m in MODELS)
                                     for t in TARGETS])
            ax.set(xlabel="", ylabel=METRIC_LABELS[metric])
            ax.legend(title=None, fontsize=6)
        save_figure(fig, stem)


def figure3_distances(metrics, stem, width_in):
    """CoM and peak distance, positive test images of every seed pooled, baseline vs prior."""
    _distribution_figure(metrics, ("com_distance", "peak_distance"), stem, width_in)


def figureA2_spread(metrics, stem, width_in):
    """Spread, positive test images of every seed pooled, baseline vs prior."""
    _distribution_figure(metrics, ("spread",), stem, width_in / 2)


def _show_map(ax, image, heatmap=None, alpha=0.45):
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    if heatmap is not None:
        ax.imshow(heatmap, cmap="jet", alpha=alpha, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def figure4_mean_cam(mean_by_model, labels, groups, valid, stem, width_in):
    """Mean Grad-CAM over the positive test images (selection seed), rows baseline / prior, one column per
    target; the mean landmark positions of those images overlaid; n per column.

    mean_by_model: {model: (4, S, S)}, plane t the mean map of target t over the images positive for t
    (`MapsFile.mean_over`, zeros when there is none); labels (n, 4); groups (n, 4, L, 2); valid (n, 4, L),
    on the rows of the maps files."""
    with plt.rc_context(PAPER_RC):
        fig, axes = _panel_grid(2, 4, width_in, width_in / 4 + 0.15)
        points = np.where(valid[..., None], groups, np.nan)
        for t, target in enumerate(TARGETS):
            positive = labels[:, t] == 1
            with warnings.catch_warnings():  # padding entries are NaN in every image: their mean is NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean_points = (np.nanmean(points[positive, t], axis=0) if positive.any()
                               else np.full(points.shape[2:], np.nan))
            for r, model in enumerate(MODELS):
                ax = axes[r, t]
                mean = mean_by_model[model][t]
                ax.imshow(mean, cmap="jet", vmin=0, vmax=max(float(mean.max()), 1e-6))
                ax.scatter(mean_points[:, 0], mean_points[:, 1], s=8, c="white", edgecolors="black",
                           linewidths=0.5)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{SHORT_NAMES[target]} (n = {int(positive.sum())})")
                if t == 0:
                    ax.set_ylabel(model)
        save_figure(fig, stem)


def figure5_row(labels, probs_baseline, row):
    """The sample of Figure 5: `row` if not None, else the test image with the most positive labels, ties
    broken by the highest mean baseline probability, then the lowest index. Returns the position."""
    if row is not None:
        return int(row)
    n_positive = (labels == 1).sum(axis=1)
    order = np.lexsort((np.arange(len(labels)), -probs_baseline.mean(axis=1), -n_positive))
    return int(order[0])


def figure5_sample(image, maps, labels, probs, stem, width_in):
    """One test image (selection seed): the reference and the baseline Grad-CAM of each target, with its
    label and baseline probability."""
    with plt.rc_context(PAPER_RC):
        fig, axes = _panel_grid(1, 5, width_in, width_in / 5 + 0.3)
        _show_map(axes[0, 0], image)
        axes[0, 0].set_title("reference")
        for t, target in enumerate(TARGETS):
            _show_map(axes[0, t + 1], image, maps[t])
            label = {1: "positive", 0: "negative"}.get(int(labels[t]), "unknown")
            axes[0, t + 1].set_title(f"{SHORT_NAMES[target]}\n{label}\np = {probs[t]:.2f}")
        save_figure(fig, stem)


@dataclass
class Case:
    key: str
    rule: str
    position: int  # index into the selection seed's test rows
    target: int
    fallback: bool


CASE_RULES = {
    "a": "positive, both models p >= threshold, prior CoM distance lower: largest CoM reduction",
    "b": "positive, prior better localised (lower CoM distance) but lower score: largest score drop",
    "c": "negative, baseline p >= threshold: largest score reduction by the prior",
    "d": "positive, baseline p >= threshold and prior p < threshold: largest score drop (failure)",
}


def select_cases(table, threshold):
    """Figure 6's four cases by the explicit rules in CASE_RULES.

    table: one row per (position, target) with label, p_baseline, p_prior, com_baseline, com_prior.
    When no pair meets a rule, the fallback relaxes it to its label condition and the same ordering; the
    case is marked so the figure says so. Each case shows a different image: the narrowest rules choose
    first (d, a, c, then b, the broadest), and an image already chosen is not chosen again."""
    d_com = table["com_prior"] - table["com_baseline"]
    d_p = table["p_prior"] - table["p_baseline"]
    pos, neg = table["label"] == 1, table["label"] == 0
    rules = {
        "a": (pos & (table["p_baseline"] >= threshold) & (table["p_prior"] >= threshold) & (d_com < 0),
              pos, d_com),
        "b": (pos & (d_com < 0) & (d_p < 0), pos, d_p),
        "c": (neg & (table["p_baseline"] >= threshold) & (d_p < 0), neg, d_p),
        "d": (pos & (table["p_baseline"] >= threshold) & (table["p_prior"] < threshold), pos, d_p),
    }
    cases = []
    for key in ("d", "a", "c", "b"):
        strict, relaxed, order = rules[key]
        unused = ~table["position"].isin([case.position for case in cases])
        for candidates, fallback in ((strict & unused, False), (relaxed & order.notna() & unused, True)):
            if candidates.any():
                best = order[candidates].sort_values(kind="stable").index[0]
                cases.append(Case(key, CASE_RULES[key], int(table.at[best, "position"]),
                                  int(table.at[best, "target"]), fallback))
                break
    return sorted(cases, key=lambda case: case.key)


def case_table(labels, probs, com):
    """The long table `select_cases` reads, from per-model arrays (n, 4)."""
    n = labels.shape[0]
    return pd.DataFrame({"position": np.repeat(np.arange(n), 4), "target": np.tile(np.arange(4), n),
                         "label": labels.reshape(-1),
                         "p_baseline": probs["baseline"].reshape(-1), "p_prior": probs["prior"].reshape(-1),
                         "com_baseline": com["baseline"].reshape(-1), "com_prior": com["prior"].reshape(-1)})


def figure6_cases(cases, images, maps_by_model, probs, groups, valid, stem, width_in):
    """Rows = cases (a)-(d); columns = reference, baseline, prior Grad-CAM of the case's target.

    images: {position: image (S, S)} and maps_by_model: {model: {position: maps (4, S, S)}} of at least
    the cases' positions (only the shown images are read); probs {model: (n, 4)}, groups (n, 4, L, 2) and
    valid (n, 4, L) by position."""
    with plt.rc_context(PAPER_RC):
        fig, axes = _panel_grid(max(len(cases), 1), 3, width_in * 0.6, width_in * 0.2 + 0.35)
        for r, case in enumerate(cases):
            i, t = case.position, case.target
            pts = groups[i, t][valid[i, t]]
            _show_map(axes[r, 0], images[i])
            axes[r, 0].set_ylabel(f"({case.key}) {SHORT_NAMES[TARGETS[t]]}" + ("\nfallback" if case.fallback
                                                                               else ""))
            axes[r, 0].set_title("reference")
            for c, model in enumerate(MODELS, start=1):
                _show_map(axes[r, c], images[i], maps_by_model[model][i][t])
                axes[r, c].scatter(pts[:, 0], pts[:, 1], s=6, c="white", edgecolors="black", linewidths=0.4)
                axes[r, c].set_title(f"{model}\np = {probs[model][i, t]:.2f}")
        save_figure(fig, stem)


def figure_reliability(predictions, n_bins, stem, width_in):
    """Reliability diagrams per target, predictions of every seed pooled, both models."""
    known = predictions[predictions["label"] >= 0]
    with plt.rc_context(PAPER_RC):
        fig, axes = _panel_grid(1, 4, width_in, width_in / 4 + 0.3, sharey=True)
        for ax, target in zip(axes[0], TARGETS):
            for model in MODELS:
                part = known[(known["target"] == target) & (known["model"] == model)]
                bins = reliability_bins(part["label"], part["prob"], n_bins).dropna()
                ax.plot(bins["mean_prob"], bins["fraction_positive"], marker="o", ms=2.5,
                        color=MODEL_COLOURS[model], label=model, clip_on=False)
            ax.plot([0, 1], [0, 1], color="black", lw=0.5, ls=":")
            ax.set(title=SHORT_NAMES[target], xlim=(0, 1), ylim=(0, 1), aspect="equal")
            ax.legend(loc="upper left", fontsize=6)
        axes[0, 0].set_ylabel("fraction positive")
        fig.supxlabel("mean predicted probability (equal-width bins)", fontsize=PAPER_RC["axes.labelsize"])
        save_figure(fig, stem)


# Every figure the report rule writes, with its label in the HTML report: names.FIGURES.


@dataclass
class SelectionRun:
    """The selection seed's test hips as the single-run figures use them, aligned on the maps' rows:
    rows (n,) HDF5 rows; labels (n, 4) int; groups (n, 4, L, 2) and valid (n, 4, L) (crop pixels); probs and
    com {model: (n, 4)} the predicted probabilities and CoM distances (NaN where a run has none)."""

    rows: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    valid: np.ndarray
    probs: dict
    com: dict


def selection_run(predictions, metrics, batch, selection_seed):
    """The SelectionRun of `batch` (the study's HipBatch of the maps' rows, with labels, groups and valid)
    from the selection seed's predictions and metrics rows."""
    rows = batch.rows

    def wide(frame, model, column):
        part = frame[(frame["seed"] == selection_seed) & (frame["model"] == model)]
        table = part.pivot_table(index="row", columns="target", values=column, aggfunc="first", dropna=False)
        return table.reindex(index=rows, columns=list(TARGETS)).to_numpy(dtype=np.float64)

    return SelectionRun(rows, batch.labels.astype(int), batch.groups, batch.valid,
                        probs={m: wide(predictions, m, "prob") for m in MODELS},
                        com={m: wide(metrics, m, "com_distance") for m in MODELS})


def run_figures(predictions, metrics, selection_seed, figure_paths, *, width_in, n_bins):
    """Figures 2, 3, A2 and the reliability diagrams, from every run's predictions and metrics rows."""
    figure2_roc(predictions, selection_seed, figure_paths["figure2"], width_in)
    figure3_distances(metrics, figure_paths["figure3"], width_in)
    figureA2_spread(metrics, figure_paths["figureA2"], width_in)
    figure_reliability(predictions, n_bins, figure_paths["reliability"], width_in)


def shown_cases(run, case_threshold, figure5_row_index, selection_seed):
    """(position of Figure 5's sample, Figure 6's Cases) in the SelectionRun `run`; figure5_row_index: an
    HDF5 row of its test split, or None for the rule (`figure5_row`)."""
    if figure5_row_index is not None and figure5_row_index not in run.rows:
        raise ValueError(f"report.figures.figure5_row {figure5_row_index} is not a test row of seed "
                         f"{selection_seed}")
    position = None if figure5_row_index is None else int(np.flatnonzero(run.rows == figure5_row_index)[0])
    sample = figure5_row(run.labels, run.probs["baseline"], position)
    return sample, select_cases(case_table(run.labels, run.probs, run.com), case_threshold)


def case_figures(run, mean_by_model, sample, cases, images, maps_by_model, figure_paths, width_in):
    """Figures 4, 5 and 6 of the SelectionRun `run`: mean_by_model {model: (4, S, S)} the mean map over its
    positive hips; sample, cases from `shown_cases`; images {position: (S, S)} and maps_by_model {model:
    {position: (4, S, S)}} of the positions shown."""
    figure4_mean_cam(mean_by_model, run.labels, run.groups, run.valid, figure_paths["figure4"], width_in)
    figure5_sample(images[sample], maps_by_model["baseline"][sample], run.labels[sample],
                   run.probs["baseline"][sample], figure_paths["figure5"], width_in)
    figure6_cases(cases, images, maps_by_model, run.probs, run.groups, run.valid, figure_paths["figure6"], width_in)
