"""The prior's grid search: grid points (lambda, radius, sigma), selection by validation loss, and the
automatic extension beyond the upper edge of the grid (paper A, appendix).

Extension rule: when the best point holds the largest value tried so far on some axes (and that axis
has a step > 0), try one point stepped one step further on each such axis, plus, when several axes are
at their edge, one point with all of them stepped. Paper A's best (2, 20, 30) on the 3 x 3 x 3 grid with
steps (1, 10, 10) gives exactly its four: (3, 20, 30), (2, 30, 30), (2, 20, 40), (3, 30, 40).
Selection repeats over all points tried, at most `max_rounds` extension rounds.

A run's prior values travel as a point id (`point_id`; the baseline's is NO_PRIOR_POINT): the workflow's
wildcards and params hold ids, and `point_values` is the one way back to the values.
"""

import itertools
import json
import logging
import math
import re
from pathlib import Path

from osteoloc.io.atomic import write_text
from osteoloc.io.runs import read_history

log = logging.getLogger(__name__)

AXES = ("lambda", "radius", "sigma")
_POINT_RE = re.compile(r"^lam(?P<lambda>[^_/]+)_r(?P<radius>[^_/]+)_sig(?P<sigma>[^_/]+)$")


def _fmt(value):
    """The shortest form that reads back as the same float: `g` (13, 0.5, 1e-05), else repr."""
    text = f"{float(value):g}"
    return text if float(text) == float(value) else repr(float(value))


def point_id(point):
    """`lam{lambda}_r{radius}_sig{sigma}` (contracts.md section 4) of {'lambda', 'radius', 'sigma'} (radius and
    sigma in input pixels), numbers in their shortest form that `point_values` reads back exactly."""
    return f"lam{_fmt(point['lambda'])}_r{_fmt(point['radius'])}_sig{_fmt(point['sigma'])}"


def point_values(text):
    """The prior's values of a point id (the inverse of point_id): {'lambda', 'radius', 'sigma'} as floats."""
    match = _POINT_RE.match(text)
    if not match:
        raise ValueError(f"not a grid point id: {text!r} (expected lam<l>_r<r>_sig<s>)")
    return {axis: float(match[axis]) for axis in AXES}


def grid_points(lambdas, radii, sigmas):
    """Every combination, in a fixed order (lambda slowest)."""
    return [{"lambda": float(l), "radius": float(r), "sigma": float(s)}
            for l, r, s in itertools.product(lambdas, radii, sigmas)]


def best_point(losses):
    """The id with the smallest finite loss (ties: the smaller id, so the choice is reproducible)."""
    finite = {k: v for k, v in losses.items() if v is not None and math.isfinite(v)}
    if not finite:
        raise ValueError("no grid point has a finite validation loss")
    return min(finite, key=lambda k: (finite[k], k))


def extension_points(best, tried, steps):
    """New points beyond the upper edge for `best` ({'lambda', 'radius', 'sigma'}).

    tried: every point evaluated so far (defines each axis's upper edge); steps: axis -> step (0 or
    missing = never extend that axis). Points already tried are left out.
    """
    edge_axes = [a for a in AXES
                 if steps.get(a, 0) > 0 and best[a] >= max(p[a] for p in tried)]
    candidates = []
    for axis in edge_axes:
        candidates.append({**best, axis: best[axis] + steps[axis]})
    if len(edge_axes) > 1:
        candidates.append({**best, **{a: best[a] + steps[a] for a in edge_axes}})
    seen = {point_id(p) for p in tried}
    new = []
    for point in candidates:
        if point_id(point) not in seen:
            seen.add(point_id(point))
            new.append(point)
    return new


def selection_round(losses, steps, round_index, max_rounds):
    """One selection over every point tried so far.

    losses: point id -> validation loss (the best epoch's). Returns a JSON-ready record
    {round, losses, best, best_loss, extension: [ids], done}; `extension` is empty when the best is
    inside the grid, nothing new is left to try, or `round_index` has reached `max_rounds`.
    """
    best = best_point(losses)
    tried = [point_values(p) for p in losses]
    extension = []
    if round_index < max_rounds:
        extension = [point_id(p) for p in extension_points(point_values(best), tried, steps)]
    return {"round": round_index, "losses": dict(sorted(losses.items())), "best": best,
            "best_loss": losses[best], "extension": extension, "done": not extension}


