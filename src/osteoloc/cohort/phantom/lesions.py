"""Osteophytes of the phantom: bony protrusions at each target's anatomical site, larger with grade.

Each function returns a closed polygon in the hip's local frame (anatomy.py). The polygon overlaps the
host bone at its base; the lesion itself (the truth mask) is the part outside the host bone, so the
renderer intersects it with the bone's complement.
"""

import numpy as np

from osteoloc.cohort.phantom.anatomy import arc, polar
from osteoloc.names import TARGETS

# Height of the protrusion per grade, in units of the configured grade-1 size.
GRADE_FACTOR = (0.0, 1.0, 1.8, 2.7)
# Where on the head contour the femoral targets sit (degrees, landmark semantics): the span of the
# default groups' points, [13, 78, 14, 15] and [19, 20, 21].
FEMORAL_SPANS = {"osteo_fem_sup": (-58.0, 12.0), "osteo_fem_inf": (117.0, 163.0)}


def height_mm(grade, size_mm, rng):
    """Protrusion height of a lesion of `grade` (0 gives 0)."""
    return float(size_mm * GRADE_FACTOR[int(grade)] * rng.uniform(0.8, 1.2))


def femoral_bump(hip, angle, height, rng):
    """A smooth bump on the head contour at `angle`, `height` mm high and about 1.2 h + 3 mm wide."""
    R = hip.radius
    half = np.degrees((1.2 * height + 3.0) / (2 * R))
    d = np.linspace(-half, half, 25)
    profile = np.clip(1.0 - (d / half) ** 2, 0.0, None) ** 0.8
    wobble = 1.0 + 0.15 * np.convolve(rng.standard_normal(29), np.ones(5) / 5, mode="valid")
    outer = polar(angle + d, R + height * profile * wobble)
    inner = arc(angle + half, angle - half, R - 1.5)
    return np.concatenate([outer, inner])


def acetabular_lateral_spur(hip, height, rng):
    """A spur continuing the sourcil beyond the lateral acetabular edge (point 67), its tip over the head."""
    Rs = hip.params["sourcil_radius"]
    e = hip.params["lateral_edge"]
    p67 = hip.points[67]
    up = hip.sites["ilium_lateral"] - p67
    up /= np.linalg.norm(up)
    # The lateral edge borders dark soft tissue, where a spur shows more than a bump on the head does:
    # it is kept slimmer so that acet_sup is not the easiest target (it is the hardest in paper A).
    reach = np.degrees(1.0 * height / Rs) * rng.uniform(0.85, 1.15)
    return np.array([
        polar(e + 5.0, Rs),
        polar(e - reach, hip.radius - 1.0),  # the tip overhangs the joint space onto the head
        polar(e - 0.55 * reach, Rs + 0.4 * height + 0.3),
        p67 + up * (1.0 + 0.6 * height),
        polar(e + 3.0, Rs + 3.0),
    ])


def acetabular_inferior_spur(hip, height, rng):
    """A spur from the inferior acetabular margin at the teardrop tip (point 71), laterally under the head."""
    tip = hip.points[71]
    d = np.array([-1.0, -0.25 + 0.2 * rng.standard_normal()])
    d /= np.linalg.norm(d)
    q = np.array([-d[1], d[0]])
    base = 0.6 * height + 1.0
    return np.array([
        tip - q * base + d * -1.5,
        tip - q * 0.6 * base + d * 0.6 * height,
        tip + d * 1.3 * height,
        tip + q * 0.6 * base + d * 0.6 * height,
        tip + q * base + d * -1.5,
    ])


def osteophyte(hip, target, height, rng):
    """The lesion polygon of `target` with protrusion `height` mm (None for height 0)."""
    if height <= 0:
        return None
    if target in FEMORAL_SPANS:
        lo, hi = FEMORAL_SPANS[target]
        return femoral_bump(hip, rng.uniform(lo, hi), height, rng)
    if target == "osteo_acet_sup":
        return acetabular_lateral_spur(hip, height, rng)
    if target == "osteo_acet_inf":
        return acetabular_inferior_spur(hip, height, rng)
    raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")


def host_bone(target):
    """Which bone a target's lesion grows from (its mask excludes that bone)."""
    return "femur" if target.startswith("osteo_fem") else "pelvis"



__all__ = ["GRADE_FACTOR", "FEMORAL_SPANS", "height_mm", "osteophyte", "host_bone"]
