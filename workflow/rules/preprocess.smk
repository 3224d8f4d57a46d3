# Preprocessing: the cohort -> one study HDF5 (crops, labels, landmarks) + the exclusions table; Figure 1.
# Inputs come from cohort.smk's input functions (phantom rule outputs or the configured real files).
# Sharded (docs/preprocessing.md): a plan (checkpoint) assigns each radiograph to a shard by the hash of its
# identity; one preprocess_shard cluster job per shard crops its radiographs (without the labels: a grade fix
# reruns no shard); then the exclusions table (its own rule, so it survives a failed check) and the gather
# `preprocess` (labels joined, the excluded-share check, then the study HDF5).
import functools
import sys

from osteoloc.io.shard_folder import read_shard_plan

PREPROCESS = config["preprocess"]
PREPROCESS_SOURCE = config["cohort"].get("source", "phantom")
# The expert references reader is preprocessing code only for a study with references (cohort.references):
# the library reads them through a function-local import, which code provenance names only when asked.
REFERENCES_CODE = (
    ["osteoloc.cohort.references"] if config["cohort"]["references"] else []
)
# What a shard's crops depend on (not the check's threshold, not Figure 1's rows).
SHARD_SETTINGS = {
    key: PREPROCESS[key]
    for key in (
        "crop_size",
        "spacing_mm",
        "groups",
        "shard_size",
        "points_unit",
        "accept_mirrored",
        "magnification",
        "anatomy",
        "references_max_distance_mm",
    )
}
# The gathers join the labels: the label table's layout and cut-offs reach them, never the shards.
GATHER_SETTINGS = SHARD_SETTINGS | {"labels": LABEL_SETTINGS}
SHARDS_DIR = results("preprocess", "shards")
# Content digests of the shards' input files, cached by size, mtime, ctime and inode (shards.ContentDigests).
CONTENT_CACHE = str(Path(SHARDS_DIR, "content_cache.json"))


def preprocess_inputs(wildcards):
    """The cohort files the gathers read, by `cohort.source`."""
    if PREPROCESS_SOURCE == "group_hdf5":
        return {
            "group_hdf5": config["cohort"]["group_hdf5"],
            "points_dir": config["cohort"]["points_dir"],
            "labels": cohort_labels(),
        }
    return {
        "manifest": cohort_manifest(),
        "labels": cohort_labels(),
        "truth": cohort_truth(),
        "references": cohort_references(),
    }


def plan_inputs(wildcards):
    """What the shard plan reads: the manifest, or the group file; the references CSV, whose mask files
    the plan lists with their radiograph's unit."""
    inputs = preprocess_inputs(wildcards)
    return {
        key: inputs[key]
        for key in ("manifest", "group_hdf5", "references")
        if key in inputs
    }


def shard_inputs(wildcards):
    """A shard job's shared inputs: never the manifest (its rows come from the plan, as params) nor the
    labels (joined at the gather); the group file and points folder, the truth file; the references CSV
    `ancient`: an edit of it reruns only the shards whose hips' rows changed, which their content digest
    (params) says, as for a manifest edit.
    """
    inputs = preprocess_inputs(wildcards)
    shared = {
        key: inputs[key]
        for key in ("group_hdf5", "points_dir", "truth")
        if key in inputs
    }
    if inputs.get("references"):
        shared["references"] = ancient(inputs["references"])
    return shared


@functools.lru_cache
def _shard_content(path, mtime):
    from osteoloc.preprocess.stages import shard_changes

    current, _, _ = shard_changes(
        path, CONTENT_CACHE, lambda shard: Path(SHARDS_DIR, str(shard))
    )
    return current


def report_shard_changes():
    """Print how many preprocess_shard jobs this run will rerun, from the plan the current inputs give: a
    dry run cannot look past the plan's checkpoint, so it would show none."""
    from osteoloc.preprocess.stages import preview_shard_changes

    inputs = plan_inputs(None)
    files = [inputs[k] for k in ("manifest", "group_hdf5") if k in inputs]
    if files and all(isinstance(f, str) and Path(f).is_file() for f in files):
        try:
            line = preview_shard_changes(
                PREPROCESS_SOURCE,
                inputs,
                PREPROCESS["shard_size"],
                CONTENT_CACHE,
                lambda shard: Path(SHARDS_DIR, str(shard)),
            )
        # a bad input is the plan job's to report, in its log: not a parse error here
        except Exception as err:
            line = f"preprocess: cannot tell how many shard jobs will run ({err})"
        print(line, file=sys.stderr)


if workflow.is_main_process:
    report_shard_changes()


def shard_content():
    """{shard: digest of its rows and its files' content} from the checkpoint's plan (re-read when the plan
    changes): a shard's params, so it reruns when its files' content changes, whatever their mtime.
    """
    path = checkpoints.preprocess_plan.get().output.plan
    return _shard_content(path, Path(path).stat().st_mtime_ns)


@functools.lru_cache
def _shard_plan(path, mtime):
    return read_shard_plan(path)


def shard_plan():
    """{shard: its units' files} from the checkpoint's plan (re-read when the plan changes)."""
    path = checkpoints.preprocess_plan.get().output.plan
    return _shard_plan(path, Path(path).stat().st_mtime_ns)