def point_loss(history, criterion):
    """A grid point's validation loss: the smallest `val_<criterion>` over its epochs."""
    column = f"val_{criterion}"
    if column not in history:
        raise ValueError(f"history lacks column {column!r}")
    return float(history[column].min())


def selection_record(rounds, criterion):
    """selection.json (contracts.md section 4) from the rounds, the last of which is done."""
    final = rounds[-1]
    chosen = point_values(final["best"])
    return {"lambda": chosen["lambda"], "radius": chosen["radius"], "sigma": chosen["sigma"],
            "point": final["best"], "criterion": criterion, "rounds": rounds}


NO_PRIOR_POINT = point_id({"lambda": 0.0, "radius": 0.0, "sigma": 0.0})  # the baseline's: lam0_r0_sig0


def read_selection(path):
    """A selection.json (or a round's JSON) as a dict."""
    return json.loads(Path(path).read_text())


def write_selection(record, path):
    log.info("%s", json.dumps(record, indent=1))
    write_text(json.dumps(record, indent=1) + "\n", path)


def run_point(point, selection_path=None):
    """A run's point id: `point` when the rule knows it (a grid point, the fixed config's values,
    NO_PRIOR_POINT), else the point chosen in `selection_path` (selection.json); exactly one is given."""
    if bool(point) == (selection_path is not None):
        raise ValueError("a run's prior values come either from its point id or from selection.json; "
                         f"got point {point!r} and selection {selection_path!r}")
    return point or read_selection(selection_path)["point"]


def round_point_ids(round_index, first_grid, read_round):
    """The ids of the points selection round `round_index` compares: the first grid (ids), then every point
    of the previous round plus its extension. read_round(i) -> round i's record (the workflow's checkpoint)."""
    if round_index == 0:
        return list(first_grid)
    previous = read_round(round_index - 1)
    return list(previous["losses"]) + previous["extension"]


def final_round(read_round):
    """(index, record) of the first selection round that asks for no further extension."""
    index = 0
    while not (record := read_round(index))["done"]:
        index += 1
    return index, record


def point_histories(history_paths):
    """{point id: history DataFrame} of grid runs at `.../{point}/history.csv` (contracts.md section 4)."""
    return {Path(path).parent.name: read_history(path) for path in history_paths}


def trained_points(grid_dir):
    """The ids of the grid points under `grid_dir` (results/grid) whose run finished: `{point}/best.pt` present."""
    grid_dir = Path(grid_dir)
    if not grid_dir.is_dir():
        return set()
    return {path.parent.name for path in grid_dir.glob("*/best.pt") if _POINT_RE.match(path.parent.name)}


def grid_jobs_preview(first_grid, trained, max_rounds):
    """The one-line answer to "how many grid-point jobs will this run train?", told before the run (a dry run
    cannot list the points behind the selection checkpoint): of the first round's points `first_grid` (ids),
    those without a finished run in `trained` (ids, `trained_points`) are to train; the extension rounds (up to
    `max_rounds`) are decided by the checkpoint and reuse any point trained before."""
    first = list(dict.fromkeys(first_grid))
    to_train = [p for p in first if p not in trained]
    earlier = len(set(trained) - set(first))
    return (f"train: {len(to_train)} of {len(first)} grid-point jobs of the first selection round to run "
            f"({len(first) - len(to_train)} have best.pt: reused unless a training setting or library code changed)"
            + (f"; {earlier} other point{'s' * (earlier != 1)} trained before (reused if an extension asks for it)"
               if earlier else "")
            + (f"; extension rounds (at most {max_rounds}) are chosen by the select_prior_round checkpoint and "
               "their jobs appear only after it has run" if max_rounds else ""))
