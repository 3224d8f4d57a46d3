"""The prior's grid search: selection by validation loss and the boundary extension."""

import pandas as pd
import pytest

from osteoloc.train.grid import (NO_PRIOR_POINT, best_point, extension_points, final_round, grid_jobs_preview,
                                 grid_points, point_id, point_loss, point_values, read_selection, round_point_ids,
                                 run_point, selection_record, selection_round, trained_points)
from osteoloc.train.stages import select_prior_stage, select_round_stage
from osteoloc.io.runs import write_history

PAPER_STEPS = {"lambda": 1, "radius": 10, "sigma": 10}


def test_point_ids_round_trip():
    point = {"lambda": 0.5, "radius": 20.0, "sigma": 4.25}
    assert point_id(point) == "lam0.5_r20_sig4.25"
    assert point_values("lam0.5_r20_sig4.25") == point
    assert point_values(NO_PRIOR_POINT) == {"lambda": 0.0, "radius": 0.0, "sigma": 0.0}
    # values that `g` would round keep every digit: the id reads back as the very same floats
    exact = {"lambda": 0.1 + 0.2, "radius": 13.123456789, "sigma": 1e-5}
    assert point_id(exact) == "lam0.30000000000000004_r13.123456789_sig1e-05"
    assert point_values(point_id(exact)) == exact
    with pytest.raises(ValueError, match="not a grid point id"):
        point_values("lam0.5_sig3")


def test_paper_a_extension_gives_its_four_points():
    grid = grid_points([0.5, 1, 2], [5, 10, 20], [10, 20, 30])
    assert len(grid) == 27
    new = extension_points({"lambda": 2, "radius": 20, "sigma": 30}, grid, PAPER_STEPS)
    assert [point_id(p) for p in new] == ["lam3_r20_sig30", "lam2_r30_sig30", "lam2_r20_sig40", "lam3_r30_sig40"]


def test_extension_only_on_axes_at_the_upper_edge():
    grid = grid_points([0.5, 1, 2], [5, 10, 20], [10, 20, 30])
    assert extension_points({"lambda": 1, "radius": 10, "sigma": 20}, grid, PAPER_STEPS) == []  # inside
    new = extension_points({"lambda": 2, "radius": 10, "sigma": 20}, grid, PAPER_STEPS)
    assert [point_id(p) for p in new] == ["lam3_r10_sig20"]  # one axis: no combined point
    assert extension_points({"lambda": 2, "radius": 10, "sigma": 20}, grid, {"lambda": 0, "radius": 10}) == []


def _losses(points, best, best_loss=0.1):
    return {point_id(p): (best_loss if point_id(p) == best else 0.5 + 0.01 * i) for i, p in enumerate(points)}


def test_selection_rounds_on_synthetic_losses():
    grid = grid_points([0.5, 1, 2], [5, 10, 20], [10, 20, 30])
    round0 = selection_round(_losses(grid, "lam2_r20_sig30"), PAPER_STEPS, 0, max_rounds=2)
    assert round0["best"] == "lam2_r20_sig30" and not round0["done"]
    assert round0["extension"] == ["lam3_r20_sig30", "lam2_r30_sig30", "lam2_r20_sig40", "lam3_r30_sig40"]
    # round 1: none of the four is better (paper A) -> done, the choice stays
    losses1 = {**round0["losses"], **{p: 0.3 for p in round0["extension"]}}
    round1 = selection_round(losses1, PAPER_STEPS, 1, max_rounds=2)
    assert round1["done"] and round1["best"] == "lam2_r20_sig30" and round1["extension"] == []
    record = selection_record([round0, round1], "bce")
    assert (record["lambda"], record["radius"], record["sigma"], record["point"]) == (2, 20, 30, "lam2_r20_sig30")
    assert record["criterion"] == "bce" and len(record["rounds"]) == 2
    # if lam3_r20_sig30 wins round 1, lambda is at its edge again: extend once more, up to max_rounds
    losses1["lam3_r20_sig30"] = 0.05
    round1 = selection_round(losses1, PAPER_STEPS, 1, max_rounds=2)
    assert round1["best"] == "lam3_r20_sig30" and round1["extension"] == ["lam4_r20_sig30"]
    assert selection_round(losses1, PAPER_STEPS, 1, max_rounds=1)["done"]


