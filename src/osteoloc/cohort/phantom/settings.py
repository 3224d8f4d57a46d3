"""The phantom's settings: every `cohort.phantom` key with its default, and what the workflow asks of a
config while it parses (how many shard jobs, whether twins are written), without the generator's imports.
"""

from osteoloc.names import TARGETS

# Paper A, Table 2 (order: fem_sup, fem_inf, acet_sup, acet_inf).
PAPER_A_CORRELATION = (
    (1.000, 0.445, 0.383, 0.329),
    (0.445, 1.000, 0.252, 0.328),
    (0.383, 0.252, 1.000, 0.405),
    (0.329, 0.328, 0.405, 1.000),
)

PLACEMENT_DESIGNS = ("landmark", "offset")
OFFSET_DISTRIBUTIONS = ("uniform", "normal")

DEFAULTS = {
    "seed": 0,
    "subjects": 240,
    "visits": 1,
    "oai_fraction": 0.5,
    "spacing_mm": [0.6, 0.8],
    "field_of_view_mm": [360.0, 240.0],
    "anatomy_size_sd": 0.07,
    "pose_rotation_deg": 3.0,
    "pose_shift_mm": 8.0,
    "prevalence": {"osteo_fem_sup": 0.30, "osteo_fem_inf": 0.20, "osteo_acet_sup": 0.35, "osteo_acet_inf": 0.18},
    "label_correlation": [list(r) for r in PAPER_A_CORRELATION],
    "side_correlation": 0.5,
    "visit_correlation": 0.9,
    "grade_shares": [0.5, 0.3, 0.2],
    "missing_fraction": 0.05,
    "short_side_fraction": 0.3,
    "difficulty": 0.5,
    "lesion_size_mm": 2.5,
    # Per-target multiplier of lesion_size_mm (mimics too). Below 1 where the site shows a protrusion more
    # plainly than a bump on the head does (the lateral acetabular edge borders soft tissue), so that no
    # target is near-perfectly separable at the default difficulty: docs/phantom.md "Difficulty".
    "lesion_scale": {"osteo_fem_sup": 1.0, "osteo_fem_inf": 0.7, "osteo_acet_sup": 0.45, "osteo_acet_inf": 1.0},
    # Where a lesion sits relative to its target's landmarks (lesions.py, docs/phantom.md "Where lesions
    # sit"): `landmark` on them (the default study), `offset` moved along and across its zone.
    "lesion_placement": {"design": "landmark", "along_distribution": "uniform", "along_mm": 15.0,
                         "across_distribution": "uniform", "across_mm": 5.0, "away_fraction": 0.2,
                         "away_min_mm": 15.0, "away_reach_mm": 38.0},
    "noise_sd": 0.08,
    "exposure_sd": 0.1,
    "auto_points": {"error_sd_mm": 0.8, "shift_sd_mm": 1.0, "miss_probability": 0.05, "miss_mm": 6.0},
    "split_pts_fraction": 0.2,
    "dicom": {"cr_fraction": 0.3, "monochrome1_fraction": 0.3, "pixel_spacing_fraction": 0.5,
              "bits_stored": {"10": 0.15, "12": 0.35, "14": 0.15, "16": 0.35},
              "transfer_syntax": {"explicit": 0.4, "rle": 0.3, "jpeg2000": 0.3, "jpegls": 0.0, "jpeg_lossless": 0.0}},
    "cue": {"enabled": False, "target": "osteo_fem_sup", "strength": 0.8, "size_mm": 6.0, "twins": False},
    "broken_fraction": 0.01,
    "shard_subjects": 60,
}
# How the generation is split into jobs, not what it generates: left out of truth.h5's config.
LAYOUT_KEYS = ("shard_subjects",)
# The radiographs' folder of the cohort (relative to the cohort folder). A directory, not an HDF5 path: single
# quotes keep it apart from the study file's dataset paths, which only io/ spells (a grep checks that).
IMAGE_DIR = 'images'


def with_defaults(config):
    """The phantom config with every missing key (also inside nested blocks) taken from DEFAULTS."""
    out = {}
    for key, default in DEFAULTS.items():
        value = (config or {}).get(key, default)
        if isinstance(default, dict) and key != "prevalence":
            value = {**default, **(value or {})}
        out[key] = value
    unknown = set(config or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown cohort.phantom keys: {sorted(unknown)}")
    unknown = set(out["lesion_placement"]) - set(DEFAULTS["lesion_placement"])
    if unknown:
        raise ValueError(f"unknown cohort.phantom.lesion_placement keys: {sorted(unknown)}")
    placement = out["lesion_placement"]
    if placement["design"] not in PLACEMENT_DESIGNS:
        raise ValueError(f"cohort.phantom.lesion_placement.design is {placement['design']!r}; expected one of "
                         f"{PLACEMENT_DESIGNS}")
    for key in ("along_distribution", "across_distribution"):
        if placement[key] not in OFFSET_DISTRIBUTIONS:
            raise ValueError(f"cohort.phantom.lesion_placement.{key} is {placement[key]!r}; expected one of "
                             f"{OFFSET_DISTRIBUTIONS}")
    unknown = set(out["lesion_scale"]) - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown targets in cohort.phantom.lesion_scale: {sorted(unknown)}; expected {TARGETS}")
    return out


def writes_twins(config):
    """Whether the cohort `config` describes has counterfactual twins (`cue.twins`); they need the cue."""
    cue = with_defaults(config)["cue"]
    if cue["twins"] and not cue["enabled"]:
        raise ValueError("cohort.phantom.cue.twins is on but cue.enabled is off: a twin is its radiograph "
                         "without the cue markers, so there is nothing to take away")
    return bool(cue["twins"])


def n_shards(config):
    """How many shard jobs generate the cohort `config` describes (subjects / shard_subjects, rounded up)."""
    cfg = with_defaults(config)
    return -(-int(cfg["subjects"]) // int(cfg["shard_subjects"]))
