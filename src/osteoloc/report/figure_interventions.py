"""The intervention figure: per arm and target, how far the Grad-CAM map follows a moved lesion (centre of
mass and peak, per mm the lesion moved: 1 = follows, 0 = stays) and the logit change when the lesion is
removed, from every run's interventions.csv (`osteoloc.explain.interventions`)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from osteoloc.names import SHORT_NAMES, TARGETS
from osteoloc.report.stats import crossed_bootstrap_mean
from osteoloc.report.style import PAPER_RC, TARGET_COLOURS, save_figure

PANELS = (("com_follow", "moved", "CoM follows (per mm moved)"),
          ("peak_follow", "moved", "peak follows (per mm moved)"),
          ("logit_change", "removed", "logit change on removal"))


SUMMARY_COLUMNS = ["quantity", "arm", "target", "mean", "ci_low", "ci_high", "sd_seeds", "n_seeds", "n_subjects",
                   "n"]


def intervention_summary(effects, n_boot=2000, seed=0):
    """Per arm, target and panel quantity: the mean over (seed, subject) cells (`stats.crossed_bootstrap_mean`)
    with its 95 % bootstrap interval over seeds and subjects, the sd over seeds of the per-run means, the
    seeds, subjects and interventions (n) it is over."""
    rows = []
    for column, kind, _ in PANELS:
        part = effects[effects["kind"] == kind].dropna(subset=[column])
        for (model, target), block in part.groupby(["model", "target"], sort=False):
            mean, low, high = crossed_bootstrap_mean(block, column, "seed", "subject", n_boot=n_boot, seed=seed)
            per_run = block.groupby("seed")[column].mean()
            rows.append({"quantity": column, "arm": model, "target": target, "mean": mean, "ci_low": low,
                         "ci_high": high, "sd_seeds": per_run.std(ddof=1), "n_seeds": len(per_run),
                         "n_subjects": block["subject"].nunique(), "n": len(block)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def figure_interventions(summary, arms, stem, width_in):
    """Three panels (PANELS), arms on the x axis, the four targets dodged; whiskers = the 95 % bootstrap
    interval over seeds and subjects."""
    width = 0.8 / len(TARGETS)
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(PANELS), figsize=(width_in, width_in * 0.42), squeeze=False)
        for ax, (column, _, title) in zip(axes[0], PANELS):
            block = summary[summary["quantity"] == column]
            for k, target in enumerate(TARGETS):
                part = block[block["target"] == target].set_index("arm").reindex(arms)
                x = np.arange(len(arms)) + (k - (len(TARGETS) - 1) / 2) * width
                error = np.clip([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]], 0, None)
                ax.errorbar(x, part["mean"], yerr=error, fmt="o", ms=3, capsize=2, lw=0.9,
                            color=TARGET_COLOURS[target], label=SHORT_NAMES[target])
            ax.axhline(0, color="grey", lw=0.6, ls="--")
            if column != "logit_change":
                ax.axhline(1, color="grey", lw=0.6, ls=":")
            ax.set_xticks(np.arange(len(arms)), arms, rotation=45, ha="right")
            ax.set_xlim(-0.5, len(arms) - 0.5)
            ax.set_title(title)
        axes[0][0].legend(frameon=False)
        fig.tight_layout()
        save_figure(fig, stem)