def test_best_point_and_point_loss():
    assert best_point({"a": 0.3, "b": float("nan"), "c": 0.2, "d": 0.2}) == "c"  # tie -> smaller id
    with pytest.raises(ValueError, match="no grid point"):
        best_point({"a": float("nan")})
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_bce": [0.6, 0.4, 0.5], "val_total": [0.9, 0.95, 0.7]})
    assert point_loss(history, "bce") == 0.4 and point_loss(history, "total") == 0.7


def test_selection_stages_read_histories_and_write_selection(tmp_path):
    """The select rules' stages: point ids from the grid folders, the best epoch's loss, selection.json."""
    paths = []
    for point, losses in {"lam1_r4_sig13": [0.5, 0.3], "lam0.5_r4_sig13": [0.4, 0.35]}.items():
        paths.append(tmp_path / point / "history.csv")
        write_history([{"epoch": e + 1, "val_bce": v, "val_total": v} for e, v in enumerate(losses)], paths[-1])
    select_round_stage(paths, "bce", {"lambda": 0, "radius": 0, "sigma": 0}, 0, 1, tmp_path / "round0.json")
    round0 = read_selection(tmp_path / "round0.json")
    assert round0["best"] == "lam1_r4_sig13" and round0["best_loss"] == 0.3 and round0["done"]
    select_prior_stage([tmp_path / "round0.json"], "bce", tmp_path / "selection.json")
    selection = read_selection(tmp_path / "selection.json")
    assert (selection["lambda"], selection["radius"], selection["sigma"]) == (1.0, 4.0, 13.0)
    # a run's point: the id the rule passes, or (empty) the selection's; never both, never neither
    assert run_point("lam3_r1_sig2") == "lam3_r1_sig2"
    assert run_point("", tmp_path / "selection.json") == "lam1_r4_sig13"
    with pytest.raises(ValueError, match="either from its point id"):
        run_point("lam3_r1_sig2", tmp_path / "selection.json")
    with pytest.raises(ValueError, match="either from its point id"):
        run_point("")


def test_selection_rounds_followed_from_the_first_grid():
    """round_point_ids / final_round: what the workflow's checkpoints follow, on records kept in a dict."""
    first = ["lam0.5_r3_sig9", "lam1_r3_sig9"]
    steps = {"lambda": 1.0, "radius": 0.0, "sigma": 0.0}
    records = {0: selection_round({p: 1.0 for p in first} | {"lam1_r3_sig9": 0.5}, steps, 0, 2)}
    assert round_point_ids(0, first, records.__getitem__) == first
    assert records[0]["extension"] == ["lam2_r3_sig9"] and not records[0]["done"]
    round1 = round_point_ids(1, first, records.__getitem__)
    assert round1 == first + ["lam2_r3_sig9"]
    records[1] = selection_round({p: 1.0 for p in round1}, steps, 1, 2)  # lam0.5 best: inside the grid
    assert records[1]["done"]
    assert final_round(records.__getitem__) == (1, records[1])


def test_grid_jobs_preview_counts_the_first_rounds_points_without_a_finished_run(tmp_path):
    old = [point_id(p) for p in grid_points([0.5, 1, 2], [5, 10, 20], [10, 20, 30])]
    for point in old + ["lam3_r20_sig30"]:  # the old grid and one extension point, finished
        (tmp_path / point).mkdir()
        (tmp_path / point / "best.pt").write_bytes(b"")
    (tmp_path / "lam4_r20_sig30").mkdir()  # killed before its first best epoch: only last.pt
    (tmp_path / "lam4_r20_sig30" / "last.pt").write_bytes(b"")
    (tmp_path / "rounds").mkdir()
    trained = trained_points(tmp_path)
    assert trained == set(old) | {"lam3_r20_sig30"}
    assert trained_points(tmp_path / "absent") == set()

    grown = [point_id(p) for p in grid_points([0.5, 1, 2, 4], [5, 10, 20], [10, 20, 30])]  # a fourth lambda
    line = grid_jobs_preview(grown, trained, max_rounds=1)
    assert line.startswith("train: 9 of 36 grid-point jobs of the first selection round to run (27 have best.pt")
    assert "1 other point trained before" in line and "at most 1" in line and "checkpoint" in line
    assert grid_jobs_preview(old, trained, max_rounds=0).startswith("train: 0 of 27 grid-point jobs")
    assert "checkpoint" not in grid_jobs_preview(old, trained, max_rounds=0)
