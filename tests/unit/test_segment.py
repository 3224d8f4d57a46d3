"""Paper B's segmentation branch: patch geometry, sampling, metrics, the U-Net, training and a tiny end to end."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import write_toy_study
from osteoloc.segment import patches as P
from osteoloc.io.segment_h5 import read_patch_set
from osteoloc.io.study_h5 import StudyFile
from osteoloc.segment.dataset import build_site_patches
from osteoloc.segment.evaluate import dice_scores, per_patch_metrics, summarise
from osteoloc.segment.sampling import augmentation_draws, balanced_rows, site_rng
from osteoloc.segment.sites import HEAD_CIRCLE_INDICES, parse_sites
from osteoloc.segment.stages import build_report, evaluate_site, make_patches, manual_points_excluded, train_site
from helpers import write_toy_study
from osteoloc.segment.train import train_unet
from osteoloc.segment.unet import build_unet
from osteoloc.train.splits import read_split

TINY_MODEL = {"features": [4, 4, 8, 8, 16, 4], "dropout": 0.3, "norm": "none"}


def _cfg(**over):
    cfg = {"patch_size": 32, "dp_patch_size": 128,
           "reference": {"kind": "head_diameter", "indices": list(HEAD_CIRCLE_INDICES)},
           "augment": {"max_angle": 0.1, "max_scale": 0.1},
           "sites": {"fem_inf": {"target": "osteo_fem_inf", "dp": 0.005, "n_augment": 1, "displacement": 0},
                     "acet_disp": {"target": "osteo_acet_sup", "dp": 0.01, "n_augment": 2, "displacement": 0.05}},
           "model": TINY_MODEL, "training": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3},
           "min_area": 1, "report": {"examples_per_site": 2, "weak_vs_strong": True}}
    cfg.update(over)
    return cfg


# --- geometry -------------------------------------------------------------------------------------------

def test_circle_fit_and_reference_length():
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    contour = np.full((80, 2), np.nan)
    contour[list(HEAD_CIRCLE_INDICES)] = np.column_stack([30 + 12 * np.cos(angles), 40 + 12 * np.sin(angles)])
    assert np.allclose(P.fit_circle(contour[list(HEAD_CIRCLE_INDICES)]), (30, 40, 12))
    assert P.reference_length(contour, "head_diameter", HEAD_CIRCLE_INDICES) == pytest.approx(24)
    contour[0], contour[1] = (0, 0), (3, 4)
    assert P.reference_length(contour, "distance", [0, 1]) == pytest.approx(5)
    assert np.isnan(P.reference_length(contour, "distance", [0, 2]))


def test_pixel_size_keeps_the_paper_field_of_view():
    # paper B: 128 px at dp x reference; reference 50 px, dp 0.01 -> 0.5 px per patch pixel, 64 px field
    assert P.pixel_size(50, 0.01, 128, 128) == pytest.approx(0.5)
    assert P.pixel_size(50, 0.01, 32, 128) * 32 == pytest.approx(64)


def test_patch_of_known_geometry_has_the_expected_pixel_size():
    # vertical stripes 10 source px apart; at 0.5 source px per patch pixel they are 20 patch px apart
    img = np.zeros((100, 100), np.float32)
    img[:, ::10] = 1.0
    theta = P.affine_theta((50, 50), 0.5, 64, img.shape)
    patch, _ = P.sample_patches(img, None, [theta], 64)
    profile = patch[0].mean(axis=0)
    peaks = np.flatnonzero(profile > 0.9)
    assert np.all(np.diff(peaks) == 20)


def test_bright_dot_at_landmark_lands_at_patch_centre():
    img = np.zeros((80, 80), np.float32)
    img[23, 57] = 1.0  # landmark (x=57, y=23)
    for size in (0.5, 1.0):
        for angle in (0.0, 0.1):
            theta = P.affine_theta((57, 23), size, 33, img.shape, angle=angle)  # odd P: one centre pixel
            patch, _ = P.sample_patches(img, None, [theta], 33)
            assert np.unravel_index(patch[0].argmax(), patch[0].shape) == (16, 16)
    theta = P.affine_theta((57, 23), 1.0, 32, img.shape)  # even P: the dot sits between the 4 centre pixels
    patch, _ = P.sample_patches(img, None, [theta], 32)
    yy, xx = np.mgrid[0:32, 0:32]
    com = (patch[0] * xx).sum() / patch[0].sum(), (patch[0] * yy).sum() / patch[0].sum()
    assert com == pytest.approx((15.5, 15.5), abs=1e-4)


def test_mask_follows_image_under_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    img = np.zeros((90, 90), np.float32)
    mask = np.zeros((90, 90), np.uint8)
    img[30:45, 50:60] = 1.0
    mask[30:45, 50:60] = 1
    for angle, scale, shift in [(0.1, 1.1, (0, 0)), (-0.1, 0.9, (3, -2)), (0.05, 1.0, (-4, 4))]:
        theta = P.affine_theta((52, 40), 0.8, 48, img.shape, angle=angle, scale=scale, shift=shift)
        patch, pmask = P.sample_patches(img + rng.normal(0, 0.0, img.shape), mask, [theta], 48)
        assert pmask.sum() > 50
        bright = patch[0] > 0.5
        assert (bright == pmask[0].astype(bool)).mean() > 0.97  # same place, up to the edge pixels
        assert set(np.unique(pmask)) <= {0, 1}


def test_displacement_stays_within_bounds():
    rng = site_rng(0, "acet", "augment-train")
    draws = augmentation_draws(500, rng, 0.1, 0.1, 0.05)
    assert np.all(draws[0] == [0, 1, 0, 0])  # the first is the original patch
    assert np.abs(draws[1:, 0]).max() <= 0.1 and np.abs(draws[1:, 1] - 1).max() <= 0.1
    assert np.abs(draws[1:, 2:]).max() <= 0.05 and np.abs(draws[1:, 2:]).max() > 0.04
    # in pixels: a dot at the landmark moves at most 0.05 x P from the patch centre
    img = np.zeros((80, 80), np.float32)
    img[40, 40] = 1
    for _, _, dx, dy in draws[1:20]:
        theta = P.affine_theta((40, 40), 1.0, 65, img.shape, shift=(dx * 65, dy * 65))
        patch, _ = P.sample_patches(img, None, [theta], 65)
        i, j = np.unravel_index(patch[0].argmax(), patch[0].shape)
        assert max(abs(i - 32), abs(j - 32)) <= np.ceil(0.05 * 65)
    assert augmentation_draws(0, rng, 0.1, 0.1, 0.05).shape == (1, 4)


# --- sampling and metrics -------------------------------------------------------------------------------

def test_balanced_sampling():
    rows = np.arange(20)
    labels = np.array([1] * 5 + [0] * 12 + [-1] * 3)
    chosen = balanced_rows(rows, labels, np.random.default_rng(0))
    assert (labels[chosen] == 1).sum() == 5 and (labels[chosen] == 0).sum() == 5
    assert not np.any(labels[chosen] == -1)
    few_negatives = balanced_rows(rows[:7], labels[:7], np.random.default_rng(0))  # 5 positives, 2 negatives
    assert list(few_negatives) == list(range(7))


def test_dice_and_detection_on_hand_made_masks():
    truth = np.zeros((4, 8, 8), np.uint8)
    prob = np.zeros((4, 8, 8), np.float32)
    truth[0, 0:2, 0:2] = 1
    prob[0, 0:2, 0:4] = 0.9  # 4 true px, 8 predicted, 4 overlap -> Dice 2*4/(4+8) = 2/3
    truth[1, 4:6, 4:6] = 1  # positive, nothing predicted -> Dice 0, missed
    prob[2, 0, 0] = 0.7  # negative with one predicted pixel -> false positive at min_area 1
    prob[3, 0, 0] = 0.2  # negative, below threshold -> true negative
    assert dice_scores((prob >= 0.5)[:2], truth[:2]) == pytest.approx([2 / 3, 0])
    m = per_patch_metrics(prob, truth, [1, 1, 0, 0], [10, 11, 12, 13], min_area=1)
    assert list(m["pred_present"]) == [1, 0, 1, 0]
    assert m["dice"].iloc[:2].tolist() == pytest.approx([2 / 3, 0]) and m["dice"].iloc[2:].isna().all()
    assert m["pointing_hit"].iloc[:2].tolist() == [1.0, 0.0]
    s = summarise(m, "x", "osteo_fem_inf")
    assert (s["tp"], s["fn"], s["fp"], s["tn"]) == (1, 1, 1, 1)
    assert s["sensitivity"] == pytest.approx(0.5) and s["specificity"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.5)
    assert s["dice_mean"] == pytest.approx(1 / 3) and s["dice_sd"] == pytest.approx(np.std([2 / 3, 0], ddof=1))
    m2 = per_patch_metrics(prob, truth, [1, 1, 0, 0], [10, 11, 12, 13], min_area=5)
    assert list(m2["pred_present"]) == [1, 0, 0, 0]


# --- model and training ---------------------------------------------------------------------------------

def test_unet_output_shape_init_and_dropout():
    torch.manual_seed(0)
    model = build_unet(TINY_MODEL["features"], 0.3, "none")
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2, 32, 32)
    drops = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert {p for n, p in drops.items() if n.startswith(("down_3", "down_4"))} == {0.3}
    assert {p for n, p in drops.items() if not n.startswith(("down_3", "down_4"))} == {0.0}
    conv = model.conv_0.conv_0.conv
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(np.sqrt(2 / fan_in), rel=0.35)  # He normal
    assert torch.all(conv.bias == 0)


def _learnable_set(n, seed):
    """Masks = the bright pixels: trivially learnable."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.3, (n, 16, 16)).astype(np.float32)
    masks = np.zeros((n, 16, 16), np.uint8)
    for k in range(n):
        i, j = rng.integers(2, 11, 2)
        masks[k, i:i + 4, j:j + 4] = 1
    images[masks == 1] += 3.0
    from osteoloc.segment.dataset import PatchSet
    return PatchSet(images, masks, np.arange(n), np.ones(n, int), np.zeros(n, int), np.array(["manual"] * n))


