"""Detection and segmentation metrics of one site's test patches (paper B, Table 2 and Fig. 3).

Detection: a patch is called positive when its predicted osteophyte area (pixels with foreground
probability >= 0.5, i.e. the softmax argmax) is at least `min_area` pixels; truth is the hip's image-level
label. Dice (MONAI DiceMetric) is averaged over the label-positive test patches only - negatives have no
lesion to overlap, so they enter detection, not Dice. A positive whose lesion lies wholly outside its patch
(a far-off automatic landmark) counts Dice 1 when nothing is predicted and 0 otherwise (MONAI's
`ignore_empty=False` convention). Pointing game: the highest-probability pixel lies in the true mask.
"""

import numpy as np
import pandas as pd
import torch
from monai.metrics import DiceMetric
from sklearn.metrics import confusion_matrix, f1_score


def dice_scores(pred, truth):
    """Per-patch Dice of binary (n, P, P) masks."""
    if len(pred) == 0:
        return np.zeros(0)
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    p = torch.as_tensor(np.asarray(pred, dtype=np.float32))[:, None]
    t = torch.as_tensor(np.asarray(truth, dtype=np.float32))[:, None]
    return metric(p, t)[:, 0].numpy().astype(float)


def per_patch_metrics(prob, truth_masks, labels, rows, min_area, threshold=0.5):
    """One row per test patch: row, label, predicted area, predicted presence, true area, Dice, pointing hit
    (Dice and pointing only for label-positive patches; NaN otherwise)."""
    pred = (np.asarray(prob) >= threshold).astype(np.uint8)
    area = pred.reshape(len(pred), -1).sum(axis=1)
    labels = np.asarray(labels).astype(int)
    dice = dice_scores(pred, truth_masks)
    flat = np.asarray(prob).reshape(len(pred), -1)
    peak = flat.argmax(axis=1) if len(pred) else np.zeros(0, int)
    hit = np.asarray(truth_masks).reshape(len(pred), -1)[np.arange(len(pred)), peak] > 0 if len(pred) else np.zeros(0, bool)
    positive = labels == 1
    return pd.DataFrame({
        "row": np.asarray(rows).astype(int), "label": labels, "pred_area": area.astype(int),
        "pred_present": (area >= min_area).astype(int),
        "true_area": np.asarray(truth_masks).reshape(len(pred), -1).sum(axis=1).astype(int),
        "dice": np.where(positive, dice, np.nan), "pointing_hit": np.where(positive, hit.astype(float), np.nan)})


def summarise(metrics, site, target):
    """One Table-2 row: n, positives, confusion counts, sensitivity, specificity, F1, Dice mean/sd/n."""
    y, p = metrics["label"].to_numpy(), metrics["pred_present"].to_numpy()
    tn, fp, fn, tp = confusion_matrix(y, p, labels=[0, 1]).ravel() if len(y) else (0, 0, 0, 0)
    dice = metrics["dice"].dropna()
    return {
        "site": site, "target": target, "n": int(len(y)), "n_positive": int((y == 1).sum()),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
        "sensitivity": tp / (tp + fn) if tp + fn else np.nan,
        "specificity": tn / (tn + fp) if tn + fp else np.nan,
        "f1": f1_score(y, p, labels=[0, 1], zero_division=np.nan) if len(y) else np.nan,
        "dice_mean": float(dice.mean()) if len(dice) else np.nan,
        "dice_sd": float(dice.std(ddof=1)) if len(dice) > 1 else np.nan,
        "dice_n": int(len(dice)),
        "pointing": float(metrics["pointing_hit"].dropna().mean()) if len(dice) else np.nan}
