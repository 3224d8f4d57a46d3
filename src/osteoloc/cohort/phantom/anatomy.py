"""Hip anatomy of the phantom: outlines of femur and hemipelvis and BoneFinder's 80 points on them.

Every hip is built in a local frame of a RIGHT hip: millimetres, origin at the femoral-head centre,
y down (inferior), x towards the body midline (medial). Angles are measured from the superior direction,
positive towards medial, as in the landmark semantics of docs/phantom.md. A left hip is the same kind
of hip mirrored about the midline; `place` maps local outlines to image millimetres.

Points are sampled on the very polylines that the renderer fills or draws, so every landmark lies on a
visible edge by construction.
"""

from dataclasses import dataclass, field

import numpy as np

N_POINTS = 80
# Femoral-head points along the head contour and their angles (landmark semantics).
HEAD_INDICES = (13, 78, 14, 15, 16, 17, 18, 19, 20, 21)
HEAD_ANGLES = (-60.0, -35.0, -10.0, 15.0, 40.0, 65.0, 90.0, 115.0, 140.0, 165.0)
SUPERIOR_NECK = (9, 73, 10, 74, 11, 75, 12, 76, 77)
SOURCIL = (79, 64, 65, 66, 67)
ROOF = (61, 62, 63)
TEARDROP = (68, 70, 72, 69, 71)
TROCHANTER = (6, 29, 30, 31, 32, 33)
POSTERIOR_WALL = (34, 35, 36, 37, 38)
ISCHIUM_PUBIS = tuple(range(38, 54))
FORAMEN = tuple(range(54, 61))
# Curves whose neighbouring points the landmark checks compare (BoneFinder order).
CURVES = {
    "femur": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 73, 10, 74, 11, 75, 12, 76, 77, 13, 78, *range(14, 29)),
    "trochanter": TROCHANTER,
    "posterior_wall": POSTERIOR_WALL,
    "ischium_pubis": ISCHIUM_PUBIS,
    "foramen": FORAMEN,
    "roof": (61, 62, 63, 79, 64, 65, 66, 67),
    "teardrop": TEARDROP,
}


def polar(theta_deg, radius):
    """Local point at angle theta (from superior, positive medial) and radius from the head centre."""
    t = np.deg2rad(np.asarray(theta_deg, dtype=float))
    r = np.asarray(radius, dtype=float)
    return np.stack([r * np.sin(t), -r * np.cos(t)], axis=-1)


def angle_of(point):
    """Inverse of `polar` for the angle, in degrees in (-180, 180]."""
    return float(np.degrees(np.arctan2(point[0], -point[1])))


def arc(theta0, theta1, radius0, radius1=None, step_deg=2.0):
    """Dense arc from theta0 to theta1 (radius linearly from radius0 to radius1), both ends included."""
    radius1 = radius0 if radius1 is None else radius1
    n = max(2, int(np.ceil(abs(theta1 - theta0) / step_deg)) + 1)
    return polar(np.linspace(theta0, theta1, n), np.linspace(radius0, radius1, n))


class Path:
    """A polyline built from pieces, remembering where named nodes sit, to place points by arc length."""

    def __init__(self):
        self.pieces = []
        self.marks = {}

    def add(self, points, name=None):
        points = np.atleast_2d(np.asarray(points, dtype=float))
        if name is not None:
            self.marks[name] = len(self)
        self.pieces.append(points)
        return self

    def mark(self, name, point):
        return self.add(point, name)

    def __len__(self):
        return sum(len(p) for p in self.pieces)

    @property
    def points(self):
        return np.concatenate(self.pieces)

    def between(self, start, end, fractions):
        """Points at the given arc-length fractions of the stretch from mark `start` to mark `end`."""
        pts = self.points[self.marks[start] : self.marks[end] + 1]
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.asarray(fractions, dtype=float) * cum[-1]
        return np.stack([np.interp(at, cum, pts[:, 0]), np.interp(at, cum, pts[:, 1])], axis=1)


