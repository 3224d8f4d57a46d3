"""The training recipe: learning-rate schedule (warm-up, cosine), early stopping, AdamW, gradient clipping,
recomputed batch-norm statistics. The rates follow the formula, early stopping stops after `patience` epochs
without improvement (not before its minimum) and keeps the best epoch, and a run killed after an epoch
resumes to the very weights, schedule and stopping point of an uninterrupted run."""

import math

import pytest
import torch

from osteoloc.train.data import SplitTensors
from helpers import train_settings
from osteoloc.train.loop import Trainer, fit, lr_factor, lr_scheduler, stop_early

RECIPE = dict(lr_schedule="cosine", warmup_epochs=1, optimizer="adamw", weight_decay=0.05, grad_clip=1.0,
              bn_stats="recomputed")
TOLERANCE = 1e-12  # relative: the scheduler's recursive updates against the closed form, float64


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only contend on a shared machine
    yield
    torch.set_num_threads(threads)


def tiny_split(n, seed, size=32):
    g = torch.Generator().manual_seed(seed)
    return SplitTensors(images=torch.rand(n, 1, size, size, generator=g),
                        labels=torch.randint(-1, 2, (n, 4), generator=g).float(),
                        landmarks=size * (0.2 + 0.6 * torch.rand(n, 4, 3, 2, generator=g)),
                        valid=torch.rand(n, 4, 3, generator=g) > 0.2, rows=torch.arange(n))


def settings(**overrides):
    return train_settings(**{**dict(epochs=5, batch_size=4, lr=0.01, device="cpu", eval_batch_size=16,
                                   rotation_degrees=10.0, seed=3), **RECIPE, **overrides})


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0), ("cosine", 1), ("cosine", 7), ("constant", 5)])
def test_scheduler_follows_the_formula_at_every_step(schedule, warmup):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=0.1)
    scheduler = lr_scheduler(optimizer, 30, warmup, schedule)
    for step in range(30):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(step, 30, warmup, schedule),
                                                                rel=TOLERANCE)
        optimizer.step()
        scheduler.step()


def test_constant_rate_without_warmup_has_no_scheduler():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert lr_scheduler(optimizer, 30, 0, "constant") is None


def test_warmup_and_cosine_rates_at_known_epochs():
    # 12 training images in batches of 4: 3 steps an epoch, 15 in all; warm-up 1 epoch = 3 steps.
    trainer = Trainer(tiny_split(12, 0), tiny_split(6, 1), settings())
    lr = trainer.optimizer.param_groups[0]
    assert lr["lr"] == pytest.approx(0.01 / 3, rel=TOLERANCE)  # first step: lr / warm-up steps
    seen = []
    for _ in range(5):
        trainer.train_epoch()
        seen.append(lr["lr"])  # the rate of the next epoch's first step
    # after epoch 1 (step 3) the cosine starts at lr; after epoch 3 (step 9) it is half way, lr / 2;
    # after epoch 2 (step 6) and 4 (step 12): (1 + cos(pi / 4)) / 2 and (1 + cos(3 pi / 4)) / 2
    expected = [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    assert seen == pytest.approx([0.01 * f for f in expected], rel=TOLERANCE, abs=1e-15)


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    train_data, val_data = tiny_split(10, 0), tiny_split(6, 1)  # 3 steps an epoch, the last of 2 images
    s = settings(epochs=4)
    _, uninterrupted, _ = fit(train_data, val_data, s, last_path=tmp_path / "a" / "last.pt")
    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)

    def kill_after_epoch_2(epoch):
        if epoch == 2:
            raise Killed
    with pytest.raises(Killed):
        fit(train_data, val_data, s, last_path=tmp_path / "b" / "last.pt", on_epoch_end=kill_after_epoch_2)
    killed = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert len(killed["history"]) == 2 and killed["state"]["scheduler"]["last_epoch"] == 6
    history, resumed, _ = fit(train_data, val_data, s, last_path=tmp_path / "b" / "last.pt")
    last_b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)

    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    for a, b in ((uninterrupted["state_dict"], resumed["state_dict"]),
                 (last_a["state"]["model"], last_b["state"]["model"])):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert last_a["state"]["scheduler"] == last_b["state"]["scheduler"]
    assert last_b["state"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        0.01 * lr_factor(12, 12, 3, "cosine"), abs=1e-15)


