"""A split of the study HDF5 held in memory as tensors, batched index order and whole-batch rotation.

Training reads its split once (contracts.md section 2) and never touches the file again; augmentation
rotates a whole batch with one affine_grid / grid_sample call and moves the landmarks with the same
matrix, so the prior's penalty follows the image. No per-sample Python anywhere in the loop.

The study arms (`osteoloc.train.arms`) read the prior's landmarks from another source (the manual contour) or
with added noise, train one target at a time (`SplitTensors.target`), and cut each target's sub-crop
around its landmark zone (`subcrop_offsets`, `cut_subcrops`; `place_subcrop_maps` puts a sub-crop's map
back into the hip crop's frame).
"""

import hashlib
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from osteoloc.io.study_h5 import StudyFile
from osteoloc.names import TARGETS


@dataclass
class SplitTensors:
    """One split: images (N, 1, S, S) float32, labels (N, 4) float32 with -1 unknown, landmarks
    (N, 4, L, 2) float32 (x, y) in crop pixels (0 where invalid), valid (N, 4, L) bool, rows (N,) the
    HDF5 row of each image."""

    images: torch.Tensor
    labels: torch.Tensor
    landmarks: torch.Tensor
    valid: torch.Tensor
    rows: torch.Tensor

    def __len__(self):
        return len(self.rows)

    def to(self, device):
        return SplitTensors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def fingerprint(self, block_rows=256):
        """SHA-256 of every tensor's bytes, read `block_rows` rows at a time (no copy of the split), so a
        checkpoint of other data is never resumed."""
        digest = hashlib.sha256()
        for f in fields(self):
            tensor = getattr(self, f.name)
            digest.update(f"{f.name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            for start in range(0, len(tensor), block_rows):
                block = tensor[start:start + block_rows].detach().cpu().contiguous()
                digest.update(block.view(torch.uint8).numpy() if block.dtype == torch.bool else block.numpy())
        return f"{len(self)}:{digest.hexdigest()}"

    def take(self, index):
        """The rows `index` (a LongTensor on the data's device) of every tensor."""
        return SplitTensors(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def target(self, t, crop_px=0):
        """Target `t` alone (labels (N, 1), landmarks (N, 1, L, 2), valid (N, 1, L)), for a per-target
        model. With crop_px > 0 the images are each hip's crop_px-square sub-crop around the target's
        landmarks (`subcrop_offsets`) and the landmarks are in the sub-crop's pixels."""
        one = slice(t, t + 1)
        images, landmarks, valid = self.images, self.landmarks[:, one], self.valid[:, one]
        if crop_px:
            offsets = subcrop_offsets(landmarks[:, 0], valid[:, 0], crop_px, images.shape[-1])
            images = cut_subcrops(images, offsets, crop_px)
            landmarks = landmarks - offsets[:, None, None, :].to(landmarks.dtype)
            valid = valid & _inside(landmarks, crop_px)
            landmarks = torch.where(valid[..., None], landmarks, torch.zeros_like(landmarks))
        return SplitTensors(images=images, labels=self.labels[:, one], landmarks=landmarks, valid=valid,
                            rows=self.rows)


def read_subjects(h5_path):
    """`/meta/subject` of the study HDF5 as an array of str."""
    with StudyFile(h5_path) as study:
        return study.subjects()


def load_split(h5_path, split, which, *, landmark_source="automatic", landmark_noise_mm=0.0, seed=0):
    """Read the rows of the study HDF5 whose subject is in split `which` ('train', 'val', 'test').

    split: DataFrame `subject, split` (splits.check_split). Returns SplitTensors on the CPU; landmarks
    that are padding or NaN are marked invalid and set to 0.
    landmark_source: "automatic" (`/landmarks/groups`, the reference every metric uses) or "manual" (the
    groups built from `/landmarks/contour_manual` with the file's `group_indices`).
    landmark_noise_mm: sd of Gaussian noise added to every landmark coordinate (mm, converted to crop
    pixels with the file's `spacing_mm`), drawn once per hip from `seed`: a hip gets the same noise
    whatever split it is read in. Points the noise moves out of the crop become invalid.
    """
    with StudyFile(h5_path) as study:
        rows = study.rows_in_split(split, which)
        data = study.read(["image", "labels"], rows)
        landmarks, valid = prior_landmarks(study, rows, landmark_source, landmark_noise_mm, seed)
    landmarks = np.where(valid[..., None], landmarks, 0.0).astype(np.float32)
    return SplitTensors(
        images=torch.from_numpy(data.image.astype(np.float32, copy=False))[:, None],  # no second copy of the split
        labels=torch.from_numpy(data.labels.astype(np.float32)),
        landmarks=torch.from_numpy(landmarks),
        valid=torch.from_numpy(valid),
        rows=torch.from_numpy(rows),
    )


NOISE_STREAM = 12  # keeps the landmark noise's draws apart from every other use of the run's seed


def prior_landmarks(study, rows, source="automatic", noise_mm=0.0, seed=0):
    """The prior's target groups at `rows` of an open StudyFile: (n, 4, L, 2) float32 (x, y) crop pixels
    and (n, 4, L) bool valid (finite, inside the crop). See `load_split` for source, noise_mm and seed."""
    if source == "automatic":
        data = study.read(["groups", "valid"], rows)
        points = data.groups.astype(np.float32)
        valid = data.valid.astype(bool) & np.isfinite(points).all(axis=-1)
    elif source == "manual":
        contour = study.read(["contour_manual"], rows).contour_manual
        points, valid = groups_from_contour(contour, study.group_indices, study.crop_size)
        if not valid.any():
            raise ValueError(f"{study.path}: no manual landmark in these rows (the manual contour is "
                             "NaN: the manifest has no manual_points_path)")
    else:
        raise ValueError(f"landmark source must be 'automatic' or 'manual', not {source!r}")
    if noise_mm > 0:
        rng = np.random.default_rng([int(seed), NOISE_STREAM])
        # one draw for every hip of the file, so a hip's noise does not depend on the split's rows
        noise = rng.normal(0.0, noise_mm / study.spacing_mm, size=(len(study), *points.shape[1:]))
        points = (points + noise[np.asarray(rows)]).astype(np.float32)
        with np.errstate(invalid="ignore"):
            valid = valid & _inside(points, study.crop_size)
    return points, valid


def groups_from_contour(contour, group_indices, crop_size):
    """Target groups of many hips from their 80-point contours (the vectorised `landmarks.target_groups`).

    contour (n, 80, 2) (x, y) crop pixels, NaN where absent; group_indices {target: BoneFinder indices}.
    Returns (n, 4, L, 2) float32 NaN-padded to the longest group and (n, 4, L) bool: real points inside
    the crop."""
    contour = np.asarray(contour, dtype=np.float32)
    length = max(len(group_indices[t]) for t in TARGETS)
    index = np.zeros((len(TARGETS), length), dtype=np.int64)
    real = np.zeros((len(TARGETS), length), dtype=bool)
    for t, target in enumerate(TARGETS):
        index[t, : len(group_indices[target])] = group_indices[target]
        real[t, : len(group_indices[target])] = True
    points = np.where(real[None, ..., None], contour[:, index], np.nan).astype(np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(points).all(axis=-1) & _inside(points, crop_size)
    return points, valid


def _inside(points, size):
    """(x, y) points (..., 2) inside a size-pixel square (pixel centres 0..size-1, edges at -0.5)."""
    return ((points[..., 0] >= -0.5) & (points[..., 0] <= size - 0.5)
            & (points[..., 1] >= -0.5) & (points[..., 1] <= size - 0.5))


def subcrop_offsets(landmarks, valid, crop_px, size):
    """Top-left (x0, y0) integer pixels of each hip's crop_px-square sub-crop of a size-pixel hip crop:
    centred on the mean of the valid landmarks (n, L, 2) (x, y) of one target, clamped inside the hip
    crop; centred in the hip crop when a hip has no valid landmark. Returns a LongTensor (n, 2)."""
    if not 0 < crop_px <= size:
        raise ValueError(f"a landmark sub-crop of {crop_px} px does not fit the {size} px hip crop")
    weight = valid.to(torch.float64)
    count = weight.sum(dim=-1, keepdim=True)
    centre = (landmarks.to(torch.float64) * weight[..., None]).sum(dim=-2) / count.clamp(min=1)
    centre = torch.where(count > 0, centre, torch.full_like(centre, (size - 1) / 2))
    # the pixel centres of a crop starting at x0 run x0 .. x0 + crop_px - 1: their mean is the centre
    top_left = torch.round(centre - (crop_px - 1) / 2).to(torch.int64)
    return top_left.clamp(0, size - crop_px)


def _window(offsets, crop_px, device):
    steps = torch.arange(crop_px, device=device)
    offsets = offsets.to(device)
    return offsets[:, 1, None] + steps, offsets[:, 0, None] + steps  # rows (n, c), columns (n, c)


def cut_subcrops(images, offsets, crop_px):
    """images (n, C, S, S), offsets (n, 2) (x0, y0) -> (n, C, crop_px, crop_px), one gather, no loop."""
    rows, cols = _window(offsets, crop_px, images.device)
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def place_subcrop_maps(maps, offsets, size):
    """Sub-crop maps (n, C, c, c) back into the size x size hip-crop frame at offsets (n, 2) (x0, y0),
    zero outside the sub-crop (the inverse of `cut_subcrops` for maps)."""
    n, channels, crop_px, _ = maps.shape
    out = maps.new_zeros((n, channels, size, size))
    rows, cols = _window(offsets, crop_px, maps.device)
    batch = torch.arange(n, device=maps.device)[:, None, None]
    out.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]] = maps.permute(0, 2, 3, 1)
    return out


def batch_order(n, batch_size, generator=None):
    """Index batches over n samples: shuffled with `generator` (CPU), or in order when it is None."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))


def rotation_matrices(n, max_degrees, generator):
    """n 2 x 2 rotation matrices, angles uniform in [-max_degrees, max_degrees], drawn on the CPU."""
    angles = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def rotate_batch(images, landmarks, valid, rotations):
    """Rotate images (B, C, H, W) about their centre by `rotations` (B, 2, 2) (pixel frame, x right, y
    down) and move landmarks (B, ..., 2) in (x, y) pixels with the same matrices.

    The matrix maps an output pixel offset from the centre to the input offset it samples
    (p_in - c = R (p_out - c)), so a landmark moves to c + R^T (p_in - c). Points leaving the image
    become invalid. Returns (images, landmarks, valid).
    """
    b, _, h, w = images.shape
    rot = rotations.to(device=images.device, dtype=torch.float64)
    # affine_grid works in normalised coordinates (align_corners=False: n = (2u + 1) / size - 1)
    to_pixels = torch.diag(torch.tensor([w / 2, h / 2], dtype=torch.float64, device=images.device))
    to_normal = torch.diag(torch.tensor([2 / w, 2 / h], dtype=torch.float64, device=images.device))
    theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=images.device)
    theta[:, :, :2] = to_normal @ rot @ to_pixels
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    rotated = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64, device=images.device)
    flat = landmarks.reshape(b, -1, 2).to(torch.float64) - centre
    moved = (flat @ rot + centre).reshape(landmarks.shape)  # row vectors: p @ R == (R^T p^T)^T
    inside = ((moved[..., 0] >= -0.5) & (moved[..., 0] <= w - 0.5)
              & (moved[..., 1] >= -0.5) & (moved[..., 1] <= h - 0.5))
    return rotated, moved.to(landmarks.dtype), valid & inside
