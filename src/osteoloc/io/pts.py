"""BoneFinder point files (`.pts`): `version: 1`, `n_points: N`, `{`, N lines `x y`, `}`."""

from pathlib import Path

import numpy as np


def read_pts(path):
    """Read a `.pts` file into an (n, 2) float array of (x, y) as written in the file.

    Raises ValueError naming the file when the header, the braces or the point count are wrong.
    """
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text .pts file ({err})") from None
    lines = [line for line in lines if line]
    header = {}
    body_start = None
    for i, line in enumerate(lines):
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
    try:
        body_end = lines.index("}", body_start)
    except ValueError:
        raise ValueError(f"{path}: the point block is not closed with '}}'") from None
    rows = [line.split() for line in lines[body_start:body_end]]
    if len(rows) != n_points:
        raise ValueError(f"{path}: header says {n_points} points, the file holds {len(rows)}")
    try:
        points = np.array([[float(x), float(y)] for x, y in rows], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: a point line is not two numbers") from None
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: non-finite coordinates")
    return points.reshape(n_points, 2)


def write_pts(points, path):
    """Write (n, 2) points as BoneFinder writes them (plain file; callers make it atomic if needed)."""
    points = np.asarray(points, dtype=np.float64)
    lines = ["version: 1", f"n_points: {len(points)}", "{"]
    lines += [f"{x:.6f} {y:.6f}" for x, y in points]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n")
