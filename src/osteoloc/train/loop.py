"""The training loop of paper A: Adam on masked BCE (+ lambda * landmark prior), best epoch by validation
loss, a resumable checkpoint every epoch. Read top to bottom: the learning rate, one epoch, validation, `train`.
A run's settings are a `settings.TrainSettings`.

Files (contracts.md section 4), each at the path the caller gives: `history.csv` (one row per epoch),
`best.pt` = {state_dict, epoch, config, environment, throughput} at the end, and the resumable checkpoint
`last.pt` (everything a rerun needs to continue: model, optimizer, scaler, RNG states, history, and the best
weights so far, so a workflow that deletes a killed job's declared outputs cannot lose them).

A per-target run (the arms `per_target` and landmark crops, `osteoloc.train.arms`) trains four single-output
models in sequence, each with its own target's prior and its own resumable checkpoint `last_<target>.pt`
beside `last.pt`; its best.pt holds the four as one `model.PerTargetModels` state_dict and its history.csv
the four histories combined (`combine_histories`).
"""

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from osteoloc.train.data import batch_order, load_split, rotate_batch, rotation_matrices
from osteoloc.train.checkpoint import load_resumable
from osteoloc.train.device import (autocast, check_precision, configure_determinism, environment_info, grad_scaler,
                                   pick_device)
from osteoloc.io.atomic import atomic_path
from osteoloc.train.model import build_model, features_and_logits
from osteoloc.train.prior import class_activation_maps, masked_bce, penalty_maps, prior_loss
from osteoloc.io.runs import HISTORY_COLUMNS, copy_history, write_history
from osteoloc.io.study_h5 import StudyFile
from osteoloc.train.splits import check_split, read_split
from osteoloc.names import TARGETS

log = logging.getLogger(__name__)


