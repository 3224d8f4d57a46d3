"""Explain + aggregation on a tiny synthetic study (contracts section 2): every expected file appears,
and the files hold what the contract says."""

import h5py
import numpy as np
import pandas as pd
import pytest

from osteoloc.explain.stages import explain_run
from osteoloc.names import FIGURE_IDS, TABLE_IDS
from osteoloc.report.figures import select_cases
from osteoloc.report.stages import paper_figures
from osteoloc.io.maps_h5 import MapsFile
from osteoloc.io.study_h5 import StudyFile
from osteoloc.io.runs import read_maps, read_runs
from osteoloc.report.tables import (CALIBRATED_COLUMNS, STRATIFIED_COLUMNS, build_tables, calibrated_table,
                                    stratified_table, summary_markdown, write_table)
from osteoloc.names import TARGETS
from helpers import REPORT_CROP, REPORT_MODELS, REPORT_SEEDS, REPORT_SUBJECTS, write_upstream

S, N_SUBJECTS, SEEDS, MODELS = REPORT_CROP, REPORT_SUBJECTS, REPORT_SEEDS, REPORT_MODELS


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_upstream(root)
    outputs = {}
    for seed in SEEDS:
        for model in MODELS:
            folder = root / "explain" / model / f"seed{seed}"
            explain_run(root / "preprocess" / "study.h5", root / "splits" / f"seed{seed}.csv",
                        root / "train" / model / f"seed{seed}" / "best.pt", predictions_path=folder / "predictions.csv",
                        maps_path=folder / "maps.h5", metrics_path=folder / "metrics.csv", batch_size=5,
                        pointing_tolerance_mm=2.0, device="cpu", control_sigma_mm=8.0)
            outputs[(model, seed)] = folder
    return root, outputs


def test_explain_outputs_follow_the_contract(explained):
    root, outputs = explained
    folder = outputs[("prior", 1)]
    predictions = pd.read_csv(folder / "predictions.csv")
    metrics = pd.read_csv(folder / "metrics.csv")
    rows, maps = read_maps(folder / "maps.h5")
    split = pd.read_csv(root / "splits" / "seed1.csv")
    assert len(rows) == 2 * (split["split"] == "test").sum()
    assert list(predictions.columns) == ["row", "subject", "visit", "side", "target", "label", "prob"]
    lesion = ["com_to_lesion", "peak_to_lesion", "pointing_hit", "energy_in_mask", "energy_lift"]
    assert list(metrics.columns[:12]) == ["row", "target", "label", "map_defined", "com_distance", "peak_distance",
                                          "spread", *lesion]
    levels = [f"{m}_{level}" for m in lesion for level in ("uniform", "random_cell", "ceiling")]
    assert list(metrics.columns[12:]) == [*levels, *(f"{m}_control" for m in lesion), "penalty_constant"]
    assert metrics["penalty_constant"].isna().all()  # these checkpoints carry no prior settings
    positive = metrics[metrics["label"] == 1]
    assert positive[levels].notna().all().all()
    assert (positive["energy_in_mask_ceiling"] >= positive["energy_in_mask_uniform"]).all()
    assert (positive["com_to_lesion_ceiling"] <= positive["com_to_lesion_uniform"] + 1e-9).all()
    assert len(predictions) == len(metrics) == 4 * len(rows)
    assert set(predictions["subject"]) <= set(split.loc[split["split"] == "test", "subject"])
    assert maps.shape == (len(rows), 4, S, S) and maps.min() >= 0 and maps.max() <= 1
    with h5py.File(folder / "maps.h5") as f:
        assert f["maps"].dtype == np.float16
    assert predictions["prob"].between(0, 1).all()
    assert metrics.loc[metrics["label"] == 0, "pointing_hit"].isna().all()  # no mask on negatives
    assert metrics.loc[metrics["label"] == 1, "pointing_hit"].notna().all()


