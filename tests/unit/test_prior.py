"""Paper A's losses against small hand-computed cases (docs/method.md section 4, eqs. 1-8)."""

import math

import pytest
import torch

from osteoloc.train.model import build_model, features_and_logits
from osteoloc.train.prior import (PENALTY_SHAPES, class_activation_maps, masked_bce, normalised_cams, penalty_maps,
                            prior_loss)


def test_masked_bce_ignores_unknown_labels():
    logits = torch.tensor([[0.0, 2.0, -1.0, 5.0]])
    labels = torch.tensor([[1.0, -1.0, 0.0, -1.0]])
    expected = (math.log(2) + math.log(1 + math.exp(-1.0))) / 2  # two known pairs
    assert math.isclose(masked_bce(logits, labels).item(), expected, rel_tol=1e-6)
    # changing a logit of an unknown pair changes nothing, and no gradient reaches it
    logits2 = logits.clone().requires_grad_(True)
    with torch.no_grad():
        logits2[0, 1] = -30.0
    masked_bce(logits2, labels).backward()
    assert math.isclose(masked_bce(logits2, labels).item(), expected, rel_tol=1e-6)
    assert logits2.grad[0, 1] == 0 and logits2.grad[0, 3] == 0 and logits2.grad[0, 0] != 0
    assert masked_bce(logits, torch.full((1, 4), -1.0)).item() == pytest.approx(0.0, abs=1e-12)  # no known label


