"""Do two runs of one study reach the same conclusions? Two ablation tables (`report/tables/ablation.csv`),
e.g. the same config on two machines, compared comparison by comparison.

A comparison's verdict is the sign of its bootstrap difference (arm - versus) when the claim stands, else
0: for a primary comparison (a `p_holm`) the claim stands when it survives Holm's correction; for any
other, when its 95 % interval (the bootstrap's, else the t interval over seeds) excludes 0. Two runs agree on a row when their
verdicts are equal. The differences themselves are not expected to match: another CPU rounds differently,
and training amplifies it into another set of models.
"""

import numpy as np
import pandas as pd

KEYS = ["metric", "target", "arm", "versus"]  # one comparison of the ablation table
SIGN = {1: "+", -1: "-", 0: "none"}
REPLICATION_COLUMNS = [*KEYS, "primary", "diff_a", "low_a", "high_a", "verdict_a", "diff_b", "low_b", "high_b",
                       "verdict_b", "agree"]


def verdicts(table):
    """Per comparison of one ablation table: its KEYS, primary, the difference with its interval and the
    verdict (+1 / -1: arm - versus is positive / negative and the claim stands; 0: it does not). A row
    with a bootstrap (`boot_diff`) is judged by it; any other by the t interval over seeds (`diff`)."""
    rows = table[table["diff"].notna() | table["boot_diff"].notna()].copy()
    boot = rows["boot_diff"].notna()
    for column, boot_column, seed_column in (("d", "boot_diff", "diff"), ("lo", "boot_low", "ci_low"),
                                             ("hi", "boot_high", "ci_high")):
        rows[column] = rows[boot_column].where(boot, rows[seed_column])
    rows["primary"] = rows["p_holm"].notna()
    stands = np.where(rows["primary"], rows["survives"].astype(str).str.lower() == "true",
                      (rows["lo"] > 0) | (rows["hi"] < 0))
    rows["verdict"] = np.where(stands, np.sign(rows["d"]), 0).astype(int)
    rows["versus"] = rows["versus"].fillna("")
    return rows[[*KEYS, "primary", "d", "lo", "hi", "verdict"]].rename(columns={"d": "diff", "lo": "low", "hi": "high"})


def compare_ablation_tables(table_a, table_b):
    """Every bootstrap comparison of two ablation tables side by side (REPLICATION_COLUMNS) with `agree`.
    A comparison only one table has is an error: the two runs must come from one design."""
    a, b = verdicts(table_a), verdicts(table_b)
    merged = a.merge(b.drop(columns="primary"), on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    unmatched = merged[merged["_merge"] != "both"]
    if len(unmatched):
        first = unmatched.iloc[0]
        raise ValueError(f"{len(unmatched)} comparisons are in one table only, e.g. {first['metric']} "
                         f"{first['target']} {first['arm']} - {first['versus']} ({first['_merge']}): "
                         "the two tables come from different designs")
    merged["agree"] = merged["verdict_a"] == merged["verdict_b"]
    merged["primary"] = merged["primary"].astype(bool)
    return merged[REPLICATION_COLUMNS].reset_index(drop=True)


def replication_summary(comparison):
    """Lines for a person: agreement counts (primary, others) and every disagreement, primary first."""
    lines = []
    for label, part in (("primary (Holm)", comparison[comparison["primary"]]),
                        ("other (95 % interval)", comparison[~comparison["primary"]])):
        lines.append(f"{label}: {int(part['agree'].sum())} of {len(part)} comparisons reach the same verdict")
    for _, row in comparison[~comparison["agree"]].sort_values("primary", ascending=False).iterrows():
        lines.append(f"  differs{' (primary)' if row['primary'] else ''}: {row['metric']} {row['target']} {row['arm']} - {row['versus']}: "
                     f"{row['diff_a']:.3g} [{row['low_a']:.3g}, {row['high_a']:.3g}] (verdict {SIGN[row['verdict_a']]}) "
                     f"vs {row['diff_b']:.3g} [{row['low_b']:.3g}, {row['high_b']:.3g}] (verdict {SIGN[row['verdict_b']]})")
    return lines


def read_ablation_table(path):
    """An ablation table CSV as `report_ablation` writes it."""
    return pd.read_csv(path, dtype={"versus": str})
