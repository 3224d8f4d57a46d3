"""Figure A1: validation loss per epoch for every grid point of the prior's search, the chosen one marked."""

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from osteoloc.report.style import PAPER_RC, save_figure


def figure_grid(histories, selection, stem):
    """histories: point id -> history DataFrame; selection: the selection.json record. Saves `stem` .png
    and .pdf (stem may carry either suffix)."""
    criterion = selection["criterion"]
    column = f"val_{criterion}"
    chosen = selection["point"]
    extension = {p for r in selection["rounds"] for p in r["extension"]}
    with plt.rc_context(PAPER_RC):
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        colours = plt.get_cmap("tab10").colors
        for i, (point, history) in enumerate(sorted(histories.items())):
            is_best = point == chosen
            style = {"color": "black" if is_best else colours[i % len(colours)], "linewidth": 2.2 if is_best else 1.0,
                     "linestyle": "--" if point in extension and not is_best else "-",
                     "alpha": 1.0 if is_best else 0.8}
            label = point + (" (chosen)" if is_best else "") + (" [ext.]" if point in extension else "")
            ax.plot(history["epoch"], history[column], marker="o", markersize=2.5, label=label, **style)
            if is_best:
                k = history[column].idxmin()
                ax.plot(history.loc[k, "epoch"], history.loc[k, column], marker="*", markersize=11,
                        color="tab:red", zorder=5, linestyle="none")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"validation {'BCE' if criterion == 'bce' else 'total'} loss")
        ax.set_title(f"Prior grid search: chosen {chosen} (star = best epoch)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, ncol=1 + len(histories) // 16)
        ax.grid(alpha=0.3)
        save_figure(fig, stem)
