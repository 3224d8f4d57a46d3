"""Osteophytes of the phantom: bony protrusions at each target's anatomical site, larger with grade.

Each shape function returns a closed polygon in the hip's local frame (anatomy.py). The polygon overlaps
the host bone at its base; the lesion itself (the truth mask) is the part outside the host bone, so the
renderer intersects it with the bone's complement.

Where a lesion sits (`cohort.phantom.lesion_placement`, docs/phantom.md "Where lesions sit"): design
`landmark` builds it at its target's landmarks (the shape functions' own sites); design `offset` builds it
at an anchor landmark of its target's group (LANDMARK_GROUPS) and moves it by an offset drawn along and
across its zone. The zone is the host bone's outline (`Outline`): *along* slides the lesion along the
outline (its base stays on the bone), *across* moves it, with the bit of bone that clipped it, along the
outline's outward normal (positive: off the bone, negative: over it, seen en face). A share of lesions
sits away from every target's landmarks instead.
"""

from dataclasses import dataclass

import numpy as np

from osteoloc.cohort.phantom.anatomy import angle_of, arc, polar
from osteoloc.cohort.phantom.settings import OFFSET_DISTRIBUTIONS, PLACEMENT_DESIGNS
from osteoloc.names import TARGETS

# Height of the protrusion per grade, in units of the configured grade-1 size.
GRADE_FACTOR = (0.0, 1.0, 1.8, 2.7)
# Where on the head contour the femoral targets sit (degrees, landmark semantics): the span of the
# default groups' points, [13, 78, 14, 15] and [19, 20, 21].
FEMORAL_SPANS = {"osteo_fem_sup": (-58.0, 12.0), "osteo_fem_inf": (117.0, 163.0)}
# The landmarks each target's lesion is placed against and measured from: preprocess.groups' defaults.
LANDMARK_GROUPS = {"osteo_fem_sup": (13, 78, 14, 15), "osteo_fem_inf": (19, 20, 21), "osteo_acet_sup": (67,),
                   "osteo_acet_inf": (71,)}
# Half-length (mm) of the outline stretch whose chord gives the tangent: smooths the corners at 67 and 71.
TANGENT_HALF_MM = 3.0


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


