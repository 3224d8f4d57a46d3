"""Preprocessing: the cohort -> one study HDF5 + the exclusions table.

`geometry` (pure per-hip geometry: resampling, crop, flip, point mapping, normalisation), `sources` (hip
sources that yield study rows or exclusions), `exclusions` (the exclusions table), `shards` (shard jobs and
the gather), `stages` (the entry points the rules call).
"""
