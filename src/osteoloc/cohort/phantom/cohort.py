"""Generate a whole phantom cohort in the real input formats (docs/contracts.md section 1).

`make_cohort(config, out_dir)` writes, under `out_dir`: `images/*.dcm`, `points/manual/*.pts` (exact),
`points/auto/*.pts` (BoneFinder-like error; some as per-hip `_L` / `_R` files), `manifest.csv`,
`labels.csv`, `truth.h5` (lesion masks, cue masks when the cue is on, generator parameters) and `broken.csv` (the
deliberately broken inputs and their kind). With `cue.twins` on, also the counterfactual twins:
`images_twin/*.dcm` (each radiograph without its cue markers, same name, noise and encoding) and
`manifest_twin.csv` (the manifest with `image_path` pointing at them). Everything is a function of the
config, the seed included.

Generation is sharded by subject: `make_shard` writes the radiographs of `shard_subjects` consecutive
subjects and a part file; `gather_shards` puts the shards' files in place and writes the tables. Every
random draw of a radiograph comes from a stream seeded by (seed, subject index, visit), and the cohort-wide
draws (ids, grades, broken inputs, missing labels) from the seed alone, so the cohort does not depend on
the shard size.
"""

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from osteoloc.io.atomic import write_csv
from osteoloc.io.pts import write_pts
from osteoloc.io.truth_h5 import TruthFile, truth_writer
from osteoloc.cohort.phantom import anatomy, dicom, labels, lesions
from osteoloc.cohort.phantom.render import Lesion, Look, Scene, render
from osteoloc.cohort.phantom.settings import IMAGE_DIR, LAYOUT_KEYS, n_shards, with_defaults, writes_twins
from osteoloc.names import SIDES, TARGETS

log = logging.getLogger(__name__)

BROKEN_KINDS = ("truncated_dicom", "missing_pts", "points_outside", "junk_grade")
JUNK_GRADES = ("7", "abc")
# Ridges drawn as bright lines: (name, width mm, strength relative to bone).
RIDGES = (("sourcil", 1.2, 0.6), ("teardrop", 1.0, 0.7), ("trochanter", 1.0, 0.4), ("posterior_wall", 1.0, 0.45),
          ("anterior_wall", 0.8, 0.3))

PART_FILE = "part.h5"
TWIN_IMAGES = "images_twin"  # the counterfactual twins' folder, beside images/
TWIN_MANIFEST = "manifest_twin.csv"


@dataclass
class Difficulty:
    """What the one `difficulty` number (0 easy .. 1 hard) sets; see docs/phantom.md."""

    size_scale: float  # multiplies lesion_size_mm
    contrast: float  # lesion density relative to cortical bone
    mimic_probability: float  # per hip and target zone: a sub-threshold bony bump without a grade

    @classmethod
    def from_number(cls, d):
        d = float(np.clip(d, 0.0, 1.0))
        return cls(size_scale=1.6 - 1.0 * d, contrast=1.0 - 0.6 * d, mimic_probability=0.5 * d)


def twin_image_path(image_path):
    """The twin of radiograph `image_path` (`images/<name>` -> `images_twin/<name>`, relative paths)."""
    return f"{TWIN_IMAGES}/{Path(image_path).name}"


def _rng(seed, *stream):
    return np.random.default_rng([int(seed), *[int(s) for s in stream]])


def _subject_ids(rng, n, oai_fraction):
    """Cohort names and ids in the two real spellings (OAI-9xxxxxx, CHECK-0xxxx), unique."""
    is_oai = rng.random(n) < oai_fraction
    oai_ids = rng.choice(np.arange(9000000, 9999999), size=n, replace=False)
    check_ids = rng.choice(np.arange(0, 99999), size=n, replace=False)
    out = []
    for i in range(n):
        if is_oai[i]:
            out.append(("OAI", f"OAI-{oai_ids[i]}", str(oai_ids[i])))
        else:
            out.append(("CHECK", f"CHECK-{check_ids[i]:05d}", f"{check_ids[i]:05d}"))
    return out