def lr_factor(step, total_steps, warmup_steps, schedule):
    """The multiplier of the base learning rate at optimisation step `step` (0-based) of `total_steps`:
    during the first `warmup_steps` a linear ramp (step + 1) / warmup_steps, then 1 (constant) or
    (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))) / 2 (cosine, towards 0).
    The formula `lr_scheduler` follows; tests compare the two."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(total_steps - warmup_steps, 1)))


def lr_scheduler(optimizer, total_steps, warmup_steps, schedule):
    """torch's scheduler of `lr_factor`, stepped once per optimisation step: LinearLR for the warm-up
    (from 1 / warmup_steps), then ConstantLR(factor 1) or CosineAnnealingLR (eta_min 0) for the rest.
    None for a constant rate without warm-up (paper A: plain Adam)."""
    schedulers = torch.optim.lr_scheduler
    rest = max(total_steps - warmup_steps, 1)
    after = (schedulers.CosineAnnealingLR(optimizer, T_max=rest) if schedule == "cosine"
             else schedulers.ConstantLR(optimizer, factor=1.0, total_iters=0))
    if warmup_steps == 0:
        return None if schedule == "constant" else after
    warmup = schedulers.LinearLR(optimizer, start_factor=1 / warmup_steps, end_factor=1.0,
                                 total_iters=warmup_steps - 1)
    return schedulers.SequentialLR(optimizer, [warmup, after], milestones=[warmup_steps])


def stop_early(stale, epoch, settings):
    """Whether a run stops after `epoch` (1-based) whose `stale` last epochs did not improve the monitored
    validation loss: early stopping is on (patience > 0), `stale` has reached the patience and the run has
    had its minimum number of epochs."""
    patience = settings.early_stopping_patience
    return 0 < patience <= stale and epoch >= settings.early_stopping_min_epochs


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
        configure_determinism(s.deterministic)  # before the first CUDA call: cuBLAS reads its setting then
        self.device = pick_device(s.device)
        check_precision(s.precision, self.device)
        torch.manual_seed(s.seed)  # initialisation
        self.generator = torch.Generator().manual_seed(s.seed)  # batch order and augmentation, on the CPU
        self.model = build_model(s.weights, s.weights_path or None, output_stride=s.output_stride,
                                 n_outputs=len(self.targets)).to(self.device)
        self.memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay,
                                          decoupled_weight_decay=s.optimizer == "adamw")
        steps_per_epoch = math.ceil(len(train_data) / s.batch_size)  # batch_order's batches
        self.scheduler = lr_scheduler(self.optimizer, s.epochs * steps_per_epoch,
                                      s.warmup_epochs * steps_per_epoch, s.lr_schedule)
        self.scaler = grad_scaler(self.device, s.precision)
        self.train_data = train_data.to(self.device)
        self.val_data = val_data.to(self.device)
        self.input_hw = tuple(train_data.images.shape[-2:])

    def _autocast(self):
        return autocast(self.device, self.settings.precision)

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
        if self.settings.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the loss-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
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
        bce, prior, total = (sums / max(n_seen, 1)).tolist()  # the host sync: the epoch's work is done
        return {"train_bce": bce, "train_prior": prior, "train_total": total}

    @torch.no_grad()
    def recompute_bn_stats(self):
        """Replace every batch-norm layer's running mean and variance by their average over one pass of the
        (unrotated) training images in training batches, with the weights as they are now: the statistics
        the eval-mode network then uses belong to its current weights, not to a momentum average over
        the epoch's changing ones. Changes no weight and draws no random number."""
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the pass
        self.model.train()
        d = self.train_data
        for index in batch_order(len(d), self.settings.batch_size):
            with self._autocast():
                self.model(d.images[index.to(self.device)].contiguous(memory_format=self.memory_format))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def validate(self):
        s = self.settings
        if s.bn_stats == "recomputed":
            self.recompute_bn_stats()
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
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state()}

    def load_state(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


def _save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


CHECKPOINT_FORMAT = 4  # last.pt layout: a checkpoint of another layout is never resumed


def _duration(seconds):
    """'1 h 02 min', '3 min 05 s' or '12 s': a time left in the log."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def throughput(history, n_train, n_val):
    """Images per second of the training passes and of the validation passes over the epochs run
    (`train_seconds`, `val_seconds` of each history row)."""
    train_seconds = sum(row["train_seconds"] for row in history)
    val_seconds = sum(row["val_seconds"] for row in history)
    return {"epochs": len(history), "train_images": n_train * len(history), "train_seconds": train_seconds,
            "train_images_per_second": n_train * len(history) / train_seconds if train_seconds else float("nan"),
            "val_images": n_val * len(history), "val_seconds": val_seconds,
            "val_images_per_second": n_val * len(history) / val_seconds if val_seconds else float("nan")}


def _epoch_message(row, epochs, targets, best_epoch, seconds_left):
    aucs = " ".join(f"{target.removeprefix('osteo_')} {row[f'val_auc_{target}']:.3f}" for target in targets)
    return (f"epoch {row['epoch']}/{epochs}  train bce {row['train_bce']:.4f} prior {row['train_prior']:.4f} | "
            f"val bce {row['val_bce']:.4f} prior {row['val_prior']:.4f} total {row['val_total']:.4f} | "
            f"val AUC {aucs} | best epoch {best_epoch} | {row['seconds']:.1f} s, "
            f"~{_duration(seconds_left)} left")


def _tensorboard(log_dir):
    """A SummaryWriter into `log_dir`, or None (imported here: only a run that asks pays for tensorboard)."""
    if not log_dir:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def fit(train_data, val_data, settings, *, last_path, targets=TARGETS, history_path=None, on_epoch_end=None,
        tensorboard_dir=None):
    """Train one network on the label columns `targets` of the data, resuming from `last_path` when it
    holds a checkpoint of the same run. Saves `last_path` (and writes `history_path` when given) after
    every epoch; with `tensorboard_dir`, writes each epoch's losses and AUCs there too.
    Returns (history: list of per-epoch dicts, best: {state_dict, epoch, config, environment, throughput},
    best_loss).
    """
    s = settings
    last_path = Path(last_path)
    trainer = Trainer(train_data, val_data, s, targets)
    environment = environment_info(trainer.device)
    identity = {"format": CHECKPOINT_FORMAT, "settings": s.as_dict(), "targets": list(targets),
                "train": train_data.fingerprint(), "val": val_data.fingerprint()}
    history, best, best_loss, stale, done = [], None, math.inf, 0, False
    checkpoint = load_resumable(last_path, identity)
    if checkpoint is not None:
        trainer.load_state(checkpoint["state"])
        history, best, best_loss = checkpoint["history"], checkpoint["best"], checkpoint["best_loss"]
        stale, done = checkpoint["stale"], checkpoint["done"]
        log.info("resuming from %s after epoch %d", last_path, len(history))
    log.info("environment: %s", json.dumps(environment))
    log.info("training %s on %s (%s, deterministic %s): %d train / %d val images of %s px, settings %s",
             "/".join(targets), trainer.device, s.precision, s.deterministic, len(train_data), len(val_data),
             "x".join(map(str, trainer.input_hw)), s.as_dict())
    writer = _tensorboard(tensorboard_dir)
    monitor = f"val_{s.monitor}"
    while not done and len(history) < s.epochs:
        epoch = len(history) + 1
        start = time.perf_counter()
        row = {"epoch": epoch, **trainer.train_epoch()}
        trained = time.perf_counter()
        row.update(trainer.validate())
        row["seconds"] = time.perf_counter() - start
        row["train_seconds"], row["val_seconds"] = trained - start, row["seconds"] - (trained - start)
        history.append(row)
        if row[monitor] < best_loss:
            best_loss, stale = row[monitor], 0
            weights = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
            best = {"state_dict": weights, "epoch": epoch, "config": s.as_dict()}
        else:
            stale += 1
        done = epoch == s.epochs or stop_early(stale, epoch, s)
        _save({"identity": identity, "state": trainer.state(), "history": history, "best": best,
               "best_loss": best_loss, "stale": stale, "done": done}, last_path)
        if history_path is not None:
            write_history(history, history_path)
        if writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch)
            writer.flush()
        seconds_left = 0.0 if done else np.mean([r["seconds"] for r in history]) * (s.epochs - epoch)
        log.info(_epoch_message(row, s.epochs, targets, best["epoch"] if best else 0, seconds_left))
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if writer is not None:
        writer.close()
    if done and len(history) < s.epochs:
        log.info("early stopping after epoch %d (%d epochs without improvement)", len(history), stale)
    if best is None:
        raise RuntimeError(f"{last_path.parent}: no epoch gave a finite validation loss ({monitor}); "
                           "training diverged")
    best = {**best, "environment": environment,
            "throughput": throughput(history, len(train_data), len(val_data))}
    log.info("best epoch %d, %s %.4f; %.1f training images/s, %.1f validation images/s", best["epoch"], monitor,
             best_loss, best["throughput"]["train_images_per_second"], best["throughput"]["val_images_per_second"])
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


def train(train_data, val_data, settings, *, history_path, best_path, last_path, on_epoch_end=None,
          tensorboard_dir=None):
    """Train one run, resuming from `last_path` when it holds a checkpoint of the same run.

    train_data, val_data: data.SplitTensors. Writes `history_path` after every epoch, `last_path` (the
    resumable checkpoint, best weights so far included) after every epoch and `best_path` at the end.
    A per-target run (settings.per_target) trains the four targets' models one after the other
    (checkpoints `per_target_last_path`) and writes the combined history at the end of each model.
    on_epoch_end(epoch) is called after each epoch's checkpoint (tests use it). With `tensorboard_dir` each
    epoch's losses and AUCs also go to TensorBoard there (a per-target run: one sub-folder per target).
    best.pt also records the job's `environment` (device.environment_info) and `throughput` (images per
    second of the training and validation passes).
    Returns {"best_epoch", "best_loss", "history" (DataFrame)}.
    """
    s = settings
    if not s.per_target:
        history, best, best_loss = fit(train_data, val_data, s, last_path=last_path, history_path=history_path,
                                       on_epoch_end=on_epoch_end, tensorboard_dir=tensorboard_dir)
        history = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    else:
        histories, state, epochs, losses = {}, {}, {}, []
        for t, target in enumerate(TARGETS):
            history, best, loss = fit(train_data.target(t, s.crop_px), val_data.target(t, s.crop_px), s,
                                      last_path=per_target_last_path(last_path, target), targets=(target,),
                                      on_epoch_end=on_epoch_end,
                                      tensorboard_dir=tensorboard_dir and Path(tensorboard_dir) / target)
            histories[target], epochs[target] = history, best["epoch"]
            state.update({f"{target}.{key}": value for key, value in best["state_dict"].items()})
            losses.append(loss)
            write_history(combine_histories(histories), history_path)
        every_epoch = [row for h in histories.values() for row in h]
        best = {"state_dict": state, "epoch": max(epochs.values()), "epochs": epochs, "config": s.as_dict(),
                "environment": best["environment"],
                "throughput": throughput(every_epoch, len(train_data), len(val_data))}
        best_loss = float(np.mean(losses))
        history = combine_histories(histories)
    write_history(history, history_path)
    _save(best, best_path)
    return {"best_epoch": best["epoch"], "best_loss": best_loss, "history": history}


def train_on_study(h5_path, split_path, settings, *, history_path, best_path, last_path, on_epoch_end=None,
                   tensorboard_dir=None):
    """Read the train and validation splits of the study HDF5 into memory (the prior's landmarks from the
    settings' source, with their noise), then `train`."""
    with StudyFile(h5_path) as study:  # subject and cohort: an id two cohorts use is two people (splits.py)
        people = study.meta(("subject", "cohort"))
    split = check_split(read_split(split_path), list(people["subject"]), source=str(split_path),
                        cohorts=list(people["cohort"]))
    landmarks = {"landmark_source": settings.landmark_source, "landmark_noise_mm": settings.landmark_noise_mm,
                 "seed": settings.seed}
    train_data = load_split(h5_path, split, "train", **landmarks)
    val_data = load_split(h5_path, split, "val", **landmarks)
    return train(train_data, val_data, settings, history_path=history_path, best_path=best_path,
                 last_path=last_path, on_epoch_end=on_epoch_end, tensorboard_dir=tensorboard_dir)


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


def train_run(h5_path, split_path, settings, *, history_path, best_path, last_path, reuse=None,
              tensorboard_dir=None):
    """The train rules' stage: copy the run `reuse` = (best.pt, history.csv) of another job when it was
    trained with these very settings, else train on the study (resuming from `last_path`; TensorBoard
    events into `tensorboard_dir` when given)."""
    if reuse and reuse_run(*reuse, settings, best_path=best_path, history_path=history_path):
        return
    train_on_study(h5_path, split_path, settings, history_path=history_path, best_path=best_path,
                   last_path=last_path, tensorboard_dir=tensorboard_dir or None)
