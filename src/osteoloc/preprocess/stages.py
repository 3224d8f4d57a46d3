"""The one preprocessing driver: a hip source's records -> the study HDF5, its exclusions -> the
exclusions table (docs/contracts.md section 2), and the excluded-share check."""

import logging
from pathlib import Path

import pandas as pd

from osteoloc.io.atomic import write_csv
from osteoloc.io.group_h5 import GroupFile
from osteoloc.io.manifest import read_manifest
from osteoloc.io.pts import resolve_hip_files
from osteoloc.io.study_h5 import StudyWriter
from osteoloc.preprocess.exclusions import Exclusions
from osteoloc.preprocess.shards import (Duplicates, gather_exclusions, gather_study, n_shards, shard_units,
                                        unit_results, write_shard)
from osteoloc.preprocess.sources import GroupSource, ManifestSource

log = logging.getLogger(__name__)


def expert_references(path):
    """The expert references of the CSV at `path` (`osteoloc.cohort.references.ExpertReferences`), or None
    when the study has none."""
    if not path:
        return None
    # Imported here, not at the top, on purpose: code provenance (osteoloc.provenance) does not follow
    # imports inside functions, so a study without references neither depends on nor reruns for edits of
    # the references reader; the rules add cohort/references.py to their code when cohort.references is set.
    from osteoloc.cohort.references import ExpertReferences

    return ExpertReferences(path)


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
                     with_truth=source.with_truth, with_cue=source.with_cue, attrs=source.attrs) as writer:
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
                     groups, max_excluded_fraction, truth_path=None, references_path=None, points_unit="auto",
                     accept_mirrored=False):
    """The study from the cohort manifest (DICOM + .pts + labels; the phantom's truth masks when
    `truth_path` is given, the expert references' masks when `references_path` is): `crop_size` px at
    `spacing_mm` mm per pixel; `points_unit` and `accept_mirrored` as ManifestSource. Returns the hips
    written."""
    with ManifestSource(manifest_path, labels_path, crop_size=crop_size, spacing_mm=spacing_mm, groups=groups,
                        truth_path=truth_path, references=expert_references(references_path), points_unit=points_unit,
                        accept_mirrored=accept_mirrored) as source:
        return write_study(source, study_path, exclusions_path, max_excluded_fraction=max_excluded_fraction)


def import_group_study(group_path, points_dir, labels_path, study_path, exclusions_path, *, groups,
                       max_excluded_fraction, spacing_mm=None, crop_size=None):
    """The study from the group's preprocessed HDF5 plus `.pts` files in `points_dir` and the labels;
    `spacing_mm` / `crop_size`, when given, must match the file's. Returns the hips written."""
    with GroupSource(group_path, points_dir, labels_path, groups=groups, spacing_mm=spacing_mm,
                     crop_size=crop_size) as source:
        return write_study(source, study_path, exclusions_path, max_excluded_fraction=max_excluded_fraction)


# --- the workflow's rules (workflow/rules/preprocess.smk): plan, shard, exclusions, gather -------------
def _optional_input(inputs, name):
    """An optional input's path or None: cohort.smk's input functions give a path, or [] when it is off."""
    value = inputs.get(name) or []
    value = [value] if isinstance(value, str) else list(value)
    return value[0] if value else None


def cohort_source(kind, inputs, settings):
    """The hip source a rule reads: `kind` "group_hdf5" (inputs group_hdf5, points_dir, labels) or any
    other (the manifest: inputs manifest, labels, optional truth and references); `settings` = the
    preprocess config."""
    common = dict(groups=settings["groups"], crop_size=settings["crop_size"], spacing_mm=settings["spacing_mm"])
    if kind == "group_hdf5":
        return GroupSource(inputs["group_hdf5"], inputs["points_dir"], inputs["labels"], **common)
    return ManifestSource(inputs["manifest"], inputs["labels"], truth_path=_optional_input(inputs, "truth"),
                          references=expert_references(_optional_input(inputs, "references")),
                          points_unit=settings["points_unit"], accept_mirrored=settings["accept_mirrored"], **common)


def _as_input_path(path):
    """`path` relative to the working directory when it lies under it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def write_shard_plan(kind, inputs, shard_size, plan_path):
    """The shard plan: `shard, unit, files` per unit (study order), `files` the unit's own input files
    (image, points, manual points, its hips' expert-reference mask files; ';'-separated) that its shard job
    lists as inputs, so that fixing one file reruns its shard only. Files under the working directory are
    stored relative to it (the plan of a moved or copied results folder stays the same), others absolute.
    Returns the number of shards."""
    if kind == "group_hdf5":
        with GroupFile(inputs["group_hdf5"]) as group:
            files = [""] * len(group.scans)  # the group file and points folder are every shard's inputs
    else:
        files = []
        references = expert_references(_optional_input(inputs, "references"))
        for row in read_manifest(inputs["manifest"]).itertuples(index=False):
            paths = [row.image_path, row.points_path, row.manual_points_path]
            paths += references.mask_files(row.subject, row.visit) if references is not None else []
            for points in (row.points_path, row.manual_points_path):
                if points:  # per-hip files (<stem>_L.pts ...) where the named file is a stem
                    paths += [str(path) for path, _ in resolve_hip_files(points).values()]
            files.append(";".join(dict.fromkeys(_as_input_path(p) for p in paths if p)))
    size = int(shard_size)
    table = pd.DataFrame({"shard": [unit // size for unit in range(len(files))], "unit": range(len(files)),
                          "files": files})
    write_csv(table, plan_path)
    return n_shards(len(files), size)


def preprocess_shard(kind, inputs, settings, shard, shard_dir):
    """Rule `preprocess_shard`: the units of shard number `shard` (`settings["shard_size"]` per shard)."""
    with cohort_source(kind, inputs, settings) as source:
        return write_shard(source, shard_units(len(source.units), settings["shard_size"], shard), shard_dir)


def preprocess_exclusions(kind, inputs, settings, shard_dirs, exclusions_path):
    """Rule `preprocess_exclusions`: the whole exclusions table from the shards (never fails on the share)."""
    with cohort_source(kind, inputs, settings) as source:
        return gather_exclusions(source, shard_dirs, exclusions_path)


def preprocess_gather(kind, inputs, settings, shard_dirs, study_path):
    """Rule `preprocess`: the excluded-share check, then the one study HDF5 from the shards' crops."""
    with cohort_source(kind, inputs, settings) as source:
        return gather_study(source, shard_dirs, study_path, max_excluded_fraction=settings["max_excluded_fraction"])


def read_shard_plan(plan_path):
    """{shard: [its units' input files]} of a plan `write_shard_plan` wrote; an empty cohort has one empty
    shard 0 (so the gather still runs and fails on the excluded share with its message)."""
    table = pd.read_csv(plan_path, dtype={"files": str}, keep_default_na=False)
    shards = {0: []}
    for shard, files in zip(table["shard"], table["files"]):
        shards.setdefault(int(shard), []).extend(f for f in files.split(";") if f)
    return shards


def preprocess_twin(inputs, settings, study_path, exclusions_path):
    """Rule `preprocess_twin`: the twin cohort (inputs manifest, labels, truth) preprocessed with the
    study's settings in one process (the same checks, the same row order). Returns the hips written."""
    with cohort_source("manifest", inputs, settings) as source:
        return write_study(source, study_path, exclusions_path,
                           max_excluded_fraction=settings["max_excluded_fraction"])
