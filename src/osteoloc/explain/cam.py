"""Grad-CAM of every target from one forward pass, normalised exactly as pytorch-grad-cam 1.5.7 does.

For a head `logits = W @ GAP(A) + b` the Grad-CAM channel weight of class c is
`mean_{x,y} d z_c / d A_k(x, y) = W_ck / (h * w)`, so Grad-CAM equals CAM divided by h * w (Selvaraju et al.,
"Grad-CAM generalizes CAM"): no backward pass is needed. Heads where this does not hold use the autograd
path (one forward pass, one gradient per class).

Normalisation (pytorch_grad_cam.base_cam + utils.image.scale_cam_image, one target layer):
ReLU on the feature-size map; per-map min-max `(m - min) / (1e-7 + max)`; `cv2.resize` with its default
INTER_LINEAR (half-pixel centres = torch bilinear with align_corners=False, edges clamped) to the input size;
ReLU and the same min-max once more at input size (its `aggregate_multi_layers`).
"""

import torch
import torch.nn.functional as F
from torch import nn

MINMAX_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


def feature_layer(model):
    """The last conv block (torchvision ResNet's `layer4`): Grad-CAM's target layer."""
    if not hasattr(model, "layer4"):
        raise TypeError(f"{type(model).__name__} has no `layer4`: pass target_layer= explicitly")
    return model.layer4


def has_gap_linear_head(model):
    """True when the logits are a linear map of the globally average-pooled `layer4` output."""
    pool, fc = getattr(model, "avgpool", None), getattr(model, "fc", None)
    return (isinstance(pool, nn.AdaptiveAvgPool2d) and tuple(_pair(pool.output_size)) == (1, 1)
            and isinstance(fc, nn.Linear))


def _pair(size):
    return (size, size) if isinstance(size, int) else size


def scale_maps(raw, size):
    """ReLU, min-max, bilinear resize to `size` (H, W), min-max again: pytorch-grad-cam's normalisation.

    raw: (B, C, h, w) float tensor -> (B, C, H, W) float32 in [0, 1).
    """
    def minmax(m):
        m = m - m.amin(dim=(-2, -1), keepdim=True)
        return m / (MINMAX_EPS + m.amax(dim=(-2, -1), keepdim=True))

    maps = minmax(torch.relu(raw.float()))
    maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    return minmax(torch.relu(maps))


def _forward_with_features(model, images, layer):
    """Run the model once, returning (logits, the layer's output)."""
    captured = {}

    def hook(_module, _inputs, output):
        captured["features"] = output

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(images)
    finally:
        handle.remove()
    return logits, captured["features"]


def _raw_cam_identity(model, features):
    # Grad-CAM weights W_ck / (h * w): the gradient of z_c through the global average pool.
    h, w = features.shape[-2:]
    return torch.einsum("ck,bkhw->bchw", model.fc.weight, features) / (h * w)


def _raw_cam_autograd(logits, features):
    """Grad-CAM by autograd: one gradient of sum_b z_{b,c} per class; images do not interact in eval mode."""
    raw = []
    for c in range(logits.shape[1]):
        (grads,) = torch.autograd.grad(logits[:, c].sum(), features, retain_graph=True)
        alpha = grads.mean(dim=(-2, -1), keepdim=True)
        raw.append((alpha * features).sum(dim=1))
    return torch.stack(raw, dim=1)


def gradcam_maps(model, images, method="auto", target_layer=None):
    """Logits and Grad-CAM maps of every class for a batch.

    model: in eval mode (an error otherwise: batch-norm in train mode would mix images of the batch, and
    this function never changes the model's mode behind the caller's back).
    images: (B, 1, H, W). method: "auto" (identity for a GAP + linear head, else autograd), "identity" or
    "autograd". Returns logits (B, n_classes) and maps (B, n_classes, H, W), both detached float32.
    """
    if model.training:
        raise ValueError("gradcam_maps needs the model in eval mode (call model.eval() first)")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 1, H, W), got shape {tuple(images.shape)}")
    if method not in ("auto", "identity", "autograd"):
        raise ValueError(f"unknown method {method!r}")
    layer = target_layer if target_layer is not None else feature_layer(model)
    use_identity = method == "identity" or (method == "auto" and target_layer is None
                                            and has_gap_linear_head(model))
    if method == "identity" and not has_gap_linear_head(model):
        raise ValueError("the CAM identity needs a global-average-pool + linear head (avgpool, fc)")
    if use_identity:
        with torch.inference_mode():  # no autograd bookkeeping at all: the identity needs no gradient
            logits, features = _forward_with_features(model, images, layer)
            raw = _raw_cam_identity(model, features)
    else:
        with torch.enable_grad():
            logits, features = _forward_with_features(model, images, layer)
            raw = _raw_cam_autograd(logits, features)
    maps = scale_maps(raw.detach(), images.shape[-2:])
    return logits.detach().float(), maps


def feature_grid(model, input_hw):
    """(h, w) of the target layer's map for an input of input_hw pixels: the grid every Grad-CAM map of
    this model is upsampled from (one forward pass of a blank image). The model must be in eval mode
    (batch-norm in train mode would update its running statistics)."""
    if model.training:
        raise ValueError("feature_grid needs the model in eval mode (call model.eval() first)")
    layer = feature_layer(model)
    parameter = next(model.parameters())
    blank = torch.zeros((1, 1, *input_hw), dtype=parameter.dtype, device=parameter.device)
    with torch.inference_mode():
        _, features = _forward_with_features(model, blank, layer)
    return tuple(int(v) for v in features.shape[-2:])