def test_figure4_streaming_mean_equals_the_in_memory_mean(explained):
    """Figure 4's per-target mean over positives, read a few images at a time, is the mean of all maps."""
    root, outputs = explained
    path = outputs[("baseline", 0)] / "maps.h5"
    rows, maps = read_maps(path)
    with StudyFile(root / "preprocess" / "study.h5") as study:
        positive = study.read(["labels"], rows).labels == 1
    positive[:, 3] = False  # a target without positives: zeros, as the figure shows
    with MapsFile(path) as maps_file:
        streamed = maps_file.mean_over(positive, batch_size=5)  # 12 test hips: batches of 5, 5, 2
        with pytest.raises(ValueError, match="selection of shape"):
            maps_file.mean_over(positive[:-1])
    for t in range(3):
        assert positive[:, t].sum() > 1
        np.testing.assert_allclose(streamed[t], maps[positive[:, t], t].mean(axis=0), rtol=1e-6, atol=1e-7)
    assert streamed.dtype == np.float32 and streamed.shape == (4, S, S) and not streamed[3].any()


def test_aggregation_writes_every_table_and_figure(explained, tmp_path):
    root, outputs = explained
    predictions = read_runs({k: v / "predictions.csv" for k, v in outputs.items()}, "predictions")
    metrics = read_runs({k: v / "metrics.csv" for k, v in outputs.items()}, "metrics")
    with StudyFile(root / "preprocess" / "study.h5") as study:
        labels = study.read(["labels"]).labels
    tables = build_tables(predictions, metrics, labels, 0, 5, tmp_path / "tables" / "seed_level_input.csv",
                          n_boot=200)
    assert set(tables) == set(TABLE_IDS)
    for table_id, table in tables.items():
        write_table(table, tmp_path / "tables" / table_id, decimals=3)
        for suffix in (".csv", ".md", ".tex"):
            assert (tmp_path / "tables" / f"{table_id}{suffix}").stat().st_size > 0
    seed_input = pd.read_csv(tmp_path / "tables" / "seed_level_input.csv")
    assert {"seed", "metric", "target", "baseline_mean", "prior_mean"} <= set(seed_input.columns)
    assert len(seed_input) == len(SEEDS) * 3 * 4
    assert (tables["tableA1"]["n_runs"] == len(SEEDS)).all()
    assert len(tables["table1"]) == 12 and tables["table2"].shape == (4, 5)
    assert set(tables["auc"]["seed"]) == {"0", "1", "mean"}
    assert len(tables["true_localisation"]) == 8
    calibrated = tables["calibrated"]
    assert len(calibrated) == 4 * 5 * 3  # targets x lesion metrics x (baseline, prior, landmark control)
    assert set(calibrated["model"]) == {"baseline", "prior", "landmark control"}
    assert (calibrated["n_undefined"] == 0).all() and calibrated["place"].notna().any()
    defined = calibrated[calibrated["value"].notna()]  # each value with its interval over seeds and subjects
    assert defined[["ci_low", "ci_high"]].notna().all().all() and (defined["ci_low"] <= defined["ci_high"]).all()
    energy = calibrated[calibrated["metric"] == "energy_lift"]
    assert np.allclose(energy["chance"], 1.0)  # a uniform map's lift
    summary = summary_markdown("tiny", tables, pd.read_csv(root / "preprocess" / "exclusions.csv"),
                               len(labels), SEEDS, metrics)
    assert "no landmarks" in summary and "improved in" in summary
    assert "baseline: 0 of 55 positive (image, target) test pairs" in summary  # positive head: none zero
    assert "## Calibrated localisation" in summary and "landmark control" in summary

    maps_paths = {m: outputs[(m, 0)] / "maps.h5" for m in MODELS}
    figure_paths = {figure_id: tmp_path / "figures" / f"{figure_id}.png" for figure_id in FIGURE_IDS}
    cases = paper_figures(predictions, metrics, root / "preprocess" / "study.h5", maps_paths, 0, figure_paths,
                          width_in=5.0, case_threshold=0.5, figure5_row_index=None, n_bins=5)
    assert [c.key for c in cases] == ["a", "b", "c", "d"]
    for figure_id in FIGURE_IDS:
        for suffix in (".png", ".pdf"):
            assert (tmp_path / "figures" / f"{figure_id}{suffix}").stat().st_size > 1000


