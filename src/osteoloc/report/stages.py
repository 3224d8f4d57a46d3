"""The report stage's entry points, one per rule of workflow/rules/report.smk (and Figure 1 of preprocess.smk,
Figure A1 of train.smk): each reads the rule's inputs, calls the tables', figures' or ablation's computation
and writes the rule's outputs."""

import json
import logging

import numpy as np
import pandas as pd

from osteoloc.io.atomic import atomic_path, write_text
from osteoloc.io.maps_h5 import MapsFile
from osteoloc.io.runs import read_all_runs, read_history, read_runs
from osteoloc.io.study_h5 import StudyFile
from osteoloc.report.ablation import (ablation_table, bootstrap_comparisons, penalty_warnings, read_arm_runs,
                                      seed_level_values)
from osteoloc.report.comparisons import design_primaries
from osteoloc.report.figure_ablation import figure_ablation_forest
from osteoloc.report.figure_curves import figure_learning_curves
from osteoloc.report.figure_interventions import figure_interventions
from osteoloc.report.interventions import follow_hips, follow_seed_values, intervention_summary, read_effects
from osteoloc.report.figure_landmarks import figure_landmarks, pick_rows
from osteoloc.report.figure_training import figure_grid
from osteoloc.report.figures import case_figures, run_figures, selection_run, shown_cases
# SUMMARY_TABLES: the report_summary script names its inputs by it
from osteoloc.names import ABLATION_METRICS, MODELS, REFERENCE_ARM, SUMMARY_TABLES  # noqa: F401
from osteoloc.report.tables import build_tables, read_table, summary_markdown, write_table
from osteoloc.report.throughput import gather_throughput, json_safe
from osteoloc.train.grid import point_histories, read_selection

log = logging.getLogger(__name__)


def run_pairs(runs_json):
    """The (model, seed) pairs of a report rule's `runs` param (the workflow's `explain_runs`), in the
    order of its per-run input lists."""
    return [(str(model), int(seed)) for model, seed in json.loads(runs_json)]


def report_tables(runs_json, predictions_paths, metrics_paths, study_path, *, selection_seed, calibration_bins,
                  decimals, table_paths, seed_input_path, n_boot=2000, boot_seed=0, strata_mm=(7.5, 15.0)):
    """Rule report_tables: every table of TABLE_IDS from every run's explain outputs (`runs.read_all_runs`)
    and the study's labels. table_paths: {table id: its path, .csv / .md / .tex written beside each other}.
    n_boot, boot_seed: the calibrated tables' bootstrap intervals (`report.statistics`; n_boot 0: none);
    strata_mm: the stratified table's lesion-landmark distance edges (mm; the study's spacing converts)."""
    predictions, metrics = read_all_runs(run_pairs(runs_json), predictions_paths, metrics_paths)
    with StudyFile(study_path) as study:
        labels = study.read(["labels"]).labels.astype(int)
        spacing_mm = study.spacing_mm
    tables = build_tables(predictions, metrics, labels, selection_seed, calibration_bins, seed_input_path,
                          n_boot=n_boot, boot_seed=boot_seed, strata_mm=strata_mm, spacing_mm=spacing_mm)
    for table_id, table in tables.items():
        write_table(table, table_paths[table_id], decimals=decimals)
        log.info("%s: %d rows", table_id, len(table))


def report_summary(study_name, seeds_json, runs_json, *, table_paths, exclusions_path, study_path, metrics_paths, out_path):
    """Rule report_summary: `summary_markdown` from the written tables (table_paths: {SUMMARY_TABLES id:
    path}), the exclusions table, the study's size and every run's metrics.
    seeds_json: the study's seeds; runs_json: the (model, seed) pairs of `metrics_paths`, in order
    (`run_pairs`)."""
    tables = {table_id: read_table(path) for table_id, path in table_paths.items()}
    exclusions = pd.read_csv(exclusions_path, dtype=str, keep_default_na=False)
    with StudyFile(study_path) as study:
        n_hips = len(study)
    metrics = read_runs(dict(zip(run_pairs(runs_json), metrics_paths)), "metrics")
    write_text(summary_markdown(study_name, tables, exclusions, n_hips, json.loads(seeds_json), metrics), out_path)


MAPS_BATCH = 64  # images per read of a maps.h5: Figure 4's streaming mean holds one batch (~50 MB at 224 px)