def test_tiny_training_lowers_the_loss_and_is_deterministic():
    cfg = TINY_MODEL | {"epochs": 6, "batch_size": 8, "learning_rate": 1e-2}
    train, val = _learnable_set(48, 0), _learnable_set(8, 1)
    model, history, best = train_unet(train, val, cfg, seed=3)
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert history["val_loss"].min() < history["val_loss"].iloc[0]
    assert best == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    model2, history2, _ = train_unet(train, val, cfg, seed=3)
    assert history["train_loss"].tolist() == history2["train_loss"].tolist()
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


# --- the study HDF5 and the stages ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    subjects = write_toy_study(root / "study.h5", n_subjects=24, size=64, seed=1, positive_rate=0.35)
    split = pd.DataFrame({"subject": subjects,
                          "split": ["train"] * 14 + ["val"] * 4 + ["test"] * 6})
    split.to_csv(root / "seed0.csv", index=False)
    return root


def test_patch_sets_follow_paper_b(toy):
    cfg = _cfg()
    site = parse_sites(cfg["sites"])["fem_inf"]
    split = read_split(toy / "seed0.csv")
    splits = dict(zip(split["subject"], split["split"]))
    sets = build_site_patches(toy / "study.h5", split, site, cfg, seed=0)
    with StudyFile(toy / "study.h5") as study:
        labels = study.read(["labels"]).labels[:, 1]
        subjects = study.subjects()
    for split in ("train", "val"):
        ps = sets[split]
        originals = ps.labels[ps.copy == 0]
        in_split = labels[[r for r, s in enumerate(subjects) if splits[s] == split]]
        n_pos, n_neg = (in_split == 1).sum(), (in_split == 0).sum()
        assert (originals == 1).sum() == n_pos > 0  # every positive
        assert (originals == 0).sum() == min(n_pos, n_neg)  # negatives sampled to balance
        assert len(ps.rows) == 2 * len(originals)  # 1 + n_augment copies
        assert set(ps.landmarks) == {"manual"}
    test = sets["test"]
    test_rows = [r for r, s in enumerate(subjects) if splits[s] == "test"]
    assert sorted(test.rows) == test_rows and set(test.landmarks) == {"automatic"}
    assert list(test.labels) == list(labels[test_rows])
    # positives carry their lesion at the centre; normalised patches
    assert all(m.sum() > 0 for m in test.masks[test.labels == 1])
    assert np.allclose(test.images.mean(axis=(1, 2)), 0, atol=1e-4)


