"""Localisation by intervention (osteoloc.cohort.phantom.interventions): a lesion removed, moved along its
zone or moved to another site changes the radiograph only at the lesion."""

import math

import numpy as np
import pytest
from scipy import ndimage

from osteoloc.cohort.phantom.cohort import Plan, stage_radiograph
from osteoloc.cohort.phantom.interventions import KINDS, interventions
from osteoloc.cohort.phantom.render import fill, render
from osteoloc.names import TARGETS

CONFIG = {"seed": 3, "subjects": 2, "broken_fraction": 0.0, "prevalence": {t: 0.9 for t in TARGETS}}


@pytest.fixture(scope="module")
def cases():
    return interventions(CONFIG, 0, shifts_mm=(-4.0, 4.0))


def test_the_replayed_original_is_the_cohorts_radiograph(cases):
    staged = stage_radiograph(Plan(CONFIG), 0, 0)
    np.testing.assert_array_equal(cases[0].original, render(staged.scene, staged.look, staged.rng).image)


def test_intervention_renders_differ_from_the_original_only_at_the_lesion(cases):
    staged = stage_radiograph(Plan(CONFIG), 0, 0)
    shape, spacing = staged.scene.shape, staged.scene.spacing
    reach = math.ceil(4 * staged.look.blur_mm / spacing) + 1  # scipy's Gaussian stops at 4 sd
    assert {c.kind for c in cases} == set(KINDS) and len({(c.side, c.target) for c in cases}) >= 4
    for case in cases:
        changed = case.image != case.original
        assert changed.any(), (case.side, case.target, case.kind)
        outline = fill([case.original_polygon], shape, spacing) > 0
        if case.polygon is not None:
            outline |= fill([case.polygon], shape, spacing) > 0
        near = ndimage.binary_dilation(outline, iterations=reach)
        assert not (changed & ~near).any(), (case.side, case.target, case.kind)


def test_removed_lesions_leave_no_mask_and_moved_ones_move_by_about_the_shift(cases):
    for case in cases:
        if case.kind == "removed":
            assert case.mask is None and math.isnan(case.mask_shift_mm)
        elif case.kind == "moved" and case.target.startswith("osteo_fem"):
            # a femoral bump slides along the head: its truth mask follows within a pixel or so
            assert case.mask_shift_mm == pytest.approx(abs(case.shift_mm), abs=1.5)
        elif case.kind == "other_site":
            assert case.shift_mm > 30  # the other site is centimetres away
