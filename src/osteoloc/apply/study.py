"""The finished study an apply run reads, read only: its trained models, its settings, and the refusal of a
new cohort whose settings differ (docs/apply.md).

A study's results folder (`study.results` of the run that made it) holds what this module needs:
`preprocess/study.h5` (crop size, spacing, targets and landmark groups as attributes), `train/<model>/
seed<k>/best.pt` for every trained model (the paper's two and any arm), `explain/<model>/seed<k>/
predictions.csv` (the study's own evaluation, written last for every run) and, where BoneFinder placed the
landmarks, `cohort/bonefinder/manifest.csv`. Nothing here opens a file for writing.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from osteoloc.io.study_h5 import StudyFile
from osteoloc.names import MODELS

STUDY_H5 = Path("preprocess", "study.h5")
BONEFINDER_MANIFEST = Path("cohort", "bonefinder", "manifest.csv")
SEED_FOLDER = re.compile(r"seed(\d+)")
# The settings a new cohort must share with the study: the apply config's key for each.
COMPARED = {"crop_size": "preprocess.crop_size", "spacing_mm": "preprocess.spacing_mm",
            "targets": "preprocess.groups (targets)", "groups": "preprocess.groups (landmark indices)",
            "landmark_source": "cohort.bonefinder.command (landmark source)"}
SPACING_TOLERANCE_MM = 1e-6  # a spacing written back from a float32 attribute is the same spacing


class StudyNotFinished(ValueError):
    """The folder is not a finished study's results (the message names the file that is missing)."""


class SettingsMismatch(ValueError):
    """The new cohort's settings differ from the study's (the message names each setting and both values)."""


@dataclass(frozen=True)
class Run:
    """One trained model of the study: its name (baseline, prior or an arm), seed and files."""

    model: str
    seed: int
    checkpoint: Path  # train/<model>/seed<k>/best.pt
    predictions: Path  # explain/<model>/seed<k>/predictions.csv: the study's own test predictions


@dataclass(frozen=True)
class FinishedStudy:
    folder: Path
    study_h5: Path
    runs: tuple  # Run, models in the paper's order then arms alphabetically, seeds ascending
    settings: dict  # COMPARED's keys

    def checkpoint(self, model, seed):
        return next(run.checkpoint for run in self.runs if run.model == model and run.seed == int(seed))

    @property
    def models(self):
        return list(dict.fromkeys(run.model for run in self.runs))


def landmark_source(bonefinder):
    """Where a cohort's landmarks come from: BoneFinder run by the workflow, or points given with the images."""
    return "bonefinder" if bonefinder else "given points"


def study_file_settings(study_h5):
    """Crop size (px), spacing (mm), targets and landmark groups of a study HDF5: the one place that reads
    them for the apply stage."""
    with StudyFile(study_h5) as study:
        return {"crop_size": study.crop_size, "spacing_mm": study.spacing_mm, "targets": list(study.targets),
                "groups": {t: list(study.group_indices[t]) for t in study.targets}}


def _model_order(model):
    return (0, MODELS.index(model), "") if model in MODELS else (1, 0, model)


def finished_study(folder):
    """The study of results folder `folder`, checked to have finished: its study HDF5, a `best.pt` for every
    model and seed it trained (the paper's two at least, every model with the same seeds) and the explain
    predictions of each. Raises StudyNotFinished naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyNotFinished(f"{folder}: no such study results folder")
    study_h5 = folder / STUDY_H5
    if not study_h5.is_file():
        raise StudyNotFinished(f"{study_h5}: missing, so {folder} is not a finished study's results folder")
    seeds_of = {}
    for model_dir in sorted(p for p in (folder / "train").glob("*") if p.is_dir()):
        for seed_dir in sorted(p for p in model_dir.glob("seed*") if p.is_dir()):
            if match := SEED_FOLDER.fullmatch(seed_dir.name):
                seeds_of.setdefault(model_dir.name, []).append(int(match.group(1)))
    missing_models = [m for m in MODELS if m not in seeds_of]
    if missing_models:
        raise StudyNotFinished(f"{folder / 'train'}: no trained {' or '.join(missing_models)} model: the study "
                               "has not finished (or this is not a study's results folder)")
    reference = sorted(seeds_of[MODELS[0]])
    runs = []
    for model in sorted(seeds_of, key=_model_order):
        if sorted(seeds_of[model]) != reference:
            raise StudyNotFinished(f"{folder / 'train' / model}: seeds {sorted(seeds_of[model])}, the baseline's "
                                   f"are {reference}: the study has not finished")
        for seed in sorted(seeds_of[model]):
            run = Run(model, seed, folder / "train" / model / f"seed{seed}" / "best.pt",
                      folder / "explain" / model / f"seed{seed}" / "predictions.csv")
            for path, what in ((run.checkpoint, "trained"), (run.predictions, "explained")):
                if not path.is_file():
                    raise StudyNotFinished(f"{path}: missing, model {model} seed {seed} was not {what}: the "
                                           "study has not finished")
            runs.append(run)
    settings = study_file_settings(study_h5) | {
        "landmark_source": landmark_source((folder / BONEFINDER_MANIFEST).is_file())}
    return FinishedStudy(folder, study_h5, tuple(runs), settings)


def cohort_settings(config):
    """The settings the apply run's config gives the new cohort (COMPARED's keys)."""
    groups = {t: [int(i) for i in v] for t, v in config["preprocess"]["groups"].items()}
    return {"crop_size": int(config["preprocess"]["crop_size"]),
            "spacing_mm": float(config["preprocess"]["spacing_mm"]), "targets": sorted(groups),
            "groups": groups,
            "landmark_source": landmark_source(bool(config["cohort"].get("bonefinder", {}).get("command")))}


def mismatches(study_settings, new_settings):
    """One line per differing setting: its name, the study's value and the new cohort's."""
    lines = []
    for key, name in COMPARED.items():
        ours, theirs = study_settings[key], new_settings[key]
        if key == "targets":
            same = sorted(ours) == sorted(theirs)
        elif key == "spacing_mm":
            same = abs(float(ours) - float(theirs)) <= SPACING_TOLERANCE_MM
        elif key == "groups":
            same = all(list(ours[t]) == list(theirs[t]) for t in set(ours) & set(theirs))  # targets: line above
        else:
            same = ours == theirs
        if not same:
            lines.append(f"{name}: the study's is {ours!r}, the new cohort's {theirs!r}")
    return lines


def check_folders(study_folder, results_folder):
    """Refuse an apply run whose results folder is the study's, inside it, or holds it: the study's results
    are never written."""
    study, results = Path(study_folder).resolve(), Path(results_folder).resolve()
    if results == study or study in results.parents or results in study.parents:
        raise ValueError(f"the apply run's results folder {results_folder} and the study's {study_folder} "
                         "overlap: give the apply run a folder of its own (the study's results are never written)")


def checked_study(study_folder, config):
    """The finished study of `study_folder`, after refusing an unfinished study, overlapping folders or any
    setting of `config` (the apply run's) that differs from the study's (SettingsMismatch naming each)."""
    check_folders(study_folder, config["study"]["results"])
    study = finished_study(study_folder)
    lines = mismatches(study.settings, cohort_settings(config))
    if lines:
        raise SettingsMismatch(f"the new cohort's settings differ from the study's ({study.folder}); its models "
                               "apply only to crops made the way they were trained on:\n  " + "\n  ".join(lines))
    return study
