"""Every model's probabilities on the new cohort, per seed and as the seed ensemble (docs/apply.md).

`probabilities.csv`: the explain predictions of every run, long (`row, subject, visit, side, target, label,
prob, model, seed`), row = the apply run's study HDF5 row. `ensemble.csv`: per hip, target and model the
mean of its seeds' probabilities, their sd (ddof 1, NaN with one seed), min, max and n_seeds; and per hip
and target `disagreement`, the largest minus the smallest model mean (0 with one model).
"""

import numpy as np
import pandas as pd

from osteoloc.io.atomic import write_csv
from osteoloc.io.runs import META_FIELDS

HIP_COLUMNS = ["row", *META_FIELDS, "target", "label"]
ENSEMBLE_COLUMNS = [*HIP_COLUMNS, "model", "n_seeds", "mean", "sd", "min", "max", "disagreement"]
ENSEMBLE = "ensemble"  # the seed column's value for the seed-ensemble mean in the evaluation tables


def ensemble_frame(probabilities, models):
    """The ensemble table of a `probabilities` frame; `models` gives the model order."""
    grouped = probabilities.groupby([*HIP_COLUMNS, "model"], sort=False)["prob"]
    frame = grouped.agg(n_seeds="count", mean="mean", sd=lambda p: p.std(ddof=1) if len(p) > 1 else np.nan,
                        min="min", max="max").reset_index()
    spread = frame.groupby(["row", "target"])["mean"].agg(lambda m: m.max() - m.min()).rename("disagreement")
    frame = frame.merge(spread.reset_index(), on=["row", "target"], how="left")
    frame["model"] = pd.Categorical(frame["model"], categories=list(models), ordered=True)
    target_order = {t: i for i, t in enumerate(dict.fromkeys(probabilities["target"]))}
    frame = frame.assign(_t=frame["target"].map(target_order)).sort_values(["row", "_t", "model"], kind="stable")
    frame["model"] = frame["model"].astype(str)
    return frame.drop(columns="_t")[ENSEMBLE_COLUMNS].reset_index(drop=True)


def write_probabilities(probabilities, models, probabilities_path, ensemble_path):
    """Write both tables; returns the ensemble frame."""
    write_csv(probabilities, probabilities_path)
    ensemble = ensemble_frame(probabilities, models)
    write_csv(ensemble, ensemble_path)
    return ensemble


def read_ensemble(path):
    return pd.read_csv(path, dtype={"subject": str, "visit": str, "side": str}, keep_default_na=False,
                       na_values={c: ["", "NaN", "nan"] for c in ("sd", "mean", "min", "max", "disagreement")})
