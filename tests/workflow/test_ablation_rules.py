"""Rule report_ablation alone, on explain outputs written by the unit tests' builders (tests/unit/test_ablation.py)."""

import pandas as pd
import pytest
from helpers import ABLATION_SEEDS as SEEDS
from helpers import run_frames, twin_frame
from workflow_copy import copy_workflow, snakemake, write_override

from osteoloc.io.atomic import write_csv
from osteoloc.names import TARGETS

# A scratch Snakefile with the shared, cohort and report rule files and the explain outputs already in place
# (as source files), so no training runs.

SCRATCH_SNAKEFILE = """\
configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/report.smk"
"""


@pytest.fixture()
def ablation_workflow(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "Snakefile").write_text(SCRATCH_SNAKEFILE)
    for arm in ("baseline", "prior", "disc"):
        for seed in SEEDS:
            predictions, metrics = run_frames("better" if arm == "disc" else arm, seed, with_cue=True)
            folder = workdir / "results" / "explain" / arm / f"seed{seed}"
            write_csv(predictions.drop(columns=["model", "seed"]), folder / "predictions.csv")
            write_csv(metrics.drop(columns=["model", "seed"]), folder / "metrics.csv")
            write_csv(twin_frame(predictions).drop(columns=["model", "seed"]), folder / "twin_predictions.csv")
    return workdir


def test_rule_report_ablation(ablation_workflow):
    report = ablation_workflow / "results" / "report"
    override = write_override(ablation_workflow, {"study": {"seeds": list(SEEDS), "selection_seed": 0},
                                                  "arms": {"disc": {"prior": {"shape": "disc"}}}})
    without_arms = snakemake(ablation_workflow, "-n", "--list-rules")
    assert "report_ablation" not in without_arms.stdout
    targets = ("results/report/tables/ablation.csv", "results/report/figures/ablation_forest.png")
    snakemake(ablation_workflow, "--configfile", "config.yaml", override, "-c1", *targets)
    table = pd.read_csv(report / "tables" / "ablation.csv")
    assert list(dict.fromkeys(table["arm"])) == ["baseline", "prior", "disc"]
    assert "cue_energy" in set(table["metric"]) and "auc_drop" not in set(table["metric"])  # twins are off
    disc = table[(table["arm"] == "disc") & (table["metric"] == "com_distance")]
    assert (disc["improved"] == 3).all() and (disc["diff"] < 0).all()
    for path in ("tables/ablation.md", "tables/ablation.tex", "figures/ablation_forest.pdf"):
        assert (report / path).stat().st_size > 0
    html = snakemake(ablation_workflow, "--configfile", "config.yaml", override, "--report", "report.html", *targets)
    assert "Ablation forest plot. One panel per metric" in (ablation_workflow / "report.html").read_text()


def test_rule_report_ablation_reads_twins_when_the_cue_test_is_on(ablation_workflow):
    override = write_override(ablation_workflow, {
        "study": {"seeds": list(SEEDS), "selection_seed": 0}, "arms": {"disc": {"prior": {"shape": "disc"}}},
        "cohort": {"phantom": {"cue": {"enabled": True, "twins": True}}}})
    snakemake(ablation_workflow, "--configfile", "config.yaml", override, "-c1", "results/report/tables/ablation.csv")
    table = pd.read_csv(ablation_workflow / "results" / "report" / "tables" / "ablation.csv")
    drop = table[(table["metric"] == "auc_drop") & (table["arm"] == "disc")]
    assert len(drop) == len(TARGETS) and (drop["mean"] == 0).all()  # `better` does not rely on the cue
