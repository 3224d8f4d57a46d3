"""Localisation by intervention: a phantom radiograph re-rendered with one lesion removed, moved along or
across its zone by known distances, or moved to another target's site, every other draw (anatomy, texture,
exposure, noise) the same, so the images differ only where the lesion was and where it went.

The renderer's random draws do not depend on the lesions (render.py), so replaying the radiograph's
random state at rendering (`cohort.stage_radiograph`) redraws the same image bit for bit; a changed lesion
then changes only the pixels within the blur's reach of its old and new outline.

Moves are calibrated on the rendered truth mask: `shift_mm` is how far the mask's centroid moves (within a
few hundredths of a pixel of the bisection's last step, or the mask's own rasterisation jump), never an
empty mask. Along the zone, the lesion slides along its host bone's outline (lesions.reseat: its base stays
on the bone, it turns with the outline; a femoral bump slides along the head, the lateral acetabular spur up
the ilium or down the anterior wall, the inferior spur along either edge of the teardrop tip); across it,
the lesion moves with the bit of bone that clipped it along the outline's outward normal at its site
(positive: off the bone, negative: over it, seen en face), so it keeps its shape. Another site: the lesion
reseated at the other target's site on the same bone (femoral superior <-> inferior: the other span's
middle; acetabular lateral edge 67 <-> teardrop tip 71).
"""

import copy
from dataclasses import dataclass

import numpy as np

from osteoloc.cohort.phantom import anatomy, lesions
from osteoloc.cohort.phantom.cohort import Plan, stage_radiograph
from osteoloc.cohort.phantom.render import Lesion, host_coverage, lesion_coverage, lesion_window, render
from osteoloc.names import SIDES, TARGETS

KINDS = ("removed", "moved", "other_site")
OTHER_SITE = {"osteo_fem_sup": "osteo_fem_inf", "osteo_fem_inf": "osteo_fem_sup",
              "osteo_acet_sup": "osteo_acet_inf", "osteo_acet_inf": "osteo_acet_sup"}
ACETABULAR_POINTS = {"osteo_acet_sup": 67, "osteo_acet_inf": 71}


@dataclass
class Intervention:
    """One re-rendered radiograph: which lesion (side, target), the kind (KINDS), the asked move of the
    lesion's mask centroid (mm, signed; the polygons' centroid distance for other_site; NaN for a removal),
    the image and the moved lesion's truth mask (None when removed), beside the original's, and the move's
    direction (DIRECTIONS; empty unless moved)."""
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
    direction: str = ""

    @property
    def mask_shift_mm(self):
        """How far the truth mask's centroid moved (mm): for a move, |shift_mm| within the calibration's
        tolerance (tests/unit/test_interventions.py); NaN when removed."""
        if self.mask is None or not self.mask.any():
            return float("nan")
        centroids = [np.argwhere(m).mean(axis=0) for m in (self.mask, self.original_mask)]
        return float(np.linalg.norm(centroids[0] - centroids[1]) * self.spacing)


DIRECTIONS = ("along", "across")
SCAN_STEP_MM = 0.5  # the calibration's first scan step along the move
BISECTIONS = 8


def _centroid(polygon):
    return np.asarray(polygon, dtype=float).mean(axis=0)


def _mask_centroid(scene, lesion, bone):
    """Centroid (row, col; image pixels) of `lesion`'s truth mask as the renderer draws it, None when empty."""
    window = lesion_window(scene, lesion.polygon)
    mask = lesion_coverage(scene, lesion, bone, window) >= 0.5
    return np.argwhere(mask).mean(axis=0) + window[::2] if mask.any() else None


def _turn(vector, angle):
    return lesions.rotate(np.asarray(vector, dtype=float), np.zeros(2), angle)


def _moved(lesion, outline, site, direction, u):
    """`lesion` (a render.Lesion growing at arc `site` of `outline`, image mm) moved by u mm (signed) in
    `direction`: reseated u mm of arc along the outline, or moved u mm along its outward normal with the
    bone that clips it."""
    if direction == "along":
        n0, n1 = outline.frame(site)[1], outline.frame(site + u)[1]
        angle = np.arctan2(n1[1], n1[0]) - np.arctan2(n0[1], n0[0])
        return Lesion(lesions.reseat(lesion.polygon, outline, site, site + u), lesion.host,
                      tuple(map(float, _turn(lesion.host_shift, angle))))
    if direction == "across":
        d = u * outline.frame(site)[1]
        return Lesion(lesion.polygon + d, lesion.host, tuple(map(float, np.asarray(lesion.host_shift) + d)))
    raise ValueError(f"unknown move direction {direction!r}; expected one of {DIRECTIONS}")


