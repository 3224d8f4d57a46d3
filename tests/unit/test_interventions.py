"""Localisation by intervention: a lesion removed, moved along its zone or moved to another site changes the
radiograph only at the lesion (osteoloc.cohort.phantom.interventions), and the measurement of whether a
map follows it (osteoloc.explain.interventions)."""

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from helpers import ABLATION_SEEDS, run_frames, train_settings

from osteoloc.cohort.phantom.cohort import Plan, make_cohort, stage_radiograph
from osteoloc.cohort.phantom.interventions import DIRECTIONS, KINDS, interventions, moves
from osteoloc.cohort.phantom.render import fill, host_coverage, lesion_coverage, lesion_window, render
from osteoloc.explain import interventions as effects_module
from osteoloc.explain.intervention_crops import case_table, crop_pair, crop_pairs
from osteoloc.explain.interventions import EFFECT_COLUMNS, ROLES, lesion_map, pair_effects
from osteoloc.explain.stages import explain_interventions, render_intervention_crops
from osteoloc.io.intervention_h5 import read_intervention_crops
from osteoloc.names import TARGETS
from osteoloc.preprocess.stages import preprocess_study
from osteoloc.report.ablation import ablation_table, bootstrap_comparisons, seed_level_values
from osteoloc.report.interventions import follow_hips, follow_seed_values, intervention_summary
from osteoloc.report.stages import report_interventions
from osteoloc.report.stats import holm
from osteoloc.train.model import build_model, load_trained_model

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


def test_removed_lesions_leave_no_mask_and_moved_ones_move_by_the_shift(cases):
    for case in cases:
        if case.kind == "removed":
            assert case.mask is None and math.isnan(case.mask_shift_mm)
        elif case.kind == "moved":
            assert case.direction == "along" and case.mask.any()
            assert case.mask_shift_mm == pytest.approx(abs(case.shift_mm), rel=0.1)
        elif case.kind == "other_site":
            assert case.shift_mm > 30 and case.mask.any()  # the other site is centimetres away


CELL_MOVES = (-15.0, -7.5, 7.5, 15.0)  # one and half a 15 mm map cell, both ways


def _mask_crop(scene, lesion, bone):
    """(mask, (row, col) of its corner): the lesion's truth mask as the renderer draws it, in a crop around
    the lesion (lesion_window) wide enough to hold it."""
    window = lesion_window(scene, lesion.polygon)
    return lesion_coverage(scene, lesion, bone, window) >= 0.5, window[::2]


def render_window(scene, corner, shape):
    return slice(corner[0], corner[0] + shape[0]), slice(corner[1], corner[1] + shape[1])


def _attached(mask, host):
    """Whether a lesion mask touches its host bone (within 2 px)."""
    return bool((ndimage.binary_dilation(mask, iterations=2) & host).any())


def test_moves_of_half_and_one_cell_keep_the_lesion_and_move_it_by_the_asked_distance():
    """Over more than 200 moved lesions per target (both placement designs; along and across; 7.5 and 15 mm
    both ways), every moved lesion's truth mask as the renderer draws it (render.lesion_coverage) is
    non-empty and its centroid moved by the asked distance within 10 %; a move along the zone keeps a
    lesion that grows from its bone on it."""
    config = {"seed": 5, "subjects": 16, "broken_fraction": 0.0, "prevalence": {t: 0.9 for t in TARGETS}}
    counts, ratios = Counter(), []
    for design in ("landmark", "offset"):
        plan = Plan({**config, "lesion_placement": {"design": design}})
        for i in range(9):
            staged = stage_radiograph(plan, i, 0)
            scene, bone = staged.scene, host_coverage(staged.scene)
            for s, t, direction, asked, lesion, reported in moves(staged, CELL_MOVES, DIRECTIONS):
                before, after = (_mask_crop(scene, x, bone) for x in (scene.lesions[(s, t)], lesion))
                assert after[0].any(), (design, i, s, TARGETS[t], direction, asked)
                shift = np.linalg.norm(np.subtract(*(np.add(ndimage.center_of_mass(m), corner)
                                                     for m, corner in (after, before)))) * scene.spacing
                ratios.append(shift / abs(asked))
                assert shift == pytest.approx(abs(asked), rel=0.1), (design, i, s, TARGETS[t], direction, asked)
                assert reported == pytest.approx(shift, abs=1e-6)
                grows_from_bone = not any(scene.lesions[(s, t)].host_shift)  # not moved across by the placement
                if direction == "along" and grows_from_bone:
                    for mask, corner in (before, after):
                        window = render_window(scene, corner, mask.shape)
                        assert _attached(mask, bone[lesion.host][window] >= 0.5), (design, i, s, TARGETS[t], asked)
                counts[TARGETS[t]] += 1
    assert set(counts) == set(TARGETS) and min(counts.values()) > 200, counts
    assert np.std(ratios) < 0.02  # calibrated, not merely within the tolerance


