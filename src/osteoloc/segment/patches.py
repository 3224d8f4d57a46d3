"""Landmark-centred patches taken with one affine sample, so rotation, scaling and displacement
augmentation are the same operation as plain extraction.

Geometry (paper B): a patch of P x P pixels centred on a site landmark; each patch pixel is
`dp x reference length` source pixels wide. Our reference length is the femoral-head diameter from a
least-squares circle through BoneFinder's head points (13, 78, 14-21): the circle fit averages ten points,
so it is steadier than a two-point distance, and it scales with the hip just as paper B's points {12, 39}
of their 85-point DXA model do. A `distance` reference between two named indices is also offered.
"""

import numpy as np
import torch
import torch.nn.functional as F

from osteoloc.cohort.landmarks import fit_circle


def reference_length(contour, kind, indices):
    """Reference length in crop pixels from one hip's (80, 2) contour; NaN when the points are missing.

    kind `head_diameter`: diameter of the circle through `indices` (their NaN rows ignored; NaN when
    fewer than three remain or they are collinear); `distance`: |p[i0] - p[i1]|.
    """
    pts = np.asarray(contour, dtype=float)[list(indices)]
    if kind == "head_diameter":
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        try:
            return 2.0 * fit_circle(pts)[2]
        except ValueError:  # too few or collinear points: no circle, the caller skips the hip
            return np.nan
    if kind == "distance":
        if len(pts) != 2:
            raise ValueError(f"reference kind 'distance' needs exactly two indices, got {list(indices)}")
        return float(np.linalg.norm(pts[0] - pts[1]))
    raise ValueError(f"unknown reference kind {kind!r} (head_diameter or distance)")


def site_centre(contour, indices):
    """Mean of the contour points `indices` (NaN ignored) -> (x, y); NaN when none is present."""
    pts = np.asarray(contour, dtype=float)[list(indices)]
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    return pts.mean(axis=0) if len(pts) else np.array([np.nan, np.nan])


def pixel_size(reference, dp, patch_size, dp_patch_size):
    """Source pixels per patch pixel. dp is paper B's value for a `dp_patch_size` patch; a smaller patch
    keeps the paper's field of view (dp_patch_size * dp reference lengths) with coarser pixels."""
    return dp * reference * dp_patch_size / patch_size


def affine_theta(centre, size_px, patch_size, shape, angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    """The (2, 3) affine_grid matrix (align_corners=False) mapping the patch onto the source image.

    Patch pixel j sits `(j - (P-1)/2) * size_px / scale` source pixels from the centre (rotated by
    `angle` rad), the centre moved by `shift` source pixels. Source pixel x sits at (2x+1)/W - 1.
    """
    h, w = shape
    c, s = np.cos(angle), np.sin(angle)
    half = size_px * patch_size / 2.0 / scale
    linear = np.array([[c, -s], [s, c]]) * half
    linear = np.diag([2.0 / w, 2.0 / h]) @ linear
    cx, cy = centre[0] + shift[0], centre[1] + shift[1]
    offset = np.array([(2 * cx + 1) / w - 1, (2 * cy + 1) / h - 1])
    return np.column_stack([linear, offset])


def sample_patches(image, mask, thetas, patch_size):
    """Sample one source image (S, S) and its mask with k affine matrices (k, 2, 3) -> (k, P, P) float32
    images (bilinear, border padding) and (k, P, P) uint8 masks (nearest, zero padding)."""
    k = len(thetas)
    theta = torch.as_tensor(np.asarray(thetas), dtype=torch.float32)
    grid = F.affine_grid(theta, (k, 1, patch_size, patch_size), align_corners=False)
    img = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None].expand(k, 1, *image.shape)
    out_img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out_mask = None
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None].expand(k, 1, *mask.shape)
        out_mask = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        out_mask = (out_mask[:, 0].numpy() > 0.5).astype(np.uint8)
    return out_img[:, 0].numpy(), out_mask


def normalise(patches, eps=1e-6):
    """Per-patch zero mean, unit variance (paper B: 'all cropped patches were normalised')."""
    mean = patches.mean(axis=(-2, -1), keepdims=True)
    std = patches.std(axis=(-2, -1), keepdims=True)
    return ((patches - mean) / (std + eps)).astype(np.float32)
