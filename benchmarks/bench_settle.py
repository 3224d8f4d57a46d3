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
Does training converge within the budget? `--curves` trains runs of the science study's setting (config.yaml
with experiments/science.yaml's train section: its split, epochs, crop and prior) under recipes, each for
the whole budget with early stopping off, and writes every epoch's validation BCE; `--converge` then applies
early stopping to those curves with `loop.stop_early` (exact: stopping only truncates a run, the schedule
counts every epoch of the budget) and prints, per recipe, the share of runs whose best epoch is the last
one run, and draws the curves (docs/training.md "Training that converges"):
    PYTHONPATH=$PWD/src .venv/bin/snakemake --cores 1 --configfile experiments/science.yaml -- \
        results/science/preprocess/study.h5 results/science/splits/seed{0,1,2}.csv
    ... bench_settle.py --curves --h5 results/science/preprocess/study.h5 --recipes paper --epochs 10 \
        --models baseline s16_prior --seeds 0 1 2 --threads 1 --out a.csv
    ... bench_settle.py --converge a.csv b.csv ... --budget paper=6 cosine=10/2 --min-epochs 4 \
        --png docs/converge_curves.png
The before/after figure of docs/training.md's "Training that settles" (one diagnosis per model, then the plot):
    ... bench_settle.py --diagnose --epochs 12 --models baseline --out baseline.csv
    ... bench_settle.py --diagnose --epochs 12 --models lam1_r4_sig13 --threads 1 --out prior.csv
    ... bench_settle.py --plot baseline.csv prior.csv --png docs/settle_curves.png