def test_rendered_moves_are_the_calibrated_ones():
    """interventions() renders the calibrated moves: its masks move by the asked distance, across too."""
    cases = interventions(CONFIG, 0, shifts_mm=(-15.0, 7.5), directions=DIRECTIONS)
    moved = [c for c in cases if c.kind == "moved"]
    assert {c.direction for c in moved} == set(DIRECTIONS) and len(moved) >= 16
    for case in moved:
        assert case.mask_shift_mm == pytest.approx(abs(case.shift_mm), rel=0.1), (case.target, case.direction)


# -- the measurement (osteoloc.explain.interventions) --------------------------------------------------------

def intervention_effects(model, cases, crop_size, spacing_mm, groups):
    """pair_effects of the renders `cases`, cropped as rule intervention_crops crops them."""
    return pair_effects(model, case_table(cases), crop_pairs(cases, crop_size, spacing_mm), crop_size, spacing_mm,
                        groups)


GROUPS = {"osteo_fem_sup": [13, 78, 14, 15], "osteo_fem_inf": [19, 20, 21], "osteo_acet_sup": [67],
          "osteo_acet_inf": [71]}


def _fake_model(monkeypatch, cases, make_map):
    """predict_maps replaced by maps made from the crops' lesion masks (make_map(mask, contour) per target:
    an original's map of each target from that target's lesion on the hip, an intervention's from its
    moved lesion, the hip's other lesions as in the original; an all-zero mask where no lesion is)."""
    crops = [crop_pair(case, 64, 1.4) for case in cases]
    originals, renders = {}, {}
    for case, (original, image, mask, moved, contour) in zip(cases, crops):
        originals.setdefault(original.tobytes(), {})[case.target] = (mask, contour)
        renders[image.tobytes()] = (original.tobytes(), case.target, moved)
    monkeypatch.setattr(effects_module, "map_grid", lambda model, size: (2, 2))
    monkeypatch.setattr(effects_module, "map_windows", lambda *args: None)

    def target_maps(lesions, contour):
        return np.stack([make_map(lesions.get(t, np.zeros((64, 64), bool)), contour) for t in TARGETS])

    def predict(model, images, groups, valid):
        maps = []
        for image in images[:, 0].numpy():
            key = image.tobytes()
            if key in originals:
                masks = {t: m for t, (m, _) in originals[key].items()}
                contour = next(iter(originals[key].values()))[1]
            else:
                original, target, moved = renders[key]
                masks = {t: m for t, (m, _) in originals[original].items()} | {target: moved}
                contour = next(iter(originals[original].values()))[1]
            maps.append(target_maps(masks, contour))
        return torch.zeros(len(maps), 4), torch.from_numpy(np.stack(maps).astype(np.float32))

    monkeypatch.setattr(effects_module, "predict_maps", predict)


def test_a_map_on_the_lesion_follows_it_and_a_map_on_the_landmark_does_not(cases, monkeypatch):
    moved = [c for c in cases if c.kind == "moved" and c.target.startswith("osteo_fem")]
    _fake_model(monkeypatch, moved, lambda mask, contour: mask.astype(np.float32))
    follows = intervention_effects(None, moved, 64, 1.4, GROUPS)
    assert list(follows.columns) == EFFECT_COLUMNS and follows["case"].nunique() == len(moved)
    follows = follows[follows["role"] == "lesion"]
    assert len(follows) == len(moved)
    assert follows["mask_shift_mm"].gt(0).all()
    np.testing.assert_allclose(follows["com_follow"], 1.0, atol=1e-6)

    def on_landmark(mask, contour):
        heatmap = np.zeros((64, 64), np.float32)
        x, y = np.round(contour[13]).astype(int)
        heatmap[y, x] = 1.0
        return heatmap

    _fake_model(monkeypatch, moved, on_landmark)
    stays = intervention_effects(None, moved, 64, 1.4, GROUPS)
    np.testing.assert_allclose(stays["com_follow"], 0.0, atol=1e-9)
    assert (stays["com_shift_mm"] == 0).all()


def test_crops_of_an_intervention_differ_from_the_original_only_near_the_lesion(cases):
    for case in cases:
        original, image, mask, moved, _ = crop_pair(case, 64, 1.4)
        changed = np.abs(image - original) > 1e-5
        near = ndimage.binary_dilation(mask | moved, iterations=4)
        assert changed.any() and not (changed & ~near).any(), (case.side, case.target, case.kind)


