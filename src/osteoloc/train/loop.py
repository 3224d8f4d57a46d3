"""The training loop of paper A: Adam on masked BCE (+ lambda * landmark prior), best epoch by validation
loss, a resumable checkpoint every epoch. Read top to bottom: settings, one epoch, validation, `train`.

Files (contracts.md section 4), each at the path the caller gives: `history.csv` (one row per epoch),
`best.pt` = {state_dict, epoch, config} at the end, and the resumable checkpoint `last.pt` (everything a
rerun needs to continue: model, optimizer, scaler, RNG states, history, and the best weights so far, so a
workflow that deletes a killed job's declared outputs cannot lose them).

A per-target run (the arms `per_target` and landmark crops, `osteoloc.train.arms`) trains four single-output
models in sequence, each with its own target's prior and its own resumable checkpoint `last_<target>.pt`
beside `last.pt`; its best.pt holds the four as one `model.PerTargetModels` state_dict and its history.csv
the four histories combined (`combine_histories`).
"""

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from osteoloc.train.data import batch_order, load_split, read_subjects, rotate_batch, rotation_matrices
from osteoloc.train.device import pick_device
from osteoloc.io.atomic import atomic_path
from osteoloc.train.model import build_model, features_and_logits
from osteoloc.train.prior import DEFAULT_SHAPE, class_activation_maps, masked_bce, penalty_maps, prior_loss
from osteoloc.io.runs import HISTORY_COLUMNS, copy_history, write_history
from osteoloc.train.splits import check_split, read_split
from osteoloc.names import TARGETS

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainSettings:
    """Everything that fixes a run (the `train:` config section plus the run's seed and prior values).

    The defaults are the schema's (workflow/schemas/train.schema.yaml, study.schema.yaml for `device`;
    tests/unit/test_train.py holds them equal); the workflow passes every value from the validated config.
    prior_lambda 0 trains the baseline; with prior_sigma > 0 its prior loss is still measured (detached)
    for comparison, with prior_sigma 0 it is not computed (NaN in the history). Radius and sigma are in
    input pixels.
    """

    seed: int = 0
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    rotation_degrees: float = 15.0
    monitor: str = "bce"  # validation loss that picks the best epoch: "bce" or "total"
    early_stopping_patience: int = 0  # 0 = off: always run every epoch
    weights: str = "none"
    weights_path: str = "resources/resnet18-f37072fd.pth"
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    channels_last: bool = False
    eval_batch_size: int = 256
    prior_lambda: float = 0.0
    prior_radius: float = 0.0
    prior_sigma: float = 0.0  # 0 = no prior measured at all (the baseline's history shows NaN)
    # The study arms' settings (osteoloc.train.arms, workflow/schemas/arms.schema.yaml); defaults = paper A.
    prior_shape: str = DEFAULT_SHAPE  # a key of prior.PENALTY_SHAPES
    landmark_source: str = "automatic"  # the prior's landmarks: automatic (/landmarks/groups) or manual
    landmark_noise_mm: float = 0.0  # sd of the noise added to the prior's landmarks, mm
    output_stride: int = 32  # 32 or 16 (model.build_model)
    per_target: bool = False  # four single-output models, each with its own target's prior
    crop_px: int = 0  # > 0: each target's model sees a crop_px sub-crop around its landmarks (per target)

    def __post_init__(self):
        if self.monitor not in ("bce", "total"):
            raise ValueError(f"monitor must be 'bce' or 'total', not {self.monitor!r}")
        if self.prior_lambda > 0 and self.prior_sigma <= 0:
            raise ValueError("a prior run (prior_lambda > 0) needs prior_sigma > 0")
        if self.crop_px and not self.per_target:
            raise ValueError("landmark crops (crop_px > 0) need per_target models")

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def for_run(cls, training_json, seed, prior):
        """Settings of one run from the rule's params: the shared `training` block (JSON), the seed and the
        prior's {"lambda", "radius", "sigma"} (`grid.prior_values`)."""
        return cls(seed=int(seed), **json.loads(training_json), prior_lambda=float(prior["lambda"]),
                   prior_radius=float(prior["radius"]), prior_sigma=float(prior["sigma"]))