class Outline:
    """A bone's outline (the boundary of its closed polygon, in the polygon's frame: local or image mm)
    parameterised by arc length s (mm, modulo its length, increasing in the polygon's point order)."""

    def __init__(self, polygon):
        pts = np.asarray(polygon, dtype=float)
        closed = np.vstack([pts, pts[:1]])
        seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
        keep = np.concatenate([[True], seg > 1e-9])
        self.points = closed[keep]
        self.arc = np.concatenate([[0.0], np.cumsum(seg[seg > 1e-9])])
        self.length = float(self.arc[-1])
        x, y = pts[:, 0], pts[:, 1]
        # shoelace sign: the interior lies left of the direction of travel when positive
        self.orientation = float(np.sign(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))

    def at(self, s):
        """Outline point(s) at arc length s."""
        s = np.mod(np.asarray(s, dtype=float), self.length)
        return np.stack([np.interp(s, self.arc, self.points[:, 0]), np.interp(s, self.arc, self.points[:, 1])],
                        axis=-1)

    def arc_of(self, point):
        """Arc length of the outline point nearest `point`."""
        a, b = self.points[:-1], self.points[1:]
        ab = b - a
        u = np.clip(np.einsum("ij,ij->i", np.asarray(point) - a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
        d = np.linalg.norm(a + u[:, None] * ab - point, axis=1)
        i = int(np.argmin(d))
        return float(self.arc[i] + u[i] * (self.arc[i + 1] - self.arc[i]))

    def frame(self, s):
        """(tangent, outward normal) unit vectors at arc length s: the tangent along increasing s from the
        chord over +-TANGENT_HALF_MM, the normal pointing out of the bone."""
        t = self.at(s + TANGENT_HALF_MM) - self.at(s - TANGENT_HALF_MM)
        t = t / np.linalg.norm(t)
        return t, self.orientation * np.array([t[1], -t[0]])


def rotate(points, centre, angle):
    """`points` rotated by `angle` (radians, x towards y) about `centre`."""
    c, s = np.cos(angle), np.sin(angle)
    return (np.asarray(points, dtype=float) - centre) @ np.array([[c, -s], [s, c]]).T + centre


def reseat(polygon, outline, s_from, s_to):
    """A lesion grown at arc s_from of `outline` moved to grow at s_to: carried from the one outline point
    to the other and turned with the outward normal, so its base stays on the bone."""
    n0, n1 = outline.frame(s_from)[1], outline.frame(s_to)[1]
    angle = np.arctan2(n1[1], n1[0]) - np.arctan2(n0[1], n0[0])
    return rotate(polygon, outline.at(s_from), angle) + (outline.at(s_to) - outline.at(s_from))


@dataclass
class Placement:
    """How a lesion was placed (local mm): design `offset`'s anchor landmark, arc offset along the host
    outline from it and offset across (outward normal), whether it was placed away from every landmark
    zone; NaN offsets and anchor -1 under design `landmark`."""

    anchor: int = -1
    along_mm: float = float("nan")
    across_mm: float = float("nan")
    away: bool = False
    host_shift: tuple = (0.0, 0.0)  # local mm: where its clipping bone moved with it (render.Lesion)


def _offset(rng, distribution, scale):
    if distribution == "uniform":
        return float(rng.uniform(-scale, scale))
    if distribution == "normal":
        return float(np.clip(rng.normal(0.0, scale), -3 * scale, 3 * scale))
    raise ValueError(f"cohort.phantom.lesion_placement: unknown distribution {distribution!r}; expected one of "
                     f"{OFFSET_DISTRIBUTIONS}")


def host_outline(hip, target):
    """The Outline of the bone `target`'s lesion grows from, in the hip's local frame."""
    return Outline(hip.femur if host_bone(target) == "femur" else hip.pelvis)


def _away_arcs(hip, outline, placement):
    """Arc lengths (0.5 mm apart) of the host outline at least `away_min_mm` from every landmark of every
    target group and within `away_reach_mm` of the head centre in x and y (so the hip's crop holds it)."""
    s = np.arange(0.0, outline.length, 0.5)
    xy = outline.at(s)
    marks = hip.points[sorted({i for group in LANDMARK_GROUPS.values() for i in group})]
    far = np.linalg.norm(xy[:, None, :] - marks[None], axis=2).min(axis=1) >= placement["away_min_mm"]
    inside = np.abs(xy).max(axis=1) <= placement["away_reach_mm"]
    return s[far & inside]


def placed_osteophyte(hip, target, height, rng, placement):
    """(polygon, Placement) of `target`'s lesion with protrusion `height` mm under
    `cohort.phantom.lesion_placement` (local frame; None polygon for height 0). Design `landmark` is
    `osteophyte` (the same draws); design `offset`: see the module's docstring."""
    if placement["design"] == "landmark":
        return osteophyte(hip, target, height, rng), Placement()
    if placement["design"] != "offset":
        raise ValueError(f"cohort.phantom.lesion_placement.design {placement['design']!r}; expected one of "
                         f"{PLACEMENT_DESIGNS}")
    if height <= 0:
        return None, Placement()
    outline = host_outline(hip, target)
    group = LANDMARK_GROUPS[target]
    arcs = {i: outline.arc_of(hip.points[i]) for i in group}
    away = bool(rng.random() < placement["away_fraction"])
    along = _offset(rng, placement["along_distribution"], placement["along_mm"])
    across = _offset(rng, placement["across_distribution"], placement["across_mm"])
    if away:
        candidates = _away_arcs(hip, outline, placement)
        if not len(candidates):
            raise ValueError(f"cohort.phantom.lesion_placement: no site on the {host_bone(target)}'s outline "
                             f"is {placement['away_min_mm']} mm from every landmark group within "
                             f"{placement['away_reach_mm']} mm of the head; lower away_min_mm")
        site = float(rng.choice(candidates))
        # measured from the group's landmark nearest along the outline
        gaps = {i: (site - a + outline.length / 2) % outline.length - outline.length / 2 for i, a in arcs.items()}
        anchor = min(gaps, key=lambda i: abs(gaps[i]))
        along = float(gaps[anchor])
    else:
        # the group's end landmark on the side the lesion goes, so |along| is its arc from the nearest one
        anchor = max(arcs, key=arcs.get) if along >= 0 else min(arcs, key=arcs.get)
        site = arcs[anchor] + along
    if target in FEMORAL_SPANS:
        shape = femoral_bump(hip, angle_of(hip.points[anchor]), height, rng)
    else:
        shape = osteophyte(hip, target, height, rng)
    polygon = reseat(shape, outline, arcs[anchor], site)
    shift = across * outline.frame(site)[1]
    return polygon + shift, Placement(anchor=int(anchor), along_mm=along, across_mm=across, away=away,
                                      host_shift=tuple(map(float, shift)))


def nearest_landmark(xy, points, target):
    """(index, distance mm) of the landmark of `target`'s group (LANDMARK_GROUPS) nearest `xy`; `points`
    the hip's 80 points in the same frame as `xy`."""
    group = list(LANDMARK_GROUPS[target])
    d = np.linalg.norm(points[group] - xy, axis=1)
    return group[int(np.argmin(d))], float(d.min())


def zone_offset(xy, outline, landmark_xy):
    """(along, across) mm of point `xy` from a landmark on `outline`, in the outline's frame at the landmark
    (tangent along increasing arc, outward normal)."""
    tangent, normal = outline.frame(outline.arc_of(landmark_xy))
    d = np.asarray(xy, dtype=float) - landmark_xy
    return float(d @ tangent), float(d @ normal)



__all__ = ["GRADE_FACTOR", "FEMORAL_SPANS", "LANDMARK_GROUPS", "Outline", "Placement", "height_mm", "host_bone",
           "host_outline", "nearest_landmark", "osteophyte", "placed_osteophyte", "reseat", "rotate", "zone_offset"]
