"""The ablation forest plot: each arm's mean difference to the reference arm with its t interval over seeds,
one panel per metric, drawn from the ablation table (`osteoloc.report.ablation.ablation_table`), nothing
recomputed. A localisation panel shows at each arm's row how many of its hips had an all-zero map (scored as
the uniform map, kept in the difference), and the reference's count in its title."""

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from osteoloc.report.style import PAPER_RC, TARGET_COLOURS, save_figure
from osteoloc.names import ABLATION_METRICS, CONFIDENCE, REFERENCE_ARM, SHORT_NAMES, TARGETS

MAX_COLUMNS = 3
ROW_HEIGHT_IN = 0.32  # per arm: four dodged target points stay apart at 7 pt type
DODGE = 0.18  # vertical offset between the targets of one arm (arm rows are 1 apart)
WIDE_INTERVAL = 3.0  # intervals wider than this many times the panel's median are clipped at its edge


def _x_limits(block):
    """The panel's x range: every difference, and the intervals no wider than WIDE_INTERVAL times the
    panel's median (a t interval over 2 seeds is 12.7 x their difference: drawn whole it would squash every
    other row against the zero line)."""
    diff, low, high = (block[c].to_numpy(dtype=float) for c in ("diff", "ci_low", "ci_high"))
    half = (high - low) / 2
    finite = np.isfinite(half)
    spread = half[finite & (half > 0)]  # zero-width intervals (an arm equal to the reference) set no scale
    kept = finite & (half <= WIDE_INTERVAL * np.median(spread)) if spread.size else finite
    values = np.concatenate([diff[np.isfinite(diff)], low[kept], high[kept], [0.0]])
    lo, hi = values.min(), values.max()
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def all_zero_counts(block, arms):
    """{arm: (all-zero maps, hips)} per run (mean over seeds) summed over the targets, from the ablation
    table's n_undefined and n_hips; empty where the metric counts none (AUC, no `map_defined`)."""
    if "n_undefined" not in block or not block["n_undefined"].notna().any():
        return {}
    sums = block.groupby("arm")[["n_undefined", "n_hips"]].sum()
    return {arm: (float(sums.loc[arm, "n_undefined"]), float(sums.loc[arm, "n_hips"])) for arm in arms
            if arm in sums.index}


def _panel(ax, block, arms, metric, reference, reference_block=None):
    """One metric: arms top to bottom, the four targets dodged within an arm, whiskers = the t interval
    (clipped at the panel's edge with an arrowhead where wider than the panel: `_x_limits`); at the right of
    each row the arm's all-zero maps / hips per run (`all_zero_counts`), the reference's in the title."""
    spec = ABLATION_METRICS[metric]
    x_lo, x_hi = _x_limits(block)
    for k, target in enumerate(TARGETS):
        rows = block[block["target"] == target].set_index("arm").reindex(arms)
        y = np.arange(len(arms)) + (k - (len(TARGETS) - 1) / 2) * DODGE
        diff = rows["diff"].to_numpy(dtype=float)
        low = rows["ci_low"].to_numpy(dtype=float)
        high = rows["ci_high"].to_numpy(dtype=float)
        has_ci = np.isfinite(low) & np.isfinite(high)
        colour = TARGET_COLOURS[target]
        shown_low, shown_high = np.clip(low, x_lo, x_hi), np.clip(high, x_lo, x_hi)
        ax.errorbar(diff[has_ci], y[has_ci], xerr=[diff[has_ci] - shown_low[has_ci], shown_high[has_ci] - diff[has_ci]],
                    fmt="o", color=colour, ms=3, lw=0.9, capsize=1.5)
        for clipped, edge, marker in ((has_ci & (low < x_lo), x_lo, "<"), (has_ci & (high > x_hi), x_hi, ">")):
            if clipped.any():  # (an empty unclipped line would give constrained layout an infinite extent)
                ax.plot(np.full(clipped.sum(), edge), y[clipped], marker, color=colour, ms=3.5, ls="none", clip_on=False)
        # A single seed has a difference but no interval: an open marker says so.
        ax.plot(diff[~has_ci], y[~has_ci], "o", mfc="white", mec=colour, ms=3, mew=0.9, ls="none")
    ax.axvline(0, color="black", lw=0.6, ls="--", zorder=0)
    ax.set_xlim(x_lo, x_hi)
    # each row names what its arm is compared with when that is not the reference arm
    versus = block.drop_duplicates("arm").set_index("arm")["versus"] if "versus" in block else {}
    ax.set_yticks(range(len(arms)), [arm if versus.get(arm, reference) in ("", reference)
                                     else f"{arm} − {versus[arm]}" for arm in arms])
    ax.set_ylim(len(arms) - 0.5, -0.5)  # first arm on top
    title = textwrap.fill(spec.label, 26)  # long labels wrap instead of running into the next panel's
    shows_maps = spec.source in ("positives", "cue")  # a map metric: its all-zero maps are counted
    counts = all_zero_counts(block, arms) if shows_maps else {}
    for y, arm in enumerate(arms):
        if arm in counts:
            ax.text(1.0, y, f" {counts[arm][0]:.3g}/{counts[arm][1]:.3g}", transform=ax.get_yaxis_transform(),
                    ha="left", va="center", fontsize=5.5, color="0.3", clip_on=False)
    reference_counts = {} if reference_block is None or not shows_maps else all_zero_counts(reference_block, [reference])
    if reference in reference_counts:
        title += f"\n(all-zero {reference} {reference_counts[reference][0]:.3g}/{reference_counts[reference][1]:.3g})"
    ax.set_title(title)
    ax.set_xlabel("← better" if spec.better == "lower" else "better →")
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
            _panel(ax, compared[compared["metric"] == metric], arms, metric, reference,
                   table[(table["metric"] == metric) & (table["arm"] == reference)])
        for ax in axes.flat[len(metrics):]:
            ax.set_axis_off()
        for ax in axes[:, 1:].flat:  # the arm names once per row of panels
            ax.tick_params(labelleft=False)
        handles = [Line2D([], [], color=TARGET_COLOURS[t], marker="o", ms=3, lw=0.9, label=SHORT_NAMES[t])
                   for t in TARGETS]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(TARGETS), frameon=False,
                   title=f"mean difference over seeds (arm − {reference}; a row 'a − b': a − b), "
                         f"{CONFIDENCE:.0%} t interval; at the right: the arm's all-zero maps / hips per run "
                         "(scored as the uniform map)", title_fontsize=7)
        save_figure(fig, stem)