def _auc(labels, probs):
    known = labels >= 0
    y = labels[known]
    if len(np.unique(y)) < 2:
        return float("nan")  # undefined with one class
    return float(roc_auc_score(y, probs[known]))


class Trainer:
    """One run: model, optimizer and data on the device, the fixed penalty maps of the validation set."""

    def __init__(self, train_data, val_data, settings, targets=TARGETS):
        self.settings = s = settings
        self.targets = tuple(targets)  # the label columns of the data, in order
        self.device = pick_device(s.device)
        self.use_amp = s.amp and self.device.type == "cuda"
        torch.manual_seed(s.seed)  # initialisation
        self.generator = torch.Generator().manual_seed(s.seed)  # batch order and augmentation, on the CPU
        self.model = build_model(s.weights, s.weights_path or None, output_stride=s.output_stride,
                                 n_outputs=len(self.targets)).to(self.device)
        self.memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.train_data = train_data.to(self.device)
        self.val_data = val_data.to(self.device)
        self.input_hw = tuple(train_data.images.shape[-2:])

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _losses(self, images, labels, landmarks, valid):
        """BCE, prior and total of one batch from one forward pass."""
        s = self.settings
        with self._autocast():
            features, logits = features_and_logits(self.model, images.contiguous(memory_format=self.memory_format))
        bce = masked_bce(logits.float(), labels)
        if s.prior_sigma <= 0:
            return logits, bce, torch.full_like(bce, float("nan")), bce
        use_prior = s.prior_lambda > 0
        fc_weight = self.model.fc.weight
        if not use_prior:  # baseline: measure the prior without letting it train anything
            features, fc_weight = features.detach(), fc_weight.detach()
        cams = class_activation_maps(features.float(), fc_weight.float())
        penalties = penalty_maps(landmarks, valid, cams.shape[-2:], self.input_hw, s.prior_radius, s.prior_sigma,
                                 s.prior_shape)
        prior = prior_loss(cams, penalties, valid.any(dim=-1))
        total = bce + s.prior_lambda * prior if use_prior else bce
        return logits, bce, prior, total

    def train_step(self, index, rotations):
        """One optimisation step on the training rows `index` (device tensor), rotated by `rotations`.
        Returns the detached (bce, prior, total) as one device tensor: no host sync per batch."""
        d = self.train_data
        images, landmarks, valid = rotate_batch(d.images[index], d.landmarks[index], d.valid[index], rotations)
        _, bce, prior, total = self._losses(images, d.labels[index], landmarks, valid)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return torch.stack([bce.detach(), prior.detach(), total.detach()])

    def train_epoch(self):
        s = self.settings
        self.model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        n_seen = 0
        for index in batch_order(len(self.train_data), s.batch_size, self.generator):
            rotations = rotation_matrices(len(index), s.rotation_degrees, self.generator)
            sums += self.train_step(index.to(self.device), rotations).double() * len(index)
            n_seen += len(index)
        bce, prior, total = (sums / max(n_seen, 1)).tolist()
        return {"train_bce": bce, "train_prior": prior, "train_total": total}

    @torch.no_grad()
    def validate(self):
        s = self.settings
        self.model.eval()
        d = self.val_data
        logits, cams = [], []
        for index in batch_order(len(d), s.eval_batch_size):
            index = index.to(self.device)
            with self._autocast():
                features, batch_logits = features_and_logits(
                    self.model, d.images[index].contiguous(memory_format=self.memory_format))
            logits.append(batch_logits.float())
            if s.prior_sigma > 0:
                cams.append(class_activation_maps(features.float(), self.model.fc.weight.float()))
        logits = torch.cat(logits)
        bce = float(masked_bce(logits, d.labels))
        prior = float("nan")
        if s.prior_sigma > 0:
            cams = torch.cat(cams)
            penalties = penalty_maps(d.landmarks, d.valid, cams.shape[-2:], self.input_hw, s.prior_radius,
                                     s.prior_sigma, s.prior_shape)
            prior = float(prior_loss(cams, penalties, d.valid.any(dim=-1)))
        total = bce + s.prior_lambda * prior if s.prior_lambda > 0 else bce
        row = {"val_bce": bce, "val_prior": prior, "val_total": total}
        labels, probs = d.labels.cpu().numpy(), torch.sigmoid(logits).cpu().numpy()
        for t, target in enumerate(self.targets):
            row[f"val_auc_{target}"] = _auc(labels[:, t], probs[:, t])
        return row

    # -- checkpoint state ------------------------------------------------------------------------------
    def state(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state()}

    def load_state(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def _data_fingerprint(data):
    """Cheap identity of a split, so a checkpoint of other data is never resumed."""
    return [len(data), float(data.images.double().sum()), float(data.labels.double().sum())]


def _save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


CHECKPOINT_FORMAT = 2  # last.pt layout: a checkpoint of another layout is never resumed


def _load_resumable(path, identity):
    """The checkpoint at `path` if it belongs to this very run (same settings and data), else None."""
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a checkpoint from an older version or a damaged file: start afresh
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    if checkpoint.get("identity") != identity:
        log.info("checkpoint %s belongs to other settings or data: starting afresh", path)
        return None
    return checkpoint


def fit(train_data, val_data, settings, *, last_path, targets=TARGETS, history_path=None, on_epoch_end=None):
    """Train one network on the label columns `targets` of the data, resuming from `last_path` when it
    holds a checkpoint of the same run. Saves `last_path` (and writes `history_path` when given) after
    every epoch. Returns (history: list of per-epoch dicts, best: {state_dict, epoch, config}, best_loss).
    """
    s = settings
    last_path = Path(last_path)
    torch.use_deterministic_algorithms(True, warn_only=True)  # bit-identical CPU reruns
    trainer = Trainer(train_data, val_data, s, targets)
    identity = {"format": CHECKPOINT_FORMAT, "settings": s.as_dict(), "targets": list(targets),
                "train": _data_fingerprint(train_data), "val": _data_fingerprint(val_data)}
    history, best, best_loss, stale, done = [], None, math.inf, 0, False
    checkpoint = _load_resumable(last_path, identity)
    if checkpoint is not None:
        trainer.load_state(checkpoint["state"])
        history, best, best_loss = checkpoint["history"], checkpoint["best"], checkpoint["best_loss"]
        stale, done = checkpoint["stale"], checkpoint["done"]
        log.info("resuming from %s after epoch %d", last_path, len(history))
    log.info("training %s on %s: %d train / %d val images of %s px, settings %s", "/".join(targets),
             trainer.device, len(train_data), len(val_data), "x".join(map(str, trainer.input_hw)), s.as_dict())
    monitor = f"val_{s.monitor}"
    while not done and len(history) < s.epochs:
        epoch = len(history) + 1
        start = time.perf_counter()
        row = {"epoch": epoch, **trainer.train_epoch(), **trainer.validate()}
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if row[monitor] < best_loss:
            best_loss, stale = row[monitor], 0
            weights = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
            best = {"state_dict": weights, "epoch": epoch, "config": s.as_dict()}
        else:
            stale += 1
        done = epoch == s.epochs or (s.early_stopping_patience > 0 and stale >= s.early_stopping_patience)
        _save({"identity": identity, "state": trainer.state(), "history": history, "best": best,
               "best_loss": best_loss, "stale": stale, "done": done}, last_path)
        if history_path is not None:
            write_history(history, history_path)
        log.info("epoch %d/%d  train bce %.4f prior %.4f | val bce %.4f prior %.4f total %.4f | "
                 "best epoch %d | %.1f s", epoch, s.epochs, row["train_bce"], row["train_prior"],
                 row["val_bce"], row["val_prior"], row["val_total"], best["epoch"] if best else 0,
                 row["seconds"])
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if done and len(history) < s.epochs:
        log.info("early stopping after epoch %d (%d epochs without improvement)", len(history), stale)
    if best is None:
        raise RuntimeError(f"{last_path.parent}: no epoch gave a finite validation loss ({monitor}); "
                           "training diverged")
    log.info("best epoch %d, %s %.4f", best["epoch"], monitor, best_loss)
    return history, best, best_loss


def combine_histories(histories):
    """One history of a per-target run from its models' histories {target: list of per-epoch dicts}:
    per epoch, the mean loss over the models that ran it, each target's validation AUC from its own
    model and the seconds summed (HISTORY_COLUMNS, one row per epoch of the longest run)."""
    frames = [pd.DataFrame(h) for h in histories.values()]
    stacked = pd.concat(frames, ignore_index=True)
    by_epoch = stacked.groupby("epoch", sort=True)
    combined = by_epoch.mean(numeric_only=True)  # each target's AUC column is its one model's value
    combined["seconds"] = by_epoch["seconds"].sum()
    return combined.reset_index().reindex(columns=HISTORY_COLUMNS)


def per_target_last_path(last_path, target):
    """The resumable checkpoint of one model of a per-target run: `last_<target>.pt` beside `last.pt`."""
    last_path = Path(last_path)
    return last_path.with_name(f"{last_path.stem}_{target}{last_path.suffix}")


def train(train_data, val_data, settings, *, history_path, best_path, last_path, on_epoch_end=None):
    """Train one run, resuming from `last_path` when it holds a checkpoint of the same run.

    train_data, val_data: data.SplitTensors. Writes `history_path` after every epoch, `last_path` (the
    resumable checkpoint, best weights so far included) after every epoch and `best_path` at the end.
    A per-target run (settings.per_target) trains the four targets' models one after the other
    (checkpoints `per_target_last_path`) and writes the combined history at the end of each model.
    on_epoch_end(epoch) is called after each epoch's checkpoint (tests use it).
    Returns {"best_epoch", "best_loss", "history" (DataFrame)}.
    """
    s = settings
    if not s.per_target:
        history, best, best_loss = fit(train_data, val_data, s, last_path=last_path, history_path=history_path,
                                       on_epoch_end=on_epoch_end)
        history = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    else:
        histories, state, epochs, losses = {}, {}, {}, []
        for t, target in enumerate(TARGETS):
            history, best, loss = fit(train_data.target(t, s.crop_px), val_data.target(t, s.crop_px), s,
                                      last_path=per_target_last_path(last_path, target), targets=(target,),
                                      on_epoch_end=on_epoch_end)
            histories[target], epochs[target] = history, best["epoch"]
            state.update({f"{target}.{key}": value for key, value in best["state_dict"].items()})
            losses.append(loss)
            write_history(combine_histories(histories), history_path)
        best = {"state_dict": state, "epoch": max(epochs.values()), "epochs": epochs, "config": s.as_dict()}
        best_loss = float(np.mean(losses))
        history = combine_histories(histories)
    write_history(history, history_path)
    _save(best, best_path)
    return {"best_epoch": best["epoch"], "best_loss": best_loss, "history": history}


def train_on_study(h5_path, split_path, settings, *, history_path, best_path, last_path, on_epoch_end=None):
    """Read the train and validation splits of the study HDF5 into memory (the prior's landmarks from the
    settings' source, with their noise), then `train`."""
    split = check_split(read_split(split_path), read_subjects(h5_path), source=str(split_path))
    landmarks = {"landmark_source": settings.landmark_source, "landmark_noise_mm": settings.landmark_noise_mm,
                 "seed": settings.seed}
    train_data = load_split(h5_path, split, "train", **landmarks)
    val_data = load_split(h5_path, split, "val", **landmarks)
    return train(train_data, val_data, settings, history_path=history_path, best_path=best_path,
                 last_path=last_path, on_epoch_end=on_epoch_end)


def reuse_run(source_best, source_history, settings, *, best_path, history_path):
    """Copy a finished run's best.pt and history.csv to `best_path` and `history_path` when it was trained
    with exactly these settings (the grid point chosen on the selection seed is the prior run of that
    seed). Returns True if copied, False (nothing written) when the settings differ."""
    best = torch.load(source_best, map_location="cpu", weights_only=True)
    if best.get("config") != settings.as_dict():
        return False
    _save(best, best_path)
    copy_history(source_history, history_path)
    log.info("reused the identical run %s (best epoch %d)", Path(source_best).parent, best["epoch"])
    return True


def train_run(h5_path, split_path, settings, *, history_path, best_path, last_path, reuse=None):
    """The train rules' stage: copy the run `reuse` = (best.pt, history.csv) of another job when it was
    trained with these very settings, else train on the study (resuming from `last_path`)."""
    if reuse and reuse_run(*reuse, settings, best_path=best_path, history_path=history_path):
        return
    train_on_study(h5_path, split_path, settings, history_path=history_path, best_path=best_path,
                   last_path=last_path)
