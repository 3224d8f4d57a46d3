"""Cutting a cohort's work units (manifest rows, scans) into shard jobs of consecutive units: shared by
BoneFinder and preprocessing, so both stages shard a manifest the same way."""

import math


def n_shards(n_units, shard_size):
    """Shards of `shard_size` consecutive units (at least one, so that an empty cohort still reaches the
    excluded-share check and fails there with its message)."""
    if int(shard_size) < 1:
        raise ValueError(f"preprocess.shard_size must be >= 1, got {shard_size}")
    return max(1, math.ceil(int(n_units) / int(shard_size)))


def shard_units(n_units, shard_size, shard):
    """Unit positions (0-based, study order) of shard number `shard`."""
    size = int(shard_size)
    return range(int(shard) * size, min((int(shard) + 1) * size, int(n_units)))