def _image_name(cohort, short_id, visit_index, date):
    if cohort == "OAI":
        return f"OAI-{short_id}-V{visit_index:02d}-{date}", f"V{visit_index:02d}"
    return f"{short_id}_T{visit_index:02d}_APO", f"T{visit_index:02d}"


def _draw(rng, weights):
    """One key of `weights` (name -> non-negative weight), drawn with probability proportional to weight."""
    keys = list(weights)
    p = np.array([float(weights[k]) for k in keys])
    if p.sum() <= 0:
        raise ValueError(f"cohort.phantom.dicom weights {weights} are all zero")
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _variant(rng, cfg):
    d = cfg["dicom"]
    iod = "CR" if rng.random() < d["cr_fraction"] else "DX"
    if iod == "DX":  # the DX Detector module requires ImagerPixelSpacing; PixelSpacing is optional
        tags = ("ImagerPixelSpacing", "PixelSpacing") if rng.random() < d["pixel_spacing_fraction"] else (
            "ImagerPixelSpacing",)
    else:
        tags = ("PixelSpacing",) if rng.random() < d["pixel_spacing_fraction"] else ("ImagerPixelSpacing",)
    return dicom.Variant(
        iod=iod,
        photometric="MONOCHROME1" if rng.random() < d["monochrome1_fraction"] else "MONOCHROME2",
        bits_stored=int(_draw(rng, d["bits_stored"])),
        spacing_tags=tags,
        transfer_syntax=_draw(rng, d["transfer_syntax"]),
    )


def layout_radiograph(cfg, subject_params, rng, margin_mm=3.0, tries=50):
    """Place both hips in one image: spacing, size, head centres, pose. Returns a dict of geometry.

    The pose is redrawn until all 160 points lie at least `margin_mm` inside the image.
    """
    lo, hi = cfg["spacing_mm"]
    spacing = round(float(rng.uniform(lo, hi)), 4)
    width_mm, height_mm = cfg["field_of_view_mm"]
    rows, cols = int(round(height_mm / spacing)), int(round(width_mm / spacing))
    w, h = cols * spacing, rows * spacing
    shift, max_angle = cfg["pose_shift_mm"], cfg["pose_rotation_deg"]
    hips, distance = {}, {}
    for side in SIDES:
        distance[side] = 88.0 * subject_params["pelvis_scale"] + subject_params[f"{side}_midline_jitter"]
        hips[side] = anatomy.build_hip(subject_params[side], distance[side])
    for _ in range(tries):
        mid = w / 2 + float(np.clip(rng.normal(0, shift / 2), -shift, shift))
        head_y = 0.40 * h + float(np.clip(rng.normal(0, shift / 2), -shift, shift))
        angle = float(np.clip(rng.normal(0, max_angle / 2), -max_angle, max_angle))
        rotation = (angle, np.array([mid, head_y]))
        centres = {}
        for side in SIDES:
            sign = -1.0 if side == "right" else 1.0  # the anatomical right hip is on the image's left
            centres[side] = np.array([mid + sign * distance[side], head_y + subject_params[f"{side}_height_jitter"]])
        points = np.concatenate([anatomy.to_image(hips[sd].points, centres[sd], sd, rotation) for sd in SIDES])
        upper = np.array([(cols - 1) * spacing, (rows - 1) * spacing]) - margin_mm
        if (points >= margin_mm).all() and (points <= upper).all():
            return {"spacing": spacing, "shape": (rows, cols), "mid": mid, "head_y": head_y,
                    "rotation": rotation, "centres": centres, "hips": hips}
    raise ValueError(f"cohort.phantom.field_of_view_mm={cfg['field_of_view_mm']} is too small for the hips: "
                     f"landmarks keep falling outside the image")


