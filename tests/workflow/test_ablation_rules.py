"""Rule report_ablation alone, on explain outputs written by the unit tests' builders (tests/unit/test_ablation.py)."""

import numpy as np
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


def _intervention_effects(arm, seed):
    """One run's interventions.csv (explain.interventions.EFFECT_COLUMNS with subject and visit): per subject
    and target a removal, moves of 7.5 mm along and across (scored on the lesion's map and one lesion-free
    target's) and a move to the other site (and the receiving map); `disc` follows by 0.4 per mm more than
    the others, one of its maps is all zero."""
    rng = np.random.default_rng(10 * seed + len(arm))
    rows = []
    for i in range(6):
        for t, target in enumerate(TARGETS):
            other = TARGETS[(t + 1) % len(TARGETS)]
            variants = [("removed", "", "lesion", target, 0), ("moved", "along", "lesion", target, 1),
                        ("moved", "along", "unaffected", other, 1), ("moved", "across", "lesion", target, 2),
                        ("other_site", "", "lesion", target, 3), ("other_site", "", "receiving", other, 3)]
            for kind, direction, role, map_target, offset in variants:
                case = 4 * (4 * i + t) + offset  # the intervention, shared by its scored maps
                moved = kind != "removed"
                follow = (0.4 if arm == "disc" else 0.0) + 0.05 * rng.standard_normal() if moved else np.nan
                rows.append({"subject": f"s{i:02d}", "visit": 0, "case": case,
                             "side": "right", "target": target, "kind": kind, "direction": direction,
                             "shift_mm": 7.5 if kind == "moved" else np.nan, "role": role, "map_target": map_target,
                             "mask_shift_mm": 7.5 if moved else np.nan, "com_follow": follow, "peak_follow": follow,
                             "com_shift_mm": 1.0, "peak_shift_mm": 1.0, "logit_change": -rng.random(),
                             "maps_undefined": int(arm == "disc" and case == 1),
                             "com_follow_chance": 0.0 if moved else np.nan, "peak_follow_chance": 0.0 if moved else np.nan,
                             "com_follow_ceiling": 0.7 if moved else np.nan, "peak_follow_ceiling": 0.9 if moved else np.nan})
    return pd.DataFrame(rows)


def test_rules_report_interventions_and_the_follow_rate_in_holms_family(ablation_workflow):
    """With the interventions on, report_interventions summarises every run's interventions.csv (chance,
    ceiling, place and the all-zero maps counted) and report_ablation puts the follow rate's comparison
    into Holm's family beside the other primary metrics."""
    for arm in ("baseline", "prior", "disc"):
        for seed in SEEDS:
            folder = ablation_workflow / "results" / "explain" / arm / f"seed{seed}"
            write_csv(_intervention_effects(arm, seed), folder / "interventions.csv")
    override = write_override(ablation_workflow, {
        "study": {"seeds": list(SEEDS), "selection_seed": 0}, "arms": {"disc": {"prior": {"shape": "disc"}}},
        "explain": {"interventions": {"enabled": True}},
        "report": {"statistics": {"n_boot": 100, "primary_metrics": ["auc", "com_distance", "com_follow"]}}})
    targets = ("results/report/tables/ablation.csv", "results/report/tables/interventions.csv",
               "results/report/figures/interventions_figure.png")
    snakemake(ablation_workflow, "--configfile", "config.yaml", override, "-c1", *targets)
    report = ablation_workflow / "results" / "report"
    table = pd.read_csv(report / "tables" / "ablation.csv")
    follows = table[(table["metric"] == "com_follow") & (table["arm"] == "disc")]
    assert len(follows) == len(TARGETS) and follows["survives"].all()
    assert (follows["diff"] > 0.3).all() and np.allclose(follows["ceiling"], 0.7) and np.allclose(follows["chance"], 0)
    family = table[table["p_holm"].notna()]
    assert set(family["metric"]) == {"auc", "com_distance", "com_follow"}
    summary = pd.read_csv(report / "tables" / "interventions.csv", keep_default_na=False, na_values=[""])
    assert set(summary["role"]) == {"lesion", "receiving", "unaffected"}
    own = summary[(summary["quantity"] == "com_follow") & (summary["role"] == "lesion")]
    assert np.allclose(own["place"], own["mean"] / 0.7, atol=2e-3)  # the table keeps 3 decimals
    assert summary["n_undefined"].sum() > 0
    assert (report / "figures" / "interventions_figure.pdf").stat().st_size > 1000
