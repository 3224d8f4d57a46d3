"""The intervention figure: per arm and target, how far the Grad-CAM map follows a moved lesion (centre of
mass and peak, per mm the lesion moved: 1 = follows, 0 = stays) and the logit change when the lesion is
removed, from every run's interventions.csv (`osteoloc.explain.interventions`)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from osteoloc.names import SHORT_NAMES, TARGETS
from osteoloc.report.style import PAPER_RC, TARGET_COLOURS, save_figure

PANELS = (("com_follow", "moved", "CoM follows (per mm moved)"),
          ("peak_follow", "moved", "peak follows (per mm moved)"),
          ("logit_change", "removed", "logit change on removal"))


def intervention_summary(effects):
    """Per arm, target and panel quantity: mean, sd over seeds of the per-run means, n (interventions)."""
    rows = []
    for column, kind, _ in PANELS:
        part = effects[effects["kind"] == kind].dropna(subset=[column])
        per_run = part.groupby(["model", "seed", "target"])[column].mean().reset_index()
        for (model, target), runs in per_run.groupby(["model", "target"], sort=False):
            rows.append({"quantity": column, "arm": model, "target": target, "mean": runs[column].mean(),
                         "sd_seeds": runs[column].std(ddof=1), "n_seeds": len(runs),
                         "n": int(((part["model"] == model) & (part["target"] == target)).sum())})
    return pd.DataFrame(rows, columns=["quantity", "arm", "target", "mean", "sd_seeds", "n_seeds", "n"])


def figure_interventions(summary, arms, stem, width_in):
    """Three panels (PANELS), arms on the x axis, the four targets dodged; whiskers = sd over seeds."""
    width = 0.8 / len(TARGETS)
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(PANELS), figsize=(width_in, width_in * 0.42), squeeze=False)
        for ax, (column, _, title) in zip(axes[0], PANELS):
            block = summary[summary["quantity"] == column]
            for k, target in enumerate(TARGETS):
                part = block[block["target"] == target].set_index("arm").reindex(arms)
                x = np.arange(len(arms)) + (k - (len(TARGETS) - 1) / 2) * width
                ax.errorbar(x, part["mean"], yerr=part["sd_seeds"], fmt="o", ms=3, capsize=2, lw=0.9,
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
