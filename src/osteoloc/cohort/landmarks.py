"""BoneFinder's 80-point hip model: sanity checks, the femoral-head circle and the four target groups.

Indices are BoneFinder's original numbering (docs/method.md section 2.3); points are (x, y) per index.
"""

from dataclasses import dataclass

import numpy as np

from osteoloc.names import TARGETS

# Curves of the model in drawing order: neighbouring entries are neighbouring contour points.
CURVES = {
    "proximal femur": [*range(0, 10), 73, 10, 74, 11, 75, 12, 76, 77, 13, 78, *range(14, 29)],
    "greater trochanter": [6, *range(29, 34)],
    "posterior wall": list(range(34, 39)),
    "ischium and pubis": list(range(38, 54)),
    "obturator foramen": list(range(54, 61)),
    "acetabular roof": [61, 62, 63, 79, 64, 65, 66, 67],
    "teardrop": [68, 70, 72, 69, 71],
}
# Every neighbouring pair of every curve, as two index arrays (one vectorised distance check).
_PAIR_CURVE = [name for name, idx in CURVES.items() for _ in idx[1:]]
_PAIR_A = np.array([a for idx in CURVES.values() for a in idx[:-1]])
_PAIR_B = np.array([b for idx in CURVES.values() for b in idx[1:]])
FEMORAL_HEAD = [13, 78, *range(14, 22)]
SOURCIL = [79, 64, 65, 66, 67]

# Points whose place relative to the femoral-head centre fixes the radiograph's orientation: the sourcil
# (the weight-bearing acetabular roof) lies above the head; the teardrop's tip, the obturator foramen and the
# distal ends of the proximal-femur outline (0 lateral, 28 medial: the shaft) lie below it. Each is at least
# about 20 mm from the centre on an adult hip, so a few mm of landmark error or a tilted pose never move one
# across the centre's height.
ABOVE_HEAD = {"sourcil": SOURCIL}
BELOW_HEAD = {"teardrop tip": [71], "obturator foramen": list(range(54, 61)), "femoral shaft": [0, 28]}


@dataclass(frozen=True)
class AnatomyLimits:
    """Size limits of an adult hip on a radiograph, in mm (config `preprocess.anatomy`; the schema holds the
    same defaults and says where they come from). The femoral-head radius range catches a wrong unit:
    millimetres read as pixels shrink a hip by the spacing, pixels read as millimetres grow it. The others
    are the group's limits for catching a wrong numbering or two hips that are no pelvis (the two head
    centres closer than `hip_distance_min_mm` or farther than `hip_distance_max_mm`)."""

    head_radius_mm: tuple = (19.0, 36.0)
    sourcil_radius_max_mm: float = 45.0
    neighbour_distance_max_mm: float = 75.0
    hip_distance_min_mm: float = 40.0
    hip_distance_max_mm: float = 320.0

    @classmethod
    def of(cls, section):
        """The limits of a config block (`preprocess.anatomy`, a dict; None = the defaults); ValueError
        for a head radius range that is not two increasing positive numbers."""
        limits = cls(**{key: (tuple(map(float, value)) if key == "head_radius_mm" else float(value))
                        for key, value in (section or {}).items()})
        low, high = limits.head_radius_mm
        if not 0 < low < high:
            raise ValueError(f"preprocess.anatomy.head_radius_mm must be [low, high] with 0 < low < high, "
                             f"got {list(limits.head_radius_mm)}")
        if not limits.hip_distance_min_mm < limits.hip_distance_max_mm:
            raise ValueError(f"preprocess.anatomy.hip_distance_min_mm ({limits.hip_distance_min_mm:g}) must be below "
                             f"hip_distance_max_mm ({limits.hip_distance_max_mm:g})")
        return limits


DEFAULT_LIMITS = AnatomyLimits()

# Default target groups (docs/preprocessing.md says why).
DEFAULT_GROUPS = {
    "osteo_fem_sup": [13, 78, 14, 15],
    "osteo_fem_inf": [19, 20, 21],
    "osteo_acet_sup": [67],
    "osteo_acet_inf": [71],
}


class LandmarkError(ValueError):
    """A hip's points fail a sanity check. `scale` is "small" / "large" when the failed limit is one a
    wrong unit breaks (points too small / too large for a hip), else None."""

    def __init__(self, message, scale=None):
        super().__init__(message)
        self.scale = scale


class HipsSwapped(LandmarkError):
    """The anatomical right hip lies on the image's right: hips swapped, or the image mirrored."""


class Misoriented(LandmarkError):
    """A hip's points lie in the wrong vertical order: `turn` is "upside down", "rotated" (about 90 degrees;
    `superior` names the image side the hip's superior side faces) or None (no rotation explains it)."""

    def __init__(self, message, turn=None, superior=None):
        super().__init__(message)
        self.turn, self.superior = turn, superior


