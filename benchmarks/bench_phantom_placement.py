"""Lesion versus landmark in the phantom, and whether the interventions move lesions as asked.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_phantom_placement.py [--subjects 100] [--moved 40] [--seed 0]

Over the first --subjects subjects of the phantom (cohort.phantom defaults, seed --seed), per target: the
distance (mm) from each lesion's rendered mask centroid to the nearest exact landmark of its target's group
(truth.h5's `lesion_landmark_mm`), under lesion_placement design `landmark` (today's default study) and
`offset` (experiments/science.yaml). Then, over the lesions of the first --moved subjects of each design,
moves of 7.5 and 15 mm both ways (half and one 15 mm map cell): the share whose rendered truth mask is
non-empty and the rendered / asked shift of the mask centroid, for the `rotation` about the femoral-head
centre that the interventions used before the calibration (along only; reproduced here) and for the
calibrated moves along and across the zone (osteoloc.cohort.phantom.interventions.moves). docs/phantom.md
quotes the output.
"""

import argparse
import time

import numpy as np
import pandas as pd

from osteoloc.cohort.phantom import anatomy
from osteoloc.cohort.phantom.cohort import Plan, lesion_truth, stage_radiograph
from osteoloc.cohort.phantom.interventions import DIRECTIONS, moves
from osteoloc.cohort.phantom.render import Lesion, host_coverage, lesion_coverage, render
from osteoloc.names import SIDES, TARGETS

SHIFTS_MM = (-15.0, -7.5, 7.5, 15.0)


def rotation_move(polygon, head_centre, shift_mm):
    """The old move: the polygon rotated about the head centre so that its vertices' mean moves shift_mm."""
    radius = np.linalg.norm(polygon.mean(axis=0) - head_centre)
    angle = 2 * np.arcsin(np.clip(shift_mm / (2 * radius), -1, 1))
    c, s = np.cos(angle), np.sin(angle)
    return (polygon - head_centre) @ np.array([[c, -s], [s, c]]).T + head_centre


def mask_centroid(scene, lesion, bone):
    mask = lesion_coverage(scene, lesion, bone) >= 0.5
    return np.argwhere(mask).mean(axis=0) if mask.any() else None


def distances(config, subjects):
    """One row per lesion: target, design, distance to the nearest group landmark (mm)."""
    plan, rows = Plan(config), []
    for i in range(subjects):
        staged = stage_radiograph(plan, i, 0)
        drawn = render(staged.scene, staged.look, staged.rng)
        truth = lesion_truth(staged, drawn.lesion_masks)
        for (s, t) in drawn.lesion_masks:
            rows.append({"target": TARGETS[t], "distance_mm": truth["lesion_landmark_mm"][s, t],
                         "away": bool(truth["lesion_away"][s, t])})
    return pd.DataFrame(rows, columns=["target", "distance_mm", "away"])


def move_rows(config, subjects):
    """One row per moved lesion: target, method (rotation / along / across), asked, rendered shift (NaN: empty)."""
    plan, rows = Plan(config), []
    for i in range(subjects):
        staged = stage_radiograph(plan, i, 0)
        scene, bone = staged.scene, host_coverage(staged.scene)
        for (s, t), lesion in sorted(scene.lesions.items()):
            start = mask_centroid(scene, lesion, bone)
            side = SIDES[s]
            head = anatomy.to_image(np.zeros((1, 2)), staged.layout["centres"][side], side,
                                    staged.layout["rotation"])[0]
            for d in SHIFTS_MM:
                end = mask_centroid(scene, Lesion(rotation_move(lesion.polygon, head, d), lesion.host), bone)
                got = np.nan if end is None else np.linalg.norm(end - start) * scene.spacing
                rows.append({"target": TARGETS[t], "method": "rotation", "asked": d, "shift": got})
        for s, t, direction, d, lesion, _ in moves(staged, SHIFTS_MM, DIRECTIONS):
            start = mask_centroid(scene, scene.lesions[(s, t)], bone)
            end = mask_centroid(scene, lesion, bone)
            got = np.nan if end is None else np.linalg.norm(end - start) * scene.spacing
            rows.append({"target": TARGETS[t], "method": direction, "asked": d, "shift": got})
    return pd.DataFrame(rows, columns=["target", "method", "asked", "shift"])


def summarise_distances(table):
    table = table.assign(target=pd.Categorical(table["target"], TARGETS))
    g = table.groupby(["design", "target"], sort=False, observed=True)["distance_mm"]
    out = pd.DataFrame({"lesions": g.size(), "mean": g.mean(), "median": g.median(),
                        "p90": g.quantile(0.9), "max": g.max(),
                        "share > 7.5 mm": g.apply(lambda x: (x > 7.5).mean()),
                        "share > 15 mm": g.apply(lambda x: (x > 15).mean())})
    out["away"] = table.groupby(["design", "target"], sort=False, observed=True)["away"].mean()
    return out.sort_index().round(2)


def summarise_moves(table):
    table = table.assign(ratio=table["shift"] / table["asked"].abs(), target=pd.Categorical(table["target"], TARGETS))
    g = table.groupby(["design", "method", "target"], sort=False, observed=True)
    out = pd.DataFrame({"moves": g.size(), "non-empty": g["shift"].apply(lambda x: x.notna().mean()),
                        "ratio median": g["ratio"].median(), "ratio min": g["ratio"].min(),
                        "ratio max": g["ratio"].max(),
                        "within 10 %": g["ratio"].apply(lambda x: ((x - 1).abs() <= 0.1).mean())})
    return out.sort_index().round(3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--moved", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dist, moved = [], []
    start = time.perf_counter()
    for design in ("landmark", "offset"):
        config = {"seed": args.seed, "subjects": max(args.subjects, args.moved),
                  "lesion_placement": {"design": design}}
        dist.append(distances(config, args.subjects).assign(design=design))
        moved.append(move_rows(config, args.moved).assign(design=design))
    print(f"lesion centroid to the nearest landmark of its group (mm), {args.subjects} subjects, seed {args.seed}")
    print(summarise_distances(pd.concat(dist)).to_markdown())
    print(f"\nmoves of {SHIFTS_MM} mm over the lesions of {args.moved} subjects per design: rendered mask")
    print(summarise_moves(pd.concat(moved)).to_markdown())
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
