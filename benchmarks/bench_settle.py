"""Does training settle? Per-epoch validation BCE of the default study's runs under training recipes.

Trains runs of the default study (config.yaml: phantom cohort, 96 px crops, its epochs, batch size and lr)
on the selection seed's split with `osteoloc.train.loop.train_run`, once per recipe, for the baseline and
one grid point of the prior, and prints each run's validation BCE per epoch, the largest epoch-to-epoch
ratio max(bce[e] / bce[e-1], bce[e-1] / bce[e]) and the best epoch. A curve that settles has a ratio near 1.

`--diagnose` instead follows one run epoch by epoch and scores the same weights three ways: eval mode
(the running batch-norm statistics, as the loop does), batch-norm statistics recomputed on the training
images (a cumulative average over one pass, no weight change) and batch statistics of the validation set
itself. If the spike vanishes when the statistics are recomputed, it is the running statistics; if not,
it is the weights.

Build the inputs first (in the checkout):
    PYTHONPATH=$PWD/src .venv/bin/snakemake --cores 1 results/preprocess/study.h5 results/splits/seed0.csv
    PYTHONPATH=$PWD/src nice -n 10 .venv/bin/python benchmarks/bench_settle.py [--recipes paper cosine] [--diagnose]
The before/after figure of docs/training.md (one diagnosis per model, then the plot):
    ... bench_settle.py --diagnose --epochs 12 --models baseline --out baseline.csv
    ... bench_settle.py --diagnose --epochs 12 --models lam1_r4_sig13 --threads 1 --out prior.csv
    ... bench_settle.py --plot baseline.csv prior.csv --png docs/settle_curves.png
"""

import argparse
import copy
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
import yaml

from osteoloc.report.style import PAPER_RC
from osteoloc.train.data import batch_order, load_split, read_subjects
from osteoloc.train.loop import Trainer, train_run
from osteoloc.train.model import features_and_logits
from osteoloc.train.prior import masked_bce
from osteoloc.train.splits import check_split, read_split
from schema_settings import default_settings

# Recipes: TrainSettings overrides on top of the config's train section. "paper" is paper A's (plain Adam,
# constant lr).
RECIPES = {
    "paper": {},
    "cosine": {"lr_schedule": "cosine", "warmup_epochs": 1},
    "cosine_w0": {"lr_schedule": "cosine"},
    "adamw": {"optimizer": "adamw", "weight_decay": 0.05},
    "clip": {"grad_clip": 1.0},
    "cosine_adamw": {"lr_schedule": "cosine", "warmup_epochs": 1, "optimizer": "adamw", "weight_decay": 0.05},
    "cosine_clip": {"lr_schedule": "cosine", "warmup_epochs": 1, "grad_clip": 1.0},
    "lr3e-4": {"lr": 3e-4},
}
# The runs per recipe: the baseline and one point of the default grid (lambda, radius, sigma).
MODELS = {"baseline": (0.0, 0.0, 0.0), "lam1_r4_sig13": (1.0, 4.0, 13.0)}


def base_settings(config, seed):
    train = config["train"]
    return dict(seed=seed, epochs=train["epochs"], batch_size=train["batch_size"], lr=train["lr"],
                rotation_degrees=train["rotation_degrees"], device="cpu")


def max_ratio(values):
    """The largest factor between two consecutive epochs' values, up or down."""
    pairs = list(zip(values[:-1], values[1:]))
    return max(max(b / a, a / b) for a, b in pairs)


def run_recipes(args, config):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            for model in args.models:
                lam, radius, sigma = MODELS[model]
                settings = default_settings(**{**base_settings(config, args.seed), **RECIPES[recipe]},
                                            prior_lambda=lam, prior_radius=radius, prior_sigma=sigma)
                out = Path(tmp) / recipe / model
                out.mkdir(parents=True)
                train_run(args.h5, args.split, settings, history_path=out / "history.csv",
                          best_path=out / "best.pt", last_path=out / "last.pt")
                history = pd.read_csv(out / "history.csv")
                bce = history["val_bce"].tolist()
                rows.append({"recipe": recipe, "model": model, "val_bce": [round(v, 3) for v in bce],
                             "max_ratio": round(max_ratio(bce), 2), "best_epoch": int(history["val_bce"].idxmin()) + 1,
                             "best_bce": round(min(bce), 3), "last_bce": round(bce[-1], 3),
                             "seconds": round(float(history["seconds"].sum()), 1)})
                print(json.dumps(rows[-1]), flush=True)
    print("\nrecipe        model           max ratio  best epoch  best bce  last bce  val bce per epoch")
    for r in rows:
        print(f"{r['recipe']:<13} {r['model']:<15} {r['max_ratio']:>9.2f}  {r['best_epoch']:>10d}  "
              f"{r['best_bce']:>8.3f}  {r['last_bce']:>8.3f}  {' '.join(f'{v:.2f}' for v in r['val_bce'])}")


