"""The phantom's interventions cropped as the study crops its hips: each hip cropped as preprocessing crops it
(around its exact points, left hips flipped), the original and the intervention through the same crop and
the original's intensity window, so that the two crops differ only at the lesion. Rendered once per test
split (rule intervention_crops, `osteoloc.explain.stages.render_intervention_crops`) and scored by every run
(`osteoloc.explain.interventions`).
"""

import numpy as np
import pandas as pd

from osteoloc.io.intervention_h5 import ARRAYS
from osteoloc.names import TARGETS
from osteoloc.preprocess.geometry import preprocess_hip


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
    """side, target, kind, direction, shift_mm and lesion_targets of each intervention (the case columns the
    crops do not hold). `cases`: the interventions of one radiograph (`interventions`), so that
    lesion_targets (the targets with a lesion on the intervention's hip, space-separated: each lesion has
    a removal) is complete."""
    on_hip = {}
    for c in cases:
        on_hip.setdefault(c.side, set()).add(c.target)
    return pd.DataFrame({"side": [c.side for c in cases], "target": [c.target for c in cases],
                         "kind": [c.kind for c in cases], "direction": [c.direction for c in cases],
                         "shift_mm": [c.shift_mm for c in cases],
                         "lesion_targets": [" ".join(t for t in TARGETS if t in on_hip[c.side]) for c in cases]})
