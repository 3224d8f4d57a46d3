"""The four-target ResNet-18 of paper A: one grey input channel, four logits (TARGETS order)."""

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from osteoloc.names import TARGETS
from osteoloc.train.device import pick_device
from osteoloc.train.settings import TrainSettings

# torchvision's own file name for the ImageNet weights, so a user can copy it from a torch hub cache.
IMAGENET_FILE = "resnet18-f37072fd.pth"


def build_model(weights="none", weights_path=None, output_stride=32, n_outputs=len(TARGETS)):
    """ResNet-18 with conv1 taking one channel and fc giving `n_outputs` logits (TARGETS order; 1 for a
    per-target model).

    weights: "none" (random init, from the global torch RNG) or "imagenet", read from the local torchvision
    checkpoint `weights_path` (no download on cluster nodes); conv1's RGB filters are summed to one channel
    so a grey image x gives the response the RGB net gives to (x, x, x). The fc layer stays random.
    output_stride: input pixels per feature-map cell, 32 (torchvision's ResNet: 7 x 7 maps at 224 px) or
    16 (layer4 dilated instead of strided: 14 x 14 at 224 px, 6 x 6 at 96 px). Both have the same
    parameter shapes, so the same state_dict (ImageNet or a trained stride-32 model) loads into either.
    """
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, not {output_stride!r}")
    model = resnet18(weights=None, num_classes=n_outputs)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if output_stride == 16:
        _dilate_layer4(model)
    if weights == "none":
        return model
    if weights != "imagenet":
        raise ValueError(f"weights must be 'none' or 'imagenet', not {weights!r}")
    path = Path(weights_path or IMAGENET_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights not found at {path}: place torchvision's ResNet-18 checkpoint "
            f"({IMAGENET_FILE}, from https://download.pytorch.org/models/{IMAGENET_FILE}) there, "
            "or set train.weights_path")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != {"fc.weight", "fc.bias"} or unexpected:
        raise ValueError(f"{path}: not a torchvision ResNet-18 checkpoint "
                         f"(missing {sorted(missing)}, unexpected {sorted(unexpected)})")
    return model


def _dilate_layer4(model):
    """Output stride 16 the a-trous way (torchvision's replace_stride_with_dilation refuses BasicBlock).

    layer4's first conv and its shortcut lose their stride 2; every 3x3 conv after that first one is
    dilated by 2 (padding 2), so it sees the same neighbours as before on the twice finer grid: the
    stride-16 map at even cells equals the stride-32 map. Only strides, dilations and paddings change.
    """
    first = model.layer4[0]
    first.conv1.stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    for conv in (first.conv2, *[c for block in model.layer4[1:] for c in (block.conv1, block.conv2)]):
        conv.dilation, conv.padding = (2, 2), (2, 2)


def features_and_logits(model, images):
    """One forward pass giving the last conv features (B, 512, h, w) and the logits (B, 4).

    The CAM of eq. (2) needs the features the logits come from; ResNet's head is global average pooling
    then fc, so this is exactly `model(images)` with the features kept.
    """
    x = model.conv1(images)
    x = model.maxpool(model.relu(model.bn1(x)))
    features = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    logits = model.fc(torch.flatten(model.avgpool(features), 1))
    return features, logits


class PerTargetModels(nn.ModuleDict):
    """Four single-output ResNet-18s keyed by target (TARGETS order), the study arm of 'separate
    location-specific models'. crop_px > 0: each model takes its target's landmark sub-crop
    (`osteoloc.train.data.subcrop_offsets`) instead of the whole hip crop."""

    def __init__(self, models, crop_px=0):
        super().__init__(models)
        self.crop_px = int(crop_px)


def load_trained_model(checkpoint_path, device="cpu"):
    """The trained network of a `best.pt` (contracts.md section 4: a dict with "state_dict" and the run's
    settings under "config", `TrainSettings.as_dict()`), in eval mode on `device` (a torch.device or a name
    `osteoloc.train.device.pick_device` takes).

    The settings say how to rebuild it: `output_stride` and, for a per-target arm (`per_target` or
    `crop_px` > 0), a PerTargetModels of four single-output ResNet-18s. A checkpoint without its full
    settings is refused (`TrainSettings.from_dict`)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{checkpoint_path}: not a checkpoint dict with a 'state_dict'")
    settings = TrainSettings.from_dict(checkpoint.get("config"), checkpoint_path)
    stride, crop_px = settings.output_stride, settings.crop_px
    if settings.per_target or crop_px:
        model = PerTargetModels({t: build_model(output_stride=stride, n_outputs=1) for t in TARGETS}, crop_px)
    else:
        model = build_model(weights="none", output_stride=stride)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{checkpoint_path}: its weights do not fit the model its config describes "
                         f"({type(model).__name__}, stride {stride}): {err}") from None
    return model.to(pick_device(device)).eval()
