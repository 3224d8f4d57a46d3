"""Every run's interventions.csv (`osteoloc.explain.interventions`) as the report uses it: the intervention
table (`intervention_summary`: per arm, target and quantity the mean with its interval over seeds and
subjects, chance, ceiling and place, the all-zero maps counted) and the follow rate's part in the ablation
(`follow_seed_values`, `follow_hips`: the primary comparison of question 7, arm minus its comparison arm on
the same interventions and seeds, inside Holm's family)."""

import numpy as np
import pandas as pd

from osteoloc.report.stats import calibrated, crossed_bootstrap_mean

FOLLOW_METRIC = "com_follow"  # the primary follow rate: the CoM's move along the lesion's, per mm
# (quantity, kind, role) of the table's rows: the follow rates of a moved lesion (per direction) on its own
# target's map, of a lesion moved to the other site on the receiving target's map, false following (the
# maps of the hip's lesion-free targets when a lesion moves), and the logit change on removal
QUANTITIES = (("com_follow", "moved", "lesion"), ("peak_follow", "moved", "lesion"),
              ("com_follow", "other_site", "receiving"), ("com_follow", "moved", "unaffected"),
              ("logit_change", "removed", "lesion"))
SUMMARY_COLUMNS = ["quantity", "kind", "role", "direction", "arm", "target", "mean", "ci_low", "ci_high", "chance",
                   "ceiling", "place", "sd_seeds", "n_seeds", "n_subjects", "n", "n_undefined", "undefined_share"]


def intervention_summary(effects, n_boot=2000, seed=0):
    """Per quantity (QUANTITIES), direction (a move's; "" otherwise), arm and target: the mean over
    (seed, subject) cells with its 95 % bootstrap interval over seeds and subjects
    (`stats.crossed_bootstrap_mean`), the image-blind map's chance level and the lesion-driven oracle's
    ceiling (follow rates only; means over the same interventions), place = (mean - chance) / (ceiling -
    chance), the sd over seeds of the per-run means, the seeds, subjects and interventions (n) it is over,
    and n_undefined: the interventions with an all-zero map before or after (scored as the uniform map,
    counted in the mean, never dropped). effects: every run's interventions.csv with columns model and
    seed."""
    rows = []
    for column, kind, role in QUANTITIES:
        part = effects[(effects["kind"] == kind) & (effects["role"] == role)]
        part = part[part[column].notna()]  # NaN only where nothing moved (a removal's follow)
        for (direction, model, target), block in part.groupby(["direction", "model", "target"], sort=False):
            mean, low, high = crossed_bootstrap_mean(block, column, "seed", "subject", n_boot=n_boot, seed=seed)
            levels = {level: np.nan for level in ("chance", "ceiling")}
            if f"{column}_chance" in block:
                for level in levels:
                    levels[level], _, _ = crossed_bootstrap_mean(block, f"{column}_{level}", "seed", "subject",
                                                                 n_boot=0)
            per_run = block.groupby("seed")[column].mean()
            undefined = int((block["maps_undefined"] > 0).sum())
            rows.append({"quantity": column, "kind": kind, "role": role, "direction": direction, "arm": model,
                         "target": target, "mean": mean, "ci_low": low, "ci_high": high, **levels,
                         "place": float(calibrated(mean, levels["chance"], levels["ceiling"])),
                         "sd_seeds": per_run.std(ddof=1), "n_seeds": len(per_run),
                         "n_subjects": block["subject"].nunique(), "n": len(block), "n_undefined": undefined,
                         "undefined_share": undefined / len(block)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _followed_moves(effects):
    """The rows whose follow rate is scored: moved lesions on their own target's map, FOLLOW_METRIC defined."""
    part = effects[(effects["kind"] == "moved") & (effects["role"] == "lesion")]
    return part[part[FOLLOW_METRIC].notna()]


def follow_hips(effects):
    """The primary follow rate's units: every moved lesion scored on its own target's map (both directions,
    every shift), one row per (run, intervention) with columns model, seed, target, subject, hip (the
    intervention: `case` of the crops file, the same in every run of a test set) and FOLLOW_METRIC, for
    `ablation.bootstrap_comparisons` (`stats.crossed_inference` pairs arms on (seed, subject, hip))."""
    part = _followed_moves(effects)
    return part.assign(hip=part["case"].astype(str))[["model", "seed", "target", "subject", "hip", FOLLOW_METRIC]]


def follow_seed_values(effects):
    """The follow rate's rows of `ablation.seed_level_values` (columns arm, seed, target, metric, value, n,
    n_undefined, chance, random_cell, ceiling, control): per run and target the mean over its moved lesions
    of FOLLOW_METRIC, of the image-blind map's (chance) and of the lesion-driven oracle's (ceiling);
    n_undefined: the moves where either map was all zero (scored as the uniform map, kept)."""
    part = _followed_moves(effects)
    part = part.assign(_undefined=(part["maps_undefined"] > 0).astype(int))
    frame = part.groupby(["model", "seed", "target"], sort=False).agg(
        value=(FOLLOW_METRIC, "mean"), n=(FOLLOW_METRIC, "count"), n_undefined=("_undefined", "sum"),
        chance=(f"{FOLLOW_METRIC}_chance", "mean"), ceiling=(f"{FOLLOW_METRIC}_ceiling", "mean")).reset_index()
    return frame.rename(columns={"model": "arm"}).assign(metric=FOLLOW_METRIC, random_cell=np.nan, control=np.nan)


def read_effects(runs, paths):
    """Every run's interventions.csv (runs: [(arm, seed)] in the paths' order) as one frame with columns
    model and seed; `direction` is "" where no move has one."""
    runs = [tuple(run) for run in runs]
    if len(runs) != len(paths):
        raise ValueError(f"interventions: {len(runs)} runs but {len(paths)} interventions.csv files")
    frames = [pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"direction": str})
              .assign(model=arm, seed=int(seed)) for (arm, seed), path in zip(runs, paths)]
    frame = pd.concat(frames, ignore_index=True)
    frame["direction"] = frame["direction"].fillna("")
    return frame
