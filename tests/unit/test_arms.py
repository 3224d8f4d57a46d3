"""Study arms: settings merge, landmark sources and noise, sub-crops and their maps placed back,
per-target models assembled into the four-target layout, stride 16 through load_trained_model. The
workflow's arm jobs: tests/workflow/test_arms_rules.py."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import study_with_split, train_settings

from osteoloc.train.arms import (DEFAULTS, all_arm_settings, arm_prior_values, arm_settings, arms_without_prior,
                                 reference_arm_settings)
from osteoloc.explain.cam import gradcam_maps
from osteoloc.train.data import cut_subcrops, groups_from_contour, load_split, place_subcrop_maps, subcrop_offsets
from osteoloc.explain.maps import predict_maps
from osteoloc.explain.stages import explain_run
from osteoloc.io.maps_h5 import read_maps
from osteoloc.io.study_h5 import StudyFile
from helpers import write_study_arrays
from osteoloc.train.model import PerTargetModels, build_model, load_trained_model
from osteoloc.io.runs import HISTORY_COLUMNS
from osteoloc.names import TARGETS
from osteoloc.train.loop import per_target_last_path, train_on_study

SCHEMAS = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
TINY = dict(epochs=1, batch_size=8, lr=1e-3, device="cpu", eval_batch_size=16, prior_lambda=1.0,
            prior_radius=3.0, prior_sigma=6.0)


# -- settings -----------------------------------------------------------------------------------------

def test_each_offered_arm_merges_into_its_flat_settings():
    paper = arm_settings("same", {})
    assert paper == {"prior_shape": "plateau_gaussian", "landmark_source": "automatic", "landmark_noise_mm": 0.0,
                     "per_target": False, "output_stride": 32, "crop_px": 0}
    # an empty arm is paper A's prior model, the keys of the paper's two models
    assert reference_arm_settings() == paper
    arms = all_arm_settings({
        "disc": {"prior": {"shape": "disc"}},
        "cauchy": {"prior": {"shape": "cauchy"}},
        "per_target": {"model": {"per_target": True}},
        "crops": {"input": {"landmark_crops": True, "crop_px": 40}},
        "stride16": {"model": {"output_stride": 16}},
        "manual": {"prior": {"landmarks": "manual"}},
        "noise2mm": {"prior": {"landmark_noise_mm": 2}, "train": {"epochs": 5}},
    })
    assert list(arms) == ["disc", "cauchy", "per_target", "crops", "stride16", "manual", "noise2mm"]
    changed = {name: {k: v for k, v in values.items() if paper.get(k) != v} for name, values in arms.items()}
    assert changed == {
        "disc": {"prior_shape": "disc"}, "cauchy": {"prior_shape": "cauchy"},
        "per_target": {"per_target": True},
        "crops": {"per_target": True, "crop_px": 40},  # a crop per target: per-target models
        "stride16": {"output_stride": 16}, "manual": {"landmark_source": "manual"},
        "noise2mm": {"landmark_noise_mm": 2.0, "epochs": 5},
    }
    for values in arms.values():  # every arm's settings build a valid run
        train_settings(**{**TINY, **values})


@pytest.mark.parametrize("name, block, problem", [
    ("prior", {}, "not an arm name"), ("baseline", {}, "not an arm name"), ("Disc", {}, "not an arm name"),
    ("a", {"prior": {"shap": "disc"}}, r"arms.a.prior: unknown key\(s\) \['shap'\]"),
    ("a", {"priors": {}}, "unknown section"),
    ("a", {"prior": {"shape": "square"}}, "arms.a.prior.shape"),
    ("a", {"model": {"output_stride": 8}}, "output_stride must be 16 or 32"),
    ("a", {"train": {"device": "cuda"}}, "cannot differ between arms"),
    ("a", {"prior": {"enabled": "no"}}, "enabled must be true or false"),
])
def test_bad_arms_are_named(name, block, problem):
    with pytest.raises(ValueError, match=problem):
        arm_settings(name, block)


def test_an_arm_without_the_prior_is_named_and_keeps_its_geometry():
    arms = {"s16": {"model": {"output_stride": 16}}, "s16_base": {"prior": {"enabled": False},
                                                          "model": {"output_stride": 16}}}
    assert arms_without_prior(arms) == ["s16_base"]
    settings = all_arm_settings(arms)
    assert settings["s16_base"] == settings["s16"] and "enabled" not in settings["s16_base"]


def test_an_arm_may_train_with_its_own_radius_and_sigma():
    arms = {"disc": {"prior": {"shape": "disc", "radius": 12}}, "wide": {"prior": {"sigma": 20.0}}, "same": {}}
    values = arm_prior_values(arms, {"lambda": 1.0, "radius": 4.0, "sigma": 13.0})
    assert values == {"disc": {"lambda": 1.0, "radius": 12.0, "sigma": 13.0},
                      "wide": {"lambda": 1.0, "radius": 4.0, "sigma": 20.0},
                      "same": {"lambda": 1.0, "radius": 4.0, "sigma": 13.0}}
    assert all_arm_settings(arms)["disc"]["prior_shape"] == "disc"  # r is a prior value, not a setting
    with pytest.raises(ValueError, match="radius must be"):
        arm_settings("bad", {"prior": {"radius": -1}})
    with pytest.raises(ValueError, match="sigma must be a number > 0"):  # 0 would divide by zero
        arm_settings("bad", {"prior": {"sigma": 0}})


def test_arm_defaults_are_the_schemas():
    spec = yaml.safe_load((SCHEMAS / "arms.schema.yaml").read_text())["additionalProperties"]["properties"]
    schema = {section: {key: value["default"] for key, value in spec[section]["properties"].items()}
              for section in DEFAULTS}
    assert schema == DEFAULTS
    assert spec["train"]["properties"].keys() <= yaml.safe_load(
        (SCHEMAS / "train.schema.yaml").read_text())["properties"].keys()


# -- landmarks: source and noise ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return study_with_split(tmp_path_factory.mktemp("arms_study"), (0.5, 0.25, 0.25))


def test_landmark_noise_is_drawn_once_per_hip_from_the_seed(study):
    h5, _, split = study
    clean = load_split(h5, split, "train")
    noisy = load_split(h5, split, "train", landmark_noise_mm=2.0, seed=3)
    again = load_split(h5, split, "train", landmark_noise_mm=2.0, seed=3)
    other = load_split(h5, split, "train", landmark_noise_mm=2.0, seed=4)
    torch.testing.assert_close(noisy.landmarks, again.landmarks, rtol=0, atol=0)
    both = noisy.valid & other.valid
    assert not torch.equal(noisy.landmarks[both], other.landmarks[both])
    # a hip gets the same noise whichever rows are read with it
    everything = load_split(h5, split.assign(split="train"), "train", landmark_noise_mm=2.0, seed=3)
    torch.testing.assert_close(everything.landmarks[noisy.rows], noisy.landmarks, rtol=0, atol=0)
    # sd in mm -> crop pixels with the file's spacing (1 mm here): the shifts' sd is about 2 px
    shift = (noisy.landmarks - clean.landmarks)[noisy.valid & clean.valid]
    assert 1.5 < float(shift.std()) < 2.5
    assert torch.equal(clean.landmarks, load_split(h5, split, "train", seed=3).landmarks)  # no noise: unchanged


def test_manual_landmarks_come_from_the_manual_contour(tmp_path):
    rng = np.random.default_rng(1)
    n, size = 4, 32
    contour = rng.uniform(2, 30, size=(n, 80, 2)).astype(np.float32)
    manual = contour + 1.0
    manual[1, 13] = [40.0, 5.0]  # outside the crop: invalid
    indices = {"osteo_fem_sup": [13, 78, 14], "osteo_fem_inf": [19, 20], "osteo_acet_sup": [67],
               "osteo_acet_inf": [71]}
    groups, valid = groups_from_contour(contour, indices, size)
    path = tmp_path / "study.h5"
    write_study_arrays(path, {"image": np.zeros((n, size, size)), "labels": np.ones((n, 4), np.int8),
                              "groups": groups, "valid": valid, "subject": ["A", "A", "B", "B"],
                              "contour": contour, "contour_manual": manual}, indices)
    split = pd.DataFrame({"subject": ["A", "B"], "split": ["train", "train"]})
    automatic = load_split(path, split, "train")
    hand = load_split(path, split, "train", landmark_source="manual")
    np.testing.assert_allclose(automatic.landmarks[:, 0, :3].numpy(), contour[:, [13, 78, 14]])
    assert hand.valid[:, 1].tolist() == [[True, True, False]] * n  # fem_inf: 2 points, 1 padding
    assert not hand.valid[1, 0, 0] and hand.valid[0, 0, 0]
    np.testing.assert_allclose(hand.landmarks[0, 2, 0].numpy(), manual[0, 67])
    np.testing.assert_allclose(hand.landmarks[hand.valid].numpy(), automatic.landmarks[hand.valid].numpy() + 1)
    write_study_arrays(tmp_path / "auto_only.h5", {"image": np.zeros((n, size, size)),
                                                   "labels": np.ones((n, 4), np.int8), "groups": groups,
                                                   "valid": valid, "subject": ["A", "A", "B", "B"]}, indices)
    with pytest.raises(ValueError, match="auto_only.h5: no manual landmark"):
        load_split(tmp_path / "auto_only.h5", split, "train", landmark_source="manual")


# -- sub-crops --------------------------------------------------------------------------------------------

def test_subcrop_is_centred_on_the_landmarks_and_clamped_inside():
    landmarks = torch.tensor([[[20.0, 30.0], [24.0, 34.0], [0.0, 0.0]],   # mean (22, 32)
                              [[2.0, 60.0], [0.0, 0.0], [0.0, 0.0]],      # near the bottom-left corner
                              [[9.0, 9.0], [0.0, 0.0], [0.0, 0.0]]])      # no valid point
    valid = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    offsets = subcrop_offsets(landmarks, valid, crop_px=16, size=64)
    assert offsets.tolist() == [[14, 24], [0, 48], [24, 24]]  # (x0, y0): 22 - 7.5 -> 14, clamped, centred
    images = torch.arange(3 * 64 * 64, dtype=torch.float32).reshape(3, 1, 64, 64)
    cut = cut_subcrops(images, offsets, 16)
    assert cut.shape == (3, 1, 16, 16)
    for i, (x0, y0) in enumerate(offsets.tolist()):
        torch.testing.assert_close(cut[i], images[i, :, y0:y0 + 16, x0:x0 + 16])
    with pytest.raises(ValueError, match="does not fit"):
        subcrop_offsets(landmarks, valid, crop_px=80, size=64)


def test_a_peak_in_the_subcrop_map_lands_at_its_hip_crop_pixel():
    offsets = torch.tensor([[14, 24], [0, 48]])
    maps = torch.zeros(2, 4, 16, 16)
    maps[0, 2, 5, 3] = 1.0  # sub-crop row 5, column 3
    maps[1, 0, 15, 15] = 0.5
    placed = place_subcrop_maps(maps, offsets, 64)
    assert placed.shape == (2, 4, 64, 64)
    assert float(placed[0, 2, 24 + 5, 14 + 3]) == pytest.approx(1.0, abs=1e-6)
    assert float(placed[1, 0, 63, 15]) == pytest.approx(0.5, abs=1e-6)
    assert float(placed.sum()) == pytest.approx(1.5, abs=1e-6)  # zero outside the sub-crop, nothing lost inside
    # the inverse of the cut
    torch.testing.assert_close(cut_subcrops(placed.reshape(8, 1, 64, 64), offsets.repeat_interleave(4, 0), 16),
                               maps.reshape(8, 1, 16, 16))


# -- models ----------------------------------------------------------------------------------------------

def test_stride_16_checkpoint_rebuilds_at_stride_16(tmp_path):
    torch.manual_seed(0)
    model = build_model(output_stride=16).eval()
    settings = train_settings(output_stride=16)
    torch.save({"state_dict": model.state_dict(), "epoch": 1, "config": settings.as_dict()}, tmp_path / "best.pt")
    loaded = load_trained_model(tmp_path / "best.pt")
    images = torch.randn(2, 1, 96, 96)
    logits, maps = gradcam_maps(loaded, images)
    torch.testing.assert_close(logits, model(images))
    assert loaded.layer4(loaded.layer3(loaded.layer2(loaded.layer1(loaded.maxpool(loaded.relu(loaded.bn1(
        loaded.conv1(images)))))))).shape[-2:] == (6, 6)
    # a checkpoint without its full settings is refused, naming the file and the missing fields
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="old.pt: holds no run settings"):
        load_trained_model(tmp_path / "old.pt")
    partial = {k: v for k, v in settings.as_dict().items() if k != "prior_shape"}
    torch.save({"state_dict": model.state_dict(), "epoch": 1, "config": partial}, tmp_path / "older.pt")
    with pytest.raises(ValueError, match=r"older.pt: .*missing \['prior_shape'\]"):
        load_trained_model(tmp_path / "older.pt")
    torch.save({"state_dict": model.state_dict(), "config": train_settings(per_target=True).as_dict()},
               tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="wrong.pt: its weights do not fit"):
        load_trained_model(tmp_path / "wrong.pt")


def test_per_target_models_assemble_into_the_four_target_layout():
    torch.manual_seed(0)
    singles = {t: build_model(n_outputs=1).eval() for t in TARGETS}
    images = torch.randn(3, 1, 64, 64)
    groups = np.full((3, 4, 2, 2), np.nan, np.float32)
    groups[:, :, 0] = [[10, 12], [30, 50], [50, 8], [40, 20]]
    valid = np.isfinite(groups).all(axis=-1)
    logits, maps = predict_maps(PerTargetModels(singles).eval(), images, groups, valid)
    assert logits.shape == (3, 4) and maps.shape == (3, 4, 64, 64)
    for t, target in enumerate(TARGETS):
        own_logits, own_maps = gradcam_maps(singles[target], images)
        torch.testing.assert_close(logits[:, t:t + 1], own_logits)
        torch.testing.assert_close(maps[:, t:t + 1], own_maps)
    # landmark crops: each target's map is its sub-crop's, placed back, zero elsewhere (48 px: a 2 x 2
    # feature map; a 32 px crop's single cell would min-max to zero)
    logits, maps = predict_maps(PerTargetModels(singles, crop_px=48).eval(), images, groups, valid)
    for t, target in enumerate(TARGETS):
        offsets = subcrop_offsets(torch.from_numpy(np.nan_to_num(groups[:, t])), torch.from_numpy(valid[:, t]),
                                  48, 64)
        own_logits, own_maps = gradcam_maps(singles[target], cut_subcrops(images, offsets, 48))
        torch.testing.assert_close(logits[:, t:t + 1], own_logits)
        torch.testing.assert_close(maps[:, t:t + 1], place_subcrop_maps(own_maps, offsets, 64))
    x0, y0 = subcrop_offsets(torch.tensor([[[50.0, 8.0]]]), torch.tensor([[True]]), 48, 64)[0].tolist()
    assert (x0, y0) == (16, 0)
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[y0:y0 + 48, x0:x0 + 48] = False
    assert (maps[:, 2][:, outside] == 0).all() and (maps[:, 2][:, ~outside] > 0).any()


@pytest.mark.parametrize("arm", [{"per_target": True, "crop_px": 48}, {"output_stride": 16, "prior_shape": "disc"}])
def test_an_arm_trains_and_explains_in_the_hip_crop_frame(study, tmp_path, arm):
    h5, split_path, _ = study
    torch.set_num_threads(1)
    settings = train_settings(**TINY, **arm)
    paths = {"history_path": tmp_path / "history.csv", "best_path": tmp_path / "best.pt",
             "last_path": tmp_path / "last.pt"}
    train_on_study(h5, split_path, settings, **paths)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1]
    assert history["val_prior"].gt(0).all()
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["config"] == settings.as_dict()
    if arm.get("per_target"):
        assert set(best["epochs"]) == set(TARGETS)
        assert all(per_target_last_path(tmp_path / "last.pt", t).exists() for t in TARGETS)
    model = load_trained_model(tmp_path / "best.pt")
    assert isinstance(model, PerTargetModels) == bool(arm.get("per_target"))
    out = {name: tmp_path / f"{name}.csv" for name in ("predictions", "metrics", "twin")}
    result = explain_run(h5, split_path, tmp_path / "best.pt", predictions_path=out["predictions"],
                         maps_path=tmp_path / "maps.h5", metrics_path=out["metrics"], batch_size=5,
                         pointing_tolerance_mm=3.0, device="cpu", twin_study_path=h5,
                         twin_predictions_path=out["twin"])
    rows, maps = read_maps(tmp_path / "maps.h5")
    with StudyFile(h5) as f:
        assert maps.shape == (len(result["rows"]), 4, f.crop_size, f.crop_size)
    assert rows.tolist() == result["rows"].tolist()
    assert result["metrics"]["com_distance"].notna().any()
    # the prior's share of hips with a constant penalty on this arm's grid is measured (0 or 1 per hip)
    constant = result["metrics"]["penalty_constant"]
    assert constant.notna().any() and constant.dropna().isin([0.0, 1.0]).all()
    assert result["metrics"]["map_defined"].isin([0.0, 1.0]).all()
    # the twin here is the study itself: the same predictions
    pd.testing.assert_frame_equal(pd.read_csv(out["twin"]), pd.read_csv(out["predictions"]))
