"""build_model's output strides: map sizes, unchanged parameter shapes, the a-trous identity."""

import pytest
import torch
from torchvision.models import resnet18

from osteoloc.train.model import build_model, features_and_logits
from osteoloc.train.prior import class_activation_maps, penalty_maps, prior_loss


@pytest.mark.parametrize("size, stride, cells", [(224, 32, 7), (224, 16, 14), (96, 32, 3), (96, 16, 6)])
def test_feature_map_size(size, stride, cells):
    model = build_model(output_stride=stride).eval()
    with torch.no_grad():
        features, logits = features_and_logits(model, torch.rand(2, 1, size, size))
    assert features.shape == (2, 512, cells, cells) and logits.shape == (2, 4)


def test_stride_16_keeps_parameter_shapes_and_loads_stride_32_weights():
    torch.manual_seed(0)
    coarse = build_model().eval()
    fine = build_model(output_stride=16).eval()
    assert {k: v.shape for k, v in coarse.state_dict().items()} == {k: v.shape for k, v in fine.state_dict().items()}
    fine.load_state_dict(coarse.state_dict(), strict=True)
    images = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f32, _ = features_and_logits(coarse, images)
        f16, _ = features_and_logits(fine, images)
    # a-trous: dilation instead of stride computes the stride-32 map at the even cells, plus the cells between
    torch.testing.assert_close(f16[..., ::2, ::2], f32, atol=1e-5, rtol=0)
    assert (f16[..., 1::2, 1::2] - f32).abs().max() > 1e-2  # the odd cells are new information
    assert fine.layer4[0].conv1.stride == (1, 1) and fine.layer4[1].conv2.dilation == (2, 2)
    assert coarse.layer4[0].conv1.stride == (2, 2)  # the stride-32 model is untouched


def test_stride_16_loads_imagenet_weights(tmp_path):
    torch.manual_seed(0)
    rgb = resnet18(num_classes=1000).state_dict()
    torch.save(rgb, tmp_path / "resnet18.pth")
    model = build_model("imagenet", tmp_path / "resnet18.pth", output_stride=16)
    torch.testing.assert_close(model.state_dict()["layer4.0.conv1.weight"], rgb["layer4.0.conv1.weight"])
    torch.testing.assert_close(model.state_dict()["layer4.0.downsample.0.weight"],
                               rgb["layer4.0.downsample.0.weight"])


def test_bad_output_stride_is_named():
    with pytest.raises(ValueError, match="output_stride must be 16 or 32, not 8"):
        build_model(output_stride=8)


def test_prior_on_the_6x6_map():
    """The prior's penalty follows the feature grid: 6 x 6 cells at 96 px, and its gradient reaches layer4."""
    torch.manual_seed(0)
    model = build_model(output_stride=16)
    images = torch.rand(2, 1, 96, 96)
    features, _ = features_and_logits(model, images)
    cams = class_activation_maps(features, model.fc.weight)
    landmarks = torch.full((2, 4, 1, 2), 30.0)  # (30 + 0.5) * 6 / 96 = 1.906 feature units: cell 1
    valid = torch.ones(2, 4, 1, dtype=torch.bool)
    penalties = penalty_maps(landmarks, valid, features.shape[-2:], (96, 96), radius=16.0, sigma=16.0)
    assert penalties.shape == (2, 4, 6, 6)
    assert penalties[0, 0, 1, 1] == 0 and penalties[0, 0, 5, 5] > 0.5  # r = 1 cell; the far corner is penalised
    prior_loss(cams, penalties, valid.any(-1)).backward()
    assert model.layer4[0].conv1.weight.grad.abs().sum() > 0