def test_a_resume_that_forgot_the_scheduler_would_differ(tmp_path):
    """The check above can fail: restarting the schedule at step 0 after epoch 2 changes the weights."""
    train_data, val_data = tiny_split(10, 0), tiny_split(6, 1)
    s = settings(epochs=3)
    a = Trainer(train_data, val_data, s)
    for _ in range(3):
        a.train_epoch()
    b = Trainer(train_data, val_data, s)
    for _ in range(2):
        b.train_epoch()
    state = b.state()
    c = Trainer(train_data, val_data, s)
    c.load_state({**state, "scheduler": c.scheduler.state_dict()})  # a fresh schedule
    c.train_epoch()
    assert not all(torch.equal(x, y) for x, y in zip(a.model.parameters(), c.model.parameters()))


def test_recomputed_bn_stats_are_the_training_images_and_change_no_weight():
    train_data = tiny_split(8, 0)
    trainer = Trainer(train_data, tiny_split(6, 1), settings(bn_stats="recomputed", batch_size=8))
    trainer.train_epoch()
    weights = {k: v.clone() for k, v in trainer.model.named_parameters()}
    generator = trainer.generator.get_state()
    trainer.recompute_bn_stats()
    model = trainer.model
    with torch.no_grad():  # one batch of all 8 images: the running mean is that batch's mean
        conv1 = model.conv1(train_data.images)
    torch.testing.assert_close(model.bn1.running_mean, conv1.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert model.bn1.momentum == 0.1
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())
    assert torch.equal(trainer.generator.get_state(), generator)
    assert trainer.validate()["val_bce"] > 0


@pytest.mark.parametrize("bad", [dict(lr_schedule="step"), dict(optimizer="sgd"), dict(warmup_epochs=5),
                                 dict(warmup_epochs=-1), dict(grad_clip=-1.0), dict(bn_stats="batch"),
                                 dict(early_stopping_patience=-1), dict(early_stopping_min_epochs=-1)])
def test_bad_recipe_is_refused(bad):
    with pytest.raises(ValueError):
        settings(**bad)


def test_each_step_runs_at_the_rate_the_settings_give():
    """The rate every optimisation step of a run uses (read by an optimizer pre-step hook) is
    lr x lr_factor(step, epochs x steps per epoch, warmup_epochs x steps per epoch, lr_schedule)."""
    s = settings(epochs=4, warmup_epochs=2, lr=0.02)  # 10 images in batches of 4: 3 steps an epoch
    trainer = Trainer(tiny_split(10, 0), tiny_split(6, 1), s)
    used = []
    trainer.optimizer.register_step_pre_hook(lambda optimizer, *_: used.append(optimizer.param_groups[0]["lr"]))
    for _ in range(s.epochs):
        trainer.train_epoch()
    expected = [s.lr * lr_factor(step, 12, 6, "cosine") for step in range(12)]
    assert used == pytest.approx(expected, rel=TOLERANCE)
    assert used[0] == pytest.approx(0.02 / 6) and used[5] == pytest.approx(0.02) and used[6] == pytest.approx(0.02)
    assert used[-1] < used[-2] < used[6]  # the cosine falls after the warm-up


@pytest.mark.parametrize("patience, min_epochs, stale, epoch, stops", [
    (0, 0, 5, 5, False),  # off
    (2, 0, 1, 3, False), (2, 0, 2, 3, True), (2, 0, 3, 4, True),
    (2, 5, 2, 4, False), (2, 5, 2, 5, True),  # not before the minimum
])
def test_stop_early_rule(patience, min_epochs, stale, epoch, stops):
    assert stop_early(stale, epoch, settings(early_stopping_patience=patience,
                                             early_stopping_min_epochs=min_epochs, epochs=8)) is stops


# Validation BCE per epoch for the early-stopping tests: best at epoch 3, no better after it.
SCRIPTED_BCE = [0.70, 0.60, 0.50, 0.55, 0.52, 0.65, 0.50, 0.40]


