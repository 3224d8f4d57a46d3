"""Paper A's losses (docs/method.md section 4, eqs. 1-8): masked BCE, class activation maps, the plateau-Gaussian
landmark penalty (or another mask shape) and the prior loss on normalised CAMs. Pure tensor functions,
batched, differentiable."""

import torch
import torch.nn.functional as F

from osteoloc.names import DEFAULT_SHAPE, PENALTY_SHAPE_NAMES

EPS = 1e-6


def masked_bce(logits, labels):
    """Eq. (1): BCE averaged over the known (image, target) pairs; labels -1 (unknown) are left out.

    logits, labels: (B, 4); labels hold 1, 0 or -1. A batch without a known label gives 0 (with a graph).
    """
    known = labels >= 0
    per_pair = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0).to(logits.dtype),
                                                  reduction="none")
    n_known = known.sum()
    return (per_pair * known).sum() / n_known.clamp(min=1)


def class_activation_maps(features, fc_weight):
    """Eq. (2): M_c = ReLU(sum_k w_ck F_k) for every target c; (B, K, h, w), (4, K) -> (B, 4, h, w)."""
    return torch.relu(torch.einsum("bkhw,ck->bchw", features, fc_weight.to(features.dtype)))


# Penalty as a function of the plateau-adjusted distance d_adj = max(0, d - r) and sigma (same units).
# Each is 0 on the plateau and rises towards 1; see docs/training.md "Penalty-mask shapes".
PENALTY_SHAPES = {
    # paper A, eq. (5): 1 - exp(-d_adj^2 / (2 sigma^2))
    "plateau_gaussian": lambda adjusted, sigma: 1 - torch.exp(-adjusted**2 / (2 * sigma**2)),
    # hard disc: 0 within r (d <= r), 1 outside; sigma unused
    "disc": lambda adjusted, sigma: (adjusted > 0).to(adjusted.dtype),
    # linear ramp from 0 at r to 1 at r + sigma, 1 beyond
    "linear": lambda adjusted, sigma: (adjusted / sigma).clamp(max=1),
    # Cauchy (Lorentzian): the Gaussian's curvature at the plateau edge, but a heavy tail that is still
    # rising far away, so activation beyond ~r + 3 sigma keeps a gradient towards the target
    "cauchy": lambda adjusted, sigma: 1 - 1 / (1 + adjusted**2 / (2 * sigma**2)),
}
assert tuple(PENALTY_SHAPES) == PENALTY_SHAPE_NAMES and DEFAULT_SHAPE in PENALTY_SHAPES  # names.py lists them


def penalty_maps(landmarks, valid, feature_hw, input_hw, radius, sigma, shape=DEFAULT_SHAPE):
    """Eqs. (3)-(5): the landmark penalty Q_c on the feature grid, per image and target.

    landmarks (B, 4, L, 2) as (x, y) in input pixels, valid (B, 4, L) bool; radius and sigma in input
    pixels. Pixel coordinate u maps to (u + 0.5) * s feature units, s = feature size / input size, and
    the centre of cell j sits at j + 0.5 (docs/method.md section 4). Radius and sigma are scaled by the same s.
    shape: a key of PENALTY_SHAPES, a function of d_adj = max(0, d - r) (eq. 4); the default is paper A's
    plateau Gaussian (eq. 5). Targets without a valid landmark get an all-zero map (the prior loss leaves
    them out anyway).
    """
    if shape not in PENALTY_SHAPES:
        raise ValueError(f"unknown penalty shape {shape!r}; choose one of {sorted(PENALTY_SHAPES)}")
    h, w = feature_hw
    in_h, in_w = input_hw
    scale_x, scale_y = w / in_w, h / in_h
    scale = (scale_x * scale_y) ** 0.5  # one scale for the isotropic radius and sigma
    device, dtype = landmarks.device, torch.float32
    points = landmarks.to(dtype)
    px = (points[..., 0] + 0.5) * scale_x  # (B, 4, L)
    py = (points[..., 1] + 0.5) * scale_y
    cy = torch.arange(h, device=device, dtype=dtype) + 0.5
    cx = torch.arange(w, device=device, dtype=dtype) + 0.5
    # squared distance of every cell centre to every landmark: (B, 4, L, h, w)
    d2 = (cx.view(1, 1, 1, 1, w) - px[..., None, None]) ** 2 + (cy.view(1, 1, 1, h, 1) - py[..., None, None]) ** 2
    d2 = d2.masked_fill(~valid[..., None, None], float("inf"))
    distance = d2.min(dim=2).values.sqrt()  # eq. (3): (B, 4, h, w)
    adjusted = (distance - radius * scale).clamp(min=0)  # eq. (4)
    penalty = PENALTY_SHAPES[shape](adjusted, sigma * scale)
    has_point = valid.any(dim=2)[..., None, None]
    return torch.where(has_point, penalty, torch.zeros_like(penalty))


def normalised_cams(cams, eps=EPS):
    """Eq. (6): M^_c = M_c / (sum_{x,y} M_c + eps); a zero map stays zero."""
    return cams / (cams.sum(dim=(-2, -1), keepdim=True) + eps)


def prior_loss(cams, penalties, target_valid, eps=EPS):
    """Eq. (7): sum_{x,y} M^_c Q_c averaged over the targets C' with a valid landmark, then over images
    with a non-empty C'. cams, penalties (B, 4, h, w); target_valid (B, 4) bool. Returns a scalar tensor
    (0 with a graph when no image has a valid target)."""
    per_target = (normalised_cams(cams.float(), eps) * penalties.float()).sum(dim=(-2, -1))  # (B, 4)
    mask = target_valid.to(per_target.dtype)
    n_targets = mask.sum(dim=1)
    per_image = (per_target * mask).sum(dim=1) / n_targets.clamp(min=1)
    has_targets = (n_targets > 0).to(per_image.dtype)
    return (per_image * has_targets).sum() / has_targets.sum().clamp(min=1)
