# Every table and figure of paper A from the explain outputs of all runs, a Markdown summary, and the
# captions of `snakemake --report report.html`. Local, light rules. Report-only options (report.tables,
# report.figures) are params of the one rule they format, apart from the analysis params.


report: "../report/workflow.rst"


REPORT_TABLES = {
    "table1": "Table 1",
    "table2": "Table 2",
    "tableA1": "Table A1",
    "tableA2": "Table A2",
    "auc": "AUC table",
    "calibration": "Calibration table",
    "true_localisation": "True localisation table",
}
REPORT_FIGURES = {
    "figure2": "Figure 2",
    "figure3": "Figure 3",
    "figure4": "Figure 4",
    "figure5": "Figure 5",
    "figure6": "Figure 6",
    "figureA2": "Figure A2",
    "reliability": "Reliability diagrams",
}
# (model, seed) of every run, in the order expand() lists the explain outputs below.
RUNS = [[model, seed] for model in MODELS for seed in SEEDS]


# snakemake's report() under a name its parser does not take for the `report:` keyword at a line start.
in_report = report
# Every run's explain outputs, in RUNS order.
PREDICTIONS = expand(
    results("explain", "{model}", "seed{seed}", "predictions.csv"),
    model=MODELS,
    seed=SEEDS,
)
METRICS = expand(
    results("explain", "{model}", "seed{seed}", "metrics.csv"), model=MODELS, seed=SEEDS
)
TABLE_OUTPUTS = {
    output_id: path
    for table_id, label in REPORT_TABLES.items()
    for output_id, path in (
        (
            table_id,
            in_report(
                results("report", "tables", f"{table_id}.csv"),
                caption=workflow.source_path(f"../report/{table_id}.rst"),
                category="Tables",
                labels={"table": label},
            ),
        ),
        (f"{table_id}_md", results("report", "tables", f"{table_id}.md")),
        (f"{table_id}_tex", results("report", "tables", f"{table_id}.tex")),
    )
}
TABLE_OUTPUTS["seed_level_input"] = report(
    results("report", "tables", "seed_level_input.csv"),
    caption=workflow.source_path("../report/seed_level_input.rst"),
    category="Tables",
    labels={"table": "Seed-level input"},
)
FIGURE_OUTPUTS = {
    output_id: path
    for figure_id, label in REPORT_FIGURES.items()
    for output_id, path in (
        (
            figure_id,
            in_report(
                results("report", "figures", f"{figure_id}.png"),
                caption=workflow.source_path(f"../report/{figure_id}.rst"),
                category="Figures",
                labels={"figure": label},
            ),
        ),
        (f"{figure_id}_pdf", results("report", "figures", f"{figure_id}.pdf")),
    )
}


localrules:
    report_tables,
    report_figures,
    report_summary,


rule report_tables:
    input:
        predictions=PREDICTIONS,
        metrics=METRICS,
        study=results("preprocess", "study.h5"),
        code=library_code("report_tables.py"),
    output:
        **TABLE_OUTPUTS,
    params:
        runs=as_json(RUNS),
        selection_seed=config["study"]["selection_seed"],
        calibration_bins=config["report"]["calibration_bins"],
        format=as_json(config["report"]["tables"]),
    log:
        log_path("report", "tables.log"),
    script:
        "../../scripts/report_tables.py"


rule report_figures:
    input:
        predictions=PREDICTIONS,
        metrics=METRICS,
        maps_baseline=results(
            "explain",
            "baseline",
            f"seed{config['study']['selection_seed']}",
            "maps.h5",
        ),
        maps_prior=results(
            "explain", "prior", f"seed{config['study']['selection_seed']}", "maps.h5"
        ),
        study=results("preprocess", "study.h5"),
        code=library_code("report_figures.py"),
    output:
        **FIGURE_OUTPUTS,
    params:
        runs=as_json(RUNS),
        selection_seed=config["study"]["selection_seed"],
        calibration_bins=config["report"]["calibration_bins"],
        format=as_json(config["report"]["figures"]),
    log:
        log_path("report", "figures.log"),
    script:
        "../../scripts/report_figures.py"


rule report_summary:
    input:
        tableA1=results("report", "tables", "tableA1.csv"),
        auc=results("report", "tables", "auc.csv"),
        true_localisation=results("report", "tables", "true_localisation.csv"),
        exclusions=results("preprocess", "exclusions.csv"),
        study=results("preprocess", "study.h5"),
        metrics=METRICS,
        code=library_code("report_summary.py"),
    output:
        summary=report(
            results("report", "summary.md"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"file": "summary.md"},
        ),
    params:
        study_name=config["study"]["name"],
        seeds=as_json(SEEDS),
        runs=as_json(RUNS),
    log:
        log_path("report", "summary.log"),
    script:
        "../../scripts/report_summary.py"


ALL_TARGETS.extend(
    list(TABLE_OUTPUTS.values())
    + list(FIGURE_OUTPUTS.values())
    + [results("report", "summary.md")]
)
