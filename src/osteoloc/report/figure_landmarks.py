"""Figure 1 (paper A): a right and a left hip crop from the study HDF5 with the BoneFinder contour in
black and the four target groups coloured (the left hip as stored, i.e. flipped like every crop)."""

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from osteoloc.report.style import PAPER_RC, TARGET_COLOURS, save_figure
from osteoloc.names import SHORT_NAMES, TARGETS


def pick_rows(meta, rows=None):
    """Rows to show: the given ones, else the first right and the first left hip."""
    if rows:
        return [int(r) for r in rows]
    picked = []
    for side in ("right", "left"):
        matches = meta.index[meta["side"] == side]
        if len(matches):
            picked.append(int(matches[0]))
    if not picked:
        raise ValueError("the study HDF5 holds no hips to show")
    return picked


def draw_hip(ax, image, contour, groups, valid, title):
    ax.imshow(image, cmap="gray", vmin=-0.25, vmax=1.25, interpolation="nearest")
    ax.scatter(contour[:, 0], contour[:, 1], s=4, c="black", linewidths=0)
    for t, target in enumerate(TARGETS):
        points = groups[t][valid[t]]
        ax.scatter(points[:, 0], points[:, 1], s=18, c=TARGET_COLOURS[target], edgecolors="white",
                   linewidths=0.4, zorder=3)
    size = image.shape[0]
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def figure_landmarks(data, sides, rows, out_stem):
    """Draw Figure 1 and save `<out_stem>.png` and `.pdf`. data: a HipBatch of `rows` with the fields image,
    contour, groups and valid; sides: each row's side."""
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(rows), figsize=(2.4 * len(rows), 2.7), squeeze=False)
        for i, (ax, side) in enumerate(zip(axes[0], sides)):
            title = f"{side} hip" + (" (flipped)" if side == "left" else "")
            draw_hip(ax, data.image[i], data.contour[i], data.groups[i], data.valid[i], title)
        handles = [Line2D([], [], marker="o", ls="", color="black", markersize=3, label="contour")]
        handles += [Line2D([], [], marker="o", ls="", color=TARGET_COLOURS[t], markersize=5,
                           label=SHORT_NAMES[t]) for t in TARGETS]
        fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False, bbox_to_anchor=(0.5, -0.02))
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        save_figure(fig, out_stem)
