"""Report-level suppression plan and the recoverability audit (docs/rules.md §9, docs/design.md §6).

Hand-made cases with hand-worked expected cells; the threshold is 10 (1–9 hidden, 0 shown).
"""
import numpy as np
import pandas as pd
import pytest

from hsutils.publish import privacy
from hsutils.core.errors import ParameterError

M = privacy.SUPPRESSION_MARK


def test_relations_single_hidden_part_hides_next_smallest():
    # total 60 = 5 + 20 + 35: 5 hidden (primary) would be 60 − 55, so 20 is hidden too
    hidden = privacy.suppress_relations([60, 5, 20, 35], [(0, [1, 2, 3])])
    assert hidden.tolist() == [False, True, True, False]


def test_relations_boundaries_zero_shown_ten_shown():
    # 0 and 10 are shown, 9 and 1 hidden; two hidden parts summing to 10 are enough
    assert privacy.suppress_relations([0, 10, 9, 1], []).tolist() == [False, False, True, True]
    assert privacy.suppress_relations([30, 9, 1, 20], [(0, [1, 2, 3])]).tolist() == [False, True, True, False]


def test_relations_hidden_parts_with_small_sum_hide_one_more():
    # 3 + 4 = 7 would be 50 − 43: the smallest shown non-zero part (43) is hidden too
    assert privacy.suppress_relations([50, 3, 4, 43], [(0, [1, 2, 3])]).tolist() == [False, True, True, True]


def test_relations_no_candidate_hides_total():
    # 20 = (hidden upstream) + 0: no other non-zero part to hide, so the total is hidden
    assert privacy.suppress_relations([20, np.nan, 0], [(0, [1, 2])]).tolist() == [True, True, False]


def test_relations_hidden_total_with_shown_parts_hides_a_part():
    # the total was hidden upstream (NaN) but 12 + 30 would give it back
    assert privacy.suppress_relations([np.nan, 12, 30], [(0, [1, 2])]).tolist() == [True, True, False]


def test_relations_chain_across_two_relations():
    # grand total 100 = a(40) + b(60); a = 4 + 36. 4 → 36 hidden → a recoverable? no: a shown,
    # parts 4, 36 hidden (sum 40 ≥ 10): stable. b = 55 + 5: 5 → 55 hidden; b shown: fine.
    h = privacy.suppress_relations([100, 40, 60, 4, 36, 55, 5], [(0, [1, 2]), (1, [3, 4]), (2, [5, 6])])
    assert h.tolist() == [False, False, False, True, True, True, True]


def test_fixed_cells_are_not_hidden_later():
    h = privacy.suppress_relations([60, 5, 20, 35], [(0, [1, 2, 3])], fixed=[True, False, True, False])
    assert h.tolist() == [False, True, False, True]


def test_secondary_suppress_two_way_table():
    wide = pd.DataFrame({"A": [3, 20, 23], "B": [40, 50, 90], "計": [43, 70, 113]}, index=["x", "y", "計"])
    h = privacy.secondary_suppress(wide, total_col="計", total_row="計")
    # 3 (primary) → row x: 40 hidden; column A: 20 hidden; row y: 50; column B: all three then ok
    assert h.loc["x"].tolist() == [True, True, False]
    assert h.loc["y"].tolist() == [True, True, False]
    assert h.loc["計"].tolist() == [False, False, False]


def test_suppress_groups_virtual_total():
    df = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "n": [4, 15, 30, 12, 40]})
    assert privacy.suppress_groups(df, "n", ["g"]).tolist() == [True, True, False, False, False]


def test_plan_cross_table_prefecture_total_minus_towns():
    pref = pd.DataFrame({"fy": [2024], "n": [100]})
    towns = pd.DataFrame({"fy": [2024] * 3, "town": ["a", "b", "c"], "n": [7, 40, 53]})
    plan = privacy.SuppressionPlan()
    plan.add_table("pref", pref, ["n"])
    plan.publish("pref")
    plan.add_table("towns", towns, ["n"], relations=[privacy.Link("pref", "n", on=["fy"])])
    plan.solve()
    shown = plan.shown("towns")
    assert shown["n"].tolist() == [M, M, 53]
    assert plan.audit() == []


