"""Paper B's rules on CI's study (the library: tests/unit/test_segment.py)."""

import re

import pandas as pd
import yaml
from workflow_copy import CI_CONFIG, snakemake

PAPER_A_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (train|train_grid_point|explain):", re.M)


def test_segment_branch_runs_on_the_ci_study(ci_copy):
    """Paper B's branch on CI's study, without paper A's: the session's build trained the four sites; here
    the report is redone without the CAM comparison, in a copy that holds no paper A model."""
    work = ci_copy(without=("train", "grid", "explain", "report"))
    config = yaml.safe_load((work / CI_CONFIG).read_text())
    config["segment"]["report"]["weak_vs_strong"] = False  # the CAM side needs paper A's whole branch
    (work / "seg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # targets before --configfile, which takes every following word as a config file
    run = snakemake(work, "results/report/tables/segmentation.csv", "results/report/figures/segmentation_examples.png",
                    "--cores", "2", "--configfile", "seg.yaml")
    log = run.stdout + run.stderr
    assert re.search(r"^(?:local)?rule segment_report:", log, re.M), "segment_report did not run"
    assert not PAPER_A_JOB.search(log), "paper B's report ran paper A's jobs"
    table = pd.read_csv(work / "results/report/tables/segmentation.csv")
    assert list(table["site"]) == list(config["segment"]["sites"])
    assert (table["n"] > 0).all() and (table["tp"] + table["fn"] == table["n_positive"]).all()
    for site in config["segment"]["sites"]:
        assert (work / "results/segment" / site / "model.pt").exists()
        history = pd.read_csv(work / "results/segment" / site / "history.csv")
        assert len(history) == config["segment"]["training"]["epochs"] and history["best"].sum() == 1
    assert (work / "results/report/figures/segmentation_confusion.pdf").exists()