def calibrated_move(scene, lesion, outline, direction, shift_mm, bone):
    """(moved render.Lesion, its mask's centroid shift in mm) for a move of `shift_mm` (signed) in
    `direction` whose rendered truth mask is non-empty and whose centroid moves as near `shift_mm` as the
    pixels allow: the move's length is scanned in SCAN_STEP_MM steps for the first non-empty mask moved at
    least |shift_mm|, then bisected. `bone`: render.host_coverage(scene)."""
    target = abs(float(shift_mm))
    sign = 1.0 if shift_mm >= 0 else -1.0
    start = _mask_centroid(scene, lesion, bone)
    if start is None:
        raise ValueError("the lesion's own mask is empty: there is nothing to move")
    site = outline.arc_of(_centroid(lesion.polygon))

    def measure(u):
        moved = _moved(lesion, outline, site, direction, sign * u)
        centre = _mask_centroid(scene, moved, bone)
        return moved, (np.nan if centre is None else float(np.linalg.norm(centre - start) * scene.spacing))

    best, low = (None, np.inf), 0.0  # low: the longest move known to fall short
    for u in np.arange(0.8 * target, 3.0 * target + 5.0, SCAN_STEP_MM):
        moved, got = measure(u)
        if np.isfinite(got) and abs(got - target) < abs(best[1] - target):
            best = (moved, got)
        if np.isfinite(got) and got >= target:
            high = u
            for _ in range(BISECTIONS):
                mid = 0.5 * (low + high)
                moved, got = measure(mid)
                if np.isfinite(got) and abs(got - target) < abs(best[1] - target):
                    best = (moved, got)
                if np.isfinite(got) and got >= target:
                    high = mid
                else:
                    low = mid
            break
        low = u
    if best[0] is None:
        raise ValueError(f"no {direction} move of {shift_mm} mm leaves a non-empty lesion mask")
    return best


def other_site_lesion(lesion, outline, anchor):
    """`lesion` (growing on `outline`, image mm) reseated at the outline point nearest `anchor` (image mm)."""
    site = outline.arc_of(_centroid(lesion.polygon))
    return _moved(lesion, outline, site, "along", outline.arc_of(anchor) - site)


def _other_anchor(staged, side, target):
    """Image mm of OTHER_SITE[target]'s site on the hip `side` (module docstring)."""
    other = OTHER_SITE[target]
    hip, centre, rot = staged.layout["hips"][side], staged.layout["centres"][side], staged.layout["rotation"]
    if other in lesions.FEMORAL_SPANS:
        local = anatomy.polar(np.array([np.mean(lesions.FEMORAL_SPANS[other])]), hip.radius)
    else:
        local = hip.points[[ACETABULAR_POINTS[other]]]
    return anatomy.to_image(local, centre, side, rot)[0]


def image_outline(staged, side, target):
    """The Outline of `target`'s host bone of hip `side`, in image mm."""
    hip = staged.layout["hips"][side]
    local = lesions.host_outline(hip, target).points[:-1]
    return lesions.Outline(anatomy.to_image(local, staged.layout["centres"][side], side, staged.layout["rotation"]))


def moves(staged, shifts_mm, directions=("along",)):
    """The calibrated moves of every lesion of a staged radiograph, without rendering: a list of
    (side index, target index, direction, asked shift mm, moved render.Lesion, achieved mask shift mm).
    A lesion whose rendered mask is empty (none seen in the phantom's defaults) has no moves."""
    bone = host_coverage(staged.scene)
    out = []
    for (s, t), lesion in sorted(staged.scene.lesions.items()):
        if _mask_centroid(staged.scene, lesion, bone) is None:
            continue
        outline = image_outline(staged, SIDES[s], TARGETS[t])
        for direction in directions:
            for d in shifts_mm:
                moved, got = calibrated_move(staged.scene, lesion, outline, direction, d, bone)
                out.append((s, t, direction, float(d), moved, got))
    return out


def _render(staged, scene, state):
    staged.rng.bit_generator.state = state
    return render(scene, staged.look, staged.rng)


def interventions(config, subject_index, visit=0, shifts_mm=(-6.0, -3.0, 3.0, 6.0), plan=None,
                  directions=("along",)):
    """Every intervention on every lesion of radiograph (subject_index, visit) of the phantom `config`:
    per lesion one removal, one calibrated move per direction in `directions` (DIRECTIONS) and shift in
    `shifts_mm` (mm, signed) and one move to the other site. Returns a list of Intervention (empty for a
    radiograph without a lesion). plan: the config's `Plan`, to reuse it across radiographs."""
    staged = stage_radiograph(plan or Plan(config), subject_index, visit)
    state = copy.deepcopy(staged.rng.bit_generator.state)
    original = _render(staged, staged.scene, state)
    moved = {}
    for s, t, direction, d, lesion, _ in moves(staged, shifts_mm, directions):
        moved.setdefault((s, t), []).append(("moved", direction, d, lesion))
    out = []
    for (s, t), lesion in sorted(staged.scene.lesions.items()):
        side, target = SIDES[s], TARGETS[t]
        other = other_site_lesion(lesion, image_outline(staged, side, target), _other_anchor(staged, side, target))
        variants = [("removed", "", np.nan, None), *moved.get((s, t), []), ("other_site", "", np.nan, other)]
        for kind, direction, shift, new in variants:
            scene = copy.copy(staged.scene)
            scene.lesions = dict(staged.scene.lesions)
            if new is None:
                del scene.lesions[(s, t)]
            else:
                scene.lesions[(s, t)] = new
            drawn = _render(staged, scene, state)
            if kind == "other_site":
                shift = float(np.linalg.norm(_centroid(new.polygon) - _centroid(lesion.polygon)))
            out.append(Intervention(side, target, kind, shift, drawn.image, drawn.lesion_masks.get((s, t)),
                                    original.image, original.lesion_masks[(s, t)],
                                    None if new is None else new.polygon, lesion.polygon,
                                    staged.scene.spacing, staged.exact[80 * s:80 * (s + 1)], direction))
    return out
