"""The training loop: outputs, baseline vs prior, ImageNet weights, and resume-after-kill."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import study_with_split, train_settings
from torchvision.models import resnet18

from osteoloc.train.model import build_model
from osteoloc.names import TARGETS
from osteoloc.io.runs import HISTORY_COLUMNS
from osteoloc.train.loop import reuse_run, train_on_study
from osteoloc.train.settings import TrainSettings
from osteoloc.train.stages import train_stage

TINY = dict(epochs=2, batch_size=8, lr=1e-3, device="cpu", eval_batch_size=16)


def run_paths(folder):
    """The output paths a rule gives `train_on_study`."""
    return {"history_path": folder / "history.csv", "best_path": folder / "best.pt", "last_path": folder / "last.pt"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return study_with_split(tmp_path_factory.mktemp("study"), (0.6, 0.4, 0.0))[:2]


def test_baseline_and_prior_runs_write_history_and_best(study, tmp_path):
    h5, split = study
    torch.set_num_threads(1)
    base = train_on_study(h5, split, train_settings(**TINY), **run_paths(tmp_path / "baseline"))
    history = pd.read_csv(tmp_path / "baseline" / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1, 2]
    assert history["val_prior"].isna().all() and history["train_prior"].isna().all()
    assert np.allclose(history["val_total"], history["val_bce"])
    best = torch.load(tmp_path / "baseline" / "best.pt", weights_only=True)
    assert best["epoch"] == base["best_epoch"] == int(history["val_bce"].idxmin()) + 1
    assert best["config"]["prior_lambda"] == 0 and set(best["state_dict"]) == set(build_model().state_dict())
    # an identical finished run is copied, not retrained; other settings are refused
    run = tmp_path / "baseline"
    copy = {"best_path": tmp_path / "other" / "best.pt", "history_path": tmp_path / "other" / "history.csv"}
    assert not reuse_run(run / "best.pt", run / "history.csv", train_settings(**TINY, seed=1), **copy)
    assert not (tmp_path / "other" / "best.pt").exists()
    copy = {"best_path": tmp_path / "copy" / "best.pt", "history_path": tmp_path / "copy" / "history.csv"}
    assert reuse_run(run / "best.pt", run / "history.csv", train_settings(**TINY), **copy)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "copy" / "history.csv"), history)

    prior = train_settings(**TINY, prior_lambda=2.0, prior_radius=4.0, prior_sigma=8.0)
    train_on_study(h5, split, prior, **run_paths(tmp_path / "prior"))
    history = pd.read_csv(tmp_path / "prior" / "history.csv")
    assert history[["train_prior", "val_prior"]].gt(0).all().all()
    assert np.allclose(history["val_total"], history["val_bce"] + 2.0 * history["val_prior"])
    assert history[[f"val_auc_{t}" for t in TARGETS]].notna().any(axis=None)


def test_train_stage_takes_the_prior_from_a_point_id_or_the_selection(study, tmp_path):
    """The train rules' stage: the prior's values reach the run as the grid point id's; the grid's choice
    (selection.json) gives the very same settings, so the chosen point's run is copied, not retrained."""
    h5, split = study
    torch.set_num_threads(1)
    block = {k: v for k, v in train_settings(**{**TINY, "epochs": 1}).as_dict().items()
             if k not in {"seed", "prior_lambda", "prior_radius", "prior_sigma"}}
    grid_run = run_paths(tmp_path / "grid")
    train_stage(h5, split, json.dumps(block), 0, "lam2_r4_sig8", **grid_run)
    settings = TrainSettings.from_checkpoint(grid_run["best_path"])
    assert (settings.prior_lambda, settings.prior_radius, settings.prior_sigma, settings.seed) == (2.0, 4.0, 8.0, 0)
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"lambda": 2.0, "radius": 4.0, "sigma": 8.0, "point": "lam2_r4_sig8"}))
    chosen = run_paths(tmp_path / "prior")
    train_stage(h5, split, json.dumps(block), 0, "", selection_path=selection, **chosen,
                reuse_best=grid_run["best_path"], reuse_history=grid_run["history_path"])
    assert not chosen["last_path"].exists()  # copied: no training ran
    assert TrainSettings.from_checkpoint(chosen["best_path"]) == settings