def test_missing_masks_give_a_clear_error(tmp_path, toy):
    write_toy_study(tmp_path / "nomask.h5", n_subjects=24, size=64, with_masks=False)
    site = parse_sites(_cfg()["sites"])["fem_inf"]
    with pytest.raises(ValueError, match="lesions layer.*segment.enabled"):
        build_site_patches(tmp_path / "nomask.h5", read_split(toy / "seed0.csv"), site, _cfg(), 0)


def test_manual_points_absent_fall_back_to_automatic(tmp_path, toy):
    write_toy_study(tmp_path / "auto.h5", n_subjects=24, size=64, seed=1, with_manual=False)
    site = parse_sites(_cfg()["sites"])["fem_inf"]
    sets = build_site_patches(tmp_path / "auto.h5", read_split(toy / "seed0.csv"), site, _cfg(), 0)
    assert set(sets["train"].landmarks) == {"automatic"}
    assert sets["train"].counts["manual_fallback_to_automatic"] == sets["train"].counts["hips"]


def test_hips_whose_manual_points_were_excluded_leave_training_only(tmp_path, toy):
    cfg = _cfg()
    site = parse_sites(cfg["sites"])["fem_inf"]
    split = read_split(toy / "seed0.csv")
    with StudyFile(toy / "study.h5") as study:
        meta = study.meta(("subject", "visit", "side"))
    in_split = meta.assign(split=meta["subject"].map(dict(zip(split["subject"], split["split"]))))
    train_hip, test_hip = (in_split[in_split["split"] == s].iloc[0] for s in ("train", "test"))
    table = pd.DataFrame([{"stage": "manual_points", "subject": h.subject, "visit": h.visit, "side": h.side,
                           "file": "x.pts", "reason": "manual points missing"} for h in (train_hip, test_hip)]
                         + [{"stage": "landmarks", "subject": "other", "visit": "v0", "side": "left",
                             "file": "y.pts", "reason": "not a manual-points row"}])
    table.to_csv(tmp_path / "exclusions.csv", index=False)
    excluded = manual_points_excluded(tmp_path / "exclusions.csv")
    assert excluded == {(train_hip.subject, train_hip.visit, train_hip.side),
                        (test_hip.subject, test_hip.visit, test_hip.side)}
    before = build_site_patches(toy / "study.h5", split, site, cfg, seed=0)
    after = build_site_patches(toy / "study.h5", split, site, cfg, seed=0, manual_excluded=excluded)
    assert train_hip.row not in set(after["train"].rows)
    assert after["train"].counts["excluded_manual_points"] == 1
    assert sorted(after["test"].rows) == sorted(before["test"].rows)  # automatic points: the test keeps it
    assert test_hip.row in set(after["test"].rows)


