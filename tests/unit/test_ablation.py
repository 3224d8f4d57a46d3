"""The ablation table and forest plot (osteoloc.report.ablation, osteoloc.report.figure_ablation) on synthetic runs whose
differences between arms are known by construction."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from osteoloc.report.ablation import ABLATION_METRICS, ablation_table, penalty_warnings, seed_level_values, t_interval
from osteoloc.report.figure_ablation import _x_limits, figure_ablation_forest
from osteoloc.report.stages import report_ablation
from osteoloc.io.atomic import write_csv
from osteoloc.names import TARGETS
from helpers import ABLATION_HIPS, ABLATION_SEEDS, run_frames, twin_frame

SEEDS, N_HIPS = ABLATION_SEEDS, ABLATION_HIPS
ARMS = ("baseline", "prior", "better", "same")


def all_runs(arms=ARMS, **kwargs):
    frames = [run_frames(arm, seed, **kwargs) for arm in arms for seed in SEEDS]
    return (pd.concat([f[0] for f in frames], ignore_index=True),
            pd.concat([f[1] for f in frames], ignore_index=True))


def row(table, metric, target, arm):
    found = table[(table["metric"] == metric) & (table["target"] == target) & (table["arm"] == arm)]
    assert len(found) == 1
    return found.iloc[0]


def test_seed_level_values_follow_the_definitions():
    predictions, metrics = all_runs()
    values = seed_level_values(predictions, metrics)
    one = values[(values["arm"] == "baseline") & (values["seed"] == 1) & (values["target"] == TARGETS[0])]
    one = one.set_index("metric")
    preds = predictions[(predictions["model"] == "baseline") & (predictions["seed"] == 1)
                        & (predictions["target"] == TARGETS[0]) & (predictions["label"] >= 0)]
    assert one.loc["auc", "value"] == pytest.approx(roc_auc_score(preds["label"], preds["prob"]))
    assert one.loc["auc", "n"] == N_HIPS - 1
    mets = metrics[(metrics["model"] == "baseline") & (metrics["seed"] == 1) & (metrics["target"] == TARGETS[0])
                   & (metrics["label"] == 1)]
    assert one.loc["com_distance", "value"] == pytest.approx(mets["com_distance"].mean())
    # row 1 (positive) has an all-zero map: scored as the uniform map, kept and counted
    assert one.loc["com_distance", "n"] == len(mets) and one.loc["com_distance", "n_undefined"] == 1
    assert one.loc["com_to_lesion", "value"] == pytest.approx(mets["com_to_lesion"].mean())
    # the endpoint: only the hips whose lesion is apart from its landmark, its levels over the same hips
    apart = mets["lesion_vs_landmark"].notna()
    assert one.loc["lesion_vs_landmark", "n"] == apart.sum() < len(mets)
    assert one.loc["lesion_vs_landmark", "value"] == pytest.approx(mets.loc[apart, "lesion_vs_landmark"].mean())
    assert (one.loc["lesion_vs_landmark", "chance"], one.loc["lesion_vs_landmark", "ceiling"]) == (0.0, 8.0)
    assert one.loc["spread", "n"] == len(mets)
    assert one.loc["energy_in_mask", "value"] == pytest.approx(mets["energy_in_mask"].mean())
    assert not {"auc_no_cue", "auc_drop", "cue_energy"} & set(values["metric"])


def test_an_arm_better_in_every_seed():
    predictions, metrics = all_runs()
    table = ablation_table(seed_level_values(predictions, metrics), ARMS)
    com = row(table, "com_distance", TARGETS[1], "better")
    assert com["better"] == "lower"
    assert (com["improved"], com["n_pairs"]) == (3, 3)
    assert com["diff"] < 0 and com["ci_high"] < 0
    assert com["W"] == 0 and com["p"] == pytest.approx(2 / 2**3)  # exact: 3 of 3 one way
    for metric in ("energy_in_mask", "auc"):
        better = row(table, metric, TARGETS[2], "better")
        assert better["better"] == "higher"
        assert better["diff"] > 0 and better["improved"] == 3
    pointing = row(table, "pointing_hit", TARGETS[2], "better")  # lower distances never lose a hit
    assert pointing["better"] == "higher" and pointing["diff"] >= 0
    assert row(table, "auc", TARGETS[0], "better")["mean"] == pytest.approx(1.0)


def test_an_arm_identical_to_the_reference():
    predictions, metrics = all_runs()
    table = ablation_table(seed_level_values(predictions, metrics), ARMS)
    same = table[table["arm"] == "same"]
    # auc, six distances, spread, pointing, energy, lift, lesion vs landmark, undefined maps, constant penalty
    assert len(same) == len(TARGETS) * 14
    assert (same["diff"] == 0).all() and (same["ci_low"] == 0).all() and (same["ci_high"] == 0).all()
    assert (same["improved"] == 0).all() and same["p"].isna().all()
    prior = table[table["arm"] == "prior"]
    assert prior["diff"].isna().all() and prior["improved"].isna().all()
    assert (prior["n_seeds"] == 3).all()
    assert prior[~prior["metric"].isin(["undefined_map", "penalty_constant"])]["sd"].gt(0).all()


def test_t_interval_matches_scipy():
    from scipy import stats
    diffs = np.array([1.0, 2.5, 4.0, 2.0])
    expected = stats.t.interval(0.95, 3, loc=diffs.mean(), scale=stats.sem(diffs))
    assert t_interval(diffs) == pytest.approx(expected)
    assert np.isnan(t_interval([1.0])).all()


def test_cue_reliance_only_when_its_columns_exist():
    predictions, metrics = all_runs(with_truth=False, with_cue=True)
    values = seed_level_values(predictions, metrics)
    assert "cue_energy" in set(values["metric"]) and "pointing_hit" not in set(values["metric"])
    assert not {"auc_no_cue", "auc_drop"} & set(values["metric"])
    cue = metrics[(metrics["model"] == "prior") & (metrics["seed"] == 0) & (metrics["target"] == TARGETS[3])]
    got = values[(values["metric"] == "cue_energy") & (values["arm"] == "prior") & (values["seed"] == 0)
                 & (values["target"] == TARGETS[3])]
    assert got["value"].item() == pytest.approx(cue["cue_energy"].dropna().mean())  # every labelled hip
    assert got["n"].item() == cue["cue_energy"].notna().sum()

    table = ablation_table(seed_level_values(predictions, metrics, twin_frame(predictions)), ARMS)
    auc = row(table, "auc", TARGETS[0], "prior")["mean"]
    assert row(table, "auc_no_cue", TARGETS[0], "prior")["mean"] == pytest.approx(1 - auc)
    assert row(table, "auc_drop", TARGETS[0], "prior")["mean"] == pytest.approx(2 * auc - 1)
    better = row(table, "auc_drop", TARGETS[0], "better")
    assert better["better"] == "lower" and better["mean"] == 0
    assert row(table, "cue_energy", TARGETS[0], "better")["improved"] == 3  # lower com -> lower cue energy


def test_missing_reference_or_arm_is_an_error():
    predictions, metrics = all_runs(arms=("baseline", "better"))
    values = seed_level_values(predictions, metrics)
    with pytest.raises(ValueError, match="reference arm 'prior'"):
        ablation_table(values, ("baseline", "better"))
    with pytest.raises(ValueError, match=r"no run of the arms \['prior'\]"):
        ablation_table(values, ("baseline", "prior", "better"))


def test_forest_panel_clips_only_the_outlying_interval():
    # Five arms with intervals of half-width 1, one (2 seeds) of half-width 40; the zero-width row (an arm
    # equal to the reference) sets no scale.
    block = pd.DataFrame({"diff": [0.5, -1.0, 2.0, 0.0, 3.0, 0.0],
                          "ci_low": [-0.5, -2.0, 1.0, -1.0, -37.0, 0.0],
                          "ci_high": [1.5, 0.0, 3.0, 1.0, 43.0, 0.0]})
    lo, hi = _x_limits(block)
    assert lo < -2.0 and hi > 3.0  # every difference and every ordinary interval inside
    assert lo > -5.0 and hi < 6.0  # the outlier's (-37, 43) clipped
    lo, hi = _x_limits(block.iloc[:4])  # without the outlier nothing is clipped either
    assert lo < -2.0 and hi > 3.0


def test_forest_figure_writes_png_and_pdf(tmp_path):
    predictions, metrics = all_runs(with_cue=True)
    table = ablation_table(seed_level_values(predictions, metrics, twin_frame(predictions)), ARMS)
    figure_ablation_forest(table, tmp_path / "ablation_forest.png", width_in=7.0)
    # the panels' all-zero counts: hip 1's map (first target) in every run of every arm, per run
    from osteoloc.report.figure_ablation import all_zero_counts
    com = table[table["metric"] == "com_to_lesion"]
    counts = all_zero_counts(com, list(ARMS))
    assert {arm: u for arm, (u, _) in counts.items()} == {arm: 1.0 for arm in ARMS}
    assert counts["prior"][1] == com.loc[com["arm"] == "prior", "n_hips"].sum()
    assert all_zero_counts(table[table["metric"] == "auc"], list(ARMS)) == {}
    for suffix in ("png", "pdf"):
        assert (tmp_path / f"ablation_forest.{suffix}").stat().st_size > 1000
    with pytest.raises(ValueError, match="no arm has a difference"):
        figure_ablation_forest(table[table["arm"] == "prior"], tmp_path / "empty.png", width_in=7.0)


def test_report_ablation_from_run_files(tmp_path):
    """The stage function reads every run's files (runs.read_runs) and writes the table and the figure."""
    runs, paths = [], {"predictions": [], "metrics": [], "twins": []}
    for arm in ARMS:
        for seed in SEEDS:
            predictions, metrics = run_frames(arm, seed, with_cue=True)
            folder = tmp_path / arm / f"seed{seed}"
            for kind, frame in (("predictions", predictions), ("metrics", metrics),
                                ("twins", twin_frame(predictions))):
                write_csv(frame.drop(columns=["model", "seed"]), folder / f"{kind}.csv")
                paths[kind].append(str(folder / f"{kind}.csv"))
            runs.append([arm, seed])
    out = tmp_path / "report"
    report_ablation(json.loads(json.dumps(runs)), paths["predictions"], paths["metrics"], paths["twins"],
                    arms=list(ARMS), decimals=3, width_in=7.0, table_path=out / "ablation.csv",
                    figure_path=out / "ablation_forest.png",
                    statistics={"n_boot": 200, "seed": 0, "alpha": 0.05, "primary_metrics": ["auc", "com_distance"]})
    table = pd.read_csv(out / "ablation.csv")
    # every metric but the interventions' follow rate (no interventions.csv here)
    assert set(table["metric"]) == {m for m, spec in ABLATION_METRICS.items() if spec.source != "interventions"}
    assert list(dict.fromkeys(table["arm"])) == list(ARMS)
    # the primary metrics' comparisons (arm against the reference) carry a bootstrap interval and Holm's
    # verdict; with cue-free twins the primary AUC is the cue-free one
    compared = table[table["metric"].isin(["auc_no_cue", "com_distance"]) & (table["arm"] != "prior")]
    assert len(compared) == 2 * 4 * (len(ARMS) - 1)
    assert compared["boot_low"].notna().all() and (compared["boot_low"] <= compared["boot_high"]).all()
    assert (compared["re_low"] <= compared["boot_diff"]).all() and (compared["boot_diff"] <= compared["re_high"]).all()
    assert (compared["p_holm"] >= compared["re_p"] - 1e-12).all()  # Holm rests on the analytic p
    assert table.loc[~table.index.isin(compared.index), ["boot_p", "re_p"]].isna().all().all()
    markdown = (out / "ablation.md").read_text()
    assert "| metric" in markdown and "nan" not in markdown and "<NA>" not in markdown  # the prior's rows blank
    assert "\\label{tab:ablation}" in (out / "ablation.tex").read_text()
    assert (out / "ablation_forest.pdf").exists() and (out / "ablation_forest.png").exists()
    with pytest.raises(ValueError, match="9 runs but 12"):
        report_ablation(runs[:9], paths["predictions"], paths["metrics"], arms=list(ARMS), decimals=3,
                        width_in=7.0, table_path=out / "x.csv", figure_path=out / "x.png")


