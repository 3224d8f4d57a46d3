"""The four rules' work, file in -> file out (the scripts only unpack snakemake and call these)."""

import logging

import pandas as pd

from osteoloc.io.atomic import atomic_path, write_csv
from osteoloc.io.segment_h5 import read_patch_set, read_prediction_patches, write_patch_sets, write_predictions
from osteoloc.report.tables import write_table
from osteoloc.segment import report as R
from osteoloc.segment.dataset import build_site_patches
from osteoloc.segment.evaluate import per_patch_metrics, summarise
from osteoloc.segment.sites import parse_sites
from osteoloc.segment.train import predict, train_unet
from osteoloc.segment.unet import load_unet, save_unet
from osteoloc.train.device import environment_info
from osteoloc.train.splits import read_split

log = logging.getLogger(__name__)


def manual_points_excluded(exclusions_path):
    """(subject, visit, side) of the hips whose manual points preprocessing excluded (exclusions.csv rows
    of stage `manual_points`: the hip stays in the study, its manual points do not)."""
    table = pd.read_csv(exclusions_path, dtype=str, keep_default_na=False)
    rows = table[table["stage"] == "manual_points"]
    return frozenset(zip(rows["subject"], rows["visit"], rows["side"]))


def make_patches(study, split_csv, exclusions_csv, site_name, cfg, seed, out):
    """Rule segment_patches: one site's train / val / test patches -> `out` (HDF5); hips whose manual
    points were excluded (exclusions_csv) leave training and validation."""
    site = parse_sites(cfg["sites"])[site_name]
    sets = build_site_patches(study, read_split(split_csv), site, cfg, seed,
                              manual_excluded=manual_points_excluded(exclusions_csv))
    with atomic_path(out) as tmp:
        write_patch_sets(sets, site.name, site.target, tmp)


def train_site(patches, cfg, seed, device, model_out, history_out, *, last_path=None, deterministic=True):
    """Rule segment_train: the best-validation U-Net (`model.pt`, with the job's environment) and its
    per-epoch losses; resumes from the checkpoint `last_path` when it holds this very run."""
    train_cfg = cfg["model"] | cfg["training"]
    model, history, best_epoch = train_unet(read_patch_set(patches, "train"), read_patch_set(patches, "val"),
                                            train_cfg, seed, device, last_path=last_path,
                                            deterministic=deterministic)
    history["best"] = history["epoch"] == best_epoch
    with atomic_path(model_out) as tmp:
        save_unet(model, best_epoch, train_cfg, tmp, environment_info(next(model.parameters()).device))
    write_csv(history, history_out, float_format="%.6g")
    log.info("best epoch %d of %d", best_epoch, len(history))


def evaluate_site(patches, model_path, site_name, cfg, device, predictions_out, metrics_out, summary_out):
    """Rule segment_evaluate: test-patch probabilities, per-patch metrics and the site's Table-2 row."""
    site = parse_sites(cfg["sites"])[site_name]
    test = read_patch_set(patches, "test")
    prob = predict(load_unet(model_path, device), test.images, int(cfg["training"]["batch_size"]),
                   cfg["training"].get("precision", "fp32"))
    metrics = per_patch_metrics(prob, test.masks, test.labels, test.rows, int(cfg["min_area"]))
    with atomic_path(predictions_out) as tmp:
        write_predictions(test, prob, site.name, site.target, tmp)
    write_csv(metrics, metrics_out, float_format="%.6g")
    write_csv(pd.DataFrame([summarise(metrics, site.name, site.target)]), summary_out, float_format="%.6g")


def build_report(cfg, site_files, cam_metrics_files, out, decimals):
    """Rule segment_report. site_files: {site: {patches, predictions, metrics, summary}};
    cam_metrics_files: {model: explain metrics.csv} (empty to leave out the weak-vs-strong table);
    out: {table2, table1, weak_vs_strong, confusion, examples} stems; decimals: shown in .md / .tex
    (report.tables.decimals, as paper A's tables)."""
    sites = parse_sites(cfg["sites"])
    summaries = [pd.read_csv(f["summary"]).iloc[0].to_dict() for f in site_files.values()]
    t2 = R.table2(summaries)
    write_table(t2, out["table2"], decimals,
                caption="Osteophyte detection and segmentation per U-Net (paper B, Table 2).")
    partitions = [R.partition_counts(s, sites[s].target, {sp: read_patch_set(f["patches"], sp)
                                                          for sp in ("train", "val", "test")})
                  for s, f in site_files.items()]
    write_table(R.table1(partitions), out["table1"], decimals,
                caption="Hips per partition, with osteophytes in brackets (paper B, Table 1).")
    unet_metrics = {s: pd.read_csv(f["metrics"]) for s, f in site_files.items()}
    if "weak_vs_strong" in out:
        cams = {m: pd.read_csv(p) for m, p in cam_metrics_files.items()}
        write_table(R.weak_vs_strong(cams, unet_metrics, {s: sites[s].target for s in site_files}),
                    out["weak_vs_strong"], decimals,
                    caption="Weak (CAM) versus strong (U-Net) localisation, positive test hips.")
    R.confusion_figure(t2, out["confusion"])
    examples = []
    for s, f in site_files.items():
        picks = R.pick_examples(unet_metrics[s], int(cfg["report"]["examples_per_site"]))
        for i, (image, truth, prob) in zip(picks, read_prediction_patches(f["predictions"], picks)):
            examples.append((f"{s}\nDice {unet_metrics[s]['dice'][i]:.2f}", image, truth, prob >= 0.5))
    R.examples_figure(examples, out["examples"])
    log.info("report: %d sites, %d examples", len(site_files), len(examples))
