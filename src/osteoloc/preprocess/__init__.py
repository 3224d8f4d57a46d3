"""Preprocessing (docs/preprocessing.md): the cohort -> one study HDF5 + the exclusions table.

- `geometry`: pure per-hip geometry (resampling, crop, flip, point mapping, normalisation);
- `sources`: hip sources that yield study rows or exclusions (the cohort manifest with its DICOMs, the
  phantom's truth masks as an add-on; the group's preprocessed HDF5);
- `exclusions`: the exclusions table;
- `shards`: sharded preprocessing: shard jobs write crops and their own exclusions, the gather decides
  what needs the whole cohort (label problems, unmatched labels, duplicate radiographs);
- `driver`: the one-process driver (`write_study`) and the functions the workflow's rules call.
"""

from osteoloc.preprocess.driver import (cohort_source, import_group_study, preprocess_exclusions, preprocess_gather,
                                        preprocess_shard, preprocess_study, read_shard_plan, write_shard_plan,
                                        write_study)
from osteoloc.preprocess.exclusions import Exclusion, Exclusions, TooManyExclusions
from osteoloc.preprocess.geometry import (CropError, HipCrop, crop_offset, mask_crop, preprocess_hip, resample_crop,
                                          to_crop, to_resampled)
from osteoloc.preprocess.shards import Duplicates, gather_exclusions, gather_study, n_shards, shard_units, write_shard
from osteoloc.preprocess.sources import GroupSource, ManifestSource

__all__ = ["CropError", "Duplicates", "Exclusion", "Exclusions", "GroupSource", "HipCrop", "ManifestSource",
           "TooManyExclusions", "cohort_source", "crop_offset", "gather_exclusions", "gather_study",
           "import_group_study", "mask_crop", "n_shards", "preprocess_exclusions", "preprocess_gather", "preprocess_hip",
           "preprocess_shard", "preprocess_study", "read_shard_plan", "resample_crop", "shard_units", "to_crop",
           "to_resampled", "write_shard", "write_shard_plan", "write_study"]