def test_a_real_model_runs_on_the_interventions(cases):
    torch.manual_seed(0)
    model = build_model(weights="none").eval()
    with torch.no_grad():
        model.fc.weight.abs_()  # positive head: non-zero maps
    table = intervention_effects(model, cases[:5], 64, 1.4, GROUPS)
    assert table["case"].nunique() == 5 and table["logit_change"].notna().all()
    assert table.loc[table["kind"] == "removed", "com_follow"].isna().all()
    assert set(table["role"]) <= set(ROLES) and (table["role"] == "lesion").sum() == 5


def test_the_stage_functions_run_on_a_phantom_study(tmp_path):
    """explain_interventions on a preprocessed two-subject phantom study (both subjects in the test split)
    with an untrained network, then report_interventions over two such runs."""
    folder = tmp_path / "cohort"
    make_cohort(CONFIG, folder)
    preprocess_study(folder / "manifest.csv", folder / "labels.csv", tmp_path / "study.h5", tmp_path / "excl.csv",
                     truth_path=folder / "truth.h5", crop_size=64, spacing_mm=1.4, max_excluded_fraction=1.0,
                     groups=GROUPS)
    subjects = pd.read_csv(folder / "manifest.csv")["subject"].unique()
    pd.DataFrame({"subject": subjects, "split": "test"}).to_csv(tmp_path / "split.csv", index=False)
    torch.manual_seed(0)
    model = build_model(weights="none")
    with torch.no_grad():
        model.fc.weight.abs_()
    torch.save({"state_dict": model.state_dict(), "config": train_settings().as_dict()}, tmp_path / "best.pt")
    rendered = render_intervention_crops(tmp_path / "study.h5", tmp_path / "split.csv", phantom_config=CONFIG,
                                         shifts_mm=[3.0], radiographs=1, directions=["along"],
                                         out_path=tmp_path / "crops.h5")
    cases, arrays = read_intervention_crops(tmp_path / "crops.h5")
    pd.testing.assert_frame_equal(cases, rendered.astype({"visit": int}), check_dtype=False)
    assert arrays["original"].shape == (len(cases), 64, 64) and arrays["mask"].dtype == bool
    table = explain_interventions(tmp_path / "crops.h5", tmp_path / "best.pt", groups=GROUPS, peak="cell_centre",
                                  device="cpu", out_path=tmp_path / "interventions.csv",
                                  study_path=tmp_path / "study.h5")
    assert table["case"].nunique() == len(cases) > 0 and set(table["subject"]) == {subjects[0]}
    assert set(table["kind"]) == set(KINDS)
    # the same crops scored directly from the renders give the same effects
    first = [i for i, (_, subject, _) in enumerate(Plan(CONFIG).ids) if subject == subjects[0]][0]
    direct = intervention_effects(load_trained_model(tmp_path / "best.pt", "cpu"),
                                  interventions(CONFIG, first, shifts_mm=(3.0,)), 64, 1.4, GROUPS)
    pd.testing.assert_frame_equal(table.drop(columns=["subject", "visit"]), direct, atol=1e-5)
    report_interventions([["prior", 0], ["baseline", 0]], [tmp_path / "interventions.csv"] * 2,
                         arms=["baseline", "prior"], width_in=7.0, table_path=tmp_path / "report" / "interventions.csv",
                         figure_path=tmp_path / "report" / "interventions_figure.png")
    summary = pd.read_csv(tmp_path / "report" / "interventions.csv")
    assert set(summary["quantity"]) == {"com_follow", "peak_follow", "logit_change"}
    assert set(summary["role"]) == {"lesion", "receiving", "unaffected"} and summary["n_undefined"].notna().all()
    assert (tmp_path / "report" / "interventions_figure.pdf").stat().st_size > 1000


# -- chance, ceiling, all-zero maps and the comparison in Holm's family ---------------------------------------

@pytest.fixture(scope="module")
def cell_moves():
    """Moves of half and one 15 mm cell, along and across, of one radiograph's lesions."""
    return [c for c in interventions(CONFIG, 0, shifts_mm=CELL_MOVES, directions=DIRECTIONS) if c.kind == "moved"]


def _effects_of(monkeypatch, cases, make_map, cells):
    _fake_model(monkeypatch, cases, make_map)
    monkeypatch.setattr(effects_module, "map_grid", lambda model, size: cells)
    return intervention_effects(None, cases, 64, 1.4, GROUPS)


