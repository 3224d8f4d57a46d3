"""Which hips a site's sets hold (paper B: negatives sampled to match positives in train and validation)
and the random draws of the augmentation."""

import zlib

import numpy as np


def site_rng(seed, site_name, purpose):
    """A generator fixed by the study seed, the site and the purpose, so sites and stages never share draws."""
    return np.random.default_rng([int(seed), zlib.crc32(site_name.encode()), zlib.crc32(purpose.encode())])


def balanced_rows(rows, labels, rng):
    """All positive rows plus as many randomly chosen negatives (all negatives when there are fewer),
    returned sorted. Unknown labels (-1) are never chosen."""
    rows, labels = np.asarray(rows), np.asarray(labels)
    positives = rows[labels == 1]
    negatives = rows[labels == 0]
    n_neg = min(len(positives), len(negatives))
    chosen = rng.choice(negatives, size=n_neg, replace=False) if n_neg else negatives[:0]
    return np.sort(np.concatenate([positives, chosen]))


def augmentation_draws(n_augment, rng, max_angle, max_scale, displacement):
    """(1 + n_augment) draws of (angle rad, scale, dx, dy); the first is the identity (the original patch).
    dx, dy are fractions of the patch size, uniform within +-displacement."""
    draws = np.zeros((1 + n_augment, 4))
    draws[:, 1] = 1.0
    if n_augment:
        draws[1:, 0] = rng.uniform(-max_angle, max_angle, n_augment)
        draws[1:, 1] = 1.0 + rng.uniform(-max_scale, max_scale, n_augment)
        draws[1:, 2:] = rng.uniform(-displacement, displacement, (n_augment, 2))
    return draws
