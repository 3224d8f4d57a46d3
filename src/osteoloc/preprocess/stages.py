"""The preprocessing stage's entry points: the input check before the long run, the shard plan, the shard
jobs and their gather, and the one-process driver (a hip source's records -> the study HDF5, its exclusions
-> the exclusions table, docs/contracts.md section 2, and the excluded-share check)."""

import logging
import tempfile
from pathlib import Path

import pandas as pd

from osteoloc.cohort.landmarks import AnatomyLimits
from osteoloc.io.atomic import write_csv
from osteoloc.io.errors import InputCheckFailed
from osteoloc.io.group_h5 import GroupFile
from osteoloc.io.labels import read_labels, refused_rows
from osteoloc.io.manifest import read_manifest
from osteoloc.io.shard_folder import ROWS, plan_shards, read_plan, write_plan, write_shard_rows
from osteoloc.preprocess.check import COLUMNS, check_group, check_manifest, near_ids, problem_summary
from osteoloc.preprocess.shards import (ContentDigests, assemble, changed_shards, gather_exclusions, gather_study,
                                        group_units, make_plan, manifest_units, shard_digests, source_keys,
                                        unlabelled, write_gathered, write_shard)
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


def write_study(source, labels_path, study_path, exclusions_path, *, max_excluded_fraction, label_format=None):
    """Every hip of `source` (sources.py, built on `shards.unlabelled()`) joined with the labels at
    `labels_path` into `study_path`, every exclusion into `exclusions_path`, in one process: one shard of
    all units beside the study, then the gather, so the file and table are the sharded rules' (shards.py).
    Raises TooManyExclusions (after writing the exclusions table, without the HDF5) when more than
    `max_excluded_fraction` of `source.n_hips` hips were excluded; `label_format` the label table's layout
    (io.labels.LabelFormat or the cohort settings). Returns the number of hips written."""
    labels = read_labels(labels_path, label_format)
    study_path = Path(study_path)
    study_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{study_path.name}.", dir=study_path.parent) as tmp:
        write_shard(source, range(len(source.units)), tmp)
        gathered = assemble(source, labels, labels_path, [Path(tmp)])
        write_csv(gathered.exclusions.frame(), exclusions_path)
        fraction = gathered.exclusions.check_fraction(source.n_hips, gathered.kept, max_excluded_fraction)
        kept = write_gathered(source, gathered, study_path)
    log.info("wrote %d of %d hips to %s; %.1f%% excluded (%d exclusion rows)",
             kept, source.n_hips, study_path, 100 * fraction, len(gathered.exclusions.rows))
    return kept


def preprocess_study(manifest_path, labels_path, study_path, exclusions_path, *, crop_size, spacing_mm,
                     groups, max_excluded_fraction, truth_path=None, references_path=None, label_format=None,
                     **options):
    """The study from the cohort manifest (DICOM + .pts + labels; the phantom's truth masks when
    `truth_path` is given, the expert references' masks when `references_path` is): `crop_size` px at
    `spacing_mm` mm per pixel; `label_format` the label table's layout (io.labels.LabelFormat or the cohort
    settings); `options` (points_unit, accept_mirrored, magnification, limits, references_max_distance_mm)
    as ManifestSource. Returns the hips written."""
    with ManifestSource(manifest_path, unlabelled(), crop_size=crop_size, spacing_mm=spacing_mm, groups=groups,
                        truth_path=truth_path, references=expert_references(references_path), **options) as source:
        return write_study(source, labels_path, study_path, exclusions_path,
                           max_excluded_fraction=max_excluded_fraction, label_format=label_format)


def import_group_study(group_path, points_dir, labels_path, study_path, exclusions_path, *, groups,
                       max_excluded_fraction, spacing_mm=None, crop_size=None, label_format=None):
    """The study from the group's preprocessed HDF5 plus `.pts` files in `points_dir` and the labels;
    `spacing_mm` / `crop_size`, when given, must match the file's. Returns the hips written."""
    with GroupSource(group_path, points_dir, unlabelled(), groups=groups, spacing_mm=spacing_mm,
                     crop_size=crop_size) as source:
        return write_study(source, labels_path, study_path, exclusions_path,
                           max_excluded_fraction=max_excluded_fraction, label_format=label_format)


# --- the workflow's rules (workflow/rules/preprocess.smk): plan, shard, exclusions, gather -------------
def _optional_input(inputs, name):
    """An optional input's path or None: cohort.smk's input functions give a path, or [] when it is off."""
    value = inputs.get(name) or []
    value = [value] if isinstance(value, str) else list(value)
    return value[0] if value else None


