"""The one preprocessing driver: a hip source's records -> the study HDF5, its exclusions -> the
exclusions table (docs/contracts.md section 2), and the excluded-share check."""

import logging

from osteoloc.io.atomic import write_csv
from osteoloc.io.study_h5 import StudyWriter
from osteoloc.preprocess.exclusions import Exclusions
from osteoloc.preprocess.shards import Duplicates, unit_results
from osteoloc.preprocess.sources import GroupSource, ManifestSource

log = logging.getLogger(__name__)


def write_study(source, study_path, exclusions_path, *, max_excluded_fraction):
    """Stream every hip of `source` (sources.py) into `study_path`, one unit at a time, in the source's
    order, and write every exclusion to `exclusions_path`, in one process: the same file and table as
    the sharded rules (shards.py) give. A radiograph whose pixel data an earlier unit already had is
    excluded (`shards.Duplicates`). Raises TooManyExclusions (after writing the exclusions table, without
    the HDF5) when more than `max_excluded_fraction` of `source.n_hips` hips were excluded. Returns the
    number of hips written."""
    exclusions = Exclusions(list(source.label_exclusions()))
    duplicates = Duplicates()
    with StudyWriter(study_path, source.crop_size, source.spacing_mm, source.groups,
                     with_truth=source.with_truth, attrs=source.attrs) as writer:
        for unit in unit_results(source, range(len(source.units))):
            duplicate = duplicates.exclusion(unit.unit, unit.subject, unit.visit, unit.file, unit.pixel_hash)
            if duplicate is not None:
                exclusions.append(duplicate)
                continue
            for record in unit.records:
                writer.append(record)
            exclusions.rows.extend(unit.exclusions)
        exclusions.rows.extend(source.unmatched_exclusions())
        kept = len(writer)
        write_csv(exclusions.frame(), exclusions_path)
        fraction = exclusions.check_fraction(source.n_hips, kept, max_excluded_fraction)
    log.info("wrote %d of %d hips to %s; %.1f%% excluded (%d exclusion rows)",
             kept, source.n_hips, study_path, 100 * fraction, len(exclusions.rows))
    return kept


def preprocess_study(manifest_path, labels_path, study_path, exclusions_path, *, crop_size, spacing_mm,
                     groups, max_excluded_fraction, truth_path=None):
    """The study from the cohort manifest (DICOM + .pts + labels; the phantom's truth masks when
    `truth_path` is given): `crop_size` px at `spacing_mm` mm per pixel. Returns the hips written."""
    with ManifestSource(manifest_path, labels_path, crop_size=crop_size, spacing_mm=spacing_mm, groups=groups,
                        truth_path=truth_path) as source:
        return write_study(source, study_path, exclusions_path, max_excluded_fraction=max_excluded_fraction)


def import_group_study(group_path, points_dir, labels_path, study_path, exclusions_path, *, groups,
                       max_excluded_fraction, spacing_mm=None, crop_size=None):
    """The study from the group's preprocessed HDF5 plus `.pts` files in `points_dir` and the labels;
    `spacing_mm` / `crop_size`, when given, must match the file's. Returns the hips written."""
    with GroupSource(group_path, points_dir, labels_path, groups=groups, spacing_mm=spacing_mm,
                     crop_size=crop_size) as source:
        return write_study(source, study_path, exclusions_path, max_excluded_fraction=max_excluded_fraction)