def test_cam_is_relu_of_weighted_feature_sum():
    features = torch.tensor([[[[1.0, -1.0]], [[2.0, 0.5]]]])  # (1, K=2, 1, 2)
    weight = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [-1.0, 0.0]])
    cams = class_activation_maps(features, weight)
    expected = torch.tensor([[[[3.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]]])
    torch.testing.assert_close(cams, expected)


def test_penalty_zero_inside_plateau_and_gaussian_outside():
    # 8 x 8 input, 4 x 4 features: s = 0.5. A landmark at pixel (2.5, 2.5) -> feature (1.5, 1.5),
    # the centre of cell (1, 1). radius 2 px -> 1 cell, sigma 4 px -> 2 cells.
    landmarks = torch.zeros(1, 4, 1, 2)
    landmarks[0, 0, 0] = torch.tensor([2.5, 2.5])
    valid = torch.zeros(1, 4, 1, dtype=torch.bool)
    valid[0, 0, 0] = True
    q = penalty_maps(landmarks, valid, (4, 4), (8, 8), radius=2.0, sigma=4.0)
    assert q.shape == (1, 4, 4, 4)
    assert q[0, 0, 1, 1] == 0 and q[0, 0, 1, 2] == 0 and q[0, 0, 2, 1] == 0  # d = 0 and d = 1 = r
    d = math.sqrt(2 * 2**2)  # cell (3, 3): centre (3.5, 3.5), 2 cells away in x and y
    expected = 1 - math.exp(-((d - 1) ** 2) / (2 * 2.0**2))
    assert math.isclose(q[0, 0, 3, 3].item(), expected, rel_tol=1e-6)
    assert math.isclose(q[0, 0, 1, 3].item(), 1 - math.exp(-1 / 8), rel_tol=1e-6)  # d = 2, d_adj = 1
    assert (q[0, 1:] == 0).all()  # targets without landmarks: zero map


def test_penalty_uses_nearest_valid_landmark():
    landmarks = torch.tensor([[[[0.5, 0.5], [6.5, 6.5], [0.5, 6.5]]]]).expand(1, 4, 3, 2).clone()
    valid = torch.tensor([[[True, True, False]]]).expand(1, 4, 3).clone()
    q = penalty_maps(landmarks, valid, (4, 4), (8, 8), radius=0.0, sigma=2.0)
    # cell (0, 0) holds landmark 0, cell (3, 3) holds landmark 1; cell (3, 0) only holds the invalid one
    assert q[0, 0, 0, 0] == 0 and q[0, 0, 3, 3] == 0
    d = 3.0  # from cell (row 3, col 0) centre (0.5, 3.5) to (0.5, 0.5)
    assert math.isclose(q[0, 0, 3, 0].item(), 1 - math.exp(-(d**2) / 2), rel_tol=1e-6)


# Output of penalty_maps before mask shapes existed (main at f8420d1), float32 values written out: the
# default shape must reproduce it bit for bit.
BEFORE_SHAPES = [
    [[0.0, 0.024389028549194336, 0.0], [4.708766937255859e-06, 0.1053382158279419, 0.2105555534362793],
     [0.32702672481536865, 0.4657406806945801, 0.707291841506958]],
    [[0.0, 0.08427160978317261, 0.5510530471801758], [4.708766937255859e-06, 0.1053382158279419,
     0.5667140483856201], [0.32702672481536865, 0.4657406806945801, 0.769220232963562]],
    [[0.44198840856552124, 0.024389028549194336, 0.0], [0.647678017616272, 0.2994734048843384,
     0.2105555534362793], [0.8845167756080627, 0.7482694387435913, 0.707291841506958]],
    [[0.0] * 3] * 3,
]


def test_default_shape_is_unchanged_plateau_gaussian():
    landmarks = torch.tensor([[[[1.0, 2.0], [5.5, 0.0]]]]).expand(1, 4, 2, 2).clone()
    valid = torch.tensor([[[True, True], [True, False], [False, True], [False, False]]])
    default = penalty_maps(landmarks, valid, (3, 3), (8, 8), radius=1.5, sigma=3.0)
    # The literals were computed on another CPU: float32 exp may differ there in the last bits.
    torch.testing.assert_close(default[0], torch.tensor(BEFORE_SHAPES, dtype=torch.float32), rtol=1e-6, atol=1e-6)
    named = penalty_maps(landmarks, valid, (3, 3), (8, 8), radius=1.5, sigma=3.0, shape="plateau_gaussian")
    assert torch.equal(default, named)


# One landmark at pixel (0, 0) of a 16 x 16 input with 16 x 16 features (s = 1): feature point (0.5, 0.5),
# the centre of cell (0, 0), so cell (0, j) lies j cells away. r = 2, sigma = 3.
SHAPE_CASES = {  # shape: penalty at d = 1 (inside r), 2 (at r), 5 (r + sigma), 15 (far)
    "plateau_gaussian": (0.0, 0.0, 1 - math.exp(-0.5), 1 - math.exp(-(13**2) / 18)),
    "disc": (0.0, 0.0, 1.0, 1.0),
    "linear": (0.0, 0.0, 1.0, 1.0),
    "cauchy": (0.0, 0.0, 1 / 3, 1 - 1 / (1 + 13**2 / 18)),
}


@pytest.mark.parametrize("shape", sorted(SHAPE_CASES))
def test_shape_values_at_known_distances(shape):
    landmarks = torch.zeros(1, 4, 1, 2)
    valid = torch.zeros(1, 4, 1, dtype=torch.bool)
    valid[0, 0, 0] = True
    q = penalty_maps(landmarks, valid, (16, 16), (16, 16), radius=2.0, sigma=3.0, shape=shape)
    inside, at_r, at_r_sigma, far = (q[0, 0, 0, j].item() for j in (1, 2, 5, 15))
    expected = SHAPE_CASES[shape]
    assert (inside, at_r) == pytest.approx((0.0, 0.0), abs=1e-12)  # the plateau
    assert math.isclose(at_r_sigma, expected[2], rel_tol=1e-6)
    assert math.isclose(far, expected[3], rel_tol=1e-6)
    assert (q[0, 1:] == 0).all()
    # each shape is a non-decreasing function of the distance, within [0, 1]
    row = q[0, 0, 0]
    assert (row.diff() >= 0).all() and row.min() >= 0 and row.max() <= 1


def test_shapes_differ_where_claimed():
    landmarks = torch.zeros(1, 4, 1, 2)
    valid = torch.ones(1, 4, 1, dtype=torch.bool)
    q = {shape: penalty_maps(landmarks, valid, (16, 16), (16, 16), 2.0, 3.0, shape=shape)[0, 0, 0]
         for shape in PENALTY_SHAPES}
    assert set(q) == set(SHAPE_CASES)
    # at d = 3 = r + sigma / 3 the ramp is a third of the way up; the disc is already 1
    assert math.isclose(q["linear"][3].item(), 1 / 3, rel_tol=1e-6)
    assert q["disc"][3] == 1.0
    # the Cauchy tail still rises where the Gaussian has saturated (d = 12 -> 15)
    assert q["cauchy"][15] - q["cauchy"][12] > 0.05
    assert q["plateau_gaussian"][15] - q["plateau_gaussian"][12] < 0.005
    with pytest.raises(ValueError, match="unknown penalty shape 'ring'"):
        penalty_maps(landmarks, valid, (4, 4), (8, 8), 2.0, 3.0, shape="ring")


def test_normalisation_and_prior_loss_by_hand():
    cams = torch.zeros(2, 4, 1, 2)
    cams[0, 0] = torch.tensor([[3.0, 1.0]])  # normalised: 0.75, 0.25
    cams[0, 1] = torch.tensor([[0.0, 2.0]])  # normalised: 0, 1
    cams[1, 0] = torch.tensor([[5.0, 5.0]])  # image 1: no valid target -> left out
    penalties = torch.zeros(2, 4, 1, 2)
    penalties[:, :, 0, 1] = 0.8
    target_valid = torch.tensor([[True, True, True, False], [False, False, False, False]])
    torch.testing.assert_close(normalised_cams(cams)[0, 0], torch.tensor([[0.75, 0.25]]), atol=1e-6, rtol=0)
    # image 0: targets 0 (0.25 * 0.8), 1 (1 * 0.8), 2 (zero CAM -> 0) -> mean over its 3 valid targets
    expected = (0.2 + 0.8 + 0.0) / 3
    assert math.isclose(prior_loss(cams, penalties, target_valid).item(), expected, rel_tol=1e-5)
    # target 3 of image 0 is unknown: a huge penalty there changes nothing
    penalties[0, 3] = 1.0
    cams[0, 3] = 7.0
    assert math.isclose(prior_loss(cams, penalties, target_valid).item(), expected, rel_tol=1e-5)
    assert prior_loss(cams, penalties, torch.zeros(2, 4, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-12)


def test_prior_gradients_reach_the_backbone():
    torch.manual_seed(0)
    model = build_model()
    images = torch.rand(2, 1, 64, 64)
    features, logits = features_and_logits(model, images)
    torch.testing.assert_close(logits, model(images))  # same forward as the plain model
    cams = class_activation_maps(features, model.fc.weight)
    landmarks = torch.full((2, 4, 1, 2), 10.0)
    valid = torch.ones(2, 4, 1, dtype=torch.bool)
    penalties = penalty_maps(landmarks, valid, features.shape[-2:], (64, 64), radius=4.0, sigma=8.0)
    prior_loss(cams, penalties, valid.any(-1)).backward()
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight", "fc.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
