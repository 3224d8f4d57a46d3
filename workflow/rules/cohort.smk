# Cohort stage: where radiographs, points, labels and (phantom only) lesion truth come from.
# contracts.md section 1; the three input functions below are what preprocess.smk asks for.

COHORT = config["cohort"]
BONEFINDER_COMMAND = COHORT["bonefinder"]["command"]


def cohort_source_manifest():
    """The manifest as the source gives it (before an optional BoneFinder run)."""
    if COHORT["source"] == "phantom":
        return results("cohort", "manifest.csv")
    return COHORT["manifest"] or []


def cohort_manifest():
    """The manifest preprocessing reads: BoneFinder's when a command is configured."""
    if BONEFINDER_COMMAND:

    # Sharded like the preprocessing: a plan of the source manifest's rows (a checkpoint, since the
    # phantom's manifest is a rule output), one bonefinder_shard cluster job per shard, then the gather.
    checkpoint bonefinder_plan:
        input:
            manifest=cohort_source_manifest(),
            code=library_code("preprocess_plan.py"),
        output:
            plan=results("cohort", "bonefinder", "plan.csv"),
        params:
            source="manifest",
            shard_size=config["preprocess"]["shard_size"],
        log:
            log_path("cohort", "bonefinder_plan.log"),
        localrule: True
        threads: 1
        script:
            "../../scripts/preprocess_plan.py"

    def bonefinder_shard_manifests(wildcards):
        from osteoloc.preprocess import read_shard_plan

        plan = read_shard_plan(checkpoints.bonefinder_plan.get().output.plan)
        return [results("cohort", "bonefinder", "shards", str(k), "manifest.csv") for k in sorted(plan)]

    rule bonefinder_shard:
        input:
            manifest=cohort_source_manifest(),
            code=library_code("run_bonefinder.py"),
        output:
            manifest=results("cohort", "bonefinder", "shards", "{shard}", "manifest.csv"),
            points=directory(results("cohort", "bonefinder", "shards", "{shard}", "points")),
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
            "../../scripts/run_bonefinder.py"

    rule bonefinder:
        input:
            manifests=bonefinder_shard_manifests,
            code=library_code("run_bonefinder.py"),
        output:
            manifest=results("cohort", "bonefinder", "manifest.csv"),
        log:
            log_path("cohort", "bonefinder.log"),
        localrule: True
        threads: 1
        resources:
            runtime=10,
        script:
            "../../scripts/run_bonefinder.py"
