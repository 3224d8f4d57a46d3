"""Paper B's tables and figures from the per-site outputs: Table 2 (detection + Dice per model), Table 1
(partitions), confusion matrices (Fig. 3), example overlays (Fig. 4), and the weak-vs-strong comparison
of paper A's CAMs with the U-Nets on the shared targets."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from osteoloc.report.style import PAPER_RC, save_figure
from osteoloc.names import SHORT_NAMES


def _pm(mean, sd):
    if pd.isna(mean):
        return ""
    return f"{mean:.2f} ± {sd:.2f}" if pd.notna(sd) else f"{mean:.2f}"


def table2(summaries):
    """One row per model (site), paper B's Table 2 columns plus n, positives, the confusion counts and
    the pointing game."""
    df = pd.DataFrame(summaries).reset_index(drop=True)
    df.insert(0, "model", np.arange(1, len(df) + 1))
    df["dice"] = [_pm(m, s) for m, s in zip(df["dice_mean"], df["dice_sd"])]
    cols = ["model", "site", "target", "n", "n_positive", "sensitivity", "specificity", "f1", "dice",
            "dice_mean", "dice_sd", "dice_n", "pointing", "tp", "fp", "tn", "fn"]
    return df[cols]


def table1(partitions):
    """Paper B's Table 1: per site, hips in train / validation / test as `n (with osteophytes)`, and the
    patch counts after augmentation. `partitions` is a list of dicts from `partition_counts`."""
    rows = []
    for p in partitions:
        row = {"site": p["site"], "target": p["target"]}
        for split in ("train", "val", "test"):
            row[f"{split}_hips"] = p[f"{split}_hips"]
            row[f"{split}_positive"] = p[f"{split}_positive"]
            row[split] = f"{p[f'{split}_hips']} ({p[f'{split}_positive']})"
            row[f"{split}_patches"] = p[f"{split}_patches"]
        rows.append(row)
    return pd.DataFrame(rows)


def partition_counts(site, target, sets):
    """Counts of one site's PatchSets (originals only for hips)."""
    out = {"site": site, "target": target}
    for split, ps in sets.items():
        original = ps.copy == 0
        out[f"{split}_hips"] = int(original.sum())
        out[f"{split}_positive"] = int((ps.labels[original] == 1).sum())
        out[f"{split}_patches"] = int(len(ps.rows))
    return out


def weak_vs_strong(cam_metrics, unet_metrics, sites):
    """Localisation of paper A's CAMs (per model: pointing game, heatmap energy inside the lesion mask)
    beside the U-Nets (pointing game, Dice) on the targets both cover, positives of the test split only.

    cam_metrics: {model: explain metrics.csv frame}; unet_metrics: {site: per-patch metrics frame};
    sites: {site: target}."""
    rows = []
    for target in dict.fromkeys(sites.values()):
        for model, frame in cam_metrics.items():
            pos = frame[(frame["target"] == target) & (frame["label"] == 1)]
            rows.append({"target": SHORT_NAMES[target], "method": f"CAM {model}", "n": int(len(pos)),
                         "pointing": pos["pointing_hit"].mean() if "pointing_hit" in pos else np.nan,
                         "energy_in_mask": pos["energy_in_mask"].mean() if "energy_in_mask" in pos else np.nan,
                         "dice": np.nan})
        for site, site_target in sites.items():
            if site_target != target:
                continue
            pos = unet_metrics[site][unet_metrics[site]["label"] == 1]
            rows.append({"target": SHORT_NAMES[target], "method": f"U-Net {site}", "n": int(len(pos)),
                         "pointing": pos["pointing_hit"].mean(), "energy_in_mask": np.nan,
                         "dice": pos["dice"].mean()})
    return pd.DataFrame(rows)


def confusion_figure(table, stem):
    """Fig. 3: one 2 x 2 confusion matrix (truth rows, prediction columns) per model."""
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(table), figsize=(2.0 * len(table), 2.0), squeeze=False)
        for ax, (_, r) in zip(axes[0], table.iterrows()):
            cm = np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]])
            sns.heatmap(cm, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax, square=True,
                        xticklabels=["absent", "present"], yticklabels=["absent", "present"])
            ax.set_title(f"{r['model']}: {r['site']}")
            ax.set_xlabel("predicted")
            ax.set_ylabel("truth" if ax is axes[0][0] else "")
        fig.tight_layout()
        save_figure(fig, stem)


def pick_examples(metrics, n_examples):
    """Indices (into the site's test patches) of `n_examples` positives spread over the Dice range, best
    first - a rule, not a hand choice (paper B's Fig. 4 shows 'various Dice scores')."""
    pos = metrics[metrics["label"] == 1].sort_values("dice", ascending=False, kind="stable")
    if pos.empty:
        return []
    picks = np.unique(np.linspace(0, len(pos) - 1, min(n_examples, len(pos))).round().astype(int))
    return list(pos.index[picks])


def examples_figure(examples, stem):
    """Fig. 4: columns = examples (site, Dice), rows = input, truth, prediction, truth + 2 x prediction
    (the overlap is the brightest, as in paper B). `examples`: list of (label, image, truth, pred)."""
    with plt.rc_context(PAPER_RC):
        n = max(len(examples), 1)
        fig, axes = plt.subplots(4, n, figsize=(1.3 * n, 5.4), squeeze=False)
        for col, (title, image, truth, pred) in enumerate(examples):
            panels = [(image, "gray", None), (truth, "gray", (0, 1)), (pred, "gray", (0, 1)),
                      (truth.astype(int) + 2 * pred.astype(int), "magma", (0, 3))]
            for row, (data, cmap, lim) in enumerate(panels):
                ax = axes[row, col]
                ax.imshow(data, cmap=cmap, vmin=lim[0] if lim else None, vmax=lim[1] if lim else None)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[0, col].set_title(title)
        for row, name in enumerate(["input", "truth", "prediction", "overlap"]):
            axes[row, 0].set_ylabel(name)
        if not examples:
            axes[0, 0].text(0.5, 0.5, "no positive test patch", ha="center", va="center")
        fig.tight_layout()
        save_figure(fig, stem)
