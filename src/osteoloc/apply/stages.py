"""The apply stage's entry points, one per rule of workflow/rules/apply.smk (docs/apply.md).

The new cohort is checked and preprocessed by the study's own rules into the apply run's results folder;
then every trained model of the finished study (read only) is run on every hip of it by the explain stage's
`explain_run` (the same forward pass that gives predictions and Grad-CAM maps, the same maps file and
metrics), so a hip of the study's own test split gets the very probability the study's evaluation gave it.
"""

import json
import logging

import pandas as pd

from osteoloc.apply.ensemble import read_ensemble, write_probabilities
from osteoloc.apply.evaluate import evaluate
from osteoloc.apply.gallery import hips_of, write_gallery, write_pictures
from osteoloc.explain.stages import explain_run
from osteoloc.io.atomic import write_csv
from osteoloc.io.runs import read_runs
from osteoloc.io.study_h5 import StudyFile

log = logging.getLogger(__name__)
WHOLE_COHORT = "test"  # the split every hip of the new cohort is put in: explain_run scores a test split


def whole_cohort_split(study_path, split_path):
    """A split file (contracts.md section 3) putting every subject of the new cohort's study in the test split."""
    with StudyFile(study_path) as study:
        subjects = list(dict.fromkeys(study.subjects()))
    write_csv(pd.DataFrame({"subject": subjects, "split": WHOLE_COHORT}), split_path)


def apply_run(study_path, split_path, checkpoint_path, *, predictions_path, maps_path, metrics_path, batch_size,
              pointing_tolerance_mm, peak, control_sigma_mm, device):
    """One trained model of the study on every hip of the new cohort: explain's predictions, maps and metrics."""
    result = explain_run(study_path, split_path, checkpoint_path, predictions_path=predictions_path,
                         maps_path=maps_path, metrics_path=metrics_path, batch_size=batch_size,
                         pointing_tolerance_mm=pointing_tolerance_mm, peak=peak, control_sigma_mm=control_sigma_mm,
                         device=device)
    log.info("applied %s to %d hips", checkpoint_path, len(result["rows"]))
    return result


def _runs(runs_json, paths):
    return dict(zip([tuple(run) for run in json.loads(runs_json)], paths))


def _models(runs_json):
    return list(dict.fromkeys(model for model, _ in json.loads(runs_json)))


def apply_probabilities(runs_json, predictions_paths, *, probabilities_path, ensemble_path):
    """Every run's probabilities in one long table and the seed ensemble per hip, target and model."""
    probabilities = read_runs(_runs(runs_json, predictions_paths), "predictions")
    return write_probabilities(probabilities, _models(runs_json), probabilities_path, ensemble_path)


def apply_evaluate(runs_json, probabilities_path, metrics_paths, ensemble_path, *, n_boot, boot_seed,
                   calibration_bins, decimals, width_in, table_stems, figure_stem):
    """The external evaluation's tables and reliability diagram (`apply.evaluate`)."""
    probabilities = pd.read_csv(probabilities_path, dtype={"subject": str, "visit": str}, keep_default_na=False)
    metrics = read_runs(_runs(runs_json, metrics_paths), "metrics")
    return evaluate(probabilities, metrics, read_ensemble(ensemble_path), n_boot=n_boot, boot_seed=boot_seed,
                    calibration_bins=calibration_bins, decimals=decimals, width_in=width_in,
                    table_stems=table_stems, figure_stem=figure_stem)


def apply_gallery(runs_json, study_path, ensemble_path, maps_paths, out_dir, *, title, note, batch_size,
                  full_scale, map_alpha):
    """The gallery's pictures and page under out_dir (index.html); returns the page's path."""
    maps = {}
    for (model, _), path in _runs(runs_json, maps_paths).items():
        maps.setdefault(model, []).append(path)
    n = write_pictures(study_path, maps, out_dir, batch_size=batch_size, full_scale=full_scale, alpha=map_alpha)
    page = write_gallery(hips_of(read_ensemble(ensemble_path)), list(maps), out_dir, title, note)
    log.info("gallery of %d hip-target entries: %s", n, page)
    return page
