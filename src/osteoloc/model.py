"""The four-target ResNet-18 of paper A: one grey input channel, four logits (TARGETS order)."""

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from osteoloc.targets import TARGETS

# torchvision's own file name for the ImageNet weights, so a user can copy it from a torch hub cache.
IMAGENET_FILE = "resnet18-f37072fd.pth"


def build_model(weights="none", weights_path=None):
    """ResNet-18 with conv1 taking one channel and fc giving len(TARGETS) logits.

    weights: "none" (random init, from the global torch RNG) or "imagenet", read from the local torchvision
    checkpoint `weights_path` (no download on cluster nodes); conv1's RGB filters are summed to one channel
    so a grey image x gives the response the RGB net gives to (x, x, x). The fc layer stays random.
    """
    model = resnet18(weights=None, num_classes=len(TARGETS))
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
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


def load_trained_model(checkpoint_path, device="cpu"):
    """The trained network of a `best.pt` (contracts.md section 4: a dict with "state_dict"), in eval mode
    on `device` (a torch.device or a name `osteoloc.device.pick_device` takes)."""
    from osteoloc.device import pick_device

    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{checkpoint_path}: not a checkpoint dict with a 'state_dict'")
    model = build_model(weights="none")
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(pick_device(device)).eval()
