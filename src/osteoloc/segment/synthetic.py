"""A tiny study HDF5 in the contracts.md section-2 layout (written through StudyWriter), for tests and
benchmarks: a bright disc (the femoral head) whose head points lie on its rim, and per positive target a
bright blob (the lesion) beside the target's landmark. Manual points are exact; automatic ones carry
Gaussian noise."""

import numpy as np

from osteoloc.io.study_h5 import write_study_arrays
from osteoloc.segment.sites import HEAD_CIRCLE_INDICES
from osteoloc.names import TARGETS

# Target groups in the toy contour: head points above / below the centre, one acetabular point each.
TOY_GROUPS = {"osteo_fem_sup": [15, 16, 17], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [66],
              "osteo_acet_inf": [70]}


def _toy_contour(cx, cy, r):
    pts = np.full((80, 2), np.nan, np.float32)
    # y points down, so angle -pi/2 is superior: 15-17 sit on the top of the head, 19-21 at its bottom
    angles = np.pi * np.array([-1.0, -0.85, -0.7, -0.6, -0.5, -0.4, 0.0, 0.4, 0.5, 0.6])
    for k, idx in enumerate(HEAD_CIRCLE_INDICES):
        pts[idx] = (cx + r * np.cos(angles[k]), cy + r * np.sin(angles[k]))
    pts[66] = (cx - 0.9 * r, cy - 1.3 * r)  # lateral sourcil end: above and lateral (image left)
    pts[70] = (cx + 1.1 * r, cy + 0.6 * r)  # inferior acetabular margin near the teardrop
    return pts


def write_toy_study(path, n_subjects=20, size=96, seed=0, positive_rate=0.5, auto_noise=1.5,
                    with_manual=True, with_masks=True):
    """Write the toy study (two hips per subject) to `path`; returns the subject ids."""
    rng = np.random.default_rng(seed)
    n = 2 * n_subjects
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, 4, size, size), np.uint8)
    labels = np.zeros((n, 4), np.int8)
    manual = np.zeros((n, 80, 2), np.float32)
    groups = np.full((n, 4, 3, 2), np.nan, np.float32)
    for i in range(n):
        r = rng.uniform(0.18, 0.24) * size
        cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
        pts = _toy_contour(cx, cy, r)
        manual[i] = pts
        img = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r**2).astype(np.float32) * 0.5
        for t, target in enumerate(TARGETS):
            labels[i, t] = rng.random() < positive_rate
            centre = pts[TOY_GROUPS[target]].mean(axis=0)
            groups[i, t, :len(TOY_GROUPS[target])] = pts[TOY_GROUPS[target]]
            if labels[i, t]:
                blob = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= rng.uniform(0.12, 0.2) ** 2 * r**2
                masks[i, t] = blob
                img[blob] = 1.0
        images[i] = img + rng.normal(0, 0.05, img.shape).astype(np.float32)
    automatic = manual + rng.normal(0, auto_noise, manual.shape).astype(np.float32)
    subjects = np.array([f"S{k:03d}" for k in range(n_subjects) for _ in range(2)])
    columns = {"image": images, "labels": labels, "groups": groups, "subject": subjects, "contour": automatic,
               "contour_manual": manual if with_manual else np.full_like(manual, np.nan),
               "side": np.tile(["right", "left"], n_subjects)}
    if with_masks:
        columns["truth_masks"] = masks
    write_study_arrays(path, columns, TOY_GROUPS)
    return sorted(set(subjects))