@pytest.fixture
def scripted_validation(monkeypatch):
    """Trainer.validate with its val_bce (and val_total) replaced by SCRIPTED_BCE at the run's epoch, read
    from the scheduler's step count: a resumed trainer sees the same value for the same epoch."""
    validate = Trainer.validate

    def scripted(self):
        row = validate(self)
        steps_per_epoch = math.ceil(len(self.train_data) / self.settings.batch_size)
        epoch = self.scheduler.last_epoch // steps_per_epoch
        row["val_bce"] = row["val_total"] = SCRIPTED_BCE[epoch - 1]
        return row
    monkeypatch.setattr(Trainer, "validate", scripted)


def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(tmp_path, scripted_validation):
    train_data, val_data = tiny_split(10, 0), tiny_split(6, 1)
    weights_by_epoch = {}

    def keep_weights(epoch):
        weights_by_epoch[epoch] = torch.load(tmp_path / "last.pt", weights_only=False)["state"]["model"]
    s = settings(epochs=8, early_stopping_patience=3, early_stopping_min_epochs=0)
    history, best, best_loss = fit(train_data, val_data, s, last_path=tmp_path / "last.pt", on_epoch_end=keep_weights)
    # epochs 4, 5 and 6 do not beat epoch 3's 0.50 (epoch 5's 0.52 neither): stop after epoch 6
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert best["epoch"] == 3 and best_loss == 0.50
    assert all(torch.equal(best["state_dict"][k], weights_by_epoch[3][k]) for k in weights_by_epoch[3])
    assert not all(torch.equal(best["state_dict"][k], weights_by_epoch[6][k]) for k in weights_by_epoch[6])
    assert torch.load(tmp_path / "last.pt", weights_only=False)["done"]


def test_early_stopping_waits_for_the_minimum_epochs(tmp_path, scripted_validation):
    s = settings(epochs=8, early_stopping_patience=3, early_stopping_min_epochs=8)
    history, best, _ = fit(tiny_split(10, 0), tiny_split(6, 1), s, last_path=tmp_path / "last.pt")
    assert len(history) == 8 and best["epoch"] == 8  # epoch 8's 0.40 is only found by running on
    s = settings(epochs=8, early_stopping_patience=0)
    history, best, _ = fit(tiny_split(10, 0), tiny_split(6, 1), s, last_path=tmp_path / "off" / "last.pt")
    assert len(history) == 8


def test_killed_run_resumes_mid_schedule_and_stops_where_the_uninterrupted_one_does(tmp_path, scripted_validation):
    """Killed after epoch 5 (two epochs without improvement, the cosine half way), the resumed run carries
    the early-stopping count and the schedule on: it stops after epoch 6 with the uninterrupted run's
    weights, best epoch and rates."""
    train_data, val_data = tiny_split(10, 0), tiny_split(6, 1)
    s = settings(epochs=8, warmup_epochs=1, early_stopping_patience=3, early_stopping_min_epochs=4)
    history_a, best_a, _ = fit(train_data, val_data, s, last_path=tmp_path / "a" / "last.pt")
    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)

    def kill_after_epoch_5(epoch):
        if epoch == 5:
            raise Killed
    with pytest.raises(Killed):
        fit(train_data, val_data, s, last_path=tmp_path / "b" / "last.pt", on_epoch_end=kill_after_epoch_5)
    killed = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert killed["stale"] == 2 and not killed["done"] and killed["state"]["scheduler"]["last_epoch"] == 15
    resumed_epochs = []
    history_b, best_b, _ = fit(train_data, val_data, s, last_path=tmp_path / "b" / "last.pt",
                               on_epoch_end=resumed_epochs.append)
    last_b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)

    assert resumed_epochs == [6] and len(history_a) == len(history_b) == 6
    assert best_a["epoch"] == best_b["epoch"] == 3
    for a, b in ((best_a["state_dict"], best_b["state_dict"]), (last_a["state"]["model"], last_b["state"]["model"])):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert last_a["state"]["scheduler"] == last_b["state"]["scheduler"]
    assert last_a["state"]["optimizer"]["param_groups"][0]["lr"] == last_b["state"]["optimizer"]["param_groups"][0]["lr"]
    assert [r["train_bce"] for r in history_a] == [r["train_bce"] for r in history_b]
