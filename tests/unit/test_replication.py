"""Two runs of one design compared verdict by verdict (`report.replication`, `osteoloc replicate`)."""

import numpy as np
import pandas as pd
import pytest

from osteoloc.cli import main
from osteoloc.report.replication import claim_counts, compare_ablation_tables, verdicts


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
    comparison = compare_ablation_tables(A, b).set_index(["metric", "target"])
    assert comparison.loc[("com_to_lesion", "osteo_fem_sup"), "agree"]  # claimed by both, same sign
    assert comparison.loc[("com_to_lesion", "osteo_fem_sup"), "replicated"] == 1
    assert not comparison.loc[("spread", "osteo_fem_sup"), "agree"]
    assert comparison.loc[("spread", "osteo_fem_sup"), "replicated"] == 0


def test_no_claim_in_both_runs_is_not_agreement():
    """A comparison neither run claims is left out of the agreement (claimed False, agree False); the
    counts give each run's claims and the agreement among the comparisons at least one run claims."""
    comparison = compare_ablation_tables(A, A).set_index(["metric", "target"])
    unclaimed = [("com_to_lesion", "osteo_fem_inf"), ("spread", "osteo_fem_inf")]  # none in both runs
    assert not comparison.loc[unclaimed, "claimed"].any() and not comparison.loc[unclaimed, "agree"].any()
    assert (comparison.loc[unclaimed, "replicated"] == 0).all()
    counts = claim_counts(comparison.reset_index()).set_index("group")
    assert counts.loc["primary (Holm)"].to_dict() == {"comparisons": 2, "claims_a": 1, "claims_b": 1, "claimed": 1,
                                                      "agree": 1}
    # run B claims one more: 2 claimed, 1 agree; run B's claims counted on their own
    b = A.copy()
    b.loc[1, "survives"] = True
    counts = claim_counts(compare_ablation_tables(A, b)).set_index("group")
    assert counts.loc["primary (Holm)"].to_dict() == {"comparisons": 2, "claims_a": 1, "claims_b": 2, "claimed": 2,
                                                      "agree": 1}
    # no claims at all: nothing agrees, nothing is claimed
    silent = A.assign(survives=False, ci_low=-1.0, ci_high=1.0)
    counts = claim_counts(compare_ablation_tables(silent, silent)).set_index("group")
    assert counts[["claims_a", "claims_b", "claimed", "agree"]].to_numpy().sum() == 0


def test_the_crossed_interval_decides_a_non_primary_row_before_the_bootstrap():
    """A row with re_low / re_high (and no p_holm) is judged by them, not by the bootstrap's interval."""
    table = A.assign(re_low=np.nan, re_high=np.nan, boot_diff=A["boot_diff"], p_holm=np.nan, survives=np.nan)
    table.loc[0, ["re_low", "re_high"]] = [-1.0, 14.0]  # the bootstrap's [3.4, 10.1] excludes 0, this does not
    v = verdicts(table).set_index(["metric", "target"])
    assert v.loc[("com_to_lesion", "osteo_fem_sup"), "verdict"] == 0
    assert v.loc[("com_to_lesion", "osteo_fem_inf"), "verdict"] == -1  # no re interval: the bootstrap's


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
    assert "primary (Holm): 2 comparisons; run A claims 1, run B claims 0; of the 1 claimed by at least one run 0 agree" in out
    assert "differs (primary): com_to_lesion osteo_fem_sup" in out
    assert len(pd.read_csv(tmp_path / "c.csv")) == 4
    assert main(["replicate", str(tmp_path / "a.csv"), str(tmp_path / "missing.csv")]) == 2
