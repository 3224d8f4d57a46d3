"""Grad-CAM of four targets for one batch: pytorch-grad-cam (one call per class, a ClassifierOutputTarget
per image) against osteoloc.explain.cam.gradcam_maps (one forward pass), same model, same batch, same process.

    .venv/bin/python benchmarks/bench_cam.py [--batch 32] [--size 224] [--repeats 5] [--threads 2]

Prints the median wall time of each and their ratio (goal: >= 30x), and the maps' max difference.
"""

import argparse
import statistics
import time

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from osteoloc.explain.cam import gradcam_maps
from osteoloc.train.model import build_model


def reference(model, images):
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        return np.stack([cam(input_tensor=images, targets=[ClassifierOutputTarget(c)] * len(images))
                         for c in range(4)], axis=1)


def ours(model, images):
    return gradcam_maps(model, images)[1].numpy()


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(weights="none").eval()
    images = torch.rand(args.batch, 1, args.size, args.size)
    reference(model, images[:2]), ours(model, images[:2])  # warm-up
    t_ref, maps_ref = median_time(lambda: reference(model, images), args.repeats)
    t_ours, maps_ours = median_time(lambda: ours(model, images), args.repeats)
    print(f"batch {args.batch} x 1 x {args.size} x {args.size}, 4 targets, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"pytorch-grad-cam (4 calls): {t_ref * 1000:9.1f} ms")
    print(f"osteoloc gradcam_maps:      {t_ours * 1000:9.1f} ms")
    print(f"speed-up: {t_ref / t_ours:.1f}x (goal >= 30x)")
    print(f"max |difference| of the maps: {np.abs(maps_ref - maps_ours).max():.2e}")


if __name__ == "__main__":
    main()