def test_case_rules_pick_the_stated_pairs():
    table = pd.DataFrame({
        "position": [0, 1, 2, 3, 4], "target": [0, 0, 1, 2, 3], "label": [1, 1, 0, 1, 1],
        "p_baseline": [0.9, 0.8, 0.7, 0.9, 0.6], "p_prior": [0.85, 0.6, 0.2, 0.3, 0.7],
        "com_baseline": [40.0, 30, 30, 20, 10], "com_prior": [10.0, 25, 30, 25, 12]})
    cases = {c.key: c for c in select_cases(table, threshold=0.5)}
    assert cases["a"].position == 0 and not cases["a"].fallback   # CoM -30, both >= 0.5
    assert cases["b"].position == 1                                 # better localised, score -0.2
    assert cases["c"].position == 2                                 # the negative, 0.7 -> 0.2
    assert cases["d"].position == 3                                 # 0.9 -> 0.3, below 0.5


def test_case_rules_show_four_different_images():
    # position 0 is the best candidate of both (b) and (d); (d), the narrower rule, keeps it and (b) falls
    # back to another image
    table = pd.DataFrame({
        "position": [0, 1, 2, 3], "target": [0, 1, 2, 3], "label": [1, 1, 0, 1],
        "p_baseline": [0.9, 0.8, 0.7, 0.7], "p_prior": [0.1, 0.85, 0.2, 0.4],
        "com_baseline": [40.0, 30, 30, 20], "com_prior": [10.0, 25, 30, 25]})
    cases = select_cases(table, threshold=0.5)
    assert [c.key for c in cases] == ["a", "b", "c", "d"]
    assert len({c.position for c in cases}) == 4
    assert {c.key: c.position for c in cases} == {"a": 1, "b": 3, "c": 2, "d": 0}
    assert [c.key for c in cases if c.fallback] == ["b"]


def test_calibrated_values_carry_a_bootstrap_interval_over_seeds_and_subjects():
    """A known mean (5 px from the lesion, lift 3) inside a positive-width interval over 3 seeds and 30
    subjects of two hips; an all-undefined model (every baseline map all zero, scored as the uniform map by
    explain) at its chance level, every map counted."""
    rng = np.random.default_rng(0)
    n_seeds, n_subjects = 3, 30
    hips = pd.MultiIndex.from_product([range(n_seeds), range(2 * n_subjects)], names=["seed", "row"]).to_frame(
        index=False)
    frames = []
    for model in MODELS:
        distance, lift = rng.normal(0, 2, len(hips)), rng.normal(0, 1, len(hips))
        frame = hips.assign(model=model, target=TARGETS[0], label=1, map_defined=1,
                            com_to_lesion=5 + distance - distance.mean(), energy_lift=3 + lift - lift.mean(),
                            com_to_lesion_uniform=20.0, com_to_lesion_random_cell=18.0, com_to_lesion_ceiling=2.0,
                            com_to_lesion_control=8.0, energy_lift_uniform=1.0, energy_lift_random_cell=1.0,
                            energy_lift_ceiling=9.0, energy_lift_control=2.0)
        if model == "baseline":
            frame = frame.assign(map_defined=0, com_to_lesion=20.0, energy_lift=1.0)  # the uniform map's
        frames.append(frame)
    metrics = pd.concat(frames, ignore_index=True)
    predictions = metrics[["model", "seed", "row", "target", "label"]].assign(
        subject=[f"s{row // 2:02d}" for row in metrics["row"]], prob=0.5)
    table = calibrated_table(metrics, predictions, n_boot=500, seed=0)
    assert list(table.columns) == CALIBRATED_COLUMNS
    assert CALIBRATED_COLUMNS[7:10] == ["value", "ci_low", "ci_high"]
    assert table.loc[table["target"] != TARGETS[0], "n_positive"].eq(0).all()  # targets without a hip: blank
    assert table.loc[table["target"] != TARGETS[0], ["value", "ci_low", "ci_high"]].isna().all().all()
    table = table[table["target"] == TARGETS[0]].set_index(["metric", "model"]).sort_index()
    for metric, known in (("com_to_lesion", 5.0), ("energy_lift", 3.0)):
        row = table.loc[(metric, "prior")]
        assert row["value"] == pytest.approx(known)
        assert row["ci_low"] < known < row["ci_high"]
        # places of the interval's ends, ordered low <= high also where lower is better (com_to_lesion)
        assert row["place_low"] < row["place"] < row["place_high"]
    assert table.loc[("com_to_lesion", "prior"), "place_high"] == pytest.approx((table.loc[
        ("com_to_lesion", "prior"), "ci_low"] - 20) / (2 - 20))
    undefined = table.loc[("com_to_lesion", "baseline")]
    assert undefined["n_undefined"] == undefined["n_images"] == n_seeds * 2 * n_subjects
    assert undefined["value"] == undefined["chance"] == 20.0 and undefined["place"] == 0.0
    assert table.loc[("com_to_lesion", "prior"), "n_undefined"] == 0
    control = table.loc[("com_to_lesion", "landmark control")]  # a constant: a zero-width interval at it
    assert control["ci_low"] == control["ci_high"] == pytest.approx(8.0)
    unbooted = calibrated_table(metrics, predictions, n_boot=0)
    assert unbooted["ci_low"].isna().all() and unbooted["ci_high"].isna().all()


