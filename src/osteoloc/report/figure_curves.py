"""Learning curves of one training run from its history.csv table: training and validation loss per epoch
(the landmark prior's total too when the run measured it) and the validation AUC per target (rule
figure_learning_curves, `osteoloc.report.stages.learning_curves_stage`)."""

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from osteoloc.names import SHORT_NAMES, TARGETS
from osteoloc.report.style import PAPER_RC, TARGET_COLOURS, save_figure

LOSSES = (("train_bce", "train BCE", "tab:blue", "-"), ("val_bce", "val. BCE", "tab:blue", "--"),
          ("train_total", "train total", "tab:purple", "-"), ("val_total", "val. total", "tab:purple", "--"))


def figure_learning_curves(history, title, stem):
    """history: a history.csv frame (osteoloc.io.runs.HISTORY_COLUMNS). Left: losses per epoch, the
    epoch of the lowest validation BCE starred; right: validation AUC per target. Saves `stem` .png and .pdf."""
    with_prior = history["train_prior"].notna().any()
    with plt.rc_context(PAPER_RC):
        fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(7.0, 3.3), constrained_layout=True)
        for column, label, colour, style in LOSSES:
            if column.endswith("total") and not with_prior:
                continue  # the baseline's total is its BCE
            loss_ax.plot(history["epoch"], history[column], style, color=colour, marker="o", markersize=2.5,
                         label=label)
        if history["val_bce"].notna().any():
            k = history["val_bce"].idxmin()
            loss_ax.plot(history.loc[k, "epoch"], history.loc[k, "val_bce"], "*", color="tab:red", markersize=10,
                         label=f"best val. BCE (ep. {history.loc[k, 'epoch']})")
        loss_ax.set_ylabel("loss")
        loss_ax.set_title("loss per epoch")
        for target in TARGETS:
            column = f"val_auc_{target}"
            if column in history and history[column].notna().any():
                auc_ax.plot(history["epoch"], history[column], color=TARGET_COLOURS[target], marker="o",
                            markersize=2.5, label=SHORT_NAMES[target])
        auc_ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        auc_ax.set_ylim(0.0, 1.02)
        auc_ax.set_ylabel("validation AUC")
        auc_ax.set_title("validation AUC per target (dotted: chance)")
        for ax, columns in ((loss_ax, 3), (auc_ax, 4)):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=columns,
                      columnspacing=1.0, handlelength=1.6)  # below the panel, off the curves
        fig.suptitle(title)
        save_figure(fig, stem)
