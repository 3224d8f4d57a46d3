"""What a training job does about its hardware, tested on the CPU: the precision switch (bf16 autocast runs
on the CPU, fp16 is refused there), determinism settings, the environment and throughput a run records,
TensorBoard events, the split fingerprint, the epoch log, and paper B's U-Net resuming from its checkpoint."""

import logging
import os
import stat

import numpy as np
import pytest
import torch

from osteoloc.names import TARGETS
from osteoloc.segment.train import patch_fingerprint, predict, train_unet
from osteoloc.train import device as D
from osteoloc.train.data import SplitTensors
from helpers import train_settings
from osteoloc.train.loop import Trainer, train

TINY = dict(epochs=2, batch_size=4, lr=1e-3, device="cpu", eval_batch_size=8)
PRIOR = dict(prior_lambda=1.0, prior_radius=2.0, prior_sigma=6.0)


def split_tensors(n=8, size=32, seed=0):
    """A random in-memory split of `n` hips with both label classes in every target."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n)[:, None] + torch.arange(4)[None]) % 2
    landmarks = torch.rand(n, 4, 2, 2, generator=g) * (size * 0.6) + size * 0.2
    return SplitTensors(images=torch.randn(n, 1, size, size, generator=g), labels=labels.float(),
                        landmarks=landmarks, valid=torch.ones(n, 4, 2, dtype=torch.bool), rows=torch.arange(n))


@pytest.fixture(autouse=True)
def one_thread_and_deterministic_afterwards():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: threads on a shared machine only spin
    yield
    torch.set_num_threads(threads)
    D.configure_determinism(True)  # the other tests' (and the default study's) setting


def test_bf16_training_runs_a_step_on_the_cpu():
    trainer = Trainer(split_tensors(), split_tensors(seed=1), train_settings(**TINY, **PRIOR, precision="bf16"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with trainer._autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    losses = trainer.train_step(torch.arange(4), torch.eye(2).repeat(4, 1, 1))
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    assert not trainer.scaler.is_enabled()  # bf16 needs no GradScaler
    changed = [k for k, v in trainer.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "fc.weight" in changed and "conv1.weight" in changed
    row = trainer.validate()
    assert np.isfinite(row["val_bce"]) and np.isfinite(row["val_prior"])


def test_fp16_is_refused_off_cuda_and_unknown_precisions_everywhere():
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        Trainer(split_tensors(), split_tensors(seed=1), train_settings(**TINY, precision="fp16"))
    with pytest.raises(ValueError, match="precision must be one of"):
        D.check_precision("fp8", torch.device("cpu"))
    assert not D.grad_scaler(torch.device("cpu"), "fp16").is_enabled()


def test_determinism_settings(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    D.configure_determinism(False)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    D.configure_determinism(True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.deterministic and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own valid setting is kept
    D.configure_determinism(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_environment_on_the_cpu_and_on_a_faked_gpu(monkeypatch, tmp_path):
    info = D.environment_info("cpu")
    assert info["torch"] == torch.__version__ and info["gpu"] == "n/a" and info["driver"] == "n/a"
    assert info["device"] == "cpu" and info["cuda"] == (torch.version.cuda or "n/a")

    class Properties:
        total_memory = 80e9

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Properties())
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    info = D.environment_info("cuda:0")
    assert info["gpu"] == "NVIDIA A100-SXM4-80GB" and info["gpu_memory_gb"] == 80.0 and info["driver"] == "n/a"
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 550.54.15\necho 550.54.15\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    assert D.environment_info("cuda:0")["driver"] == "550.54.15"
    smi.write_text("#!/bin/sh\nexit 9\n")  # a broken driver install
    assert D.environment_info("cuda:0")["driver"] == "n/a"


def test_a_run_records_environment_throughput_tensorboard_and_logs_its_aucs(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_data, val_data = split_tensors(), split_tensors(seed=1)
    with caplog.at_level(logging.INFO, logger="osteoloc.train.loop"):
        result = train(train_data, val_data, train_settings(**TINY), history_path=tmp_path / "history.csv",
                       best_path=tmp_path / "best.pt", last_path=tmp_path / "last.pt",
                       tensorboard_dir=tmp_path / "tb")
    best = torch.load(tmp_path / "best.pt", weights_only=True)  # as load_trained_model reads it
    assert best["environment"] == D.environment_info("cpu")
    speed = best["throughput"]
    assert speed["epochs"] == 2 and speed["train_images"] == 16 and speed["val_images"] == 16
    assert speed["train_images_per_second"] == pytest.approx(16 / speed["train_seconds"])
    assert 0 < speed["train_seconds"] <= result["history"]["seconds"].sum()
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epoch_lines) == 2 and "left" in epoch_lines[0] and "~0 s left" in epoch_lines[1]
    for target, value in zip(TARGETS, result["history"].iloc[-1][[f"val_auc_{t}" for t in TARGETS]]):
        assert f"{target.removeprefix('osteo_')} {value:.3f}" in epoch_lines[1]
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {"train_bce", "val_bce", f"val_auc_{TARGETS[0]}"} <= set(events.Tags()["scalars"])
    aucs = [e.value for e in events.Scalars(f"val_auc_{TARGETS[0]}")]
    assert aucs == pytest.approx(result["history"][f"val_auc_{TARGETS[0]}"].tolist(), abs=1e-6)


def test_split_fingerprint_is_stable_and_sees_every_change():
    data = split_tensors(n=10)
    value = data.fingerprint()
    assert value == data.fingerprint() == data.fingerprint(block_rows=3) == split_tensors(n=10).fingerprint()
    assert value.startswith("10:")
    for name in ("images", "labels", "landmarks", "valid"):
        changed = split_tensors(n=10)
        tensor = getattr(changed, name)
        tensor[7].view(-1)[0] = (~tensor[7].view(-1)[0]) if tensor.dtype == torch.bool else tensor[7].view(-1)[0] + 1e-3
        assert changed.fingerprint() != value, name
    assert split_tensors(n=10, seed=5).fingerprint() != value


# --- paper B's U-Net ------------------------------------------------------------------------------------

UNET = {"features": [4, 4, 8, 8, 16, 4], "dropout": 0.3, "norm": "none", "epochs": 4, "batch_size": 8,
        "learning_rate": 1e-2}


def patch_set(n, seed):
    from osteoloc.io.segment_h5 import PatchSet

    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.3, (n, 16, 16)).astype(np.float32)
    masks = (images > 0.3).astype(np.uint8)
    return PatchSet(images, masks, np.arange(n), np.ones(n, int), np.zeros(n, int), np.array(["manual"] * n))


class Killed(Exception):
    pass


def kill_after(k):
    def on_epoch_end(epoch):
        if epoch == k:
            raise Killed
    return on_epoch_end


def test_unet_resumes_from_its_last_checkpoint_to_the_same_result(tmp_path):
    train_set, val_set = patch_set(24, 0), patch_set(8, 1)
    model_a, history_a, best_a = train_unet(train_set, val_set, UNET, seed=3)
    with pytest.raises(Killed):  # dies right after epoch 2's checkpoint
        train_unet(train_set, val_set, UNET, seed=3, last_path=tmp_path / "last.pt", on_epoch_end=kill_after(2))
    assert len(torch.load(tmp_path / "last.pt", weights_only=False)["history"]) == 2
    resumed = []
    model_b, history_b, best_b = train_unet(train_set, val_set, UNET, seed=3, last_path=tmp_path / "last.pt",
                                            on_epoch_end=resumed.append)
    assert resumed == [3, 4] and best_a == best_b
    assert history_a.equals(history_b)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    # other patches: the checkpoint is not resumed
    restarted = []
    train_unet(patch_set(24, 9), val_set, UNET | {"epochs": 1}, seed=3, last_path=tmp_path / "last.pt",
               on_epoch_end=restarted.append)
    assert restarted == [1]
    assert patch_fingerprint(train_set.images) == patch_fingerprint(train_set.images.copy(), block_rows=5)


def test_unet_bf16_trains_and_predicts_on_the_cpu():
    cfg = UNET | {"epochs": 1, "precision": "bf16"}
    model, history, _ = train_unet(patch_set(16, 0), patch_set(8, 1), cfg, seed=0)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    prob = predict(model, patch_set(4, 2).images, precision="bf16")
    assert prob.dtype == np.float32 and prob.shape == (4, 16, 16) and ((prob >= 0) & (prob <= 1)).all()
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        train_unet(patch_set(16, 0), patch_set(8, 1), UNET | {"precision": "fp16"}, seed=0)