def test_calibrated_value_chance_and_ceiling_average_the_same_hips():
    """A hip whose value is undefined (no reference) leaves the chance and ceiling means too, and the
    all-zero maps are counted among the hips averaged."""
    rows = np.arange(8)
    metrics = pd.DataFrame({"model": "prior", "seed": 0, "row": rows, "target": TARGETS[0], "label": 1,
                            "map_defined": [1, 1, 0, 1, 1, 1, 1, 0],
                            "com_to_lesion": [4.0, 6.0, 30.0, np.nan, np.nan, 5.0, 5.0, 10.0],
                            "com_to_lesion_uniform": [20.0, 20.0, 30.0, 90.0, 90.0, 20.0, 20.0, 10.0],
                            "com_to_lesion_ceiling": [0.0, 0.0, 0.0, 50.0, 50.0, 0.0, 0.0, 0.0]})
    metrics = pd.concat([metrics, metrics.assign(model="baseline")], ignore_index=True)
    predictions = metrics[["model", "seed", "row", "target", "label"]].assign(subject=[f"s{r}" for r in metrics["row"]])
    row = calibrated_table(metrics, predictions, n_boot=0).set_index(["target", "metric", "model"]).loc[
        (TARGETS[0], "com_to_lesion", "prior")]
    assert row["n_positive"] == 8 and row["n_images"] == 6 and row["n_undefined"] == 2
    assert row["value"] == pytest.approx(10.0) and row["chance"] == pytest.approx(20.0)
    assert row["ceiling"] == 0.0 and row["place"] == pytest.approx(0.5)


def test_stratified_table_splits_hips_by_lesion_landmark_distance():
    n = 9
    distance_px = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 20.0, 25.0, np.nan])  # 0.8 mm a pixel
    metrics = pd.DataFrame({"model": "prior", "seed": 0, "row": np.arange(n), "target": TARGETS[1], "label": 1,
                            "map_defined": [1, 0, 1, 1, 1, 0, 1, 1, 1], "lesion_landmark_px": distance_px,
                            "com_to_lesion": np.arange(n, dtype=float), "com_to_lesion_uniform": 30.0,
                            "com_to_lesion_random_cell": 25.0, "com_to_lesion_ceiling": 0.0})
    metrics = pd.concat([metrics, metrics.assign(model="baseline")], ignore_index=True)
    predictions = metrics[["model", "seed", "row", "target", "label"]].assign(subject=[f"s{r}" for r in metrics["row"]])
    table = stratified_table(metrics, predictions, [7.5, 15.0], 0.8, n_boot=0)
    assert list(table.columns) == STRATIFIED_COLUMNS
    prior = table[(table["model"] == "prior") & (table["target"] == TARGETS[1])].set_index("stratum")
    assert list(prior.index) == ["< 7.5 mm", "7.5-15 mm", ">= 15 mm"]  # 8, 9.6 mm: the middle stratum
    assert prior["n_positive"].tolist() == [3, 3, 2] and prior["n_undefined"].tolist() == [1, 1, 0]
    assert prior["value"].tolist() == pytest.approx([1.0, 4.0, 6.5])
    assert prior["lesion_landmark_mm"].tolist() == pytest.approx([1.6, 8.8, 18.0])
    assert stratified_table(metrics.drop(columns="lesion_landmark_px"), predictions, [7.5], 0.8).empty