def _subject_params(rng, cfg):
    return {
        "pelvis_scale": float(rng.uniform(0.93, 1.07)),
        "right": anatomy.draw_hip_params(rng, cfg["anatomy_size_sd"]),
        "left": anatomy.draw_hip_params(rng, cfg["anatomy_size_sd"]),
        "right_midline_jitter": float(rng.normal(0, 2)),
        "left_midline_jitter": float(rng.normal(0, 2)),
        "right_height_jitter": float(rng.normal(0, 1.5)),
        "left_height_jitter": float(rng.normal(0, 1.5)),
    }


def build_scene(layout, grades, cue_flags, cfg, diff, rng):
    """The scene of one radiograph and the exact 160 points (image mm)."""
    sp, shape = layout["spacing"], layout["shape"]
    scene = Scene(shape=shape, spacing=sp)
    rot = layout["rotation"]
    points, heights, marker_xy = [], np.zeros((2, 4)), np.full((2, 2), np.nan)
    mid, hy = layout["mid"], layout["head_y"]
    sacrum = np.array([[mid - 50, hy - 300], [mid + 50, hy - 300], [mid + 40, hy - 50], [mid + 15, hy - 5],
                       [mid, hy + 8], [mid - 15, hy - 5], [mid - 40, hy - 50]])
    scene.sacrum = anatomy.to_image(sacrum - [mid, hy], [mid, hy], "right", rot)
    for s, side in enumerate(SIDES):
        hip, c = layout["hips"][side], layout["centres"][side]

        def place(local, side=side, c=c):
            return anatomy.to_image(local, c, side, rot)

        points.append(place(hip.points))
        scene.femurs.append(place(hip.femur))
        scene.pelves.append((place(hip.pelvis), place(hip.foramen)))
        for name, width, strength in RIDGES:
            scene.ridges.append((place(hip.ridges[name]), width, strength))

        def lesion(polygon, placed, target, place=place):
            shift = place(np.array([placed.host_shift])) - place(np.zeros((1, 2)))  # a vector: no pivot
            return Lesion(place(polygon), lesions.host_bone(target), tuple(map(float, shift[0])))

        for t, target in enumerate(TARGETS):
            size_mm = cfg["lesion_size_mm"] * cfg["lesion_scale"][target] * diff.size_scale
            height = lesions.height_mm(grades[s, t], size_mm, rng)
            heights[s, t] = height
            if height > 0:
                polygon, placed = lesions.placed_osteophyte(hip, target, height, rng, cfg["lesion_placement"])
                scene.lesions[(s, t)] = lesion(polygon, placed, target)
                scene.placements[(s, t)] = placed
            elif rng.random() < diff.mimic_probability:
                small = 0.5 * size_mm * rng.uniform(0.5, 1.0)
                polygon, placed = lesions.placed_osteophyte(hip, target, small, rng, cfg["lesion_placement"])
                scene.mimics.append(lesion(polygon, placed, target))
        if cue_flags[s]:
            half = cfg["cue"]["size_mm"] / 2
            corner = hip.sites["cue_corner"]
            square = corner + np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
            scene.markers.append(place(square))
            marker_xy[s] = place(corner)
    return scene, np.concatenate(points), heights, marker_xy


def automatic_points(exact, rng, auto_cfg, image_mm):
    """BoneFinder-like points: a small shift per hip, per-point error, now and then one curve missed."""
    out = exact.copy()
    for s in range(2):
        hip = slice(80 * s, 80 * s + 80)
        out[hip] += rng.normal(0, auto_cfg["shift_sd_mm"], 2) + rng.normal(0, auto_cfg["error_sd_mm"], (80, 2))
        if rng.random() < auto_cfg["miss_probability"]:
            curve = list(anatomy.CURVES.values())[rng.integers(len(anatomy.CURVES))]
            direction = rng.normal(0, 1, 2)
            out[[80 * s + i for i in curve]] += auto_cfg["miss_mm"] * direction / np.linalg.norm(direction)
    return np.clip(out, 0.0, np.asarray(image_mm) - 1e-3)