def test_imagenet_weights_fold_rgb_into_one_channel(tmp_path):
    with pytest.raises(FileNotFoundError, match="place torchvision's ResNet-18 checkpoint.*resnet18-f37072fd"):
        build_model("imagenet", tmp_path / "absent.pth")
    torch.manual_seed(0)
    rgb = resnet18(num_classes=1000).state_dict()
    torch.save(rgb, tmp_path / "resnet18.pth")
    model = build_model("imagenet", tmp_path / "resnet18.pth")
    state = model.state_dict()
    torch.testing.assert_close(state["conv1.weight"], rgb["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(state["layer3.1.conv2.weight"], rgb["layer3.1.conv2.weight"])
    assert state["fc.weight"].shape == (4, 512)


# A prior run with a warm-up and a cosine schedule, and early stopping (patience 1 after epoch 2).
RESUMABLE = train_settings(seed=5, epochs=3, batch_size=8, lr=1e-3, device="cpu", eval_batch_size=16, prior_lambda=1.0,
                           prior_radius=4.0, prior_sigma=8.0, lr_schedule="cosine", warmup_epochs=1,
                           early_stopping_patience=1, early_stopping_min_epochs=2).as_dict()
RUNNER = textwrap.dedent(f"""
    import sys, time, torch
    from pathlib import Path
    from osteoloc.train.loop import train_on_study
    from osteoloc.train.settings import TrainSettings
    torch.set_num_threads(1)
    settings = TrainSettings(**{RESUMABLE!r})
    def pause(epoch):
        print(f"checkpoint {{epoch}}", flush=True)
        time.sleep(float(sys.argv[4]))
    out = Path(sys.argv[3])
    train_on_study(sys.argv[1], sys.argv[2], settings, history_path=out / "history.csv", best_path=out / "best.pt",
                   last_path=out / "last.pt", on_epoch_end=pause)
""")


def test_resume_after_kill_gives_the_same_weights(study, tmp_path):
    """A run SIGKILLed right after its first epoch's checkpoint (a subprocess: the warm-up done, the cosine
    to come) resumes there and ends with the weights, schedule, history and stopping epoch of an
    uninterrupted run. Both of those run here, on one torch thread as the subprocess does, the
    uninterrupted one while the subprocess starts."""
    h5, split = study
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    killed = subprocess.Popen([sys.executable, str(script), str(h5), str(split), str(tmp_path / "b"), "600"],
                              stdout=subprocess.PIPE, text=True)  # sleeps after each checkpoint: killed there
    try:
        torch.set_num_threads(1)
        train_on_study(h5, split, train_settings(**RESUMABLE), **run_paths(tmp_path / "a"))
        assert killed.stdout.readline().strip() == "checkpoint 1"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    after_kill = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert len(after_kill["history"]) == 1 and not (tmp_path / "b" / "best.pt").exists()

    resumed_epochs = []
    train_on_study(h5, split, train_settings(**RESUMABLE), **run_paths(tmp_path / "b"),
                   on_epoch_end=resumed_epochs.append)
    epochs_a = len(pd.read_csv(tmp_path / "a" / "history.csv"))  # 2 if early stopping ended it
    assert resumed_epochs == list(range(2, epochs_a + 1))
    for name in ("last.pt", "best.pt"):
        a = torch.load(tmp_path / "a" / name, weights_only=False)
        b = torch.load(tmp_path / "b" / name, weights_only=False)
        weights_a = a["state"]["model"] if name == "last.pt" else a["state_dict"]
        weights_b = b["state"]["model"] if name == "last.pt" else b["state_dict"]
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a), name  # same run: exact
        if name == "last.pt":
            assert a["state"]["scheduler"] == b["state"]["scheduler"] and a["stale"] == b["stale"] and b["done"]
    history_a = pd.read_csv(tmp_path / "a" / "history.csv").drop(columns="seconds")
    history_b = pd.read_csv(tmp_path / "b" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(history_a, history_b)