@dataclass
class Hip:
    """One hip in its local frame: outlines to render and the 80 BoneFinder points."""

    radius: float
    points: np.ndarray  # (80, 2)
    femur: np.ndarray  # closed polygon
    pelvis: np.ndarray  # closed polygon (hemipelvis)
    foramen: np.ndarray  # closed polygon (hole in the pelvis)
    ridges: dict = field(default_factory=dict)  # name -> open polyline drawn as a bright line
    sites: dict = field(default_factory=dict)  # geometry the lesions attach to
    params: dict = field(default_factory=dict)


def draw_hip_params(rng, size_sd=0.07):
    """Random per-hip shape parameters (sizes scale with the head radius, shapes jitter around)."""
    radius = float(np.clip(24.0 * (1.0 + size_sd * rng.standard_normal()), 20.0, 28.0))
    return {
        "radius": radius,
        "neck_angle": -127.5 + 4.0 * rng.standard_normal(),
        "neck_half_width": rng.uniform(0.64, 0.72),
        "neck_length": rng.uniform(1.55, 1.75),
        "joint_space": rng.uniform(3.5, 5.0),
        "lateral_edge": rng.uniform(-46.0, -34.0),
        "sourcil_medial": 35.0 + 3.0 * rng.standard_normal(),
        "shaft_width": 30.0 * rng.uniform(0.9, 1.1),
        "foramen_axes": (12.0 * rng.uniform(0.85, 1.15), 16.0 * rng.uniform(0.85, 1.15)),
        "foramen_tilt": -20.0 + 6.0 * rng.standard_normal(),
        "jitter": rng.standard_normal((16, 2)).tolist(),
    }