def _broken_assignment(rng, n_images, fraction):
    """Which image (index) gets which broken kind: at least one of each when fraction > 0, all distinct."""
    if fraction <= 0:
        return {}
    per_kind = max(1, int(round(fraction * n_images)))
    if per_kind * len(BROKEN_KINDS) > n_images:
        raise ValueError(f"cohort.phantom.broken_fraction={fraction} needs {per_kind * len(BROKEN_KINDS)} "
                         f"broken images but the cohort has only {n_images}")
    chosen = rng.choice(n_images, size=per_kind * len(BROKEN_KINDS), replace=False)
    return {int(i): BROKEN_KINDS[k // per_kind] for k, i in enumerate(chosen)}


def cohort_grades(config):
    """True grades (subjects, visits, 2 sides, 4 targets) of the cohort `config` describes."""
    cfg = with_defaults(config)
    prevalence = [cfg["prevalence"][t] for t in TARGETS]
    return labels.sample_grades(_rng(cfg["seed"], 1), int(cfg["subjects"]), int(cfg["visits"]), prevalence,
                                cfg["label_correlation"], cfg["grade_shares"], cfg["side_correlation"],
                                cfg["visit_correlation"])


class Plan:
    """The cohort-wide draws every shard shares: ids, grades and broken inputs, all from the seed."""

    def __init__(self, config):
        cfg = self.cfg = with_defaults(config)
        self.diff = Difficulty.from_number(cfg["difficulty"])
        self.n_subjects, self.n_visits = int(cfg["subjects"]), int(cfg["visits"])
        self.twins = writes_twins(cfg)
        self.grades = cohort_grades(cfg)
        self.ids = _subject_ids(_rng(cfg["seed"], 2), self.n_subjects, cfg["oai_fraction"])
        self.broken = _broken_assignment(_rng(cfg["seed"], 3), self.n_subjects * self.n_visits,
                                         cfg["broken_fraction"])
        names = [n for n, w in cfg["dicom"]["transfer_syntax"].items() if float(w) > 0]
        missing = dicom.dcmtk_missing(names)
        if missing:
            raise RuntimeError(f"cohort.phantom.dicom.transfer_syntax asks for syntaxes that dcmtk writes, but "
                               f"{', '.join(missing)} is not on PATH: install dcmtk (tools/system-packages.sh) "
                               f"or give jpegls and jpeg_lossless weight 0")

    def subjects(self, shard):
        size = int(self.cfg["shard_subjects"])
        if not 0 <= shard < n_shards(self.cfg):
            raise ValueError(f"shard {shard} is outside 0..{n_shards(self.cfg) - 1}")
        return range(shard * size, min((shard + 1) * size, self.n_subjects))


@dataclass
class Staged:
    """One radiograph drawn up to its rendering: `render(scene, look, rng)` draws it (every later draw
    of the radiograph continues from `rng`)."""
    stem: str
    visit: str
    date: str
    cohort: str
    subject: str
    grades: np.ndarray  # (2, 4)
    cue_flags: np.ndarray  # (2,) bool
    layout: dict
    scene: Scene
    exact: np.ndarray  # (160, 2) image mm
    heights: np.ndarray  # (2, 4) mm
    marker_xy: np.ndarray
    look: Look
    rng: np.random.Generator


def stage_radiograph(plan, i, v):
    """Radiograph (subject index i, visit v) drawn up to its rendering (`Staged`)."""
    cfg, diff, seed = plan.cfg, plan.diff, plan.cfg["seed"]
    cue = cfg["cue"]
    cue_t = TARGETS.index(cue["target"])
    cohort, subject, short_id = plan.ids[i]
    subject_params = _subject_params(_rng(seed, 10, i), cfg)
    rng = _rng(seed, 11, i, v)
    date = f"{2005 + v * 2 + int(rng.integers(0, 2))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    stem, visit = _image_name(cohort, short_id, v, date)
    g = plan.grades[i, v]
    # drawn whether or not the cue is on, so turning it on changes nothing but the markers
    p_marker = np.where(g[:, cue_t] > 0, 0.5 + cue["strength"] / 2, 0.5 - cue["strength"] / 2)
    cue_flags = (rng.random(2) < p_marker) & bool(cue["enabled"])
    layout = layout_radiograph(cfg, subject_params, rng)
    scene, exact, heights, marker_xy = build_scene(layout, g, cue_flags, cfg, diff, rng)
    look = Look(lesion_contrast=diff.contrast, noise_sd=cfg["noise_sd"],
                exposure_gain=float(np.exp(rng.normal(0, cfg["exposure_sd"]))),
                exposure_offset=float(rng.normal(0, cfg["exposure_sd"])))
    return Staged(stem, visit, date, cohort, subject, g, cue_flags, layout, scene, exact, heights, marker_xy, look, rng)


def lesion_truth(staged, lesion_masks):
    """Where each lesion of a staged radiograph lies (truth.h5 `/params` attributes, docs/phantom.md):
    `lesion_xy_mm` (2, 4, 2) its rendered mask's centroid (image mm), `lesion_landmark` (2, 4) the nearest
    exact landmark of its target's group (lesions.LANDMARK_GROUPS), `lesion_landmark_mm` (2, 4) the distance
    to it, `lesion_offset_mm` (2, 4, 2) that offset as (along, across) its host outline at the landmark;
    `lesion_anchor`, `lesion_placed_mm` (along, across) and `lesion_away`: how design `offset` placed it.
    NaN / -1 / False where a hip has no such lesion (or its mask is empty)."""
    sp, rot = staged.layout["spacing"], staged.layout["rotation"]
    out = {"lesion_xy_mm": np.full((2, 4, 2), np.nan), "lesion_landmark": np.full((2, 4), -1, np.int16),
           "lesion_landmark_mm": np.full((2, 4), np.nan), "lesion_offset_mm": np.full((2, 4, 2), np.nan),
           "lesion_anchor": np.full((2, 4), -1, np.int16), "lesion_placed_mm": np.full((2, 4, 2), np.nan),
           "lesion_away": np.zeros((2, 4), bool)}
    for (s, t), mask in sorted(lesion_masks.items()):
        placed = staged.scene.placements.get((s, t), lesions.Placement())
        out["lesion_anchor"][s, t], out["lesion_away"][s, t] = placed.anchor, placed.away
        out["lesion_placed_mm"][s, t] = placed.along_mm, placed.across_mm
        if not mask.any():
            continue
        side, target = SIDES[s], TARGETS[t]
        hip = staged.layout["hips"][side]
        xy = np.argwhere(mask).mean(axis=0)[::-1] * sp
        points = staged.exact[80 * s:80 * (s + 1)]
        landmark, distance = lesions.nearest_landmark(xy, points, target)
        outline = lesions.host_outline(hip, target)
        outline = lesions.Outline(anatomy.to_image(outline.points[:-1], staged.layout["centres"][side], side, rot))
        out["lesion_xy_mm"][s, t] = xy
        out["lesion_landmark"][s, t], out["lesion_landmark_mm"][s, t] = landmark, distance
        out["lesion_offset_mm"][s, t] = lesions.zone_offset(xy, outline, points[landmark])
    return out


@dataclass
class Radiograph:
    """What `_radiograph` returns of one radiograph it wrote: its file stem, its rows of manifest.csv,
    labels.csv (one per side) and broken.csv (None when not broken), its named label layers in its pixel
    grid (truth.h5's bitfields: `lesions` uint8, bit 4 * side + target; `cue` uint8, bit side, with the cue
    on only) and its truth attributes (truth.h5 `/params`)."""

    stem: str
    manifest: dict
    label_rows: list
    broken_row: dict
    layers: dict
    attrs: dict


def _radiograph(plan, i, v, out):
    """Write radiograph (subject index i, visit v) and its points under `out`; return it as a Radiograph."""
    cfg, seed = plan.cfg, plan.cfg["seed"]
    cue = cfg["cue"]
    staged = stage_radiograph(plan, i, v)
    stem, visit, date, cohort, subject = staged.stem, staged.visit, staged.date, staged.cohort, staged.subject
    g = staged.grades
    cue_flags, layout, exact, heights, marker_xy = (staged.cue_flags, staged.layout, staged.exact, staged.heights,
                                                    staged.marker_xy)
    rng = staged.rng
    k = i * plan.n_visits + v
    drawn = render(staged.scene, staged.look, rng)
    variant = _variant(rng, cfg)
    window = dicom.value_range(drawn.image)
    stored = dicom.to_stored(drawn.image, variant.bits_stored, variant.photometric, window)
    who = dicom.Identity(
        patient_name=f"PHANTOM^{rng.choice(['JANE', 'JOHN', 'ALEX', 'SAM'])}{int(rng.integers(1e6)):06d}",
        patient_id=f"PID{int(rng.integers(1e9)):09d}",
        birth_date=f"19{int(rng.integers(40, 60))}0101", sex=str(rng.choice(["F", "M"])),
        study_date=date, accession=f"ACC{int(rng.integers(1e8)):08d}",
        study_uid=dicom.uid(seed, subject, visit, "study"),
        series_uid=dicom.uid(seed, subject, visit, "series"),
        sop_uid=dicom.uid(seed, subject, visit, "sop"))
    image_rel = f"{IMAGE_DIR}/{stem}.dcm"
    dicom.write(out / image_rel, dicom.build_dataset(stored, layout["spacing"], variant, who),
                variant.transfer_syntax)
    if plan.twins:
        # the same header but its own series and instance UIDs; the radiograph's window, so that every
        # pixel the markers do not reach stores the radiograph's value
        twin_who = replace(who, series_uid=dicom.uid(seed, subject, visit, "series", "twin"),
                           sop_uid=dicom.uid(seed, subject, visit, "sop", "twin"))
        twin_stored = dicom.to_stored(drawn.twin, variant.bits_stored, variant.photometric, window)
        dicom.write(out / twin_image_path(image_rel),
                    dicom.build_dataset(twin_stored, layout["spacing"], variant, twin_who), variant.transfer_syntax)

    rows, cols = layout["shape"]
    image_mm = (cols * layout["spacing"], rows * layout["spacing"])
    auto = automatic_points(exact, rng, cfg["auto_points"], image_mm)
    kind = plan.broken.get(k)
    manual_rel = f"points/manual/{stem}.pts"
    if rng.random() < cfg["split_pts_fraction"] and kind is None:
        auto_rel = f"points/auto/{stem}"  # a stem: per-hip files beside it
        write_pts(auto[:80], out / f"{auto_rel}_L.pts")  # image-left = anatomical right
        write_pts(auto[80:], out / f"{auto_rel}_R.pts")
    else:
        auto_rel = f"points/auto/{stem}.pts"
        if kind == "points_outside":
            # the right hip's points pushed off the image's left border
            shift = np.array([exact[:80, 0].max() + 20.0, 0.0])
            exact = exact.copy()
            exact[:80] -= shift
            auto[:80] -= shift
        if kind != "missing_pts":
            write_pts(auto, out / auto_rel)
    if kind != "missing_pts":
        write_pts(exact, out / manual_rel)
    if kind == "truncated_dicom":  # the twin is broken the same way, so both manifests exclude the same
        for rel in [image_rel] + ([twin_image_path(image_rel)] if plan.twins else []):
            data = (out / rel).read_bytes()
            (out / rel).write_bytes(data[: len(data) // 2])

    mask = np.zeros(layout["shape"], np.uint8)
    for (s, t), m in drawn.lesion_masks.items():
        mask |= (m.astype(np.uint8) << (4 * s + t)).astype(np.uint8)
    layers = {"lesions": mask}
    if cue["enabled"]:  # bit s where side s's marker changes the image (scene.markers in side order)
        cue_mask = np.zeros(layout["shape"], np.uint8)
        for s, layer in zip(np.flatnonzero(cue_flags), drawn.cue):
            cue_mask |= ((layer != 0).astype(np.uint8) << s).astype(np.uint8)
        layers["cue"] = cue_mask
    attrs = {
        **lesion_truth(staged, drawn.lesion_masks),
        "subject": subject, "visit": visit, "cohort": cohort, "spacing_mm": layout["spacing"],
        "grades": g.astype(np.int8), "cue": cue_flags, "cue_xy_mm": marker_xy, "lesion_height_mm": heights,
        "head_radius_mm": [layout["hips"][sd].radius for sd in SIDES],
        "rotation_deg": layout["rotation"][0], "broken": kind or "",
        "iod": variant.iod, "photometric": variant.photometric, "bits_stored": variant.bits_stored,
        "spacing_tags": list(variant.spacing_tags), "transfer_syntax": variant.transfer_syntax,
        "exact_points_path": manual_rel, "auto_points_path": auto_rel,
    }
    manifest = {"image_path": image_rel, "subject": subject, "visit": visit, "cohort": cohort,
                "points_path": auto_rel, "manual_points_path": manual_rel}
    label_rows = [{"cohort": cohort, "subject": subject, "visit": visit, "side": side,
                   **{t: int(g[s, ti]) for ti, t in enumerate(TARGETS)}} for s, side in enumerate(SIDES)]
    broken_row = None
    if kind is not None:
        side = ""
        file = image_rel if kind == "truncated_dicom" else auto_rel
        if kind == "points_outside":
            side = "right"
        if kind == "junk_grade":
            side, file = "right", "labels.csv"
        broken_row = {"kind": kind, "subject": subject, "visit": visit, "side": side, "file": file,
                      "image_path": image_rel}
    return Radiograph(stem, manifest, label_rows, broken_row, layers, attrs)


def make_shard(config, shard, shard_dir):
    """Generate the radiographs of shard number `shard` into `shard_dir`: `images/`, `points/` (paths as
    in the cohort folder) and `part.h5` (masks, truth attributes and table rows, read by gather_shards)."""
    plan = Plan(config)
    out = Path(shard_dir)
    shutil.rmtree(out, ignore_errors=True)
    for sub in (IMAGE_DIR, "points/manual", "points/auto") + ((TWIN_IMAGES,) if plan.twins else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = {"manifest": [], "labels": [], "broken": []}
    with truth_writer(out / PART_FILE, with_cue=plan.cfg["cue"]["enabled"]) as part:
        for i in plan.subjects(shard):
            for v in range(plan.n_visits):
                radiograph = _radiograph(plan, i, v, out)
                part.add(radiograph.stem, radiograph.layers, radiograph.attrs)
                rows["manifest"].append(radiograph.manifest)
                rows["labels"].extend(radiograph.label_rows)
                rows["broken"].extend([radiograph.broken_row] if radiograph.broken_row else [])
        part.attrs["rows"] = json.dumps(rows)
        part.attrs["shard"] = int(shard)
    log.info("phantom shard %d: subjects %s -> %s", shard, plan.subjects(shard), out)


def _link_tree(src, dst):
    """Hard-link (copy across file systems) every file under `src` to the same relative path under `dst`."""
    for path in sorted(p for p in Path(src).rglob("*") if p.is_file()):
        target = Path(dst) / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)


def gather_shards(config, shard_dirs, out_dir):
    """Put the shards' images and points under `out_dir` and write truth.h5, manifest.csv, labels.csv and
    broken.csv (contracts section 1) exactly as one unsharded run would; with `cue.twins` on, also
    images_twin/ and manifest_twin.csv (without, stale ones from an earlier run are removed)."""
    plan = Plan(config)
    cfg, out = plan.cfg, Path(out_dir)
    shard_dirs = [Path(d) for d in shard_dirs]
    if len(shard_dirs) != n_shards(cfg):
        raise ValueError(f"the cohort has {n_shards(cfg)} shards but {len(shard_dirs)} shard folders were given")
    image_dirs = (IMAGE_DIR, TWIN_IMAGES) if plan.twins else (IMAGE_DIR,)
    shutil.rmtree(out / TWIN_IMAGES, ignore_errors=True)
    (out / TWIN_MANIFEST).unlink(missing_ok=True)
    for sub in (*image_dirs, "points"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    manifest, label_rows, broken_rows = [], [], []
    with truth_writer(out / "truth.h5", with_cue=cfg["cue"]["enabled"]) as truth:
        truth.attrs["config"] = json.dumps({k: v for k, v in cfg.items() if k not in LAYOUT_KEYS}, sort_keys=True)
        for shard, shard_dir in enumerate(shard_dirs):
            part_path = shard_dir / PART_FILE
            if not part_path.exists():
                raise FileNotFoundError(f"{part_path}: shard {shard} has no part file (did its job finish?)")
            with TruthFile(part_path) as part:
                if int(part.attrs["shard"]) != shard:
                    raise ValueError(f"{part_path} holds shard {int(part.attrs['shard'])}, expected {shard}")
                rows = json.loads(part.attrs["rows"])
                for row in rows["manifest"]:
                    stem = Path(row["image_path"]).stem
                    layers, params = part.radiograph(stem)
                    truth.add(stem, layers, params)
            manifest += rows["manifest"]
            label_rows += rows["labels"]
            broken_rows += rows["broken"]
            for sub in (*image_dirs, "points"):
                _link_tree(shard_dir / sub, out / sub)

    table = labels.label_table(label_rows, _rng(cfg["seed"], 4), cfg["missing_fraction"], cfg["short_side_fraction"])
    for j, row in enumerate(r for r in broken_rows if r["kind"] == "junk_grade"):
        hit = (table["subject"] == row["subject"]) & (table["visit"] == row["visit"]) & (
            table["side"].isin(labels.SIDE_SPELLINGS["right"]))
        table.loc[hit, TARGETS[j % 4]] = JUNK_GRADES[j % len(JUNK_GRADES)]
    write_csv(table, out / "labels.csv")
    write_csv(pd.DataFrame(manifest), out / "manifest.csv")
    if plan.twins:
        twins = pd.DataFrame(manifest)
        twins["image_path"] = twins["image_path"].map(twin_image_path)
        write_csv(twins, out / TWIN_MANIFEST)
    write_csv(pd.DataFrame(broken_rows, columns=["kind", "subject", "visit", "side", "file", "image_path"]),
              out / "broken.csv")
    log.info("phantom cohort: %d subjects x %d visits from %d shards, %d broken inputs -> %s", plan.n_subjects,
             plan.n_visits, len(shard_dirs), len(broken_rows), out)
    return cfg


def make_cohort(config, out_dir):
    """Generate the cohort described by `config` (the `cohort.phantom` block) into `out_dir`, all shards in
    this process (the workflow runs them as separate jobs)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".shards-") as tmp:
        shard_dirs = [Path(tmp) / str(k) for k in range(n_shards(config))]
        for k, shard_dir in enumerate(shard_dirs):
            make_shard(config, k, shard_dir)
        return gather_shards(config, shard_dirs, out)
