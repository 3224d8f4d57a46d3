"""Training throughput of the real loop vs a bare forward/backward/step of the same model.

The real loop (osteoloc.train.Trainer.train_epoch: shuffled batches from in-memory tensors, whole-batch
rotation of images and landmarks, masked BCE, the CAM prior, Adam step) is timed side by side with the
least a training step can do: forward, BCE, backward and Adam step on one fixed in-memory batch of the
same shape. Measurements alternate (bare, baseline, prior, ...) so a busy machine hurts all alike; the
figures are medians. Goal: ratio >= 0.90 for the baseline and >= 0.85 with the prior.

    .venv/bin/python benchmarks/bench_train.py [--size 96] [--n-train 336] [--batch 32] [--repeats 3]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from osteoloc.data import SplitTensors
from osteoloc.model import build_model
from osteoloc.train import TrainSettings, Trainer, pick_device


def synthetic_split(n, size, n_points=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SplitTensors(images=torch.rand(n, 1, size, size, generator=g),
                        labels=torch.randint(-1, 2, (n, 4), generator=g).float(),
                        landmarks=size * (0.2 + 0.6 * torch.rand(n, 4, n_points, 2, generator=g)),
                        valid=torch.rand(n, 4, n_points, generator=g) > 0.2,
                        rows=torch.arange(n))


def bare_epoch(model, optimizer, images, labels, n_steps, device):
    """n_steps of forward / BCE / backward / step on one batch already in memory."""
    model.train()
    for _ in range(n_steps):
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--n-train", type=int, default=336)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as in osteoloc.train.train
    device = pick_device(args.device)
    train_data, val_data = synthetic_split(args.n_train, args.size), synthetic_split(64, args.size, seed=1)
    common = dict(batch_size=args.batch, device=args.device, rotation_degrees=15.0)
    trainers = {
        "baseline": Trainer(train_data, val_data, TrainSettings(**common)),
        "prior": Trainer(train_data, val_data, TrainSettings(**common, prior_lambda=1.0, prior_radius=4.0,
                                                             prior_sigma=13.0)),
    }
    torch.manual_seed(0)
    model = build_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(args.batch, 1, args.size, args.size, device=device)
    labels = torch.randint(0, 2, (args.batch, 4), device=device).float()
    n_steps = -(-args.n_train // args.batch)

    # warm-up, then alternate the measurements
    bare_epoch(model, optimizer, images, labels, 2, device)
    for trainer in trainers.values():
        trainer.train_epoch()
    times = {"bare": [], "baseline": [], "prior": [], "validate": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        bare_epoch(model, optimizer, images, labels, n_steps, device)
        times["bare"].append(time.perf_counter() - start)
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_epoch()
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        trainers["prior"].validate()
        times["validate"].append(time.perf_counter() - start)

    bare = statistics.median(times["bare"])
    print(f"device {device}, {args.threads} threads, {args.n_train} images of {args.size} px, batch {args.batch}, "
          f"{n_steps} steps per epoch, median of {args.repeats}")
    print(f"bare forward/backward/step : {bare:7.2f} s/epoch  {args.n_train / bare:7.1f} img/s")
    for name in ("baseline", "prior"):
        t = statistics.median(times[name])
        ratios = [b / x for b, x in zip(times["bare"], times[name])]
        goal = 0.90 if name == "baseline" else 0.85
        print(f"real loop, {name:8s}         : {t:7.2f} s/epoch  {args.n_train / t:7.1f} img/s  "
              f"ratio {bare / t:.3f} (per repeat {', '.join(f'{r:.2f}' for r in ratios)}; goal >= {goal})")
    print(f"validation pass ({len(val_data)} images, prior): {statistics.median(times['validate']):.2f} s")


if __name__ == "__main__":
    main()
