"""The ablation forest plot: each arm's mean difference to the reference arm with its t interval over seeds,
one panel per metric, drawn from the ablation table (`osteoloc.ablation.ablation_table`), nothing
recomputed."""

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from osteoloc.ablation import ABLATION_METRICS, CONFIDENCE, REFERENCE_ARM
from osteoloc.figures.style import PAPER_RC, TARGET_COLOURS, save_figure
from osteoloc.targets import SHORT_NAMES, TARGETS

MAX_COLUMNS = 3
ROW_HEIGHT_IN = 0.32  # per arm: four dodged target points stay apart at 7 pt type
DODGE = 0.18  # vertical offset between the targets of one arm (arm rows are 1 apart)


def _panel(ax, block, arms, metric, reference):
    """One metric: arms top to bottom, the four targets dodged within an arm, whiskers = the t interval."""
    spec = ABLATION_METRICS[metric]
    for k, target in enumerate(TARGETS):
        rows = block[block["target"] == target].set_index("arm").reindex(arms)
        y = np.arange(len(arms)) + (k - (len(TARGETS) - 1) / 2) * DODGE
        diff = rows["diff"].to_numpy(dtype=float)
        low = rows["ci_low"].to_numpy(dtype=float)
        high = rows["ci_high"].to_numpy(dtype=float)
        has_ci = np.isfinite(low) & np.isfinite(high)
        colour = TARGET_COLOURS[target]
        ax.errorbar(diff[has_ci], y[has_ci], xerr=[diff[has_ci] - low[has_ci], high[has_ci] - diff[has_ci]],
                    fmt="o", color=colour, ms=3, lw=0.9, capsize=1.5)
        # A single seed has a difference but no interval: an open marker says so.
        ax.plot(diff[~has_ci], y[~has_ci], "o", mfc="white", mec=colour, ms=3, mew=0.9, ls="none")
    ax.axvline(0, color="black", lw=0.6, ls="--", zorder=0)
    ax.set_yticks(range(len(arms)), arms)
    ax.set_ylim(len(arms) - 0.5, -0.5)  # first arm on top
    ax.set_title(spec.label)
    ax.set_xlabel(f"{'← better' if spec.better == 'lower' else 'better →'}   (arm − {reference})")
    ax.grid(axis="x", lw=0.3, alpha=0.5)


def figure_ablation_forest(table, stem, width_in, reference=REFERENCE_ARM):
    """Forest plot of `table` (columns metric, target, arm, diff, ci_low, ci_high): one panel per metric
    with at least one finite difference, in ABLATION_METRICS order; rows = the arms other than `reference`
    in table order, the targets dodged and coloured; a dashed zero line. PNG + PDF at `stem`."""
    compared = table[table["arm"] != reference]
    arms = list(dict.fromkeys(compared["arm"]))
    metrics = [m for m in ABLATION_METRICS
               if np.isfinite(compared.loc[compared["metric"] == m, "diff"].to_numpy(dtype=float)).any()]
    if not metrics:
        raise ValueError(f"ablation forest plot: no arm has a difference to {reference!r} "
                         f"(arms in the table: {sorted(set(table['arm']))})")
    n_cols = min(MAX_COLUMNS, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(width_in, n_rows * (ROW_HEIGHT_IN * len(arms) + 0.9)),
                                 squeeze=False, layout="constrained")
        for ax, metric in zip(axes.flat, metrics):
            _panel(ax, compared[compared["metric"] == metric], arms, metric, reference)
        for ax in axes.flat[len(metrics):]:
            ax.set_axis_off()
        for ax in axes[:, 1:].flat:  # the arm names once per row of panels
            ax.tick_params(labelleft=False)
        handles = [Line2D([], [], color=TARGET_COLOURS[t], marker="o", ms=3, lw=0.9, label=SHORT_NAMES[t])
                   for t in TARGETS]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(TARGETS), frameon=False,
                   title=f"mean difference over seeds, {CONFIDENCE:.0%} t interval", title_fontsize=7)
        save_figure(fig, stem)
