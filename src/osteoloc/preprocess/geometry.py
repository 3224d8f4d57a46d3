"""Per-hip geometry (docs/method.md section 3, docs/preprocessing.md steps 4-8): resample to the target spacing, crop a
square centred on the femoral-head circle (shifted to stay inside the image), flip left hips, map points
the same way, p5/p95 normalisation. Pure functions of arrays: no file, no label, no exclusion.

Coordinates: pixel (row i, column j) sits at x = j, y = i. Resampling is edge-aligned (the image's outer
edges stay put, as in torch's `interpolate(align_corners=False)` and skimage's `rescale`), so a source
point x maps to (x + 0.5) / scale - 0.5 with scale = target spacing / source spacing.
"""

from dataclasses import dataclass, field

import numpy as np

from osteoloc.cohort.landmarks import head_circle


class CropError(ValueError):
    """A hip cannot be cropped (image smaller than the crop, flat intensities)."""


# --- resampling ---------------------------------------------------------------------------------------
def resampled_length(n_in, scale):
    """Length of an axis of n_in source pixels after resampling by `scale` (= target / source spacing)."""
    return max(int(round(n_in / scale)), 1)


def axis_weights(n_in, scale, start, count):
    """Antialiased linear resampling weights for output pixels start .. start+count-1 of one axis.

    The same kernel as torch's `interpolate(mode="bilinear", antialias=True)`: a triangle stretched to the
    output pixel size when downsampling (so every source pixel contributes, no aliasing), plain linear
    interpolation when upsampling; truncated and renormalised at the image edge.
    Returns banded (indices, weights), both (count, K): output k = sum_j weights[k, j] * source[indices[k, j]].
    """
    support = scale if scale >= 1 else 1.0
    inv = 1.0 / scale if scale >= 1 else 1.0
    centres = scale * (np.arange(start, start + count) + 0.5)
    first = np.maximum(np.floor(centres - support + 0.5), 0).astype(np.int64)
    stop = np.minimum(np.floor(centres + support + 0.5), n_in).astype(np.int64)
    width = int((stop - first).max())
    indices = first[:, None] + np.arange(width)[None, :]
    weights = np.clip(1.0 - np.abs((indices - centres[:, None] + 0.5) * inv), 0.0, None)
    weights[indices >= stop[:, None]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(indices, n_in - 1), weights


def resample_crop(image, scale, offset, size):
    """The (size, size) window at `offset` (x0, y0) of `image` resampled by `scale`, computed from the
    source pixels under that window only (banded weights, a few source pixels per output pixel), never
    from the whole resampled image."""
    x0, y0 = offset
    row_idx, row_w = axis_weights(image.shape[0], scale, y0, size)
    col_idx, col_w = axis_weights(image.shape[1], scale, x0, size)
    lo, hi = int(col_idx.min()), int(col_idx.max()) + 1
    strip = image[row_idx.ravel(), lo:hi].astype(np.float64).reshape(*row_idx.shape, hi - lo)
    rows = np.einsum("ok,okc->oc", row_w, strip)  # (size, columns of the window)
    return np.einsum("pk,opk->op", col_w, rows[:, col_idx - lo]).astype(np.float32)


def _footprints(n_in, scale, start, count):
    """Source indices under each output pixel start .. start+count-1 (edge-aligned): (count, K), padded by
    repeating the last index (harmless for a maximum)."""
    k = np.arange(start, start + count)
    first = np.minimum(np.floor(scale * k + 1e-9).astype(np.int64), n_in - 1)
    stop = np.clip(np.ceil(scale * (k + 1) - 1e-9).astype(np.int64), first + 1, n_in)
    width = int((stop - first).max())
    return np.minimum(first[:, None] + np.arange(width)[None, :], stop[:, None] - 1)


def mask_crop(mask, scale, offset, size):
    """A label mask cropped like `resample_crop`: each output pixel takes the maximum over the source
    pixels it covers, so a lesion smaller than an output pixel never vanishes when downsampling (the same
    as nearest-neighbour when upsampling). Values are kept, never blended."""
    x0, y0 = offset
    rows = _footprints(mask.shape[0], scale, y0, size)
    cols = _footprints(mask.shape[1], scale, x0, size)
    return mask[rows[:, :, None, None], cols[None, None, :, :]].max(axis=(1, 3))


def to_resampled(points, scale):
    """Source-pixel points -> resampled-pixel points (edge-aligned grids)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / scale - 0.5


def crop_offset(centre, resampled_shape, size):
    """Top-left (x0, y0) of the square crop with the circle centre in pixel size // 2 (as the group's code),
    shifted to stay inside the image; raises CropError when the image is smaller than the crop."""
    rows, cols = resampled_shape
    if rows < size or cols < size:
        raise CropError(f"image is {cols} x {rows} px after resampling, smaller than the {size} px crop")
    x0 = int(np.clip(np.floor(centre[0]) - size // 2, 0, cols - size))
    y0 = int(np.clip(np.floor(centre[1]) - size // 2, 0, rows - size))
    return x0, y0


def to_crop(points_resampled, offset, side, size):
    """Resampled-pixel points -> crop pixels, mirrored for left hips (x <- S - 1 - x, like the pixels)."""
    points = np.asarray(points_resampled, dtype=np.float64) - np.asarray(offset, dtype=np.float64)
    if side == "left":
        points[..., 0] = size - 1 - points[..., 0]
    return points


def normalise(crop):
    """(x - p5) / (p95 - p5) with the crop's own percentiles; raises CropError on a flat crop."""
    p5, p95 = np.percentile(crop, [5, 95])
    if not p95 > p5:
        raise CropError(f"flat crop (p5 = p95 = {p5:g}), nothing to normalise")
    return ((crop - p5) / (p95 - p5)).astype(np.float32), (float(p5), float(p95))


def mirror_points(points, width):
    """Points (..., 2) of an image `width` px wide onto the horizontally mirrored image (`pixels[:, ::-1]`):
    x <- width - 1 - x (pixel-centre convention, as the flip of left hips)."""
    points = np.array(points, dtype=np.float64)
    points[..., 0] = width - 1 - points[..., 0]
    return points


def resample_scale(spacing_mm, source_spacing):
    """Source pixels per resampled pixel: target spacing / the source's column spacing (mm); the readers
    refuse anisotropic sources, so one axis serves both."""
    return float(spacing_mm) / float(source_spacing[1])


def landmarks_in_crop(points, scale, offset, side, size):
    """One hip's (80, 2) source-pixel points -> (contour (80, 2), head circle (cx, cy, r)) in crop pixels:
    resampled, shifted by the crop's `offset` (x0, y0), mirrored for left hips. The circle is fitted to
    the femoral-head points in resampled pixels, so r is in crop pixels."""
    resampled = to_resampled(points, scale)
    cx, cy, r = head_circle(resampled)
    centre = to_crop(np.array([cx, cy]), offset, side, size)
    return to_crop(resampled, offset, side, size), (centre[0], centre[1], r)


def crop_layer(layer, scale, offset, size, side):
    """A label layer (rows, cols) or a stack of them (k, rows, cols) cropped like the image (`mask_crop`
    per slice) and flipped like it for a left hip; uint8, contiguous."""
    layer = np.asarray(layer)
    stack = layer.reshape(-1, *layer.shape[-2:])
    cropped = np.stack([mask_crop(m, scale, offset, size) for m in stack]).reshape(*layer.shape[:-2], size, size)
    if side == "left":
        cropped = cropped[..., ::-1]
    return np.ascontiguousarray(cropped, dtype=np.uint8)


def mirror_layers(layers):
    """Named label layers onto the horizontally mirrored radiograph (`pixels[:, ::-1]`)."""
    return {name: layer[..., ::-1] for name, layer in layers.items()}


@dataclass
class HipCrop:
    """One hip in crop pixels (after the flip): the image and every geometric quantity of the row."""

    image: np.ndarray  # (S, S) float32, normalised, flipped for left hips
    contour: np.ndarray  # (80, 2) crop pixels
    contour_manual: np.ndarray  # (80, 2) crop pixels, NaN when there are no manual points
    offset: tuple  # (x0, y0) of the crop in the resampled, unflipped image
    head_circle: tuple  # (cx, cy, r) crop pixels
    intensity: tuple  # (p5, p95) of the crop before normalisation
    layers: dict = field(default_factory=dict)  # name -> uint8 label layer (..., S, S), e.g. lesions, cue


def preprocess_hip(pixels, spacing, points, side, crop_size, spacing_mm, manual_points=None, layers=None):
    """Crop one hip of a radiograph. `pixels` (rows, cols) with `spacing` (row_mm, col_mm); `points`
    and `manual_points` (80, 2) in source pixels; `layers` {name: uint8 (..., rows, cols)} label layers in
    the radiograph's grid (e.g. `lesions` (4, rows, cols), `cue` (rows, cols)), each taking the one crop
    and flip of the image. Raises CropError (image smaller than the crop, flat crop) and ValueError
    (degenerate head circle)."""
    scale = resample_scale(spacing_mm, spacing)
    resampled_shape = (resampled_length(pixels.shape[0], scale), resampled_length(pixels.shape[1], scale))
    offset = crop_offset(head_circle(to_resampled(points, scale))[:2], resampled_shape, crop_size)
    crop = resample_crop(pixels, scale, offset, crop_size)
    if side == "left":
        crop = crop[:, ::-1]
    image, intensity = normalise(crop)
    contour, circle = landmarks_in_crop(points, scale, offset, side, crop_size)
    manual = (np.full((80, 2), np.nan) if manual_points is None
              else to_crop(to_resampled(manual_points, scale), offset, side, crop_size))
    cropped = {name: crop_layer(layer, scale, offset, crop_size, side) for name, layer in (layers or {}).items()}
    return HipCrop(image=np.ascontiguousarray(image), contour=contour, contour_manual=manual, offset=offset,
                   head_circle=circle, intensity=intensity, layers=cropped)
