"""Training throughput of the real loop vs a bare forward/backward/step of the same model.

The real loop's step (osteoloc.train.loop.Trainer.train_step as train_epoch calls it: rows drawn from the
in-memory split, whole-batch rotation of images and landmarks, masked BCE, the CAM prior, Adam step) is
timed side by side with the least a training step can do: forward, BCE, backward and Adam step on one
fixed in-memory batch of the same shape. Single steps are interleaved (bare, baseline, prior, bare, ...)
so a busy machine hurts all alike; figures are medians. Goal: ratio >= 0.90 baseline, >= 0.85 prior.

    .venv/bin/python benchmarks/bench_train.py [--size 96] [--batch 32] [--steps 15] [--device cuda --precision bf16]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from osteoloc.train.data import SplitTensors, rotation_matrices
from osteoloc.train.model import build_model
from osteoloc.train.device import configure_determinism, pick_device
from osteoloc.train.loop import Trainer
from schema_settings import default_settings


def synthetic_split(n, size, n_points=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SplitTensors(images=torch.rand(n, 1, size, size, generator=g),
                        labels=torch.randint(-1, 2, (n, 4), generator=g).float(),
                        landmarks=size * (0.2 + 0.6 * torch.rand(n, 4, n_points, 2, generator=g)),
                        valid=torch.rand(n, 4, n_points, generator=g) > 0.2,
                        rows=torch.arange(n))


def bare_step(model, optimizer, images, labels):
    """Forward / BCE / backward / Adam step on one batch already in memory: the least a step can do."""
    loss = F.binary_cross_entropy_with_logits(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def loop_step(trainer, batch_size):
    """What Trainer.train_epoch does per batch: draw the rows and rotations, then Trainer.train_step."""
    s = trainer.settings
    index = torch.randperm(len(trainer.train_data), generator=trainer.generator)[:batch_size]
    rotations = rotation_matrices(len(index), s.rotation_degrees, trainer.generator)
    trainer.train_step(index.to(trainer.device), rotations)


def timed(fn, device):
    """(wall seconds, CPU seconds of this process) of one call. On a shared machine the CPU time is the
    steadier measure: it does not count the time spent waiting for a core."""
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--n-train", type=int, default=336)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                        help="autocast in the loop (fp16: CUDA only)")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configure_determinism(True)  # as the training jobs of the default study
    device = pick_device(args.device)
    train_data, val_data = synthetic_split(args.n_train, args.size), synthetic_split(64, args.size, seed=1)
    common = dict(batch_size=args.batch, device=args.device, rotation_degrees=15.0, precision=args.precision,
                  channels_last=args.channels_last)
    trainers = {
        "baseline": Trainer(train_data, val_data, default_settings(**common)),
        "prior": Trainer(train_data, val_data, default_settings(**common, prior_lambda=1.0, prior_radius=4.0,
                                                                prior_sigma=13.0)),
    }
    for trainer in trainers.values():
        trainer.model.train()
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = build_model().to(device).to(memory_format=memory_format)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(args.batch, 1, args.size, args.size, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 2, (args.batch, 4), device=device).float()
    variants = {"bare": lambda: bare_step(model, optimizer, images, labels),
                "baseline": lambda: loop_step(trainers["baseline"], args.batch),
                "prior": lambda: loop_step(trainers["prior"], args.batch)}

    # warm-up, then interleave single steps (bare, baseline, prior, bare, ...) so that a busy machine
    # slows every variant alike; the figures are medians (and minima) over the steps
    for fn in variants.values():
        fn(), fn()
    times = {name: [] for name in variants}
    cpu_times = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, fn in variants.items():
            wall, cpu = timed(fn, device)
            times[name].append(wall)
            cpu_times[name].append(cpu)
    epoch_start = time.perf_counter()
    trainers["prior"].validate()
    validate_seconds = time.perf_counter() - epoch_start

    bare_med, bare_min = statistics.median(times["bare"]), min(times["bare"])
    print(f"device {device}, {args.threads} threads, batches of {args.batch} x {args.size} px, "
          f"{args.steps} interleaved steps per variant (precision {args.precision}, channels_last {args.channels_last})")
    print(f"bare forward/backward/step : {bare_med * 1e3:8.1f} ms/step (min {bare_min * 1e3:.1f})  "
          f"{args.batch / bare_med:7.1f} img/s")
    for name in ("baseline", "prior"):
        med, low = statistics.median(times[name]), min(times[name])
        goal = 0.90 if name == "baseline" else 0.85
        print(f"real loop step, {name:8s}   : {med * 1e3:8.1f} ms/step (min {low * 1e3:.1f})  "
              f"{args.batch / med:7.1f} img/s  ratio {bare_med / med:.3f} (of minima {bare_min / low:.3f}; "
              f"goal >= {goal})")
    if device.type == "cpu":
        bare_cpu = statistics.median(cpu_times["bare"])
        print(f"CPU time per step (median): bare {bare_cpu * 1e3:.1f} ms, " + ", ".join(
            f"{name} {statistics.median(cpu_times[name]) * 1e3:.1f} ms (ratio "
            f"{bare_cpu / statistics.median(cpu_times[name]):.3f})" for name in ("baseline", "prior")))
    print(f"validation pass ({len(val_data)} images, with prior): {validate_seconds:.2f} s")


if __name__ == "__main__":
    main()