def test_calibrated_metrics_show_their_place_between_chance_and_ceiling_and_the_control():
    predictions, metrics = all_runs()
    values = seed_level_values(predictions, metrics)
    table = ablation_table(values, ARMS).set_index(["metric", "target", "arm"])
    row = table.loc[("com_to_landmark", TARGETS[0], "better")]
    assert (row["chance"], row["ceiling"], row["control"]) == (20.0, 2.0, 8.0)
    assert row["place"] == pytest.approx((row["mean"] - 20.0) / (2.0 - 20.0))
    assert row["control_place"] == pytest.approx(12.0 / 18.0)
    assert np.isnan(table.loc[("spread", TARGETS[0], "better"), "place"])  # not calibrated: no levels
    # the undefined map (hip 1, a positive of the first target) is counted, per run, among the positives
    undefined = table.loc[("undefined_map", TARGETS[0], "prior")]
    assert undefined["mean"] == pytest.approx(1 / 5) and undefined["n_hips"] == 5  # 5 positives a run
    assert table.loc[("undefined_map", TARGETS[1], "prior"), "mean"] == 0.0
    # every fourth hip of the prior has a constant penalty: 25 % > 10 %, a warning per target
    warnings = penalty_warnings(ablation_table(values, ARMS))
    assert len(warnings) == 2 * len(TARGETS) and all("25%" in w for w in warnings)  # prior and same
    assert sum(w.startswith("prior ") for w in warnings) == len(TARGETS)


