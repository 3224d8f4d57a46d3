# Cohort stage: where radiographs, points, labels, (phantom only) lesion truth and (optional) expert
# references come from. contracts.md section 1; the input functions below are what preprocess.smk asks for.

from osteoloc.cohort.phantom.settings import (
    IMAGE_DIR as PHANTOM_IMAGE_DIR,
    n_shards as phantom_shard_count,
)
from osteoloc.io.shard_folder import read_shard_plan

COHORT = config["cohort"]
BONEFINDER_COMMAND = COHORT["bonefinder"]["command"]
# How the label table is laid out (io.labels.LabelFormat): every rule that reads labels gets it as a param.
LABEL_SETTINGS = {
    key: COHORT[key]
    for key in (
        "label_columns",
        "labels_layout",
        "labels_sheet",
        "grade_cutoff",
        "missing_values",
        "side_codes",
        "subject_digits",
    )
}
if COHORT["references"] and COHORT["source"] == "group_hdf5":
    # references are drawn on the source radiographs, which the group's crops no longer have
    raise ValueError(
        "cohort.references needs the radiographs (cohort.source manifest or phantom), "
        "not the group's preprocessed HDF5"
    )


def cohort_source_manifest():
    """The manifest as the source gives it (before an optional BoneFinder run)."""
    if COHORT["source"] == "phantom":
        return results("cohort", "manifest.csv")
    return COHORT["manifest"] or []


def cohort_manifest():
    """The manifest preprocessing reads: BoneFinder's when a command is configured."""
    if BONEFINDER_COMMAND:
        return results("cohort", "bonefinder", "manifest.csv")
    return cohort_source_manifest()


def cohort_labels():
    return (
        results("cohort", "labels.csv")
        if COHORT["source"] == "phantom"
        else COHORT["labels"]
    )


def cohort_truth():
    """truth.h5 of the phantom, a configured truth file, or [] (no truth)."""
    if COHORT["source"] == "phantom":
        return results("cohort", "truth.h5")
    return COHORT["truth"] or []


def cohort_references():
    """The expert references CSV (osteoloc.cohort.references), or [] (none)."""
    return COHORT["references"] or []


def cohort_twin_manifest():
    """The twins' manifest (each radiograph without its cue markers), or [] when there are no twins."""
    return results("cohort", "manifest_twin.csv") if phantom_twins() else []


def phantom_twin_outputs():
    """phantom_cohort's extra outputs when the twins are on: their manifest and image folder."""
    if not phantom_twins():
        return {}
    return {
        "twin_manifest": results("cohort", "manifest_twin.csv"),
        "twin_images": directory(results("cohort", "images_twin")),
    }


def phantom_shards():
    """The shard folders of the phantom cohort (one job per `shard_subjects` subjects)."""
    return [
        results("cohort", "shards", str(k))
        for k in range(phantom_shard_count(COHORT["phantom"]))
    ]


rule phantom_shard:
    input:
        code=library_code("phantom_shard.py"),
    output:
        # temporary: the gather links its files into results/cohort/images and points
        shard=temp(directory(results("cohort", "shards", "{shard}"))),
    params:
        phantom=as_json(COHORT["phantom"]),
    wildcard_constraints:
        shard=r"\d+",
    log:
        log_path("cohort", "phantom_shard_{shard}.log"),
    threads: 1
    resources:
        # a clinical-size radiograph (0.14 mm, 2600 x 1700 px) renders on a 2x supersampled canvas
        mem_mb=4000,
        runtime=60,
    script:
        "../../scripts/phantom_shard.py"