def test_the_lesion_driven_oracle_scores_the_ceiling_and_an_image_blind_map_the_chance(cell_moves, monkeypatch):
    """At 3 x 3 and 6 x 6 cells (30 and 15 mm on the 64 px, 1.4 mm crop): a model whose maps are the oracle
    follows by exactly the ceiling, which lies between chance and 1 and rises with the grid; an image-blind
    map (constant, or on the landmark) follows by exactly the chance level, 0; false following's ceiling is 0."""
    ceilings = {}
    for cells in ((3, 3), (6, 6)):
        oracle = _effects_of(monkeypatch, cell_moves, lambda mask, contour: lesion_map(mask, cells), cells)
        own = oracle[oracle["role"] == "lesion"]
        assert len(own) == len(cell_moves) and set(own["direction"]) == set(DIRECTIONS)
        inside = own["mask_shift_mm"].notna()  # a lesion moved out of the crop has no move to follow
        assert inside.mean() > 0.9 and own.loc[~inside, "com_follow_chance"].isna().all()
        own = own[inside]
        for name in ("com_follow", "peak_follow"):
            np.testing.assert_allclose(own[name], own[f"{name}_ceiling"], atol=1e-9)
            np.testing.assert_allclose(own[f"{name}_chance"], 0.0, atol=1e-9)
        unaffected = oracle[(oracle["role"] == "unaffected") & oracle["mask_shift_mm"].notna()]
        assert len(unaffected) > 0
        np.testing.assert_allclose(unaffected["com_follow_ceiling"], 0.0, atol=1e-9)
        ceilings[cells] = own["com_follow_ceiling"].mean()
        blind = _effects_of(monkeypatch, cell_moves, lambda mask, contour: np.full((64, 64), 0.5, np.float32), cells)
        blind = blind[blind["mask_shift_mm"].notna()]
        np.testing.assert_allclose(blind["com_follow"], blind["com_follow_chance"], atol=1e-9)
        np.testing.assert_allclose(blind["com_follow"], 0.0, atol=1e-9)
    print("com_follow ceiling per cells:", ceilings)
    assert 0.2 < ceilings[(3, 3)] < ceilings[(6, 6)] < 1.0, ceilings


def test_an_all_zero_map_is_the_uniform_map_and_is_counted(cases, monkeypatch):
    moved = [c for c in cases if c.kind == "moved"][:4]
    flat = _effects_of(monkeypatch, moved, lambda mask, contour: np.zeros((64, 64), np.float32), (3, 3))
    assert (flat["maps_undefined"] == 2).all()
    np.testing.assert_allclose(flat["com_follow"], 0.0, atol=1e-12)  # scored (the uniform map's), not NaN
    summary = intervention_summary(flat.assign(model="prior", seed=0, subject="s0"), n_boot=0)
    follows = summary[summary["quantity"] == "com_follow"]
    assert (follows["n_undefined"] == follows["n"]).all() and (follows["undefined_share"] == 1).all()
    assert follows["n"].sum() == len(flat[flat["kind"] == "moved"])


def _synthetic_effects(follow):
    """interventions.csv rows of runs of arms with the given mean follow rates: 3 seeds, 8 subjects, two
    moved lesions per subject and target."""
    rng = np.random.default_rng(0)
    rows = []
    for arm, mean in follow.items():
        for seed in ABLATION_SEEDS:
            for i in range(8):
                for t, target in enumerate(TARGETS):
                    for k in range(2):
                        rows.append({"model": arm, "seed": seed, "subject": f"s{i:02d}", "target": target,
                                     "case": 8 * (i * 4 + t) + k, "kind": "moved", "role": "lesion",
                                     "com_follow": mean + 0.1 * rng.standard_normal(), "com_follow_chance": 0.0,
                                     "com_follow_ceiling": 0.6, "maps_undefined": int(k == 1 and i == 0)})
    return pd.DataFrame(rows)


def test_the_follow_rate_comparison_enters_holms_family():
    predictions, metrics = (pd.concat(f, ignore_index=True) for f in zip(*[
        run_frames(arm, seed) for arm in ("baseline", "prior") for seed in ABLATION_SEEDS]))
    effects = _synthetic_effects({"baseline": 0.6, "prior": 0.0})
    family = bootstrap_comparisons(predictions, metrics, ["baseline", "prior"], metric_names=["auc", "com_follow"],
                                   n_boot=0, seed=0, interventions=follow_hips(effects))
    follows = family[family["metric"] == "com_follow"]
    assert len(follows) == len(TARGETS) and len(family) == 2 * len(TARGETS)
    np.testing.assert_allclose(follows["boot_diff"], 0.6, atol=0.05)  # baseline - prior
    assert follows["survives"].all()
    # Holm over the whole family, follow rates included
    np.testing.assert_allclose(family["p_holm"], holm(family["re_p"])["p_holm"], rtol=1e-12)
    table = ablation_table(pd.concat([seed_level_values(predictions, metrics), follow_seed_values(effects)],
                                     ignore_index=True), ["baseline", "prior"])
    row = table[(table["metric"] == "com_follow") & (table["arm"] == "prior")].iloc[0]
    assert row["chance"] == 0.0 and row["ceiling"] == pytest.approx(0.6)
    assert row["place"] == pytest.approx(row["mean"] / 0.6)
    assert row["n_undefined"] == 1  # per run and target, one intervention with an all-zero map
