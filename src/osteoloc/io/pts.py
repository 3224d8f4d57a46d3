"""BoneFinder point files (`.pts`): `version: 1`, `n_points: N`, `{`, N lines `x y`, `}`."""

from pathlib import Path

import numpy as np


def _point(path, number, text):
    """One point line -> (x, y); ValueError naming the file, the line and the likely cause otherwise."""
    fields = text.split()
    try:
        if len(fields) != 2:
            raise ValueError
        x, y = float(fields[0]), float(fields[1])
    except ValueError:
        cause = ("a comma as decimal separator: write 12.5" if any("," in f for f in fields)
                 else f"{len(fields)} values" if len(fields) != 2 else "not a number")
        raise ValueError(f"{path}: line {number}: {text!r} is not two numbers x y ({cause})") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"{path}: line {number}: {text!r} holds a non-finite coordinate")
    return x, y


def read_pts(path):
    """Read a `.pts` file into an (n, 2) float array of (x, y) as written in the file.

    Raises ValueError naming the file (and the line, for a point line) when the header, the braces, the
    point count or a point is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text .pts file ({err})") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    header = {}
    body_start = None
    for i, (_, line) in enumerate(lines):
        if line == "{":
            body_start = i + 1
            break
        key, _, value = line.partition(":")
        header[key.strip().lower()] = value.strip()
    if body_start is None or "n_points" not in header:
        raise ValueError(f"{path}: not a BoneFinder .pts file (no 'n_points:' header or no '{{')")
    try:
        n_points = int(header["n_points"])
    except ValueError:
        raise ValueError(f"{path}: n_points is not an integer: {header['n_points']!r}") from None
    body_end = next((i for i in range(body_start, len(lines)) if lines[i][1] == "}"), None)
    if body_end is None:
        raise ValueError(f"{path}: the point block is not closed with '}}'")
    body = lines[body_start:body_end]
    if len(body) != n_points:
        raise ValueError(f"{path}: header says {n_points} points, the file holds {len(body)}")
    points = np.array([_point(path, number, line) for number, line in body], dtype=np.float64)
    return points.reshape(n_points, 2)


def write_pts(points, path):
    """Write (n, 2) points as BoneFinder writes them (plain file; callers make it atomic if needed)."""
    points = np.asarray(points, dtype=np.float64)
    lines = ["version: 1", f"n_points: {len(points)}", "{"]
    lines += [f"{x:.6f} {y:.6f}" for x, y in points]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n")


# --- per-hip resolution -------------------------------------------------------------------------------
# BoneFinder's 80-point hip model; a 160-point file holds the right hip (0-79) then the left (80-159).
POINTS_PER_HIP = 80
# BoneFinder names per-hip files by the side of the *image*: `_L` (image left) is the anatomical RIGHT hip.
# `_RasL` holds the left hip placed on the mirrored image.
PER_HIP_SUFFIXES = {"right": ("_l",), "left": ("_r", "_rasl")}


def _find_case_insensitive(folder, name):
    """The file in `folder` whose name equals `name` ignoring case (None when absent).

    The spelling as given is tried first; only a miss lists the folder (real cohorts keep thousands of
    files in one folder, so listing it for every radiograph would make the study quadratic)."""
    exact = folder / name
    if exact.is_file():
        return exact
    if not folder.is_dir():
        return None
    target = name.lower()
    matches = sorted(p for p in folder.iterdir() if p.name.lower() == target and p.is_file())
    return matches[0] if matches else None


def resolve_hip_files(points_path):
    """Where each hip's points live: {side: (path, kind)} with kind "both", "single" or "mirrored".

    `points_path` is a 160-point `.pts` file or a stem whose per-hip files `<stem>_L.pts` (anatomical right),
    `<stem>_R.pts` / `<stem>_RasL.pts` (anatomical left) sit beside it; suffixes are case-insensitive.
    A side with no file is missing from the result.
    """
    points_path = Path(points_path)
    if points_path.suffix.lower() == ".pts":
        found = _find_case_insensitive(points_path.parent, points_path.name)
        if found is not None:
            return {"right": (found, "both"), "left": (found, "both")}
        stem = points_path.with_suffix("")
    else:
        stem = points_path
    resolved = {}
    for side, suffixes in PER_HIP_SUFFIXES.items():
        for suffix in suffixes:
            spelled = {"_l": "_L", "_r": "_R", "_rasl": "_RasL"}[suffix]  # BoneFinder's own spelling first
            found = _find_case_insensitive(stem.parent, f"{stem.name}{spelled}.pts")
            if found is not None:
                resolved[side] = (found, "mirrored" if suffix == "_rasl" else "single")
                break
    return resolved


def read_hip_points(points_path, image_shape, spacing=None):
    """Each hip's 80 points in source-image pixels (x = column, y = row), read from any `.pts` layout.

    `image_shape` (rows, cols) of the radiograph un-mirrors `_RasL` files (x <- width - x, in the file's
    units); `spacing` (row_mm, col_mm) converts millimetres to pixels, None when the file is in pixels.
    Returns (points, problems): points {side: (80, 2) float array}, problems {side: reason} for every
    side that could not be read.
    """
    if not str(points_path).strip() or str(points_path) == ".":
        return {}, {side: "no points_path given" for side in ("right", "left")}
    files = resolve_hip_files(points_path)
    points, problems = {}, {}
    cache = {}
    for side in ("right", "left"):
        if side not in files:
            problems[side] = f"no .pts file for the {side} hip at {points_path}"
            continue
        path, kind = files[side]
        try:
            if path not in cache:
                cache[path] = read_pts(path)
            raw = cache[path]
            expected = 2 * POINTS_PER_HIP if kind == "both" else POINTS_PER_HIP
            if len(raw) != expected:
                raise ValueError(f"{path}: {len(raw)} points, expected {expected} for a {kind} file")
        except (OSError, ValueError) as err:
            problems[side] = str(err)
            continue
        if kind == "both":
            hip = raw[:POINTS_PER_HIP] if side == "right" else raw[POINTS_PER_HIP:]
        else:
            hip = raw
        hip = hip.copy()
        if kind == "mirrored":
            width = image_shape[1] * (spacing[1] if spacing is not None else 1.0)
            hip[:, 0] = width - hip[:, 0]
        if spacing is not None:
            hip[:, 0] /= spacing[1]
            hip[:, 1] /= spacing[0]
        points[side] = hip
    return points, problems
