"""A trained model's logits and Grad-CAM maps in the hip crop's frame, whatever its arm: the grid its maps
are computed on (`map_grid`), where a landmark-crop arm's sub-crop maps lie (`map_windows`) and the maps
themselves (`predict_maps`). Used by the explain run and the intervention scores alike."""

import numpy as np
import torch

from osteoloc.explain.cam import feature_grid, gradcam_maps
from osteoloc.names import TARGETS
from osteoloc.train.data import cut_subcrops, place_subcrop_maps, subcrop_offsets
from osteoloc.train.model import PerTargetModels


def map_grid(model, size):
    """(h, w) of the maps' grid: the model's feature map for its input (the hip crop, or a sub-crop)."""
    first = model[TARGETS[0]] if isinstance(model, PerTargetModels) else model
    crop = model.crop_px if isinstance(model, PerTargetModels) and model.crop_px else size
    return feature_grid(first, (crop, crop))


def map_windows(model, groups, valid, size):
    """(B, 4, 3) int (x0, y0, crop_px) where a landmark-crop arm's sub-crop maps lie in the hip crop (the
    same `subcrop_offsets` as `predict_maps`), or None when every map covers the whole crop."""
    if not (isinstance(model, PerTargetModels) and model.crop_px):
        return None
    valid = torch.from_numpy(np.asarray(valid, dtype=bool) & np.isfinite(groups).all(axis=-1))
    groups = torch.from_numpy(np.nan_to_num(np.asarray(groups, dtype=np.float32)))
    offsets = [subcrop_offsets(groups[:, t], valid[:, t], model.crop_px, size).numpy() for t in range(len(TARGETS))]
    windows = np.stack(offsets, axis=1)  # (B, 4, 2)
    return np.concatenate([windows, np.full((*windows.shape[:2], 1), model.crop_px)], axis=-1)


def predict_maps(model, images, groups, valid):
    """Logits (B, 4) and Grad-CAM maps (B, 4, S, S) in the hip crop's frame, detached float32.

    model: a four-target network or a `model.PerTargetModels` (each target's own model; with crop_px,
    on the sub-crop around the target's landmarks, its map placed back into the S x S frame, 0 outside).
    images (B, 1, S, S) on the model's device; groups (B, 4, L, 2) (x, y) crop pixels and valid (B, 4, L),
    numpy, NaN-padded as in the study (they place the sub-crops)."""
    if not isinstance(model, PerTargetModels):
        return gradcam_maps(model, images)
    size = images.shape[-1]
    valid = torch.from_numpy(np.asarray(valid, dtype=bool) & np.isfinite(groups).all(axis=-1))
    groups = torch.from_numpy(np.nan_to_num(np.asarray(groups, dtype=np.float32)))
    logits, maps = [], []
    for t, target in enumerate(TARGETS):
        inputs = images
        if model.crop_px:
            offsets = subcrop_offsets(groups[:, t], valid[:, t], model.crop_px, size)
            inputs = cut_subcrops(images, offsets, model.crop_px)
        target_logits, target_maps = gradcam_maps(model[target], inputs)
        if model.crop_px:
            target_maps = place_subcrop_maps(target_maps, offsets, size)
        logits.append(target_logits)
        maps.append(target_maps)
    return torch.cat(logits, dim=1), torch.cat(maps, dim=1)