def fit_circle(points):
    """Algebraic least-squares circle (Kasa): solve x^2 + y^2 = 2 a x + 2 b y + c; returns (cx, cy, r)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"fit_circle needs (n >= 3, 2) points, got shape {points.shape}")
    centre = points.mean(axis=0)  # centring keeps the normal equations well conditioned
    x, y = (points - centre).T
    design = np.column_stack([2 * x, 2 * y, np.ones_like(x)])
    (a, b, c), _, rank, _ = np.linalg.lstsq(design, x * x + y * y, rcond=None)
    radius_sq = c + a * a + b * b
    if rank < 3 or not np.isfinite(radius_sq) or radius_sq <= 0:
        raise ValueError("fit_circle: degenerate (collinear) points")
    return float(a + centre[0]), float(b + centre[1]), float(np.sqrt(radius_sq))


def check_hip(points_px, spacing, limits=DEFAULT_LIMITS):
    """Raise LandmarkError when a hip's (80, 2) pixel points break the sanity and size limits (`limits`,
    AnatomyLimits). `spacing` (row_mm, col_mm) turns pixels into millimetres for the limits.
    """
    points = np.asarray(points_px, dtype=np.float64)
    if points.shape != (80, 2):
        raise LandmarkError(f"expected 80 points, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise LandmarkError("non-finite point coordinates")
    mm = points * np.array([spacing[1], spacing[0]])
    steps = np.hypot(*(mm[_PAIR_A] - mm[_PAIR_B]).T)
    too_far = np.flatnonzero(steps >= limits.neighbour_distance_max_mm)
    if too_far.size:
        k = too_far[0]
        raise LandmarkError(f"{_PAIR_CURVE[k]}: points {_PAIR_A[k]} and {_PAIR_B[k]} are {steps[k]:.1f} mm "
                            f"apart (limit {limits.neighbour_distance_max_mm:g} mm; wrong numbering?)")
    radii = {}
    for name, indices in (("femoral head", FEMORAL_HEAD), ("sourcil", SOURCIL)):
        try:
            radii[name] = fit_circle(mm[indices])[2]
        except ValueError:
            raise LandmarkError(f"{name}: points are collinear, no circle") from None
    low, high = limits.head_radius_mm
    radius_mm = radii["femoral head"]
    if not low <= radius_mm <= high:
        radius_px = fit_circle(points[FEMORAL_HEAD])[2]
        raise LandmarkError(f"femoral head radius {radius_px:.1f} px = {radius_mm:.1f} mm, outside the adult "
                            f"range {low:g}-{high:g} mm (preprocess.anatomy.head_radius_mm)",
                            scale="small" if radius_mm < low else "large")
    if radii["sourcil"] >= limits.sourcil_radius_max_mm:
        raise LandmarkError(f"sourcil circle radius {radii['sourcil']:.1f} mm (limit "
                            f"{limits.sourcil_radius_max_mm:g} mm)", scale="large")


def check_orientation(points):
    """Raise Misoriented when a hip's (80, 2) points are not upright: the sourcil must lie above the head
    centre and the teardrop tip, obturator foramen and femoral shaft below it (image y grows downwards).
    The cause is read off the hip's inferior direction, the mean of those features' directions from the
    centre (the sourcil's reversed): within 45 degrees of the image's down a feature is out of place
    (wrong numbering?); beyond 135 degrees the image is upside down; in between rotated about 90 degrees."""
    points = np.asarray(points, dtype=np.float64)
    cx, cy, _ = head_circle(points)
    offsets = {name: points[idx].mean(axis=0) - (cx, cy) for name, idx in (ABOVE_HEAD | BELOW_HEAD).items()}
    wrong = [name for name in ABOVE_HEAD if offsets[name][1] >= 0]
    wrong += [name for name in BELOW_HEAD if offsets[name][1] <= 0]
    if not wrong:
        return
    downward = [-offsets[name] if name in ABOVE_HEAD else offsets[name] for name in offsets]
    down = np.mean([v / max(np.hypot(*v), 1e-9) for v in downward], axis=0)
    angle = float(np.degrees(np.arctan2(down[0], down[1])))  # 0 = image down, +90 = image right
    listed = ", ".join(wrong)
    if abs(angle) > 135:
        raise Misoriented(f"radiograph upside down: the sourcil lies below the femoral-head centre and the "
                          f"teardrop, obturator foramen and femoral shaft above it ({listed} out of place)",
                          turn="upside down")
    if abs(angle) > 45:
        superior = "left" if angle > 0 else "right"
        raise Misoriented(f"radiograph rotated ~90 degrees: the hip's superior side (sourcil) faces the image's "
                          f"{superior}, its shaft the image's {'right' if superior == 'left' else 'left'} "
                          f"({listed} out of place)", turn="rotated", superior=superior)
    raise Misoriented(f"{listed}: on the wrong side of the femoral-head centre for an upright hip (the sourcil "
                      "belongs above it, the teardrop tip, obturator foramen and shaft below; wrong numbering?)")


def medial_sign(points):
    """+1 when the hip's medial side points to +x on the image (a right hip on a standard AP radiograph),
    -1 when to -x: the sign of (teardrop tip 71 - head centre) + (medial - lateral sourcil end, 79 - 67),
    both about 30 mm on an adult hip, so a few mm of landmark error never flip it."""
    points = np.asarray(points, dtype=np.float64)
    cx = head_circle(points)[0]
    return 1.0 if (points[71, 0] - cx) + (points[79, 0] - points[67, 0]) > 0 else -1.0


def check_side(points, side):
    """Raise LandmarkError when a hip's (80, 2) points face the wrong way for its anatomical `side`: a
    right hip (on the image's left) has its teardrop and medial sourcil at larger x than its head; the
    points of a left hip given as the right one (or mirrored points) face the other way."""
    expected = 1.0 if side == "right" else -1.0
    if medial_sign(points) != expected:
        other = "left" if side == "right" else "right"
        raise HipsSwapped(f"the {side} hip's points face like a {other} hip's (teardrop and sourcil on the "
                          "wrong side of the head): hips swapped or image mirrored")


def check_pair(right, left, spacing, limits=DEFAULT_LIMITS):
    """Raise LandmarkError when the two hips' (80, 2) pixel points are not a pelvis: HipsSwapped when the
    right hip's head centre lies right of the left hip's on the image (on a standard AP radiograph the
    anatomical right hip is on the image's left), LandmarkError(scale=...) when the head centres are
    closer than the larger head radius (one hip's centre inside the other's head), closer than
    `limits.hip_distance_min_mm` or farther than `limits.hip_distance_max_mm`. `spacing` (row_mm, col_mm)."""
    (rx, ry, rr), (lx, ly, lr) = head_circle(right), head_circle(left)
    if rx >= lx:
        raise HipsSwapped(f"hips swapped or image mirrored: the right hip's head (x = {rx:.0f} px) lies right "
                          f"of the left hip's (x = {lx:.0f} px); on an AP radiograph the right hip is on the "
                          "image's left")
    distance = float(np.hypot((lx - rx) * spacing[1], (ly - ry) * spacing[0]))
    if distance < max(rr, lr) * spacing[1]:
        raise LandmarkError(f"head centres {distance:.1f} mm apart, inside one head circle (radius "
                            f"{max(rr, lr) * spacing[1]:.1f} mm): both point sets on one hip")
    if distance < limits.hip_distance_min_mm:
        raise LandmarkError(f"head centres {distance:.1f} mm apart, under the {limits.hip_distance_min_mm:g} mm of "
                            "two hips of one pelvis (preprocess.anatomy.hip_distance_min_mm)", scale="small")
    if distance > limits.hip_distance_max_mm:
        raise LandmarkError(f"head centres {distance:.1f} mm apart, over the {limits.hip_distance_max_mm:g} mm "
                            "of any adult pelvis (preprocess.anatomy.hip_distance_max_mm)", scale="large")


def head_circle(points):
    """The femoral-head circle (cx, cy, r) fitted to points 13, 78, 14-21 of one hip."""
    return fit_circle(np.asarray(points)[FEMORAL_HEAD])


def validate_groups(groups):
    """Groups as {target: [indices]} in TARGETS order; raises ValueError for unknown targets or indices."""
    if set(groups) != set(TARGETS):
        raise ValueError(f"preprocess.groups must name exactly the targets {list(TARGETS)}, got {sorted(groups)}")
    out = {}
    for target in TARGETS:
        indices = [int(i) for i in groups[target]]
        if not indices or any(not 0 <= i < 80 for i in indices):
            raise ValueError(f"preprocess.groups.{target}: indices must be 0-79, got {groups[target]}")
        out[target] = indices
    return out


def target_groups(points, groups, crop_size=None):
    """The four target groups of one hip: (4, L, 2) points NaN-padded to the longest group, and a (4, L)
    bool mask of real entries (inside the [0, crop_size) square when crop_size is given)."""
    points = np.asarray(points, dtype=np.float32)
    length = max(len(groups[t]) for t in TARGETS)
    out = np.full((len(TARGETS), length, 2), np.nan, dtype=np.float32)
    for t, target in enumerate(TARGETS):
        out[t, : len(groups[target])] = points[groups[target]]
    valid = np.all(np.isfinite(out), axis=-1)
    if crop_size is not None:
        with np.errstate(invalid="ignore"):
            inside = np.all((out >= -0.5) & (out <= crop_size - 0.5), axis=-1)
        valid &= inside
    return out, valid


def outside_image(points, shape):
    """True when any (x, y) source-pixel point lies outside the image of `shape` (rows, cols), whose
    outer edges are at -0.5 and cols - 0.5 / rows - 0.5."""
    rows, cols = shape
    x, y = np.asarray(points)[:, 0], np.asarray(points)[:, 1]
    return bool(np.any((x < -0.5) | (x > cols - 0.5) | (y < -0.5) | (y > rows - 0.5)))
