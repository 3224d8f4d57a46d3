"""Do two runs of one study reach the same conclusions? Two ablation tables (`report/tables/ablation.csv`),
e.g. the science study and its independent replication (experiments/science_replicate.yaml: another
phantom, another test split, other training seeds), compared comparison by comparison.

A comparison's verdict is the sign of its difference (arm - versus) when the claim stands, else none (0):
a primary comparison (one with a `p_holm`) stands when it survives Holm's correction; any other when its
95 % interval (the crossed random-effects one, else the bootstrap's, else the t interval over seeds)
excludes 0; an undefined difference never stands. Agreement is counted only where at least one run makes
a claim: two runs agree on a comparison when both claim it with the same sign ("no claim" in both is not
agreement, it is no evidence either way). The differences themselves are not expected to match.
"""

import numpy as np
import pandas as pd

KEYS = ["metric", "target", "arm", "versus"]  # one comparison of the ablation table
REQUIRED = [*KEYS, "diff", "ci_low", "ci_high"]  # every ablation table has these
BOOTSTRAP = ["boot_diff", "boot_low", "boot_high", "p_holm", "survives"]  # absent when n_boot is 0
MODEL = ["re_low", "re_high"]  # the crossed random-effects interval (absent in older tables)
VERDICT_SYMBOL = {1: "+", -1: "-", 0: "none"}
REPLICATION_COLUMNS = [*KEYS, "primary", "diff_a", "low_a", "high_a", "verdict_a", "diff_b", "low_b", "high_b",
                       "verdict_b", "claimed", "agree", "replicated"]
_SURVIVES = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}


def _survives(values):
    """The `survives` column as booleans, however the CSV spelled them; anything else is an error."""
    spelled = values.astype(str).str.strip().str.lower()
    unknown = sorted(set(spelled) - set(_SURVIVES))
    if unknown:
        raise ValueError(f"survives: values {unknown} are neither true nor false")
    return spelled.map(_SURVIVES).astype(bool)


def verdicts(table):
    """Per comparison of one ablation table (every row with a `versus` arm): its KEYS, primary, the
    difference with its interval (the crossed random-effects interval re_low, re_high where the row has
    one, else the bootstrap's, else the t interval over seeds) and the verdict (+1 / -1: arm - versus is
    positive / negative and the claim stands; 0: it does not)."""
    missing = [c for c in REQUIRED if c not in table]
    if missing:
        raise ValueError(f"not an ablation table: no column {missing}")
    table = table.reindex(columns=[*table.columns, *[c for c in [*BOOTSTRAP, *MODEL] if c not in table]])
    rows = table[table["versus"].fillna("").astype(str) != ""].copy()
    boot, model = rows["boot_diff"].notna(), rows["re_low"].notna()
    used = {"diff": rows["boot_diff"].where(boot, rows["diff"])}
    for name, model_column, boot_column, t_column in (("low", "re_low", "boot_low", "ci_low"),
                                                      ("high", "re_high", "boot_high", "ci_high")):
        used[name] = rows[model_column].where(model, rows[boot_column].where(boot, rows[t_column]))
    primary = rows["p_holm"].notna()
    stands = ((used["low"] > 0) | (used["high"] < 0)).to_numpy()
    if primary.any():
        stands[primary.to_numpy()] = _survives(rows.loc[primary, "survives"]).to_numpy()
    verdict = np.where(stands & used["diff"].notna(), np.sign(used["diff"].fillna(0)), 0)
    return pd.DataFrame({**{key: rows[key] for key in KEYS}, "primary": primary, **used,
                         "verdict": verdict.astype(int)}).reset_index(drop=True)


def compare_ablation_tables(table_a, table_b):
    """Every comparison of two ablation tables side by side (REPLICATION_COLUMNS) with `agree`. A
    comparison only one table has, or primary in one table only, is an error: the runs must share a design."""
    a, b = verdicts(table_a), verdicts(table_b)
    merged = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True, validate="one_to_one")
    unmatched = merged[merged["_merge"] != "both"]
    if len(unmatched):
        first = unmatched.iloc[0]
        where = "A" if first["_merge"] == "left_only" else "B"
        raise ValueError(f"{len(unmatched)} comparisons are in one table only, e.g. {first['metric']} "
                         f"{first['target']} {first['arm']} - {first['versus']} (only in {where}): "
                         "the two tables come from different designs")
    mismatched = merged[merged["primary_a"] != merged["primary_b"]]
    if len(mismatched):
        first = mismatched.iloc[0]
        raise ValueError(f"{len(mismatched)} comparisons are primary in one table only, e.g. {first['metric']} "
                         f"{first['target']} {first['arm']} - {first['versus']}: the two runs had other "
                         "report.statistics primary_metrics or n_boot")
    merged["primary"] = merged["primary_a"].astype(bool)
    merged["claimed"] = (merged["verdict_a"] != 0) | (merged["verdict_b"] != 0)
    merged["agree"] = merged["claimed"] & (merged["verdict_a"] == merged["verdict_b"])
    merged["replicated"] = np.where(merged["agree"], merged["verdict_a"], 0).astype(int)
    return merged[REPLICATION_COLUMNS].reset_index(drop=True)


def claim_counts(comparison):
    """Per group (primary, other): comparisons, claims of run A, claims of run B, comparisons claimed by
    at least one run, and those both runs claim with the same sign (agree)."""
    rows = []
    for primary, label in ((True, "primary (Holm)"), (False, "other (95 % interval)")):
        part = comparison[comparison["primary"] == primary]
        rows.append({"group": label, "comparisons": len(part), "claims_a": int((part["verdict_a"] != 0).sum()),
                     "claims_b": int((part["verdict_b"] != 0).sum()), "claimed": int(part["claimed"].sum()),
                     "agree": int(part["agree"].sum())})
    return pd.DataFrame(rows)


def _difference(row, run):
    return (f"{row[f'diff_{run}']:.3g} [{row[f'low_{run}']:.3g}, {row[f'high_{run}']:.3g}] "
            f"(verdict {VERDICT_SYMBOL[row[f'verdict_{run}']]})")


def replication_summary(comparison):
    """Lines for a person: per group (primary, others) the claims each run made and the agreement among
    the comparisons at least one run claims, then every claim the other run does not share, primary first."""
    lines = []
    for _, count in claim_counts(comparison).iterrows():
        lines.append(f"{count['group']}: {count['comparisons']} comparisons; run A claims {count['claims_a']}, "
                     f"run B claims {count['claims_b']}; of the {count['claimed']} claimed by at least one run "
                     f"{count['agree']} agree (same sign in both), {count['claimed'] - count['agree']} do not")
    differing = comparison[comparison["claimed"] & ~comparison["agree"]]
    for _, row in differing.sort_values("primary", ascending=False).iterrows():
        lines.append(f"  differs{' (primary)' if row['primary'] else ''}: {row['metric']} {row['target']} "
                     f"{row['arm']} - {row['versus']}: {_difference(row, 'a')} vs {_difference(row, 'b')}")
    return lines


def read_ablation_table(path):
    """An ablation table CSV as `report_ablation` writes it."""
    return pd.read_csv(path, dtype={"versus": str, "survives": str})
