"""A split of the study HDF5 held in memory as tensors, batched index order and whole-batch rotation.

Training reads its split once (contracts.md section 2) and never touches the file again; augmentation
rotates a whole batch with one affine_grid / grid_sample call and moves the landmarks with the same
matrix, so the prior's penalty follows the image. No per-sample Python anywhere in the loop.
"""

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from osteoloc.io.study_h5 import StudyFile


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

    def take(self, index):
        """The rows `index` (a LongTensor on the data's device) of every tensor."""
        return SplitTensors(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def read_subjects(h5_path):
    """`/meta/subject` of the study HDF5 as an array of str."""
    with StudyFile(h5_path) as study:
        return study.subjects()


def load_split(h5_path, split, which):
    """Read the rows of the study HDF5 whose subject is in split `which` ('train', 'val', 'test').

    split: DataFrame `subject, split` (splits.check_split). Returns SplitTensors on the CPU; landmarks
    that are padding or NaN are marked invalid and set to 0.
    """
    with StudyFile(h5_path) as study:
        rows = study.rows_in_split(split, which)
        data = study.read(["images", "labels", "landmarks/groups", "landmarks/valid"], rows)
    landmarks = data["landmarks/groups"].astype(np.float32)
    valid = data["landmarks/valid"].astype(bool) & np.isfinite(landmarks).all(axis=-1)
    landmarks = np.where(valid[..., None], landmarks, 0.0).astype(np.float32)
    return SplitTensors(
        images=torch.from_numpy(data["images"].astype(np.float32, copy=False))[:, None],  # no second copy of the split
        labels=torch.from_numpy(data["labels"].astype(np.float32)),
        landmarks=torch.from_numpy(landmarks),
        valid=torch.from_numpy(valid),
        rows=torch.from_numpy(rows),
    )


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