def test_primary_metrics_are_the_measured_ones_and_a_typo_is_refused():
    from osteoloc.report.stages import primary_metrics

    metrics = pd.DataFrame(columns=["com_distance", "com_to_lesion"])
    assert primary_metrics(["auc", "com_to_lesion"], metrics, twins=False) == ["auc", "com_to_lesion"]
    # with cue-free twins the primary AUC is the one without the cue
    assert primary_metrics(["auc", "com_to_lesion"], metrics, twins=True) == ["auc_no_cue", "com_to_lesion"]
    # not measured here (no truth column): left out; no twins: no cue-free AUC
    assert primary_metrics(["auc_no_cue", "peak_to_lesion"], metrics, twins=False) == []
    with pytest.raises(ValueError, match="unknown metric"):
        primary_metrics(["com_to_lesoin"], metrics, twins=False)


def test_bootstrap_keeps_and_counts_all_zero_maps_and_drops_only_hips_without_a_reference():
    from osteoloc.report.ablation import bootstrap_comparisons
    predictions, metrics = all_runs()
    table = bootstrap_comparisons(predictions, metrics, ARMS, metric_names=["com_to_lesion", "lesion_vs_landmark"],
                                  n_boot=0, seed=0).set_index(["metric", "target", "arm"])
    first = table.loc[("com_to_lesion", TARGETS[0], "better")]
    positives = int((metrics[(metrics["model"] == "prior") & (metrics["target"] == TARGETS[0])]["label"] == 1).sum())
    # hip 1's all-zero map (every seed, both arms) stays in the comparison and is counted
    assert first["undefined"] == len(SEEDS) and first["no_reference"] == 0 and first["boot_hips"] == positives
    assert table.loc[("com_to_lesion", TARGETS[1], "better"), "undefined"] == 0
    endpoint = table.loc[("lesion_vs_landmark", TARGETS[0], "better")]
    assert endpoint["no_reference"] > 0 and endpoint["boot_hips"] == positives - endpoint["no_reference"]
    assert endpoint["boot_diff"] > 0 and np.isfinite(endpoint["re_p"])  # better: nearer the lesion