rule phantom_cohort:
    input:
        shards=phantom_shards() if COHORT["source"] == "phantom" else [],
        code=library_code("phantom_cohort.py"),
    output:
        **phantom_twin_outputs(),
        manifest=results("cohort", "manifest.csv"),
        labels=results("cohort", "labels.csv"),
        truth=results("cohort", "truth.h5"),
        broken=report(
            results("cohort", "broken.csv"),
            caption="../report/phantom_broken.rst",
            category="Cohort",
            labels={"table": "phantom broken inputs"},
        ),
        images=directory(results("cohort", PHANTOM_IMAGE_DIR)),
        points=directory(results("cohort", "points")),
    params:
        phantom=as_json(COHORT["phantom"]),
    log:
        log_path("cohort", "phantom_cohort.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../../scripts/phantom_cohort.py"


# The label table read as the preprocessing reads it, before BoneFinder spends hours on the radiographs:
# an unreadable table, a missing column or formula cells without values stop the study here.
rule check_labels:
    input:
        labels=cohort_labels(),
        code=library_code("check_labels.py"),
    output:
        table=results("preprocess", "label_check.csv"),
    params:
        labels=as_json(LABEL_SETTINGS),
    log:
        log_path("preprocess", "check_labels.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/check_labels.py"


if BONEFINDER_COMMAND:

    # Sharded by the preprocessing's shard_size: a plan of the source manifest's consecutive rows (a
    # checkpoint, since the phantom's manifest is a rule output), one bonefinder_shard cluster job per shard,
    # then the gather. The plan waits for the labels' check: no BoneFinder job runs on a study whose labels
    # are unusable.
    checkpoint bonefinder_plan:
        input:
            manifest=cohort_source_manifest(),
            labels_checked=results("preprocess", "label_check.csv"),
            code=library_code("bonefinder_plan.py"),
        output:
            plan=results("cohort", "bonefinder", "plan.csv"),
        params:
            shard_size=config["preprocess"]["shard_size"],
        log:
            log_path("cohort", "bonefinder_plan.log"),
        localrule: True
        threads: 1
        script:
            "../../scripts/bonefinder_plan.py"

    def bonefinder_shard_manifests(wildcards):
        plan = read_shard_plan(checkpoints.bonefinder_plan.get().output.plan)
        return [
            results("cohort", "bonefinder", "shards", str(k), "manifest.csv")
            for k in sorted(plan)
        ]

    rule bonefinder_shard:
        input:
            manifest=cohort_source_manifest(),
            code=library_code("bonefinder_shard.py"),
        output:
            manifest=results(
                "cohort", "bonefinder", "shards", "{shard}", "manifest.csv"
            ),
            points=directory(
                results("cohort", "bonefinder", "shards", "{shard}", "points")
            ),
        params:
            # a function, so that snakemake leaves the template's {image} and {points} alone
            command=lambda wildcards: BONEFINDER_COMMAND,
            shard_size=config["preprocess"]["shard_size"],
        wildcard_constraints:
            shard=r"\d+",
        log:
            log_path("cohort", "bonefinder_shard_{shard}.log"),
        threads: 1
        resources:
            runtime=600,
        script:
            "../../scripts/bonefinder_shard.py"

    rule bonefinder:
        input:
            manifests=bonefinder_shard_manifests,
            code=library_code("bonefinder.py"),
        output:
            manifest=results("cohort", "bonefinder", "manifest.csv"),
        log:
            log_path("cohort", "bonefinder.log"),
        localrule: True
        threads: 1
        resources:
            runtime=10,
        script:
            "../../scripts/bonefinder.py"


def check_inputs_inputs(wildcards):
    """What rule check_inputs reads: the files preprocessing reads, bar the phantom's truth."""
    if COHORT["source"] == "group_hdf5":
        return {
            "group_hdf5": COHORT["group_hdf5"],
            "points_dir": COHORT["points_dir"],
            "labels": cohort_labels(),
        }
    return {"manifest": cohort_manifest(), "labels": cohort_labels()}


# The check before the long run (docs/preprocessing.md "New data: first steps"): manifest and labels parsed,
# every DICOM header and .pts file read, labels joined; fails before any preprocessing job on what would
# fail them all. Every preprocessing job depends on its table.
rule check_inputs:
    input:
        unpack(check_inputs_inputs),
        code=library_code("check_inputs.py"),
    output:
        table=results("preprocess", "input_check.csv"),
    params:
        source=COHORT["source"],
        settings=as_json(
            {
                key: config["preprocess"][key]
                for key in (
                    "points_unit",
                    "accept_mirrored",
                    "anatomy",
                    "max_excluded_fraction",
                )
            }
            | {"labels": LABEL_SETTINGS}
        ),
    log:
        log_path("preprocess", "check_inputs.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    script:
        "../../scripts/check_inputs.py"