def shard_files(wildcards):
    """The shard's own images, points and reference mask files that exist now (a file added later changes the input set
    and reruns the shard; a missing one is the shard's exclusion to report, not a DAG error).
    """
    return [f for f in shard_plan()[int(wildcards.shard)] if Path(f).is_file()]


def shard_outputs(name):
    """Input function: file `name` of every shard of the plan, in shard order."""
    return lambda wildcards: [
        results("preprocess", "shards", str(k), name) for k in sorted(shard_plan())
    ]


checkpoint preprocess_plan:
    input:
        unpack(plan_inputs),
        checked=rules.check_inputs.output.table,  # no shard starts before the inputs passed the check
        code=library_code("preprocess_plan.py", REFERENCES_CODE),
    output:
        plan=results("preprocess", "shards", "plan.json"),
    params:
        source=PREPROCESS_SOURCE,
        shard_size=PREPROCESS["shard_size"],
    log:
        log_path("preprocess", "plan.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/preprocess_plan.py"


rule preprocess_shard:
    input:
        unpack(shard_inputs),
        # ancient: a new plan (any manifest edit) reruns only the shards whose rows or files changed,
        # which `content` below says
        plan=ancient(rules.preprocess_plan.output.plan),
        files=shard_files,
        code=library_code("preprocess_shard.py", REFERENCES_CODE),
    output:
        # kept, not temporary: a failed or changed shard reruns alone, the others are reused
        crops=results("preprocess", "shards", "{shard}", "crops.h5"),
        units=results("preprocess", "shards", "{shard}", "units.csv"),
        exclusions=results("preprocess", "shards", "{shard}", "exclusions.csv"),
        rows=results("preprocess", "shards", "{shard}", "manifest.csv"),
        content=results("preprocess", "shards", "{shard}", "content.txt"),
    params:
        source=PREPROCESS_SOURCE,
        settings=as_json(SHARD_SETTINGS),
        content=lambda wildcards: shard_content()[int(wildcards.shard)],
    wildcard_constraints:
        shard=r"\d+",
    log:
        log_path("preprocess", "shard_{shard}.log"),
    threads: 1
    resources:
        # flat in the shard size (it streams; docs/cluster.md: about 0.3 GB at 500 clinical radiographs)
        mem_mb=1500,
        runtime=120,
    script:
        "../../scripts/preprocess_shard.py"


rule preprocess_exclusions:
    input:
        unpack(preprocess_inputs),
        units=shard_outputs("units.csv"),
        shard_exclusions=shard_outputs("exclusions.csv"),
        code=library_code("preprocess_exclusions.py", REFERENCES_CODE),
    output:
        exclusions=report(
            results("preprocess", "exclusions.csv"),
            caption="../report/preprocess_exclusions.rst",
            category="Preprocessing",
            labels={"table": "exclusions"},
        ),
    params:
        source=PREPROCESS_SOURCE,
        settings=as_json(GATHER_SETTINGS),
    log:
        log_path("preprocess_exclusions.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    script:
        "../../scripts/preprocess_exclusions.py"


rule preprocess:
    input:
        unpack(preprocess_inputs),
        crops=shard_outputs("crops.h5"),
        units=shard_outputs("units.csv"),
        shard_exclusions=shard_outputs("exclusions.csv"),
        # the table first: when the check below fails, the evidence is already written by another job
        exclusions=rules.preprocess_exclusions.output.exclusions,
        code=library_code("preprocess.py", REFERENCES_CODE),
    output:
        study=results("preprocess", "study.h5"),
    params:
        source=PREPROCESS_SOURCE,
        settings=as_json(
            GATHER_SETTINGS
            | {"max_excluded_fraction": PREPROCESS["max_excluded_fraction"]}
        ),
    log:
        log_path("preprocess.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    script:
        "../../scripts/preprocess.py"


rule figure_landmarks:
    input:
        study=rules.preprocess.output.study,
        code=library_code("figure_landmarks.py"),
    output:
        png=report(
            results("report", "figures", "figure1.png"),
            caption="../report/figure1.rst",
            category="Figures",
            labels={"figure": "1: landmarks and target groups"},
        ),
        pdf=results("report", "figures", "figure1.pdf"),
    params:
        rows=as_json(config["preprocess"]["figure_rows"]),
    log:
        log_path("figure_landmarks.log"),
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/figure_landmarks.py"


ALL_TARGETS.extend(
    [
        rules.preprocess.output.study,
        rules.preprocess_exclusions.output.exclusions,
        rules.figure_landmarks.output.png,
        rules.figure_landmarks.output.pdf,
    ]
)


if phantom_twins():

    # The shortcut test's counterfactual study: the phantom's twins (each radiograph without its cue
    # markers) preprocessed exactly like the study, in one job (phantom cohorts only); explain checks that
    # its rows are the study's hips.
    rule preprocess_twin:
        input:
            manifest=cohort_twin_manifest(),
            labels=cohort_labels(),
            truth=cohort_truth(),
            code=library_code("preprocess_twin.py"),
        output:
            study=results("preprocess", "study_twin.h5"),
            exclusions=results("preprocess", "exclusions_twin.csv"),
        params:
            settings=as_json(
                GATHER_SETTINGS
                | {"max_excluded_fraction": PREPROCESS["max_excluded_fraction"]}
            ),
        log:
            log_path("preprocess_twin.log"),
        threads: 1
        resources:
            mem_mb=1500,
            runtime=120,
        script:
            "../../scripts/preprocess_twin.py"