def paper_figures(predictions, metrics, study_path, maps_paths, selection_seed, figure_paths, *, width_in,
                  case_threshold, figure5_row_index, n_bins):
    """Every figure of names.FIGURE_IDS; returns the Figure 6 cases (for logging).

    figure_paths: {figure id: path}, each written as .png and .pdf (the path may carry either suffix);
    maps_paths: {model: the selection seed's maps.h5}; figure5_row_index: an HDF5 row of the selection
    seed's test split, or None for the rule (`figures.figure5_row`); width_in: figure width in inches.
    Memory stays at one batch of maps: Figure 4's mean is streamed, Figures 5 and 6 read only the images
    and maps they show."""
    run_figures(predictions, metrics, selection_seed, figure_paths, width_in=width_in, n_bins=n_bins)
    rows = None
    for model in MODELS:
        with MapsFile(maps_paths[model]) as maps:
            if rows is not None and not np.array_equal(rows, maps.rows):
                raise ValueError(f"{maps_paths[model]}: rows differ from the other model's maps")
            rows = maps.rows
    with StudyFile(study_path) as study:
        run = selection_run(predictions, metrics, study.read(["labels", "groups", "valid"], rows), selection_seed)
    mean_by_model = {}
    for model in MODELS:
        with MapsFile(maps_paths[model]) as maps:
            mean_by_model[model] = maps.mean_over(run.labels == 1, MAPS_BATCH)
    sample, cases = shown_cases(run, case_threshold, figure5_row_index, selection_seed)
    positions = sorted(set(int(p) for p in [sample] + [case.position for case in cases]))
    with StudyFile(study_path) as study:
        images = dict(zip(positions, study.read(["image"], rows[positions]).image))
    maps_by_model = {}
    for model in MODELS:
        with MapsFile(maps_paths[model]) as maps:
            maps_by_model[model] = dict(zip(positions, maps.take(positions)))
    case_figures(run, mean_by_model, sample, cases, images, maps_by_model, figure_paths, width_in)
    return cases


def report_figures(runs_json, predictions_paths, metrics_paths, study_path, maps_paths, *, selection_seed,
                   calibration_bins, figure_paths, width_in, case_threshold, figure5_row):
    """Rule report_figures: every figure of FIGURE_IDS from every run's explain outputs
    (`runs.read_all_runs`); the options are the `report.figures` config block."""
    predictions, metrics = read_all_runs(run_pairs(runs_json), predictions_paths, metrics_paths)
    cases = paper_figures(predictions, metrics, study_path, maps_paths, selection_seed, figure_paths,
                          width_in=width_in, case_threshold=case_threshold, figure5_row_index=figure5_row,
                          n_bins=calibration_bins)
    for case in cases:
        log.info("figure 6 case %s: %s%s", case.key, case.rule, " (fallback)" if case.fallback else "")


def primary_metrics(names, metrics, twins, interventions=False):
    """The configured primary metrics (`report.statistics.primary_metrics`) this study measures: "auc" (the
    cue-free "auc_no_cue" when `twins`: a shortcut cue would otherwise carry it) and the positives metrics
    of ABLATION_METRICS that `metrics` has as columns (com_to_lesion needs lesion truth or references), and
    the follow rate (com_follow) when the study scores `interventions`; those it does not measure are
    logged and left out. An unknown name is an error."""
    known = {"auc", "auc_no_cue"} | {m for m, spec in ABLATION_METRICS.items()
                                     if spec.source in ("positives", "interventions")}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"report.statistics.primary_metrics: unknown metric(s) {unknown}; use {sorted(known)}")
    chosen = []
    for name in names:
        name = "auc_no_cue" if name == "auc" and twins else name
        measured = (name == "auc" or (name == "auc_no_cue" and twins) or name in metrics
                    or (ABLATION_METRICS[name].source == "interventions" and interventions))
        if not measured:
            log.info("ablation: primary metric %s is not measured in this study; left out", name)
        elif name not in chosen:
            chosen.append(name)
    return chosen


