"""Preprocessing (docs/preprocessing.md): the cohort -> one study HDF5 + the exclusions table.

- `geometry`: pure per-hip geometry (resampling, crop, flip, point mapping, normalisation);
- `sources`: hip sources that yield study rows or exclusions (the cohort manifest with its DICOMs, the
  phantom's truth masks as an add-on; the group's preprocessed HDF5);
- `exclusions`: the exclusions table;
- `driver`: the one driver that writes the study file and the exclusions table.
"""

from osteoloc.preprocess.driver import import_group_study, preprocess_study, write_study
from osteoloc.preprocess.exclusions import Exclusion, Exclusions, TooManyExclusions
from osteoloc.preprocess.geometry import (CropError, HipCrop, crop_offset, mask_crop, preprocess_hip, resample_crop,
                                          to_crop, to_resampled)
from osteoloc.preprocess.sources import GroupSource, ManifestSource

__all__ = ["CropError", "Exclusion", "Exclusions", "GroupSource", "HipCrop", "ManifestSource", "TooManyExclusions",
           "crop_offset", "import_group_study", "mask_crop", "preprocess_hip", "preprocess_study", "resample_crop",
           "to_crop", "to_resampled", "write_study"]
