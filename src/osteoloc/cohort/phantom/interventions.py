"""Localisation by intervention: a phantom radiograph re-rendered with one lesion removed, moved along its
zone by known distances, or moved to another target's site, every other draw (anatomy, texture, exposure,
noise) the same, so the images differ only where the lesion was and where it went.

The renderer's random draws do not depend on the lesions (render.py), so replaying the radiograph's
random state at rendering (`cohort.stage_radiograph`) redraws the same image bit for bit; a changed lesion
then changes only the pixels within the blur's reach of its old and new outline.

Moves are rotations about the femoral head's centre (image mm): a femoral bump slides along the head's
contour, the lateral acetabular spur along the sourcil (concentric with the head), the inferior spur along
the arc through the teardrop tip. `shift_mm` is the distance its polygon's centroid moves (the chord).
Another site: the femoral bumps swap superior <-> inferior (rotation to the other span's middle), the
acetabular spurs lateral edge (point 67) <-> teardrop tip (point 71) (translation by the points' offset).
"""

import copy
from dataclasses import dataclass

import numpy as np

from osteoloc.cohort.phantom import anatomy, lesions
from osteoloc.cohort.phantom.cohort import Plan, stage_radiograph
from osteoloc.cohort.phantom.render import render
from osteoloc.names import SIDES, TARGETS

KINDS = ("removed", "moved", "other_site")
OTHER_SITE = {"osteo_fem_sup": "osteo_fem_inf", "osteo_fem_inf": "osteo_fem_sup",
              "osteo_acet_sup": "osteo_acet_inf", "osteo_acet_inf": "osteo_acet_sup"}
ACETABULAR_POINTS = {"osteo_acet_sup": 67, "osteo_acet_inf": 71}


@dataclass
class Intervention:
    """One re-rendered radiograph: which lesion (side, target), the kind (KINDS), the intended move of
    the lesion's centroid (mm; NaN for a removal), the image and the moved lesion's truth mask (None when
    removed), beside the original's."""
    side: str
    target: str
    kind: str
    shift_mm: float
    image: np.ndarray
    mask: np.ndarray
    original: np.ndarray
    original_mask: np.ndarray
    polygon: np.ndarray  # the moved lesion's polygon, image mm (None when removed)
    original_polygon: np.ndarray
    spacing: float  # mm per pixel of the images
    points_mm: np.ndarray  # the hip's 80 exact points, image mm (x, y)

    @property
    def mask_shift_mm(self):
        """How far the truth mask's centroid moved (mm): the host bone clips a moved lesion, so this can
        differ from shift_mm; NaN when removed or when nothing of it is left outside the bone."""
        if self.mask is None or not self.mask.any():
            return float("nan")
        centroids = [np.argwhere(m).mean(axis=0) for m in (self.mask, self.original_mask)]
        return float(np.linalg.norm(centroids[0] - centroids[1]) * self.spacing)


def _rotate(polygon, centre, angle):
    c, s = np.cos(angle), np.sin(angle)
    return (polygon - centre) @ np.array([[c, -s], [s, c]]).T + centre


def _centroid(polygon):
    return np.asarray(polygon, dtype=float).mean(axis=0)


def moved_polygon(polygon, head_centre, shift_mm):
    """The lesion rotated about the head centre so that its centroid moves `shift_mm` (signed; chord
    length)."""
    radius = np.linalg.norm(_centroid(polygon) - head_centre)
    angle = 2 * np.arcsin(np.clip(shift_mm / (2 * radius), -1, 1))
    return _rotate(polygon, head_centre, angle)


def other_site_polygon(polygon, target, staged, side_index):
    """The lesion of `target` moved to OTHER_SITE[target] (see the module's docstring)."""
    side = SIDES[side_index]
    hip, centre, rot = staged.layout["hips"][side], staged.layout["centres"][side], staged.layout["rotation"]
    head = anatomy.to_image(np.zeros((1, 2)), centre, side, rot)[0]
    other = OTHER_SITE[target]
    if target in lesions.FEMORAL_SPANS:
        anchor = anatomy.to_image(anatomy.polar(np.array([np.mean(lesions.FEMORAL_SPANS[other])]), hip.radius),
                                  centre, side, rot)[0]
        here, there = _centroid(polygon) - head, anchor - head
        angle = np.arctan2(there[1], there[0]) - np.arctan2(here[1], here[0])
        return _rotate(polygon, head, angle)
    points = anatomy.to_image(hip.points[[ACETABULAR_POINTS[target], ACETABULAR_POINTS[other]]], centre, side, rot)
    return polygon + (points[1] - points[0])


def _render(staged, scene, state):
    staged.rng.bit_generator.state = state
    return render(scene, staged.look, staged.rng)


def interventions(config, subject_index, visit=0, shifts_mm=(-6.0, -3.0, 3.0, 6.0), plan=None):
    """Every intervention on every lesion of radiograph (subject_index, visit) of the phantom `config`:
    per lesion one removal, one move per shift in `shifts_mm` (mm) and one move to the other site.
    Returns a list of Intervention (empty for a radiograph without a lesion). plan: the config's `Plan`,
    to reuse it across radiographs."""
    staged = stage_radiograph(plan or Plan(config), subject_index, visit)
    state = copy.deepcopy(staged.rng.bit_generator.state)
    original = _render(staged, staged.scene, state)
    out = []
    for (s, t), (polygon, host) in sorted(staged.scene.lesions.items()):
        side, target = SIDES[s], TARGETS[t]
        head = anatomy.to_image(np.zeros((1, 2)), staged.layout["centres"][side], side, staged.layout["rotation"])[0]
        variants = [("removed", np.nan, None)]
        variants += [("moved", float(d), moved_polygon(polygon, head, d)) for d in shifts_mm]
        variants += [("other_site", np.nan, other_site_polygon(polygon, target, staged, s))]
        for kind, shift, new in variants:
            scene = copy.copy(staged.scene)
            scene.lesions = dict(staged.scene.lesions)
            if new is None:
                del scene.lesions[(s, t)]
            else:
                scene.lesions[(s, t)] = (new, host)
            drawn = _render(staged, scene, state)
            if kind == "other_site":
                shift = float(np.linalg.norm(_centroid(new) - _centroid(polygon)))
            out.append(Intervention(side, target, kind, shift, drawn.image, drawn.lesion_masks.get((s, t)),
                                    original.image, original.lesion_masks[(s, t)], new, polygon,
                                    staged.scene.spacing, staged.exact[80 * s:80 * (s + 1)]))
    return out