def report_ablation(runs, predictions_paths, metrics_paths, twin_predictions_paths=(), *, arms,
                    reference=REFERENCE_ARM, decimals, width_in, table_path, figure_path, statistics=None,
                    comparisons=None, lesion_placement=None, effects_paths=()):
    """Rule report_ablation: the ablation table (`table_path`, .csv/.md/.tex) and its forest plot
    (`figure_path`, .png/.pdf). runs: [(arm, seed)] in the order of the path lists; arms: the arms in
    table order; twin_predictions_paths: empty when the shortcut test is off. statistics (config
    `report.statistics`): the pre-specified primary metrics, compared by a hierarchical bootstrap over seeds
    and subjects with Holm's correction across them (columns boot_* and survives; none when n_boot is 0); with
    twin predictions the primary AUC is the cue-free one (auc_no_cue). comparisons (config
    `report.comparisons`): {arm: the arm it is compared with} where that is not the reference arm.
    lesion_placement: the phantom's lesion placement design (None: no phantom); "offset" adds
    lesion_vs_landmark to the primary metrics (`comparisons.design_primaries`).
    effects_paths: every run's interventions.csv (empty when the interventions are off): the follow rate
    (com_follow, `report.interventions`) joins the table and, when primary, Holm's family."""

    predictions = read_arm_runs(runs, predictions_paths, "predictions")
    metrics = read_arm_runs(runs, metrics_paths, "metrics")
    twins = read_arm_runs(runs, twin_predictions_paths, "twin predictions") if twin_predictions_paths else None
    effects = read_effects(runs, effects_paths) if len(effects_paths) else None
    seed_values = seed_level_values(predictions, metrics, twins)
    if effects is not None:
        seed_values = pd.concat([seed_values, follow_seed_values(effects)[seed_values.columns]], ignore_index=True)
    table = ablation_table(seed_values, arms, reference, comparisons)
    statistics = statistics or {}
    if statistics.get("n_boot", 0) > 0:
        primary = primary_metrics([*statistics["primary_metrics"], *design_primaries(lesion_placement)], metrics,
                                  twins is not None, effects is not None)
        bootstrap = bootstrap_comparisons(predictions, metrics, arms, reference, primary,
                                          n_boot=statistics["n_boot"], seed=statistics["seed"],
                                          alpha=statistics["alpha"], twin_predictions=twins,
                                          comparisons=comparisons,
                                          interventions=None if effects is None else follow_hips(effects))
        table = table.merge(bootstrap, on=["metric", "target", "arm"], how="left")
        log.info("ablation: %d of %d primary comparisons survive Holm's correction at %.2f",
                 int(bootstrap["survives"].sum()), len(bootstrap), statistics["alpha"])
    for warning in penalty_warnings(table):
        log.warning(warning)
    write_table(table, table_path, decimals=decimals)
    log.info("ablation: %d rows, %d arms, metrics %s", len(table), len(arms), sorted(set(table["metric"])))
    figure_ablation_forest(table, figure_path, width_in=width_in, reference=reference)


def figure_grid_stage(selection_path, history_paths, stem):
    """Rule figure_grid: Figure A1 from selection.json and the grid runs' history.csv files."""
    selection = read_selection(selection_path)
    histories = point_histories(history_paths)
    figure_grid(histories, selection, stem)
    log.info("Figure A1 from %d grid points, chosen %s", len(histories), selection["point"])


def learning_curves_stage(runs_json, history_paths, stems):
    """Rule figure_learning_curves: each run's curves from its history.csv. runs_json lists the (model,
    seed) pairs in the order of `history_paths` and `stems` (one figure stem per run)."""
    runs = [tuple(run) for run in json.loads(runs_json)]
    if not len(runs) == len(history_paths) == len(stems):
        raise ValueError(f"{len(runs)} runs, {len(history_paths)} histories and {len(stems)} figures differ")
    for (model, seed), path, stem in zip(runs, history_paths, stems):
        history = read_history(path)
        figure_learning_curves(history, f"{model}, seed {seed}: {len(history)} epochs", stem)
        log.info("learning curves of %s seed %s: %d epochs, mean %.1f s an epoch", model, seed, len(history),
                 float(np.mean(history["seconds"])) if "seconds" in history else float("nan"))


def write_throughput(runs_json, best_paths, predictions_paths, benchmark_paths, out):
    """Rule throughput: the gathered record as JSON at `out`, and one summary line in the log."""
    runs = [tuple(run) for run in json.loads(runs_json)]
    record = gather_throughput(runs, best_paths, predictions_paths, benchmark_paths)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(json_safe(record), indent=2, allow_nan=False) + "\n")
    devices = sorted({f"{e.get('device')} (GPU {e.get('gpu')}, driver {e.get('driver')}, torch {e.get('torch')})"
                      for e in record["environments"]})
    log.info("%d runs on %s: training %.1f images/s, explain %.1f images/s (whole jobs)", len(runs),
             "; ".join(devices) or "unknown devices", record["train_images_per_second"],
             record["explain_images_per_second"])
    return record


def figure_landmarks_stage(study_path, out_stem, rows=None):
    """Rule figure_landmarks: Figure 1 from the study (`rows`, else the first right and the first left hip),
    saved as `<out_stem>.png` and `.pdf`. Returns the rows shown."""
    with StudyFile(study_path) as study:
        meta = study.meta(("side",))
        rows = pick_rows(meta, rows)
        data = study.read(["image", "contour", "groups", "valid"], rows)
    figure_landmarks(data, [meta["side"][row] for row in rows], rows, out_stem)
    log.info("Figure 1 shows HDF5 rows %s", rows)
    return rows


def report_interventions(runs, effects_paths, *, arms, width_in, table_path, figure_path, n_boot=2000, boot_seed=0):
    """Rule report_interventions: every run's interventions.csv (runs: [(arm, seed)] in the paths' order)
    -> the per-arm summary table (`table_path`, .csv/.md/.tex) and the figure (`figure_path`, .png/.pdf);
    n_boot, boot_seed: its bootstrap intervals (`report.statistics`; n_boot 0: none)."""
    summary = intervention_summary(read_effects(runs, effects_paths), n_boot=n_boot, seed=boot_seed)
    write_table(summary, table_path, decimals=3)
    figure_interventions(summary, list(arms), figure_path, width_in)
    log.info("interventions: %d runs, %d summary rows", len(effects_paths), len(summary))
