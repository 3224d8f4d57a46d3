"""The training recipe: learning-rate schedule (warm-up, cosine), AdamW, gradient clipping, recomputed
batch-norm statistics. The rates follow the formula, and a run killed after an epoch resumes to the very
weights of an uninterrupted run."""

import math

import pytest
import torch

from osteoloc.train.data import SplitTensors
from helpers import train_settings
from osteoloc.train.loop import Trainer, fit, lr_factor, lr_scheduler

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
                                 dict(warmup_epochs=-1), dict(grad_clip=-1.0), dict(bn_stats="batch")])
def test_bad_recipe_is_refused(bad):
    with pytest.raises(ValueError):
        settings(**bad)
