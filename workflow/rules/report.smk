# Every table and figure of paper A from the explain outputs of all runs, a Markdown summary, and the
# captions of `snakemake --report report.html`. Local, light rules. Report-only options (report.tables,
# report.figures) are params of the one rule they format, apart from the analysis params. The table and
# figure ids come from the library that writes them.
from osteoloc.names import (
    ABLATION_FIGURE,
    ABLATION_TABLE,
    FIGURES,
    SEED_LEVEL_INPUT,
    SUMMARY_TABLES,
    TABLES,
)
from osteoloc.report.comparisons import comparison_arms


report: "../report/workflow.rst"


REPORT = config["report"]
REPORT_SELECTION_SEED = config["study"]["selection_seed"]
TABLE_OUTPUTS = report_outputs(
    "tables",
    {table_id: {"table": label} for table_id, label in TABLES.items()},
    "Tables",
)
# The seed-level input is one CSV: no Markdown or LaTeX sibling.
TABLE_OUTPUTS |= report_outputs(
    "tables", {SEED_LEVEL_INPUT[0]: {"table": SEED_LEVEL_INPUT[1]}}, "Tables", ("csv",)
)
FIGURE_OUTPUTS = report_outputs(
    "figures",
    {figure_id: {"figure": label} for figure_id, label in FIGURES.items()},
    "Figures",
)
# What the tables and figures read: the explain outputs of every run (params `runs` names them) and the study.
ALL_RUNS = dict(
    predictions=explain_outputs("predictions.csv"),
    metrics=explain_outputs("metrics.csv"),
    study=results("preprocess", "study.h5"),
)


localrules:
    report_tables,
    report_figures,
    report_summary,


rule report_tables:
    input:
        **ALL_RUNS,
        code=library_code("report_tables.py"),
    output:
        **TABLE_OUTPUTS,
    params:
        runs=explain_runs(),
        selection_seed=REPORT_SELECTION_SEED,
        calibration_bins=REPORT["calibration_bins"],
        n_boot=REPORT["statistics"]["n_boot"],
        boot_seed=REPORT["statistics"]["seed"],
        strata_mm=REPORT["lesion_landmark_strata_mm"],
        format=as_json(REPORT["tables"]),
    log:
        log_path("report", "tables.log"),
    script:
        "../../scripts/report_tables.py"


rule report_figures:
    input:
        **ALL_RUNS,
        maps_baseline=explain_file("maps.h5", "baseline", REPORT_SELECTION_SEED),
        maps_prior=explain_file("maps.h5", "prior", REPORT_SELECTION_SEED),
        code=library_code("report_figures.py"),
    output:
        **FIGURE_OUTPUTS,
    params:
        runs=explain_runs(),
        selection_seed=REPORT_SELECTION_SEED,
        calibration_bins=REPORT["calibration_bins"],
        format=as_json(REPORT["figures"]),
    log:
        log_path("report", "figures.log"),
    script:
        "../../scripts/report_figures.py"


rule report_summary:
    input:
        **{table_id: TABLE_OUTPUTS[table_id] for table_id in SUMMARY_TABLES},
        metrics=ALL_RUNS["metrics"],
        study=ALL_RUNS["study"],
        exclusions=results("preprocess", "exclusions.csv"),
        code=library_code("report_summary.py"),
    output:
        summary=report_file(
            results("report", "summary.md"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"file": "summary.md"},
        ),
    params:
        study_name=config["study"]["name"],
        seeds=as_json(SEEDS),
        runs=explain_runs(),
    log:
        log_path("report", "summary.log"),
    script:
        "../../scripts/report_summary.py"


# One learning-curve figure per training run (every model and arm, every seed), all in one light job.
LEARNING_CURVES = {
    f"{model}_seed{seed}": report_file(
        results("report", "figures", "learning_curves", f"{model}_seed{seed}.png"),
        caption=workflow.source_path("../report/learning_curves.rst"),
        category="Training",
        subcategory="Learning curves",
        labels={"model": model, "seed": str(seed)},
    )
    for model in RUNS
    for seed in SEEDS
}


