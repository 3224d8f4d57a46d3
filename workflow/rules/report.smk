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


def explain_outputs(name):
    return expand(results("explain", "{model}", "seed{seed}", name), model=MODELS, seed=SEEDS)


def table_outputs():
    outputs = {}
    for table_id, label in REPORT_TABLES.items():
        stem = results("report", "tables", table_id)
        outputs[table_id] = report(
            f"{stem}.csv",
            caption=f"../report/{table_id}.rst",
            category="Tables",
            labels={"table": label},
        )
        outputs[f"{table_id}_md"] = f"{stem}.md"
        outputs[f"{table_id}_tex"] = f"{stem}.tex"
    outputs["seed_level_input"] = report(
        results("report", "tables", "seed_level_input.csv"),
        caption="../report/seed_level_input.rst",
        category="Tables",
        labels={"table": "Seed-level input"},
    )
    return outputs


def figure_outputs():
    outputs = {}
    for figure_id, label in REPORT_FIGURES.items():
        stem = results("report", "figures", figure_id)
        outputs[figure_id] = report(
            f"{stem}.png",
            caption=f"../report/{figure_id}.rst",
            category="Figures",
            labels={"figure": label},
        )
        outputs[f"{figure_id}_pdf"] = f"{stem}.pdf"
    return outputs


localrules:
    report_tables,
    report_figures,
    report_summary,


rule report_tables:
    input:
        predictions=explain_outputs("predictions.csv"),
        metrics=explain_outputs("metrics.csv"),
        study=results("preprocess", "study.h5"),
        code=library_code("report_tables.py"),
    output:
        **table_outputs(),
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
        predictions=explain_outputs("predictions.csv"),
        metrics=explain_outputs("metrics.csv"),
        maps_baseline=results("explain", "baseline", f"seed{config['study']['selection_seed']}", "maps.h5"),
        maps_prior=results("explain", "prior", f"seed{config['study']['selection_seed']}", "maps.h5"),
        study=results("preprocess", "study.h5"),
        code=library_code("report_figures.py"),
    output:
        **figure_outputs(),
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
        metrics=explain_outputs("metrics.csv"),
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
    list(table_outputs().values())
    + list(figure_outputs().values())
    + [results("report", "summary.md")]
)