"""

import argparse
import copy
import json
import logging
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import yaml

from osteoloc.report.style import PAPER_RC
from osteoloc.train.data import batch_order, load_split, read_subjects
from osteoloc.train.loop import Trainer, fit, stop_early, train_run
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
    "cosine_lr2e-3": {"lr_schedule": "cosine", "warmup_epochs": 1, "lr": 2e-3},
}
# The runs per recipe: the baseline and one point of the default grid (lambda, radius, sigma).
MODELS = {"baseline": (0.0, 0.0, 0.0), "lam1_r4_sig13": (1.0, 4.0, 13.0)}
# --curves: two of the science study's arms, its stride-32 baseline and its stride-16 prior.
SCIENCE_MODELS = {"baseline": dict(prior_lambda=0.0, prior_radius=0.0, prior_sigma=0.0, output_stride=32),
                  "s16_prior": dict(prior_lambda=1.0, prior_radius=4.0, prior_sigma=13.0, output_stride=16)}


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


def science_train(config_path, science_path):
    """The train section of config.yaml overlaid with the science study's (its keys replace the config's)."""
    train = yaml.safe_load(Path(config_path).read_text())["train"]
    return {**train, **yaml.safe_load(Path(science_path).read_text())["train"]}


def record_curves(args):
    """Train each (recipe, model, seed) for --epochs with early stopping off; one CSV row per epoch."""
    train = science_train(args.config, args.science)
    rows = []
    for seed in args.seeds:
        split_path = args.splits.format(seed=seed)
        split = check_split(read_split(split_path), read_subjects(args.h5), source=split_path)
        data = {which: load_split(args.h5, split, which, seed=seed) for which in ("train", "val")}
        for recipe in args.recipes:
            for model in args.models:
                settings = default_settings(**{
                    "seed": seed, "epochs": args.epochs, "batch_size": train["batch_size"], "lr": train["lr"],
                    "rotation_degrees": train["rotation_degrees"], "bn_stats": train["bn_stats"],
                    "device": "cpu", **RECIPES[recipe], **SCIENCE_MODELS[model]})
                with tempfile.TemporaryDirectory() as tmp:
                    history, _, _ = fit(data["train"], data["val"], settings, last_path=Path(tmp) / "last.pt")
                for row in history:
                    rows.append({"recipe": recipe, "model": model, "seed": seed, "epochs": args.epochs,
                                 "n_train": len(data["train"]), "n_val": len(data["val"]), **row})
                bce = [round(r["val_bce"], 3) for r in history]
                print(json.dumps({"recipe": recipe, "model": model, "seed": seed, "val_bce": bce,
                                  "seconds": round(sum(r["seconds"] for r in history), 1)}), flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)  # after every run: a kill keeps the rest
    print(f"written: {args.out}")


def stopped_run(val_bce, patience, min_epochs):
    """(epochs run, best epoch) of a run with this validation curve under early stopping: the loop's rule
    (`loop.stop_early`, the loop's strict improvement) applied epoch by epoch."""
    from types import SimpleNamespace

    rule = SimpleNamespace(early_stopping_patience=patience, early_stopping_min_epochs=min_epochs)
    best, best_epoch, stale = np.inf, 0, 0
    for epoch, value in enumerate(val_bce, start=1):
        if value < best:
            best, best_epoch, stale = value, epoch, 0
        else:
            stale += 1
        if stop_early(stale, epoch, rule):
            return epoch, best_epoch
    return len(val_bce), best_epoch


def parse_budgets(items, min_epochs):
    """'recipe=epochs' or 'recipe=epochs/patience' -> [(recipe, epochs, patience, min_epochs)] (no patience:
    early stopping off)."""
    budgets = []
    for item in items:
        recipe, rest = item.split("=")
        epochs, _, patience = rest.partition("/")
        budgets.append((recipe, int(epochs), int(patience or 0), min_epochs if patience else 0))
    return budgets


def budget_runs(curves, recipe, budget):
    """The recorded runs of `recipe` that show its first `budget` epochs: a cosine schedule's rates depend on
    the budget (only runs trained for exactly it), a constant rate's do not (any longer run, truncated)."""
    runs = curves[curves["recipe"] == recipe]
    cosine = RECIPES[recipe].get("lr_schedule") == "cosine"
    runs = runs[runs["epochs"] == budget] if cosine else runs[runs["epochs"] >= budget]
    return {key: run.sort_values("epoch").iloc[:budget] for key, run in runs.groupby(["model", "seed"])}


def converge(args):
    """Per recipe, budget and early stopping, the share of runs whose best epoch is the last one run; then
    the figure."""
    curves = pd.concat([pd.read_csv(path) for path in args.converge], ignore_index=True)
    budgets = parse_budgets(args.budget, args.min_epochs)
    summary = []
    for recipe, budget, patience, min_epochs in budgets:
        for (model, seed), run in budget_runs(curves, recipe, budget).items():
            bce = run["val_bce"].tolist()
            epochs_run, best = stopped_run(bce, patience, min_epochs)
            summary.append({"recipe": recipe, "budget": budget, "patience": patience, "min_epochs": min_epochs,
                            "model": model, "seed": seed, "epochs_run": epochs_run, "best_epoch": best,
                            "best_is_last": best == epochs_run, "best_bce": min(bce[:epochs_run]),
                            "best_auc": run[[c for c in run if c.startswith("val_auc_")]].iloc[best - 1].mean(),
                            "seconds": run["seconds"].iloc[:epochs_run].sum()})
    summary = pd.DataFrame(summary)
    print(summary.to_string(index=False))
    table = summary.groupby(["recipe", "budget", "patience", "min_epochs"], sort=False).agg(
        runs=("best_is_last", "size"), best_is_last=("best_is_last", "sum"), mean_epochs=("epochs_run", "mean"),
        mean_best_bce=("best_bce", "mean"), mean_best_auc=("best_auc", "mean"), mean_seconds=("seconds", "mean"))
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.png:
        plot_converge(curves, budgets, args.png)


def plot_converge(curves, budgets, png_path):
    """Validation BCE per epoch: one panel per model (rows) and budget line (columns: recipe, epochs, early
    stopping), one colour per seed, bold up to where the run ends and faint after it (the recorded epochs it
    does not run); a ring at the run's best epoch, a cross where early stopping ends it."""
    models = list(dict.fromkeys(curves["model"]))
    colours = dict(zip(sorted(curves["seed"].unique()), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    with plt.rc_context(PAPER_RC):
        fig, axes = plt.subplots(len(models), len(budgets), figsize=(2.8 * len(budgets), 2.4 * len(models)),
                                 sharex=True, sharey=True, squeeze=False)
        for row, model in zip(axes, models):
            for ax, (recipe, budget, patience, min_epochs) in zip(row, budgets):
                runs = {seed: run for (m, seed), run in budget_runs(curves, recipe, budget).items() if m == model}
                full = curves[(curves["recipe"] == recipe) & (curves["model"] == model)]
                last = 0
                for seed, run in runs.items():
                    bce = run["val_bce"].tolist()
                    epochs_run, best = stopped_run(bce, patience, min_epochs)
                    last += best == epochs_run
                    rest = full[full["seed"] == seed].sort_values("epoch")
                    rest = rest[rest["epochs"] == rest["epochs"].max()]
                    ax.plot(rest["epoch"], rest["val_bce"], "-", color=colours[seed], alpha=0.25, linewidth=0.8)
                    ax.plot(range(1, epochs_run + 1), bce[:epochs_run], "-", color=colours[seed], linewidth=1.2,
                            label=f"seed {seed}")
                    ax.plot(best, bce[best - 1], "o", mfc="none", color=colours[seed], markersize=5)
                    if epochs_run < budget:
                        ax.plot(epochs_run, bce[epochs_run - 1], "x", color=colours[seed], markersize=5)
                stopping = f"patience {patience} from epoch {min_epochs}" if patience else "no early stopping"
                ax.set_title(f"{model}: {recipe}, {budget} epochs\n{stopping}\nbest epoch = last in {last} of {len(runs)}")
                ax.set_xlabel("epoch")
            row[0].set_ylabel("validation BCE")
        axes[0][0].legend()
        fig.suptitle("Validation BCE per epoch (o best epoch, x early stop; faint: recorded epochs the run does "
                     "not reach)", y=1.01)
        fig.tight_layout()
        fig.savefig(png_path, dpi=150, bbox_inches="tight")
        plt.close(fig)
    print(f"written: {png_path}")


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
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS) + list(SCIENCE_MODELS))
    parser.add_argument("--diagnose", action="store_true",
                        help="batch-norm diagnosis of the first recipe's first model")
    parser.add_argument("--out", help="--diagnose: also write its per-epoch validation BCE to this CSV")
    parser.add_argument("--plot", nargs="+", metavar="CSV",
                        help="draw the curves of these --diagnose --out CSVs into --png and stop")
    parser.add_argument("--png", help="the figure --plot (default settle_curves.png) or --converge (none) writes")
    parser.add_argument("--curves", action="store_true",
                        help="record validation curves of the science setting (--recipes, --models, --seeds, "
                             "--epochs) into --out")
    parser.add_argument("--science", default="experiments/science.yaml")
    parser.add_argument("--splits", default="results/science/splits/seed{seed}.csv")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--converge", nargs="+", metavar="CSV", help="summarise these --curves CSVs and stop")
    parser.add_argument("--budget", nargs="+", default=["paper=6"], metavar="RECIPE=EPOCHS[/PATIENCE]",
                        help="--converge: the recipes to summarise, each at a budget, with early stopping's "
                             "patience (none: off)")
    parser.add_argument("--min-epochs", type=int, default=0)
    args = parser.parse_args()
    if args.converge:
        converge(args)
        return
    if args.curves:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the loop's epoch lines
        torch.set_num_threads(args.threads)
        if args.models == list(MODELS):
            args.models = list(SCIENCE_MODELS)
        record_curves(args)
        return
    if args.plot:
        plot_curves(args.plot, args.png or "settle_curves.png")
        return
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    (diagnose if args.diagnose else run_recipes)(args, config)


if __name__ == "__main__":
    main()