rule figure_learning_curves:
    input:
        histories=[train_file("history.csv", m, s) for m in RUNS for s in SEEDS],
        code=library_code("figure_learning_curves.py"),
    output:
        **LEARNING_CURVES,
        pdfs=[
            results("report", "figures", "learning_curves", f"{run}.pdf")
            for run in LEARNING_CURVES
        ],
    params:
        runs=as_json([[m, s] for m in RUNS for s in SEEDS]),
        figures=as_json(list(LEARNING_CURVES)),
    log:
        log_path("report", "learning_curves.log"),
    localrule: True
    script:
        "../../scripts/figure_learning_curves.py"


# Images per second of training (timed in the loop, from best.pt) and of explain (its job's benchmark),
# with the environment each run recorded: experiments/gpu_smoke.yaml's answer (docs/cluster.md).
rule throughput:
    input:
        best=[train_file("best.pt", m, s) for m in MODELS for s in SEEDS],
        predictions=explain_outputs("predictions.csv"),
        benchmarks=explain_outputs("benchmark.tsv"),
        code=library_code("throughput.py"),
    output:
        results("report", "throughput.json"),
    params:
        runs=explain_runs(),
    log:
        log_path("report", "throughput.log"),
    localrule: True
    script:
        "../../scripts/throughput.py"


ALL_TARGETS.extend(
    list(TABLE_OUTPUTS.values())
    + list(FIGURE_OUTPUTS.values())
    + [results("report", "summary.md"), results("report", "throughput.json")]
    + list(LEARNING_CURVES.values())
)


# The ablation: every configured arm (config `arms`: name -> overrides) and the paper's two models,
# compared with the reference arm 'prior' (or the arm report.comparisons names) over seeds and subjects.
# No arms configured: no rule, the study is unchanged.
if config.get("arms"):
    comparison_arms(
        RUNS, comparisons=REPORT["comparisons"]
    )  # a wrong name fails now, not after training
    ABLATION_OUTPUTS = report_outputs(
        "tables", {ABLATION_TABLE[0]: {"table": ABLATION_TABLE[1]}}, "Ablation"
    ) | report_outputs(
        "figures", {ABLATION_FIGURE[0]: {"figure": ABLATION_FIGURE[1]}}, "Ablation"
    )

    localrules:
        report_ablation,

    rule report_ablation:
        input:
            predictions=explain_outputs("predictions.csv", RUNS),
            metrics=explain_outputs("metrics.csv", RUNS),
            twin_predictions=(
                explain_outputs("twin_predictions.csv", RUNS)
                if phantom_twins()
                else []
            ),
            # the follow rate joins the table (and Holm's family when primary)
            effects=(
                explain_outputs("interventions.csv", RUNS)
                if interventions_on()
                else []
            ),
            code=library_code("report_ablation.py"),
        output:
            **ABLATION_OUTPUTS,
        params:
            runs=explain_runs(RUNS),
            arms=as_json(RUNS),
            decimals=REPORT["tables"]["decimals"],
            width_in=REPORT["figures"]["width_in"],
            statistics=as_json(REPORT["statistics"]),
            comparisons=as_json(REPORT["comparisons"]),
            lesion_placement=lesion_placement(),  # common.smk: "offset" adds a primary comparison
        log:
            log_path("report", "ablation.log"),
        script:
            "../../scripts/report_ablation.py"

    ALL_TARGETS.extend(ABLATION_OUTPUTS.values())


# Localisation by intervention: every run's interventions.csv -> one table and figure per study.
if interventions_on():  # common.smk
    INTERVENTION_OUTPUTS = report_outputs(
        "tables", {"interventions": {"table": "Intervention table"}}, "Interventions"
    ) | report_outputs(
        "figures",
        {"interventions_figure": {"figure": "Intervention figure"}},
        "Interventions",
    )

    localrules:
        report_interventions,

    rule report_interventions:
        input:
            effects=explain_outputs("interventions.csv", RUNS),
            code=library_code("report_interventions.py"),
        output:
            **INTERVENTION_OUTPUTS,
        params:
            runs=explain_runs(RUNS),
            arms=as_json(RUNS),
            width_in=REPORT["figures"]["width_in"],
            n_boot=REPORT["statistics"]["n_boot"],
            boot_seed=REPORT["statistics"]["seed"],
        log:
            log_path("report", "interventions.log"),
        script:
            "../../scripts/report_interventions.py"

    ALL_TARGETS.extend(INTERVENTION_OUTPUTS.values())