def cohort_source(kind, inputs, settings, manifest=None):
    """The hip source a rule reads, built on `shards.unlabelled()` (the labels are joined at the gather):
    `kind` "group_hdf5" (inputs group_hdf5, points_dir) or any other (the manifest: inputs manifest, or the
    path `manifest` given, optional truth and references); `settings` = the preprocess config."""
    common = dict(groups=settings["groups"], crop_size=settings["crop_size"], spacing_mm=settings["spacing_mm"],
                  limits=AnatomyLimits.of(settings.get("anatomy")))
    if kind == "group_hdf5":
        return GroupSource(inputs["group_hdf5"], inputs["points_dir"], unlabelled(), **common)
    options = {key: settings[key] for key in ("magnification", "references_max_distance_mm") if key in settings}
    return ManifestSource(manifest or inputs["manifest"], unlabelled(), truth_path=_optional_input(inputs, "truth"),
                          references=expert_references(_optional_input(inputs, "references")),
                          points_unit=settings["points_unit"], accept_mirrored=settings["accept_mirrored"],
                          **options, **common)


def plan_units(kind, inputs):
    """The plan's entries of the cohort (shards.manifest_units / group_units)."""
    if kind == "group_hdf5":
        with GroupFile(inputs["group_hdf5"]) as group:
            return group_units(group.scans)
    references = expert_references(_optional_input(inputs, "references"))
    return manifest_units(read_manifest(inputs["manifest"]).itertuples(index=False), references)


def check_inputs(kind, inputs, settings, table_path):
    """Rule `check_inputs`: check the cohort's inputs (`kind` and `inputs` as `cohort_source`;
    `settings` the preprocess settings (points_unit, accept_mirrored, anatomy, max_excluded_fraction) with
    the cohort's label settings under `labels`) and write the table (COLUMNS) to `table_path`. Raises
    InputCheckFailed naming the problems when the cohort is empty, a file's transfer syntax has no installed
    decoder, no hip is usable, subject ids match the labels only loosely, or the foreseen excluded share
    exceeds `max_excluded_fraction`; the readers' ValueErrors (an unreadable manifest, a missing label
    column) pass through. Returns the table."""
    if kind == "group_hdf5":
        checks, n_hips, index = check_group(inputs["group_hdf5"], inputs["points_dir"], inputs["labels"], settings)
    else:
        checks, n_hips, index = check_manifest(inputs["manifest"], inputs["labels"], settings)
    table = pd.DataFrame([check.row() for check in checks], columns=list(COLUMNS))
    lost = int(table["hips_lost"].sum())
    problems = table[table["status"] != "ok"]
    for row in problems.itertuples(index=False):
        log.warning("%s %s %s%s: %s", row.status, row.subject, row.visit, f" {row.side}" if row.side else "",
                    f"{row.image_path}: {row.problems}" if row.image_path else row.problems)
    summary = problem_summary(checks)
    refused = refused_rows(index.labels)
    log.info("%d units checked, %d with problems; %d of %d hips would be excluded%s", len(table) - sum(
        table["status"] == "labels only"), int((table["status"] == "problem").sum()), lost, n_hips,
        "".join(f"\n  {line}" for line in summary + ([refused] if refused else [])))
    if n_hips == 0:
        raise InputCheckFailed("the cohort holds no radiographs (empty manifest or group file)")
    undecodable = [c for c in checks if any(kind == "decoder" for kind, _ in c.problems)]
    if undecodable:
        decoders = next(line for line in summary if line.startswith("decoder"))
        raise InputCheckFailed(
            f"{len(undecodable)} of {n_hips // 2} radiographs are in a transfer syntax no installed decoder "
            f"handles: {decoders}. Install a decoder (or convert or leave out those files) and run check_inputs "
            "again.")
    near = near_ids(index)
    if near:
        raise InputCheckFailed(f"{near}. Run check_inputs again after the fix.")
    why = " | ".join(summary + ([refused] if refused else []))
    if lost == n_hips:
        raise InputCheckFailed(f"not one of the {n_hips} hips could be used: {why}. Every file "
                               "and problem is in this log; fix the inputs (or the config) and run check_inputs again.")
    limit = settings.get("max_excluded_fraction")
    if limit is not None and lost / n_hips > float(limit):
        raise InputCheckFailed(
            f"{lost} of {n_hips} hips ({lost / n_hips:.1%}) would be excluded, more than "
            f"preprocess.max_excluded_fraction = {float(limit):.1%} (the gather would refuse the study after "
            f"every shard job): {why}. Every file and problem is in this log; fix the inputs, or raise the limit "
            "if these exclusions are expected.")
    write_csv(table, table_path)
    return table


