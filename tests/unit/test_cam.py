"""Grad-CAM from one forward pass must equal pytorch-grad-cam 1.5.7 (one call per class) to 1e-5, at both
output strides of the study's ResNet-18 (32: 7 x 7 maps at 224 px; 16: 14 x 14)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from osteoloc.explain.cam import gradcam_maps, scale_maps

TOLERANCE = 1e-5


def make_model(seed=0, output_stride=32):
    """The study's architecture: ResNet-18, one input channel, four logits (osteoloc.train.model when present)."""
    torch.manual_seed(seed)
    try:
        from osteoloc.train.model import build_model
        model = build_model(weights="none", output_stride=output_stride)
    except ImportError:
        if output_stride != 32:
            raise
        model = torchvision.models.resnet18(num_classes=4)
        model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model.eval()


def reference_maps(model, images):
    """pytorch-grad-cam: one call per class, a ClassifierOutputTarget per image (a single target would
    explain only the first image of the batch)."""
    per_class = []
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        for c in range(4):
            per_class.append(cam(input_tensor=images, targets=[ClassifierOutputTarget(c)] * len(images)))
    return np.stack(per_class, axis=1)


def max_abs_difference(maps, reference):
    maps = np.asarray(maps, dtype=np.float64)
    assert maps.shape == reference.shape, (maps.shape, reference.shape)
    return float(np.abs(maps - reference).max())


@pytest.fixture(scope="module", params=[32, 16], ids=["stride32", "stride16"])
def model_and_batch(request):
    model = make_model(output_stride=request.param)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 1, 224, 224, generator=generator)
    return model, images, reference_maps(model, images)


def test_one_pass_matches_pytorch_grad_cam(model_and_batch):
    model, images, reference = model_and_batch
    logits, maps = gradcam_maps(model, images)
    assert logits.shape == (3, 4) and maps.shape == (3, 4, 224, 224)
    assert max_abs_difference(maps.numpy(), reference) <= TOLERANCE
    with torch.no_grad():
        assert torch.allclose(logits, model(images), atol=1e-6)
    # the maps are not trivial: every map spans [0, 1) and the four targets differ
    assert maps.amax(dim=(-2, -1)).min() > 0.99
    assert (maps[:, 0] - maps[:, 1]).abs().max() > 0.1


def test_comparison_catches_wrong_normalisation(model_and_batch):
    """Proof that the comparison can fail: plausible but wrong normalisations differ by more than 1e-5."""
    model, images, reference = model_and_batch
    with torch.no_grad():
        features = {}
        handle = model.layer4.register_forward_hook(lambda m, i, o: features.setdefault("A", o))
        model(images)
        handle.remove()
        cells = features["A"].shape[-2] * features["A"].shape[-1]  # 49 at stride 32, 196 at stride 16
        raw = torch.einsum("ck,bkhw->bchw", model.fc.weight, features["A"]) / cells
    right = scale_maps(raw, (224, 224))
    assert max_abs_difference(right.numpy(), reference) <= TOLERANCE
    relu = torch.relu(raw)
    upsampled_once = F.interpolate(relu / relu.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-7),
                                   size=(224, 224), mode="bilinear", align_corners=False)
    corners = F.interpolate(relu, size=(224, 224), mode="bilinear", align_corners=True)
    corners = corners - corners.amin(dim=(-2, -1), keepdim=True)
    corners = corners / (1e-7 + corners.amax(dim=(-2, -1), keepdim=True))
    shifted = raw - raw.amin(dim=(-2, -1), keepdim=True)  # skips the ReLU: negative evidence kept
    no_relu = scale_maps(shifted, (224, 224))
    for wrong in (upsampled_once, corners, no_relu):
        assert max_abs_difference(wrong.numpy(), reference) > TOLERANCE


def test_autograd_path_matches_reference(model_and_batch):
    model, images, reference = model_and_batch
    _, maps = gradcam_maps(model, images, method="autograd")
    assert max_abs_difference(maps.numpy(), reference) <= TOLERANCE


def test_non_gap_head_uses_autograd_and_matches_reference():
    """A max-pool head breaks the CAM identity: 'auto' must take the autograd path and still agree."""
    model = make_model(seed=3)
    model.avgpool = nn.AdaptiveMaxPool2d(1)
    images = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(4))
    _, maps = gradcam_maps(model, images)
    assert max_abs_difference(maps.numpy(), reference_maps(model, images)) <= TOLERANCE
    with pytest.raises(ValueError, match="global-average-pool"):
        gradcam_maps(model, images, method="identity")


def test_mode_is_never_switched():
    model = make_model()
    images = torch.rand(2, 1, 64, 64)
    gradcam_maps(model, images)
    assert not model.training
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        gradcam_maps(model, images)
    assert model.training


def test_bad_input_shape_is_named():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        gradcam_maps(make_model(), torch.rand(1, 64, 64))


def test_stride_16_maps_are_finer():
    """The stride-16 model explains on a 14 x 14 grid; on the same weights its maps differ from stride 32's."""
    coarse, fine = make_model(seed=5), make_model(seed=5, output_stride=16)
    images = torch.rand(2, 1, 224, 224, generator=torch.Generator().manual_seed(6))
    captured = {}
    handle = fine.layer4.register_forward_hook(lambda m, i, o: captured.setdefault("A", o))
    _, fine_maps = gradcam_maps(fine, images)
    handle.remove()
    assert captured["A"].shape[-2:] == (14, 14)
    _, coarse_maps = gradcam_maps(coarse, images)
    assert (fine_maps - coarse_maps).abs().max() > 0.05
    small_images = images[..., :96, :96]  # 6 x 6 cells at 96 px, the default study's crop size
    _, small = gradcam_maps(fine, small_images)
    assert small.shape == (2, 4, 96, 96) and small.amax(dim=(-2, -1)).min() > 0.99
    assert max_abs_difference(small.numpy(), reference_maps(fine, small_images)) <= TOLERANCE
