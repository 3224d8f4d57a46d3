"""The phantom's interventions cropped as the study crops its hips: each hip cropped as preprocessing crops it
(around its exact points, left hips flipped), the original and the intervention through the same crop and
the original's intensity window, so that the two crops differ only at the lesion. Rendered once per test
split (rule intervention_crops) and scored by every run (`osteoloc.explain.interventions`).
"""

import logging

import numpy as np
import pandas as pd

from osteoloc.cohort.phantom.cohort import Plan
from osteoloc.cohort.phantom.interventions import interventions
from osteoloc.io.intervention_h5 import ARRAYS, CASE_COLUMNS, write_intervention_crops
from osteoloc.io.study_h5 import StudyFile
from osteoloc.preprocess.geometry import preprocess_hip
from osteoloc.train.splits import read_split

log = logging.getLogger(__name__)


def crop_pair(case, crop_size, spacing_mm):
    """(original crop, intervention crop, original mask, intervention mask, contour) in crop pixels, both
    images in the original crop's intensity window; masks (S, S) bool (intervention's all False when
    removed)."""
    spacing = (case.spacing, case.spacing)
    points = case.points_mm / case.spacing  # image mm -> source pixels (x, y)
    masks = np.stack([case.original_mask, case.mask if case.mask is not None
                      else np.zeros_like(case.original_mask)]).astype(np.uint8)
    first = preprocess_hip(case.original, spacing, points, case.side, crop_size, spacing_mm,
                           layers={"lesions": masks})
    second = preprocess_hip(case.image, spacing, points, case.side, crop_size, spacing_mm)
    (p5, p95), (q5, q95) = first.intensity, second.intensity
    raw = second.image * (q95 - q5) + q5
    image = ((raw - p5) / (p95 - p5)).astype(np.float32)
    lesions = first.layers["lesions"]
    return first.image, image, lesions[0] > 0, lesions[1] > 0, first.contour


def crop_pairs(cases, crop_size, spacing_mm):
    """{name: stacked array} of `crop_pair` over `cases` (io.intervention_h5.ARRAYS): what the
    measurement needs of each intervention, without the radiographs."""
    pairs = [crop_pair(case, crop_size, spacing_mm) for case in cases]
    names = ARRAYS  # crop_pair's order
    if not pairs:
        return {name: np.zeros((0, crop_size, crop_size), bool if name in ("mask", "moved") else np.float32)
                for name in names[:4]} | {"contour": np.zeros((0, 0, 2), np.float32)}
    return {name: np.stack([pair[i] for pair in pairs]) for i, name in enumerate(names)}


def case_table(cases):
    """side, target, kind, shift_mm of each intervention (the case columns the crops do not hold)."""
    return pd.DataFrame({"side": [c.side for c in cases], "target": [c.target for c in cases],
                         "kind": [c.kind for c in cases], "shift_mm": [c.shift_mm for c in cases]})


def render_intervention_crops(study_path, split_path, *, phantom_config, shifts_mm, radiographs, out_path):
    """Rule intervention_crops: the interventions on the lesions of the test hips of one split (the first
    `radiographs` test subjects in study order, every visit), redrawn and cropped once for every run scored
    on that split; written to out_path (io.intervention_h5). phantom_config: the `cohort.phantom` block the
    cohort was drawn with (the radiographs are redrawn)."""
    plan = Plan(phantom_config)
    index = {subject: i for i, (_, subject, _) in enumerate(plan.ids)}
    with StudyFile(study_path) as study:
        rows = study.rows_in_split(read_split(split_path), "test")
        meta = study.meta(("subject", "visit", "side"), rows)
        crop_size, spacing_mm = study.crop_size, study.spacing_mm
    test_hips = set(zip(meta["subject"], meta["side"]))  # splits are by subject: every visit is a test visit
    subjects = list(dict.fromkeys(meta["subject"]))[:int(radiographs)]
    tables, parts = [], []
    for subject in subjects:
        if subject not in index:
            raise ValueError(f"{study_path}: test subject {subject} is not in the phantom the config draws "
                             "(cohort.phantom must be the cohort's own config)")
        for v in range(plan.n_visits):
            cases = interventions(phantom_config, index[subject], v, tuple(shifts_mm), plan=plan)
            cases = [c for c in cases if (subject, c.side) in test_hips]
            if cases:
                tables.append(case_table(cases).assign(subject=subject, visit=v))
                parts.append(crop_pairs(cases, crop_size, spacing_mm))
    if tables:
        table = pd.concat(tables, ignore_index=True)[CASE_COLUMNS]
        arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    else:
        table, arrays = pd.DataFrame(columns=CASE_COLUMNS), crop_pairs([], crop_size, spacing_mm)
    write_intervention_crops(out_path, table, arrays)
    log.info("%d interventions on %d test radiographs -> %s", len(table), len(subjects), out_path)
    return table