def test_the_offset_design_makes_lesion_vs_landmark_a_primary_comparison(tmp_path):
    from osteoloc.report.comparisons import design_primaries
    assert design_primaries("offset") == ("lesion_vs_landmark",)
    assert design_primaries("landmark") == design_primaries(None) == design_primaries("") == ()
    runs, paths = [], {"predictions": [], "metrics": []}
    for arm in ("baseline", "prior", "better"):
        for seed in SEEDS:
            predictions, metrics = run_frames(arm, seed)
            for kind, frame in (("predictions", predictions), ("metrics", metrics)):
                write_csv(frame.drop(columns=["model", "seed"]), tmp_path / arm / f"seed{seed}" / f"{kind}.csv")
                paths[kind].append(str(tmp_path / arm / f"seed{seed}" / f"{kind}.csv"))
            runs.append([arm, seed])
    statistics = {"n_boot": 0, "seed": 0, "alpha": 0.05, "primary_metrics": ["auc"]}
    for design, expected in (("offset", {"auc", "lesion_vs_landmark"}), ("landmark", {"auc"})):
        statistics["n_boot"] = 50
        report_ablation(runs, paths["predictions"], paths["metrics"], arms=["baseline", "prior", "better"],
                        decimals=3, width_in=7.0, table_path=tmp_path / design / "ablation.csv",
                        figure_path=tmp_path / design / "ablation_forest.png", statistics=statistics,
                        lesion_placement=design)
        table = pd.read_csv(tmp_path / design / "ablation.csv")
        assert set(table.loc[table["re_p"].notna(), "metric"]) == expected
        assert table["n_undefined"].notna().any()
