"""Shared figure conventions: paper-size fonts, PNG + PDF output written atomically."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402

from osteoloc.io.atomic import atomic_path  # noqa: E402

PAPER_RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
            "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.dpi": 150}
TARGET_COLOURS = {"osteo_fem_sup": "tab:red", "osteo_fem_inf": "tab:orange",
                  "osteo_acet_sup": "tab:blue", "osteo_acet_inf": "tab:green"}
MODEL_COLOURS = {"baseline": "tab:grey", "prior": "tab:purple"}


def save_figure(fig, stem):
    """Save `fig` to `<stem>.png` and `<stem>.pdf` (stem may carry either suffix) and close it."""
    stem = Path(stem).with_suffix("")
    for suffix in (".png", ".pdf"):
        target = stem.with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:], bbox_inches="tight", dpi=200)
    plt.close(fig)
