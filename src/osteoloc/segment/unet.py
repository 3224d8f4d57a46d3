"""The U-Net of paper B: 'the original U-Net with small changes' - two 3x3 convolutions per level with
zero padding (same-size output), max-pool down, transposed-conv up with skip concatenation, ReLU,
dropout 0.3 at the end of the contracting path (as the original places it; BasicUNet would put it
after every convolution, so the shallower levels' dropout is switched off), He-normal initialisation, two output classes (softmax in the loss). MONAI's BasicUNet is
exactly that layout (four down-samplings); `features` sets the widths (the original: 64 ... 1024)."""

import torch
from monai.networks.nets import BasicUNet

from osteoloc.train.device import pick_device


def build_unet(features, dropout=0.3, norm="none"):
    """A 2-D, 1-channel-in, 2-class-out U-Net with He-normal (kaiming, fan-in) weights and zero biases.

    `norm` none (the original) / batch / instance; `features` six widths (5 levels + the last up-block).
    """
    model = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=tuple(features),
                      act="relu", norm=None if norm == "none" else norm, dropout=dropout)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and not name.startswith(("down_3", "down_4")):
            module.p = 0.0
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    return model


def save_unet(model, epoch, cfg, path, environment=None):
    """The site's `model.pt`: {"state_dict", "epoch", "config", "environment"} (config: the widths, dropout
    and norm `load_unet` rebuilds the network from; environment: what the job ran on,
    `osteoloc.train.device.environment_info`). `path` should be atomic (the caller's atomic_path)."""
    torch.save({"state_dict": model.state_dict(), "epoch": int(epoch), "config": dict(cfg),
                "environment": dict(environment or {})}, path)


def load_unet(path, device="cpu"):
    """The U-Net saved by `save_unet`, in eval mode on `device` (osteoloc.train.device.pick_device names)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or not {"state_dict", "config"} <= set(checkpoint):
        raise ValueError(f"{path}: not a U-Net checkpoint dict with 'state_dict' and 'config'")
    cfg = checkpoint["config"]
    model = build_unet(cfg["features"], cfg["dropout"], cfg["norm"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(pick_device(device)).eval()