def build_hip(p, midline_distance):
    """The hip of parameters `p` whose hemipelvis meets the body midline at x = midline_distance."""
    R = p["radius"]
    s = R / 24.0
    jit = np.asarray(p["jitter"]) * 1.2 * s  # shape variation of the free-form nodes (mm)
    pts = np.full((N_POINTS, 2), np.nan)

    # --- femur -----------------------------------------------------------------------------------
    u = polar(p["neck_angle"], 1.0)  # neck axis, from the head centre towards the shaft
    n_sup = np.array([-u[1], u[0]])  # normal on the neck's superior side
    w = p["neck_half_width"] * R
    t_j = np.sqrt(R**2 - w**2)
    junction_sup = t_j * u + w * n_sup
    junction_inf = t_j * u - w * n_sup
    theta_sup, theta_inf = angle_of(junction_sup), angle_of(junction_inf) % 360.0
    fossa = p["neck_length"] * R * u + w * n_sup + jit[0] * 0.5
    tip = fossa + s * np.array([-7.0, -17.0]) + jit[1]
    x_lat = fossa[0] - 16.0 * s
    x_med = x_lat + p["shaft_width"] * s
    neck_inf = 1.3 * R * u - w * n_sup

    f = Path()
    f.add([[x_lat + 3 * s, 400.0]])
    f.mark("p0", [x_lat + 2 * s, 100 * s])
    f.add([[x_lat, 40 * s], fossa + s * np.array([-18.0, 12.0]) + jit[2], fossa + s * np.array([-18.0, -4.0]) + jit[3]])
    f.add(fossa + s * np.array([-13.0, -14.0]) + jit[4])
    f.mark("tip", tip)
    f.add(fossa + s * np.array([-3.0, -9.0]) + jit[5] * 0.5)
    f.mark("fossa", fossa)
    f.add(np.linspace(fossa, junction_sup, 12)[1:-1])
    head = arc(theta_sup, theta_inf, R, step_deg=1.0)
    f.add(head[:1], "junction_sup")
    f.add(head[1:-1])
    f.add(head[-1:], "junction_inf")
    f.add(np.linspace(junction_inf, neck_inf, 8)[1:])
    f.mark("lt_top", [x_med + 10 * s, 47 * s] + jit[6] * 0.5)
    f.mark("lt_tip", [x_med + 15 * s, 55 * s] + jit[7] * 0.5)
    f.mark("lt_bottom", [x_med + 4 * s, 65 * s] + jit[8] * 0.5)
    f.mark("m1", [x_med, 80 * s])
    f.mark("m2", [x_med + 1 * s, 100 * s])
    f.add([[x_med + 2 * s, 400.0]])

    pts[0] = f.points[f.marks["p0"]]
    pts[1:6] = f.between("p0", "tip", np.arange(1, 6) / 6)
    pts[6] = tip
    pts[[7, 8]] = f.between("tip", "fossa", [1 / 3, 2 / 3])
    head_pts = polar(np.array(HEAD_ANGLES), R)
    pts[list(HEAD_INDICES)] = head_pts
    # superior neck: from the fossa (9) up to just before head point 13 (at -60 degrees)
    head_angles = np.array([angle_of(q) for q in head])
    f.marks["p13"] = f.marks["junction_sup"] + int(np.argmin(np.abs(head_angles - -60.0)))
    pts[list(SUPERIOR_NECK)] = f.between("fossa", "p13", np.arange(9) / 9)
    f.marks["p21"] = f.marks["junction_sup"] + int(np.argmin(np.abs(head_angles % 360.0 - 165.0)))
    pts[[22, 23]] = f.between("p21", "lt_top", [1 / 3, 2 / 3])
    for idx, name in ((24, "lt_top"), (25, "lt_tip"), (26, "lt_bottom"), (27, "m1"), (28, "m2")):
        pts[idx] = f.points[f.marks[name]]

    trochanter = np.array([tip, *(fossa + s * np.array(o) for o in ([2, 10], [6, 22], [11, 32], [17, 40], [22, 46]))])
    trochanter[1:] += jit[9:14] * 0.4
    pts[list(TROCHANTER)] = trochanter

    # --- acetabulum and hemipelvis ------------------------------------------------------------------
    Rs = R + p["joint_space"] * s
    e, m = p["lateral_edge"], p["sourcil_medial"]
    sourcil_angles = np.linspace(m, e, 5)  # 79, 64, 65, 66, 67 from medial to lateral
    pts[list(SOURCIL)] = polar(sourcil_angles, Rs)
    roof_r = {63: Rs + 1.0 * s, 62: Rs + 2.5 * s, 61: Rs + 3.5 * s}
    roof_a = {63: 58.0, 62: 80.0, 61: 102.0}
    for idx in ROOF:
        pts[idx] = polar(roof_a[idx], roof_r[idx])
    p61 = pts[61]
    x0 = p61[0] + 1.5 * s
    tear = np.array([[x0, p61[1] + 5 * s], [x0 + 0.3 * s, p61[1] + 11 * s], [x0 + 0.8 * s, p61[1] + 17 * s],
                     [x0 + 2.0 * s, p61[1] + 22 * s], [x0 + 4.5 * s, p61[1] + 25 * s]])
    pts[list(TEARDROP)] = tear
    tear_medial = np.array([tear[-1], [x0 + 8 * s, p61[1] + 20 * s], [x0 + 9 * s, p61[1] + 5 * s],
                            [x0 + 8.5 * s, p61[1] - 8 * s]])
    D = midline_distance
    p38 = np.array([-3.0 * s, 38.0 * s]) + jit[14] * 0.5
    sup_ramus = np.array([D - 28.0, 22.0 * s])

    # The acetabular fossa line: the sourcil continued medially over the roof points to 61 (drawn as a ridge).
    fossa_line = Path()
    fossa_line.mark("p67", pts[67])
    fossa_line.add(arc(e, m, Rs)[1:-1])
    fossa_line.mark("p79", pts[79])
    fossa_line.add(arc(m, 58.0, Rs, roof_r[63])[1:-1])
    fossa_line.add(pts[63])
    fossa_line.add(arc(58.0, 80.0, roof_r[63], roof_r[62])[1:-1])
    fossa_line.add(pts[62])
    fossa_line.add(arc(80.0, 102.0, roof_r[62], roof_r[61])[1:-1])
    fossa_line.add(pts[61])
    # The anterior acetabular wall: from the lateral edge (67) down across the head to the teardrop tip
    # (71). The hemipelvis lies medial to it, so it overlaps the head's superomedial part as on an AP
    # radiograph, and the joint space under the sourcil is bone over bone, darker than both.
    anterior_wall = _smooth_open(np.array([pts[67], polar(e + 22.0, R - 3.0 * s), polar(25.0, 0.5 * R),
                                           polar(95.0, 0.55 * R), polar(130.0, R + 1.0 * s), tear[-1]]))

    g = Path()
    g.mark("p67", pts[67])
    g.add(anterior_wall[1:-1])
    g.add(tear[-1])
    g.add([[18.0 * s, 35.0 * s]])
    g.mark("p38", p38)
    g.add([[-9 * s, 52 * s], [-9 * s, 70 * s], [0.0, 88 * s], [16 * s, 93 * s], [40 * s, 86 * s]])
    g.add([[D - 3.0, 70 * s], [D - 3.0, 36 * s]])
    g.mark("p53", sup_ramus)
    g.add([[55 * s, 2 * s], [50 * s, -30 * s], [48 * s, -80 * s], [40 * s, -300.0], [-70 * s, -300.0],
           [-52 * s, -90 * s], [-36 * s, -48 * s] + jit[15] * 0.5, [-26 * s, -32 * s]])
    pts[list(ISCHIUM_PUBIS)] = g.between("p38", "p53", np.arange(16) / 15)

    ax, ay = p["foramen_axes"]
    ax, ay = ax * s, ay * s
    centre = np.array([30.0 * s, 63.0 * s])
    tilt = np.deg2rad(p["foramen_tilt"])
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])

    def ellipse(t):
        return centre + np.stack([ax * np.sin(t), -ay * np.cos(t)], axis=-1) @ rot.T

    foramen = ellipse(np.linspace(0, 2 * np.pi, 90, endpoint=False))
    pts[list(FORAMEN)] = ellipse(np.arange(7) * 2 * np.pi / 7)

    wall = np.array([polar(e - 8.0, Rs - 1.0), polar(-75.0, R - 2 * s), polar(-105.0, R - 3 * s),
                     polar(-140.0, R + 1 * s), p38])
    pts[list(POSTERIOR_WALL)] = wall

    ridges = {
        "sourcil": fossa_line.points,  # sclerotic weight-bearing roof, continued medially as the fossa line
        "teardrop": np.concatenate([[pts[61]], tear, tear_medial[1:]]),
        "anterior_wall": anterior_wall,
        "trochanter": trochanter,
        "posterior_wall": _smooth_open(wall),
    }
    sites = {
        "head_centre": np.zeros(2),
        "ilium_lateral": np.array([-26 * s, -32 * s]),
        "tear_tip": tear[-1],
        "ischium_top": np.array([18.0 * s, 35.0 * s]),
        "cue_corner": np.array([-40.0 * s, -40.0 * s]),
    }
    assert np.isfinite(pts).all()
    return Hip(radius=R, points=pts, femur=f.points, pelvis=g.points, foramen=foramen, ridges=ridges,
               sites=sites, params=dict(p, joint_space_mm=p["joint_space"] * s, sourcil_radius=Rs))


def _smooth_open(nodes, per_segment=8):
    """Densify an open polyline with a Catmull-Rom spline so a drawn ridge looks anatomical."""
    nodes = np.asarray(nodes, dtype=float)
    padded = np.concatenate([nodes[:1] * 2 - nodes[1:2], nodes, nodes[-1:] * 2 - nodes[-2:-1]])
    out = []
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(nodes[-1:])
    return np.concatenate(out)


def to_image(local, centre, side, rotation):
    """Local right-hip millimetres -> image millimetres for `side` ('right' keeps x, 'left' mirrors),
    placed at head centre `centre` (before the pose), then `rotation` = (angle_deg, pivot) of the pose."""
    local = np.asarray(local, dtype=float)
    sign = 1.0 if side == "right" else -1.0
    xy = np.stack([centre[0] + sign * local[..., 0], centre[1] + local[..., 1]], axis=-1)
    angle, pivot = rotation
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (xy - pivot) @ rot.T + pivot
