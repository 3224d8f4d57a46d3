"""Training one site's U-Net: pixel-wise two-class cross-entropy (Keras' sparse categorical CE), Adam with
default settings, a fixed number of epochs, the best validation-loss weights kept (paper B).

With `last_path` the loop saves a resumable checkpoint after every epoch (model, optimiser, scaler, RNG
states, history and the best weights so far); a rerun with the same settings and patches continues after
the last completed epoch and ends with the same weights as an uninterrupted run. `precision` in the config
switches the forward passes to float16 / bfloat16 autocast (`osteoloc.train.device`).
"""

import hashlib
import logging
import time

import numpy as np
import pandas as pd
import torch

from osteoloc.io.atomic import atomic_path
from osteoloc.train.data import batch_order
from osteoloc.train.checkpoint import load_resumable
from osteoloc.train.device import (autocast, check_precision, configure_determinism, environment_info,
                                   grad_scaler, pick_device)
from osteoloc.segment.unet import build_unet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1  # the U-Net's last.pt layout: a checkpoint of another layout is never resumed


def seed_everything(seed, deterministic=True):
    configure_determinism(deterministic)
    torch.manual_seed(seed)
    np.random.seed(seed)


def patch_fingerprint(*arrays, block_rows=1024):
    """SHA-256 of the arrays' bytes, `block_rows` patches at a time: the identity of a checkpoint's data."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        for start in range(0, len(array), block_rows):
            digest.update(np.ascontiguousarray(array[start:start + block_rows]))
    return digest.hexdigest()


def mean_loss(model, images, masks, batch_size, device, loss_fn, precision="fp32"):
    """Mean per-pixel cross-entropy over a whole set (eval mode, no gradient); NaN for an empty set."""
    if len(images) == 0:
        return float("nan")
    model.eval()
    total = 0.0
    with torch.no_grad():
        for idx in batch_order(len(images), batch_size):
            x = images[idx].to(device)
            y = masks[idx].to(device)
            with autocast(device, precision):
                logits = model(x)
            total += loss_fn(logits.float(), y).item() * len(idx)
    return total / len(images)


def train_unet(train_set, val_set, cfg, seed, device="cpu", *, last_path=None, deterministic=True,
               on_epoch_end=None):
    """Train on PatchSets -> (best model in eval mode, history DataFrame, best epoch).

    `cfg` is the `segment.model` + `segment.training` merge: features, dropout, norm, epochs, batch_size,
    learning_rate, precision (fp32 when absent). The best epoch is the one with the lowest validation loss
    (training loss when the validation set is empty, which only tiny studies hit). With `last_path`,
    resumes from and saves the resumable checkpoint there; on_epoch_end(epoch) is called after each
    epoch's checkpoint (tests use it).
    """
    seed_everything(seed, deterministic)
    device = pick_device(device) if isinstance(device, str) else device
    precision = cfg.get("precision", "fp32")
    check_precision(precision, device)
    model = build_unet(cfg["features"], cfg["dropout"], cfg["norm"]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])  # Keras/torch default 1e-3
    scaler = grad_scaler(device, precision)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_train = torch.as_tensor(train_set.images)[:, None]
    y_train = torch.as_tensor(train_set.masks).long()
    x_val = torch.as_tensor(val_set.images)[:, None]
    y_val = torch.as_tensor(val_set.masks).long()
    if len(x_train) == 0:
        raise ValueError("empty training set: no hips with known labels and landmarks in the train split")
    generator = torch.Generator().manual_seed(seed)
    identity = {"format": CHECKPOINT_FORMAT, "config": dict(cfg), "seed": int(seed),
                "deterministic": bool(deterministic),
                "data": patch_fingerprint(train_set.images, train_set.masks, val_set.images, val_set.masks)}
    history, best, best_loss, best_epoch = [], None, float("inf"), 0
    checkpoint = load_resumable(last_path, identity)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        scaler.load_state_dict(checkpoint["scaler"])
        generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])
        history, best = checkpoint["history"], checkpoint["best"]
        best_loss, best_epoch = checkpoint["best_loss"], checkpoint["best_epoch"]
        log.info("resuming from %s after epoch %d", last_path, len(history))
    log.info("U-Net on %s (%s, deterministic %s): %d train / %d val patches; environment %s", device, precision,
             deterministic, len(x_train), len(x_val), environment_info(device))
    epochs = int(cfg["epochs"])
    for epoch in range(len(history) + 1, epochs + 1):
        start = time.perf_counter()
        model.train()
        running = 0.0
        for idx in batch_order(len(x_train), int(cfg["batch_size"]), generator):
            optimiser.zero_grad()
            with autocast(device, precision):
                logits = model(x_train[idx].to(device))
            loss = loss_fn(logits.float(), y_train[idx].to(device))
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            running += loss.item() * len(idx)
        train_loss = running / len(x_train)
        val_loss = mean_loss(model, x_val, y_val, int(cfg["batch_size"]), device, loss_fn, precision)
        criterion = val_loss if np.isfinite(val_loss) else train_loss
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "seconds": time.perf_counter() - start})
        if criterion < best_loss:
            best_loss, best_epoch = criterion, epoch
            best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if last_path is not None:
            with atomic_path(last_path) as tmp:
                torch.save({"identity": identity, "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                            "scaler": scaler.state_dict(), "generator": generator.get_state(),
                            "torch_rng": torch.get_rng_state(), "history": history, "best": best,
                            "best_loss": best_loss, "best_epoch": best_epoch}, tmp)
        left = np.mean([row["seconds"] for row in history]) * (epochs - epoch)
        log.info("epoch %d/%d train %.4f val %.4f | best epoch %d | %.1f s, ~%.0f s left", epoch, epochs,
                 train_loss, val_loss, best_epoch, history[-1]["seconds"], left)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    model.load_state_dict(best)
    model.eval()
    return model, pd.DataFrame(history).drop(columns="seconds"), best_epoch


def predict(model, images, batch_size=32, precision="fp32"):
    """Foreground probability (softmax class 1) for (n, P, P) patches -> (n, P, P) float32, on the model's
    device, the forward pass in `precision`."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(images)[:, None]
    out = []
    with torch.no_grad():
        for idx in batch_order(len(x), batch_size):
            with autocast(device, precision):
                logits = model(x[idx].to(device))
            out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(images.shape, np.float32)
