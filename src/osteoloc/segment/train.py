"""Training one site's U-Net: pixel-wise two-class cross-entropy (Keras' sparse categorical CE), Adam with
default settings, a fixed number of epochs, the best validation-loss weights kept (paper B)."""

import copy
import logging

import numpy as np
import pandas as pd
import torch

from osteoloc.train.data import batch_order
from osteoloc.train.device import pick_device
from osteoloc.segment.unet import build_unet

log = logging.getLogger(__name__)


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def mean_loss(model, images, masks, batch_size, device, loss_fn):
    """Mean per-pixel cross-entropy over a whole set (eval mode, no gradient); NaN for an empty set."""
    if len(images) == 0:
        return float("nan")
    model.eval()
    total = 0.0
    with torch.no_grad():
        for idx in batch_order(len(images), batch_size):
            x = images[idx].to(device)
            y = masks[idx].to(device)
            total += loss_fn(model(x), y).item() * len(idx)
    return total / len(images)


def train_unet(train_set, val_set, cfg, seed, device="cpu"):
    """Train on PatchSets -> (best model in eval mode, history DataFrame, best epoch).

    `cfg` is the `segment.model` + `segment.training` merge: features, dropout, norm, epochs, batch_size,
    learning_rate. The best epoch is the one with the lowest validation loss (training loss when the
    validation set is empty, which only tiny studies hit).
    """
    seed_everything(seed)
    device = pick_device(device) if isinstance(device, str) else device
    model = build_unet(cfg["features"], cfg["dropout"], cfg["norm"]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])  # Keras/torch default 1e-3
    loss_fn = torch.nn.CrossEntropyLoss()
    x_train = torch.as_tensor(train_set.images)[:, None]
    y_train = torch.as_tensor(train_set.masks).long()
    x_val = torch.as_tensor(val_set.images)[:, None]
    y_val = torch.as_tensor(val_set.masks).long()
    if len(x_train) == 0:
        raise ValueError("empty training set: no hips with known labels and landmarks in the train split")
    generator = torch.Generator().manual_seed(seed)
    history, best, best_loss, best_epoch = [], None, float("inf"), 0
    for epoch in range(1, int(cfg["epochs"]) + 1):
        model.train()
        running = 0.0
        for idx in batch_order(len(x_train), int(cfg["batch_size"]), generator):
            optimiser.zero_grad()
            loss = loss_fn(model(x_train[idx].to(device)), y_train[idx].to(device))
            loss.backward()
            optimiser.step()
            running += loss.item() * len(idx)
        train_loss = running / len(x_train)
        val_loss = mean_loss(model, x_val, y_val, int(cfg["batch_size"]), device, loss_fn)
        criterion = val_loss if np.isfinite(val_loss) else train_loss
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        log.info("epoch %d train %.4f val %.4f", epoch, train_loss, val_loss)
        if criterion < best_loss:
            best_loss, best_epoch, best = criterion, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    model.eval()
    return model, pd.DataFrame(history), best_epoch


def predict(model, images, batch_size=32, device="cpu"):
    """Foreground probability (softmax class 1) for (n, P, P) patches -> (n, P, P) float32."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(images)[:, None]
    out = []
    with torch.no_grad():
        for idx in batch_order(len(x), batch_size):
            out.append(torch.softmax(model(x[idx].to(device)), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(images.shape, np.float32)