def write_shard_plan(kind, inputs, shard_size, plan_path):
    """Rule `preprocess_plan`: the shard plan (shards.py) as JSON: each unit's shard by the hash of its
    identity, its own input files (image, points, manual points, its hips' expert-reference mask files,
    stored relative to the working directory when under it) and its manifest row. Returns the number of
    shards."""
    plan = make_plan(plan_units(kind, inputs), shard_size)
    write_plan(plan, plan_path)
    return plan["shards"]


def shard_changes(plan, digests_path, shard_dir):
    """(current, changed, digests): {shard: content digest} of the shards of `plan` (a plan dict, or the
    path of one) as their files are now (cached in `digests_path`), the shards whose stored digest differs
    (their jobs will run) and the ContentDigests used. `shard_dir` is a function shard -> its folder."""
    digests = ContentDigests(digests_path)
    current = shard_digests(read_plan(plan) if not isinstance(plan, dict) else plan, digests)
    digests.save()
    changed = changed_shards({shard: (shard_dir(shard), digest) for shard, digest in current.items()})
    return current, changed, digests


def preview_shard_changes(kind, inputs, shard_size, digests_path, shard_dir):
    """The one-line answer to "how many shard jobs will this run rerun?", from the plan the current inputs
    give (a dry run cannot look past the plan's checkpoint): "N of M shards changed ...". """
    current, changed, digests = shard_changes(make_plan(plan_units(kind, inputs), shard_size), digests_path,
                                              shard_dir)
    return (f"preprocess: {len(changed)} of {len(current)} shard jobs to run (their rows or files' content changed"
            + (f": shards {', '.join(map(str, changed))}" if changed else "") + ")"
            + (f"; hashed {digests.hashed} files, {digests.bytes / 1e6:.1f} MB" if digests.hashed else ""))


def preprocess_shard(kind, inputs, settings, plan_path, shard, shard_dir, content=""):
    """Rule `preprocess_shard`: the units the plan assigns to shard number `shard`, cropped without labels
    into `shard_dir`; `content` = its digest (shards.shard_digests), stored beside its outputs."""
    units = plan_shards(read_plan(plan_path))[int(shard)]
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    # the rule's `rows` output: the shard's manifest rows (an empty table for the group import, whose units
    # are the group file's scans)
    manifest = write_shard_rows(units if kind != "group_hdf5" else [], shard_dir / ROWS)
    manifest = manifest if kind != "group_hdf5" else None
    with cohort_source(kind, inputs, settings, manifest=manifest) as source:
        if kind == "group_hdf5":
            wanted = {unit["key"] for unit in units}
            keys = dict(enumerate(source_keys(source)))
            positions = [i for i, key in keys.items() if key in wanted]
        else:
            keys, positions = {i: unit["key"] for i, unit in enumerate(units)}, range(len(units))
        return write_shard(source, positions, shard_dir, keys=keys, content=content)


def preprocess_exclusions(kind, inputs, settings, shard_dirs, exclusions_path):
    """Rule `preprocess_exclusions`: the whole exclusions table from the shards (never fails on the share)."""
    with cohort_source(kind, inputs, settings) as source:
        labels = read_labels(inputs["labels"], settings.get("labels"))
        return gather_exclusions(source, labels, inputs["labels"], shard_dirs, exclusions_path)


def preprocess_gather(kind, inputs, settings, shard_dirs, study_path):
    """Rule `preprocess`: the excluded-share check, then the one study HDF5 from the shards' crops."""
    with cohort_source(kind, inputs, settings) as source:
        labels = read_labels(inputs["labels"], settings.get("labels"))
        return gather_study(source, labels, inputs["labels"], shard_dirs, study_path,
                            max_excluded_fraction=settings["max_excluded_fraction"])


def preprocess_twin(inputs, settings, study_path, exclusions_path):
    """Rule `preprocess_twin`: the twin cohort (inputs manifest, labels, truth) preprocessed with the
    study's settings in one process (the same checks, the same row order). Returns the hips written."""
    with cohort_source("manifest", inputs, settings) as source:
        return write_study(source, inputs["labels"], study_path, exclusions_path,
                           max_excluded_fraction=settings["max_excluded_fraction"],
                           label_format=settings.get("labels"))