def test_end_to_end_on_a_toy_study(toy, tmp_path):
    cfg = _cfg()
    files = {}
    exclusions = tmp_path / "exclusions.csv"
    pd.DataFrame(columns=["stage", "subject", "visit", "side", "file", "reason"]).to_csv(exclusions, index=False)
    for site in cfg["sites"]:
        d = tmp_path / site
        f = {k: d / n for k, n in [("patches", "patches.h5"), ("model", "model.pt"), ("history", "history.csv"),
                                   ("predictions", "predictions.h5"), ("metrics", "metrics.csv"),
                                   ("summary", "summary.csv")]}
        make_patches(toy / "study.h5", toy / "seed0.csv", exclusions, site, cfg, 0, f["patches"])
        train_site(f["patches"], cfg, 0, "cpu", f["model"], f["history"])
        evaluate_site(f["patches"], f["model"], site, cfg, "cpu", f["predictions"], f["metrics"], f["summary"])
        files[site] = f
        assert len(pd.read_csv(f["history"])) == 2
        assert len(pd.read_csv(f["metrics"])) == len(read_patch_set(f["patches"], "test").rows)
    cam = pd.DataFrame({"row": [0, 1], "target": ["osteo_fem_inf", "osteo_acet_sup"], "label": [1, 1],
                        "pointing_hit": [1.0, 0.0], "energy_in_mask": [0.4, 0.1]})
    cam.to_csv(tmp_path / "cam.csv", index=False)
    out = {"table2": tmp_path / "r" / "segmentation.csv", "table1": tmp_path / "r" / "segmentation_partitions.csv",
           "weak_vs_strong": tmp_path / "r" / "wvs.csv", "confusion": tmp_path / "r" / "conf.png",
           "examples": tmp_path / "r" / "ex.png"}
    build_report(cfg, files, {"baseline": tmp_path / "cam.csv", "prior": tmp_path / "cam.csv"}, out, decimals=3)
    t2 = pd.read_csv(out["table2"])
    assert list(t2["site"]) == ["fem_inf", "acet_disp"]
    assert t2[["sensitivity", "specificity"]].apply(lambda c: c.between(0, 1) | c.isna()).all().all()
    assert (t2["tp"] + t2["fn"] == t2["n_positive"]).all()
    for stem in ("segmentation", "segmentation_partitions", "wvs"):
        assert (tmp_path / "r" / f"{stem}.md").exists() and (tmp_path / "r" / f"{stem}.tex").exists()
    for stem in ("conf", "ex"):
        assert (tmp_path / "r" / f"{stem}.png").exists() and (tmp_path / "r" / f"{stem}.pdf").exists()
    wvs = pd.read_csv(out["weak_vs_strong"])
    assert set(wvs["method"]) == {"CAM baseline", "CAM prior", "U-Net fem_inf", "U-Net acet_disp"}
    with h5py.File(files["fem_inf"]["predictions"]) as h5:
        assert h5["prob"].shape == h5["truth"].shape and h5.attrs["target"] == "osteo_fem_inf"
    assert json.loads(json.dumps(cfg))  # the config block is plain JSON, as params pass it