@torch.no_grad()
def val_bce(trainer, model):
    d = trainer.val_data
    logits = [features_and_logits(model, d.images[i])[1] for i in batch_order(len(d), 256)]
    return float(masked_bce(torch.cat(logits), d.labels))


@torch.no_grad()
def recomputed_stats(trainer):
    """A copy of the model whose batch-norm running statistics are the cumulative average over one pass of
    the (unrotated) training images in batches of the training batch size."""
    model = copy.deepcopy(trainer.model)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    for index in batch_order(len(trainer.train_data), trainer.settings.batch_size):
        features_and_logits(model, trainer.train_data.images[index])
    return model.eval()


def diagnose(args, config):
    h5, split_path = args.h5, args.split
    split = check_split(read_split(split_path), read_subjects(h5), source=str(split_path))
    train_data, val_data = load_split(h5, split, "train"), load_split(h5, split, "val")
    lam, radius, sigma = MODELS[args.models[0]]
    settings = default_settings(**{**base_settings(config, args.seed), **RECIPES[args.recipes[0]]},
                                prior_lambda=lam, prior_radius=radius, prior_sigma=sigma)
    trainer = Trainer(train_data, val_data, settings)
    print(f"{args.models[0]}, recipe {args.recipes[0]}: {len(train_data)} train / {len(val_data)} val hips, "
          f"batch {settings.batch_size}")
    print("epoch  train_bce  val(eval, running stats)  val(recomputed stats)  val(val batch stats)")
    columns = {"running stats": [], "recomputed stats": [], "val batch stats": []}
    for epoch in range(1, (args.epochs or settings.epochs) + 1):
        train_bce = trainer.train_epoch()["train_bce"]
        trainer.model.eval()
        running = val_bce(trainer, trainer.model)
        recomputed = val_bce(trainer, recomputed_stats(trainer))
        batch = val_bce(trainer, copy.deepcopy(trainer.model).train())  # batch statistics of the val set
        print(f"{epoch:>5}  {train_bce:9.3f}  {running:24.3f}  {recomputed:21.3f}  {batch:20.3f}", flush=True)
        for values, value in zip(columns.values(), (running, recomputed, batch)):
            values.append(value)
    for name, values in columns.items():
        best = min(range(len(values)), key=values.__getitem__)
        print(f"{name}: max epoch-to-epoch ratio {max_ratio(values):.2f}, best epoch {best + 1} ({values[best]:.3f})")
    if args.out:
        curves = pd.DataFrame({"epoch": range(1, len(columns["running stats"]) + 1), **columns})
        curves.insert(0, "model", args.models[0])
        curves.to_csv(args.out, index=False)
        print(f"written: {args.out}")


def plot_curves(csv_paths, png_path):
    """The validation BCE per epoch of each diagnosed run (`--diagnose --out`): with the running batch-norm
    statistics (what the loop reported before) and recomputed on the training images (what it reports now)."""
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(csv_paths), figsize=(3.4 * len(csv_paths), 2.8), sharey=True, squeeze=False)
        for ax, path in zip(axes[0], csv_paths):
            curves = pd.read_csv(path)
            for column, style in (("running stats", "o--"), ("recomputed stats", "o-")):
                ax.plot(curves["epoch"], curves[column], style, markersize=3,
                        label=f"{column} (max ratio {max_ratio(curves[column].tolist()):.2f})")
            model = curves["model"].iloc[0]
            ax.set_title(model if model == "baseline" else f"prior {model}")
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("validation BCE")
        fig.suptitle("Validation BCE before (running batch-norm statistics) and after (recomputed)", y=1.03)
        fig.savefig(png_path, dpi=150, bbox_inches="tight")
        plt.close(fig)
    print(f"written: {png_path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--h5", default="results/preprocess/study.h5")
    parser.add_argument("--split", default="results/splits/seed0.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0,
                        help="--diagnose: stop after this many epochs (0 = the config's); with a constant lr the "
                             "curve is the first epochs of the full run's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=["paper", "cosine"], choices=sorted(RECIPES))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--diagnose", action="store_true",
                        help="batch-norm diagnosis of the first recipe's first model")
    parser.add_argument("--out", help="--diagnose: also write its per-epoch validation BCE to this CSV")
    parser.add_argument("--plot", nargs="+", metavar="CSV",
                        help="draw the curves of these --diagnose --out CSVs into --png and stop")
    parser.add_argument("--png", default="settle_curves.png", help="the figure --plot writes")
    args = parser.parse_args()
    if args.plot:
        plot_curves(args.plot, args.png)
        return
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    (diagnose if args.diagnose else run_recipes)(args, config)


if __name__ == "__main__":
    main()
