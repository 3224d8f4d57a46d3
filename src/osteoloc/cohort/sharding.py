"""Cutting a cohort's work units (manifest rows, scans) into shard jobs of consecutive units: shared by
BoneFinder and preprocessing, so both stages shard a manifest the same way."""

import hashlib
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


# Shard counts a hashed plan uses: powers of two and 1.5 times them (1, 2, 3, 4, 6, 8, 12, 16, 24, ...), so
# the count changes only when the cohort grows by about 40 %, not with every `shard_size` radiographs.
def hashed_shard_count(n_units, shard_size):
    """Shards of a plan that assigns units by the hash of their identity (`shard_of`): the smallest count of
    the ladder 1, 2, 3, 4, 6, 8, 12, ... giving at most `shard_size` units per shard on average."""
    if int(shard_size) < 1:
        raise ValueError(f"preprocess.shard_size must be >= 1, got {shard_size}")
    wanted, count = math.ceil(int(n_units) / int(shard_size)), 1
    while count < wanted:
        step = 1 << (count.bit_length() - 1)  # the power of two at or below count
        count = step + step // 2 if count == step and step >= 2 else 2 * step
    return count


def shard_of(identity, n):
    """Shard (0..n-1) of a unit whose identity is the string `identity`: a jump consistent hash (Lamping and
    Veach 2014) of its BLAKE2 digest, so the shard depends on the identity only, never on the unit's row, and
    a change of `n` moves the fewest units."""
    key = int.from_bytes(hashlib.blake2b(identity.encode("utf-8"), digest_size=8).digest(), "little")
    bucket, jump = -1, 0
    while jump < n:
        bucket = jump
        key = (key * 2862933555777941757 + 1) % (1 << 64)
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket
