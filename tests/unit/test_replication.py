"""Two runs of one design compared verdict by verdict (`report.replication`, `osteoloc replicate`)."""

import numpy as np
import pandas as pd
import pytest

from osteoloc.cli import main
from osteoloc.report.replication import compare_ablation_tables, verdicts


def _table(primary, other):
    """An ablation table's comparison columns: primary rows (boot_diff, boot_low, boot_high, survives) and
    other rows with only the t interval over seeds (diff, ci_low, ci_high), plus the reference arm's row."""
    rows = [{"metric": "com_to_lesion", "target": t, "arm": a, "versus": "prior", "diff": np.nan, "ci_low": np.nan,
             "ci_high": np.nan, "boot_diff": d, "boot_low": lo, "boot_high": hi, "p_holm": 0.01 if s else 0.5,
             "survives": s} for t, a, d, lo, hi, s in primary]
    rows += [{"metric": "spread", "target": t, "arm": a, "versus": "prior", "diff": d, "ci_low": lo, "ci_high": hi,
              "boot_diff": np.nan, "boot_low": np.nan, "boot_high": np.nan, "p_holm": np.nan, "survives": np.nan}
             for t, a, d, lo, hi in other]
    rows.append({"metric": "spread", "target": "osteo_fem_sup", "arm": "prior", "versus": np.nan, "diff": np.nan})
    return pd.DataFrame(rows)


A = _table([("osteo_fem_sup", "baseline", 6.9, 3.4, 10.1, True),
            ("osteo_fem_inf", "baseline", -0.5, -0.9, -0.1, False)],
           [("osteo_fem_sup", "baseline", 2.0, 1.0, 3.0), ("osteo_fem_inf", "baseline", 0.3, -0.2, 0.8)])


def test_verdicts_follow_holm_for_primary_rows_and_the_interval_for_others():
    v = verdicts(A).set_index(["metric", "target"])["verdict"]
    assert v[("com_to_lesion", "osteo_fem_sup")] == 1  # survives, positive
    assert v[("com_to_lesion", "osteo_fem_inf")] == 0  # its interval excludes 0, but Holm does not keep it
    assert v[("spread", "osteo_fem_sup")] == 1 and v[("spread", "osteo_fem_inf")] == 0
    assert len(verdicts(A)) == 4  # the reference arm's row has no comparison


def test_another_run_agrees_when_verdicts_match_whatever_the_differences():
    b = A.copy()
    b.loc[0, ["boot_diff", "boot_low", "boot_high"]] = [5.0, 1.0, 9.0]  # another size, same verdict
    b.loc[2, ["diff", "ci_low", "ci_high"]] = [-2.0, -3.0, -1.0]  # the sign flips: a disagreement
    comparison = compare_ablation_tables(A, b)
    assert comparison.loc[comparison["primary"], "agree"].all()
    agree = comparison[~comparison["primary"]].set_index("target")["agree"]
    assert not agree["osteo_fem_sup"] and agree["osteo_fem_inf"]


def test_tables_of_two_designs_are_refused():
    with pytest.raises(ValueError, match=r"one table only, .* \(only in A\)"):
        compare_ablation_tables(A, A.iloc[1:])
    other_primaries = A.copy()
    other_primaries.loc[1, "p_holm"] = np.nan
    with pytest.raises(ValueError, match="primary in one table only"):
        compare_ablation_tables(A, other_primaries)


def test_an_undefined_difference_is_a_verdict_of_none_not_another_design():
    """All-zero maps in one run leave a comparison without a difference: no claim, and a disagreement
    where the other run has one."""
    b = A.copy()
    b.loc[2, ["diff", "ci_low", "ci_high"]] = np.nan
    comparison = compare_ablation_tables(A, b).set_index(["metric", "target"])
    assert comparison.loc[("spread", "osteo_fem_sup"), "verdict_b"] == 0
    assert not comparison.loc[("spread", "osteo_fem_sup"), "agree"]


def test_a_table_without_a_bootstrap_is_judged_by_its_t_intervals():
    no_bootstrap = A.drop(columns=["boot_diff", "boot_low", "boot_high", "p_holm", "survives"])
    no_bootstrap.loc[:1, ["diff", "ci_low", "ci_high"]] = [[6.0, 2.0, 9.0], [-0.4, -1.0, 0.2]]
    v = verdicts(no_bootstrap).set_index(["metric", "target"])
    assert not v["primary"].any()
    assert v["verdict"].tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="not an ablation table"):
        verdicts(A.drop(columns="ci_low"))


def test_the_command_exits_1_on_a_primary_disagreement(tmp_path, capsys):
    b = A.copy()
    b.loc[0, "survives"] = False
    A.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    assert main(["replicate", str(tmp_path / "a.csv"), str(tmp_path / "a.csv")]) == 0
    assert main(["replicate", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "c.csv")]) == 1
    out = capsys.readouterr().out
    assert "primary (Holm): 1 of 2" in out and "differs (primary): com_to_lesion osteo_fem_sup" in out
    assert len(pd.read_csv(tmp_path / "c.csv")) == 4
    assert main(["replicate", str(tmp_path / "a.csv"), str(tmp_path / "missing.csv")]) == 2
