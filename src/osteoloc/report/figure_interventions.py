"""The intervention figure, from the intervention table (`osteoloc.report.interventions.intervention_summary`):
per arm and target, how far the Grad-CAM map's centre of mass follows a moved lesion (per mm moved: 1 =
follows, 0 = stays) along and across its zone, beside the lesion-driven oracle's ceiling and the
image-blind map's chance; the receiving target's map when the lesion moves to the other site; false
following (a lesion-free target's map when a lesion moves); the logit change when the lesion is removed.
Every intervention is in the means (an all-zero map scored as the uniform map); the panel titles count the
interventions with an all-zero map."""

import matplotlib.pyplot as plt
import numpy as np

from osteoloc.names import SHORT_NAMES, TARGETS
from osteoloc.report.style import PAPER_RC, TARGET_COLOURS, save_figure

# (quantity, kind, role, direction, title)
PANELS = (("com_follow", "moved", "lesion", "along", "moved along"),
          ("com_follow", "moved", "lesion", "across", "moved across"),
          ("com_follow", "other_site", "receiving", "", "other site\n(receiving map)"),
          ("com_follow", "moved", "unaffected", None, "false following\n(lesion-free map)"),
          ("logit_change", "removed", "lesion", "", "removed:\nlogit change"))


def _panel_rows(summary, quantity, kind, role, direction):
    block = summary[(summary["quantity"] == quantity) & (summary["kind"] == kind) & (summary["role"] == role)]
    if direction is None:  # both directions pooled: n-weighted means of the two rows (intervals: the wider)
        block = block.assign(weighted=block["mean"] * block["n"], ceiling_n=block["ceiling"] * block["n"])
        grouped = block.groupby(["arm", "target"])
        pooled = grouped[["weighted", "ceiling_n", "n", "n_undefined"]].sum()
        pooled["mean"] = pooled["weighted"] / pooled["n"]
        pooled["ceiling"] = pooled["ceiling_n"] / pooled["n"]
        pooled["ci_low"], pooled["ci_high"] = grouped["ci_low"].min(), grouped["ci_high"].max()
        return pooled.reset_index()
    return block[block["direction"] == direction]


def figure_interventions(summary, arms, stem, width_in):
    """The panels of PANELS, arms on the x axis, the four targets dodged; whiskers = the 95 % bootstrap
    interval over seeds and subjects; a short bar = the lesion-driven oracle's ceiling, the dashed line 0 =
    the image-blind map's chance."""
    width = 0.8 / len(TARGETS)
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(PANELS), figsize=(width_in, width_in * 0.42), squeeze=False)
        for ax, (quantity, kind, role, direction, title) in zip(axes[0], PANELS):
            block = _panel_rows(summary, quantity, kind, role, direction)
            for k, target in enumerate(TARGETS):
                part = block[block["target"] == target].set_index("arm").reindex(arms)
                x = np.arange(len(arms)) + (k - (len(TARGETS) - 1) / 2) * width
                error = np.clip(np.nan_to_num([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]]), 0, None)
                ax.errorbar(x, part["mean"], yerr=error, fmt="o", ms=3, capsize=2, lw=0.9,
                            color=TARGET_COLOURS[target], label=SHORT_NAMES[target])
                if quantity != "logit_change":
                    ax.plot(x, part["ceiling"], ls="none", marker="_", ms=7, mew=1.2, color=TARGET_COLOURS[target])
            ax.axhline(0, color="grey", lw=0.6, ls="--")
            ax.set_xticks(np.arange(len(arms)), arms, rotation=45, ha="right")
            ax.set_xlim(-0.5, len(arms) - 0.5)
            undefined, n = int(block["n_undefined"].sum()), int(block["n"].sum())
            ax.set_title(f"{title}\nall-zero maps: {undefined}/{n}", fontsize="small")
        axes[0][0].set_ylabel("CoM move per mm the lesion moved")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(TARGETS), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        save_figure(fig, stem)