def test_plan_identity_link_hides_the_copy():
    flow = pd.DataFrame({"step": ["total", "a", "b"], "n": [M, M, 30]})  # published with marks
    plan = privacy.SuppressionPlan()
    plan.add_table("flow", flow, ["n"])
    plan.publish("flow")
    counts = pd.DataFrame({"category": ["x", "y", "計"], "n": [20, 25, 45]})
    plan.add_table("counts", counts, ["n"], relations=[
        privacy.Margin("category", "計"),
        privacy.Link("flow", "n", rows={"category": "計"}, other_rows={"step": "total"})])
    plan.solve()
    # 計 would show the hidden flow total: hidden, and then x or y (20 < 25) with it
    assert plan.shown("counts")["n"].tolist() == [M, 25, M]
    assert plan.audit() == []


def test_plan_derived_columns_and_missing_counts_kept():
    df = pd.DataFrame({"num": [3, np.nan, 30], "den": [50, 60, 70], "rate": [0.06, np.nan, 0.43]})
    plan = privacy.SuppressionPlan()
    plan.add_table("t", df, ["num", "den"], derived_cols={"num": ["rate"]})
    plan.solve()
    out = plan.shown("t")
    assert out["num"].tolist()[0] == M and out["rate"].tolist()[0] == M
    assert pd.isna(out["num"].iloc[1]) and out["suppressed"].tolist() == [True, False, False]


def test_plan_rejects_unknown_link_and_column():
    plan = privacy.SuppressionPlan()
    with pytest.raises(ParameterError, match="まだ登録されていません"):
        plan.add_table("t", pd.DataFrame({"n": [1]}), ["n"], relations=[privacy.Link("x", "n")])
    with pytest.raises(ParameterError, match="表にありません"):
        plan.add_table("u", pd.DataFrame({"n": [1]}), ["m"])


def test_audit_flags_single_hidden_part_and_small_sum():
    tables = {"t": pd.DataFrame({"n": [60, M, 20, 35]}), "s": pd.DataFrame({"n": [50, M, M, 43]})}
    rel = [(("t", 0, "n"), [("t", 1, "n"), ("t", 2, "n"), ("t", 3, "n")]),
           (("s", 0, "n"), [("s", 1, "n"), ("s", 2, "n"), ("s", 3, "n")])]
    found = privacy.audit_recoverable(tables, rel)
    assert len(found) == 2
    assert "表 t の 2 行目・列 n の値 5 が差し引きで分かります" in found[0]
    assert "合計 7" in found[1]


def test_audit_follows_chains_across_tables():
    # pref 100 = town a (hidden) + town b (60): a = 40 recovered, then a = 4 + hidden → 4 recovered
    tables = {"pref": pd.DataFrame({"n": [100]}), "towns": pd.DataFrame({"n": [M, 60]}),
              "a": pd.DataFrame({"n": [M, 36]})}
    rel = [(("pref", 0, "n"), [("towns", 0, "n"), ("towns", 1, "n")]),
           (("towns", 0, "n"), [("a", 0, "n"), ("a", 1, "n")])]
    found = privacy.audit_recoverable(tables, rel)
    assert found == ["表 a の 1 行目・列 n の値 4 が差し引きで分かります"]


def test_audit_clean_when_two_large_hidden():
    tables = {"t": pd.DataFrame({"n": [100, M, M, 60]})}
    rel = [(("t", 0, "n"), [("t", 1, "n"), ("t", 2, "n"), ("t", 3, "n")])]
    assert privacy.audit_recoverable(tables, rel) == []


def test_plan_masked_for_charts_keeps_text_columns():
    df = pd.DataFrame({"n": [3, 40], "rate": [0.1, 0.4], "judgement": ["高い", "低い"]})
    plan = privacy.SuppressionPlan()
    plan.add_table("t", df, ["n"], derived_cols=["rate", "judgement"])
    plan.solve()
    m = plan.masked("t")
    assert np.isnan(m["n"].iloc[0]) and np.isnan(m["rate"].iloc[0]) and m["judgement"].iloc[0] is None
    assert m["n"].iloc[1] == 40 and m["rate"].iloc[1] == 0.4 and m["judgement"].iloc[1] == "低い"


def test_is_hidden_counts_missing_as_hidden():
    assert privacy.is_hidden(np.nan) and privacy.is_hidden(9) and not privacy.is_hidden(0)
    assert not privacy.is_hidden(10)
    assert privacy.is_hidden(pd.Series([1.0, np.nan, 0.0, 12.0])).tolist() == [True, True, False, False]
