# Apply a finished study's models to a new cohort (docs/apply.md; `osteoloc apply` writes the config and runs
# the target `apply_all`). The config's cohort section names the new radiographs, study.results the apply
# run's own folder (the study's check and sharded preprocessing rules fill it), apply.study the finished
# study's results folder, which is only read. Exists only when apply.study is set; not part of `rule all`.
# At parse time the study must have finished and share crop size, spacing, targets, landmark groups and
# landmark source with the new cohort: otherwise the workflow stops, naming each setting and both values.
import re

from osteoloc.apply.study import checked_study

APPLY = config["apply"]


if APPLY["study"]:
    APPLIED = checked_study(APPLY["study"], config)
    # every trained model of the study and seed, as (model, seed) in the study's order
    APPLY_RUNS = [(run.model, run.seed) for run in APPLIED.runs]
    APPLY_RUNS_JSON = as_json([list(run) for run in APPLY_RUNS])
    APPLY_STUDY_H5 = results("preprocess", "study.h5")

    def apply_file(*parts):
        """Path under the apply run's own folder, results/apply."""
        return results("apply", *parts)

    def apply_run_file(name, model="{model}", seed="{seed}"):
        return apply_file("runs", model, f"seed{seed}", name)

    def apply_run_outputs(name):
        """File `name` of every (model, seed) of the study, in APPLY_RUNS order."""
        return [apply_run_file(name, model, seed) for model, seed in APPLY_RUNS]

    # the external evaluation's tables (CSV shown in the report; .md and .tex beside each)
    APPLY_TABLES = {
        name: apply_file("tables", f"{name}_external.csv")
        for name in ("auc", "calibration", "localisation")
    }

    rule apply_split:
        input:
            study=APPLY_STUDY_H5,
            code=library_code("apply_split.py"),
        output:
            split=apply_file("split.csv"),
        log:
            log_path("apply", "split.log"),
        localrule: True
        script:
            "../../scripts/apply_split.py"

    rule apply_predict:
        input:
            study=APPLY_STUDY_H5,
            split=rules.apply_split.output.split,
            # the study's checkpoint, read only
            checkpoint=lambda wildcards: str(
                APPLIED.checkpoint(wildcards.model, wildcards.seed)
            ),
            code=library_code("apply_predict.py"),
        output:
            predictions=apply_run_file("predictions.csv"),
            maps=apply_run_file("maps.h5"),
            metrics=apply_run_file("metrics.csv"),
        params:
            batch_size=APPLY["batch_size"],
            pointing_tolerance_mm=config["explain"]["pointing_tolerance_mm"],
            peak=config["explain"]["peak"],
            control_sigma_mm=config["explain"]["control_sigma_mm"],
            device=config["study"]["device"],
        wildcard_constraints:
            model="|".join(re.escape(model) for model in APPLIED.models),
            seed=r"\d+",
        log:
            log_path("apply", "{model}", "seed{seed}.log"),
        benchmark:
            apply_run_file("benchmark.tsv")
        threads: APPLY["threads"]
        resources:
            mem_mb=4000,
            runtime=60,
            gpu=1 if config["study"]["device"] == "cuda" else 0,
        script:
            "../../scripts/apply_predict.py"

    rule apply_probabilities:
        input:
            predictions=apply_run_outputs("predictions.csv"),
            code=library_code("apply_probabilities.py"),
        output:
            probabilities=apply_file("probabilities.csv"),
            ensemble=apply_file("ensemble.csv"),
        params:
            runs=APPLY_RUNS_JSON,
        log:
            log_path("apply", "probabilities.log"),
        localrule: True
        script:
            "../../scripts/apply_probabilities.py"

    rule apply_evaluate:
        input:
            probabilities=rules.apply_probabilities.output.probabilities,
            ensemble=rules.apply_probabilities.output.ensemble,
            metrics=apply_run_outputs("metrics.csv"),
            code=library_code("apply_evaluate.py"),
        output:
            **{
                name: report_file(
                    path,
                    caption="../report/apply_tables.rst",
                    category="Apply (external)",
                    labels={"table": f"{name} (external)"},
                )
                for name, path in APPLY_TABLES.items()
            },
            **{
                f"{name}_{suffix}": apply_file("tables", f"{name}_external.{suffix}")
                for name in APPLY_TABLES
                for suffix in ("md", "tex")
            },
            reliability=report_file(
                apply_file("figures", "reliability_external.png"),
                caption="../report/apply_reliability.rst",
                category="Apply (external)",
                labels={"figure": "reliability (external)"},
            ),
            reliability_pdf=apply_file("figures", "reliability_external.pdf"),
        params:
            runs=APPLY_RUNS_JSON,
            n_boot=APPLY["n_boot"],
            boot_seed=APPLY["boot_seed"],
            calibration_bins=config["report"]["calibration_bins"],
            decimals=config["report"]["tables"]["decimals"],
            width_in=config["report"]["figures"]["width_in"],
        log:
            log_path("apply", "evaluate.log"),
        localrule: True
        script:
            "../../scripts/apply_evaluate.py"

    rule apply_gallery:
        input:
            study=APPLY_STUDY_H5,
            ensemble=rules.apply_probabilities.output.ensemble,
            maps=apply_run_outputs("maps.h5"),
            code=library_code("apply_gallery.py"),
        output:
            gallery=report_file(
                directory(apply_file("gallery")),
                htmlindex="index.html",
                caption="../report/apply_gallery.rst",
                category="Apply (external)",
                labels={"figure": "gallery"},
            ),
        params:
            runs=APPLY_RUNS_JSON,
            title=config["study"]["name"],
            note=f"the models of {APPLIED.folder}: {len(APPLIED.models)} models x "
            f"{len(APPLY_RUNS) // len(APPLIED.models)} seeds; maps: each model's mean over its seeds; "
            "white dots: the target's landmark group",
            batch_size=APPLY["batch_size"],
            full_scale=APPLY["gallery"]["full_scale"],
            map_alpha=APPLY["gallery"]["map_alpha"],
        log:
            log_path("apply", "gallery.log"),
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        script:
            "../../scripts/apply_gallery.py"

    # The apply run's target (`snakemake apply_all`): probabilities, evaluation and gallery.
    rule apply_all:
        input:
            rules.apply_probabilities.output,
            rules.apply_evaluate.output,
            rules.apply_gallery.output,
        localrule: True
        default_target: False
