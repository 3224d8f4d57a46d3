"""The training stage's entry points, one per rule of workflow/rules/train.smk: the subject split, the
prior's grid-search selection and one training run."""

import json
import logging

from osteoloc.io.atomic import write_csv
from osteoloc.io.study_h5 import StudyFile
from osteoloc.train.grid import (point_histories, point_loss, point_values, read_selection, run_point,
                                 selection_record, selection_round, write_selection)
from osteoloc.train.loop import train_run
from osteoloc.train.settings import TrainSettings
from osteoloc.train.splits import check_split, make_split, read_split

log = logging.getLogger(__name__)


def split_stage(study_path, out, user_split=None, fractions=(0.70, 0.15, 0.15), seed=0, test_seed=None):
    """Rule `split`: the user's split file when given, else a seeded split of the study's subjects (its test
    subjects drawn by `test_seed` when given: one held-out test set for every seed); checked against the
    study and written to `out` (contracts.md section 3)."""
    with StudyFile(study_path) as study:
        people = study.meta(("subject", "cohort"))  # an id two cohorts use is two people (splits.people)
    subjects, cohorts = list(people["subject"]), list(people["cohort"])
    if user_split:
        split, source = read_split(user_split), str(user_split)
    else:
        split = make_split(subjects, fractions, seed=seed, test_seed=test_seed, cohorts=cohorts)
        source = f"seeded split (seed {seed}" + ("" if test_seed is None else f", test set of seed {test_seed}") + ")"
    split = check_split(split, subjects, source=source, cohorts=cohorts)
    log.info("%s: %s", source, split["split"].value_counts().to_dict())
    write_csv(split, out)
    return split


def select_round_stage(history_paths, criterion, steps, round_index, max_rounds, out_path):
    """Rule select_prior_round: one selection round over the grid runs' histories -> its JSON record."""
    losses = {point: point_loss(history, criterion) for point, history in point_histories(history_paths).items()}
    write_selection(selection_round(losses, steps, round_index, max_rounds), out_path)


def select_prior_stage(round_paths, criterion, out_path):
    """Rule select_prior: selection.json from every round's record, in round order."""
    write_selection(selection_record([read_selection(path) for path in round_paths], criterion), out_path)


def train_stage(h5_path, split_path, training_json, seed, point, *, selection_path=None, history_path, best_path,
                last_path, reuse_best=None, reuse_history=None, tensorboard_dir=None):
    """Rules train_grid_point and train: one run of the `training` block (JSON: `settings.training_block` plus
    the arm's keys) with the prior's values of grid point id `point` (`grid.point_id`), or, when `point` is
    empty, of the point chosen in `selection_path` (`grid.run_point`). reuse_best, reuse_history: the chosen
    grid point's run, copied instead of trained again when its settings are these (`loop.train_run`);
    tensorboard_dir: where `train.logger: tensorboard` writes its events (None: no events)."""
    prior = point_values(run_point(point, selection_path))
    settings = TrainSettings.for_run(json.loads(training_json), seed, prior)
    reuse = (reuse_best, reuse_history) if reuse_best else None
    train_run(h5_path, split_path, settings, history_path=history_path, best_path=best_path, last_path=last_path,
              reuse=reuse, tensorboard_dir=tensorboard_dir)
