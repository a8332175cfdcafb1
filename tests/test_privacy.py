"""Tests of hsutils.publish.privacy (docs/design.md §6, docs/rules.md §9)."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsutils.publish import privacy
from hsutils.core.errors import ParameterError

MARK = "\u2010"  # "‐", the NDBオープンデータ mark


def test_constants():
    assert privacy.DEFAULT_THRESHOLD == 10
    assert privacy.SUPPRESSION_MARK == MARK


def test_is_small_boundaries():
    values = np.array([0, 1, 9, 10, 11, np.nan])
    assert list(privacy.is_small(values)) == [False, True, True, False, False, False]
    assert privacy.is_small(0) is False and privacy.is_small(9) is True and privacy.is_small(10) is False
    # configurable threshold: 5 suppresses 1-4
    assert list(privacy.is_small(np.array([4, 5]), threshold=5)) == [True, False]
    # text (an existing mark) is not a count
    assert list(privacy.is_small(pd.Series([MARK, "3", 3]))) == [False, True, True]
    with pytest.raises(ParameterError):
        privacy.is_small(3, threshold=0)


def _area_table():
    return pd.DataFrame({
        "area": ["A", "B", "C", "D"],
        "numerator": [0, 9, 10, 40],
        "denominator": [12, 50, 120, 8],
        "value": [0.0, 0.18, 0.0833, 5.0],
        "lower": [0.0, 0.09, 0.04, 4.0],
        "upper": [0.25, 0.3, 0.14, 5.0],
    })


DERIVED = {"numerator": ["value", "lower", "upper"], "denominator": ["value", "lower", "upper"]}


def test_suppress_table_hand_example():
    original = _area_table()
    out = privacy.suppress_table(original, ["numerator", "denominator"], DERIVED)
    # A: 0 events stays 0 and its rate stays visible
    assert out.loc[0, "numerator"] == 0 and out.loc[0, "value"] == 0.0
    # B: numerator 9 -> hidden, and every figure derived from it
    assert list(out.loc[1, ["numerator", "value", "lower", "upper"]]) == [MARK] * 4
    assert out.loc[1, "denominator"] == 50
    # C: numerator exactly 10 is shown
    assert out.loc[2, "numerator"] == 10 and out.loc[2, "value"] == 0.0833
    # D: denominator 8 -> hidden with its derived columns, numerator 40 stays
    assert out.loc[3, "denominator"] == MARK and out.loc[3, "value"] == MARK and out.loc[3, "numerator"] == 40
    assert list(out["suppressed"]) == [False, True, False, True]
    assert out["numerator"].dtype == object
    # the input is not modified
    assert original.equals(_area_table())


def test_suppress_table_list_of_derived_and_custom_threshold():
    df = _area_table()
    out = privacy.suppress_table(df, ["numerator"], ["value"], threshold=20, mark="*")
    assert list(out["numerator"]) == [0, "*", "*", 40]
    assert list(out["value"]) == [0.0, "*", "*", 5.0]
    assert list(out["lower"]) == list(df["lower"])  # not declared as derived
    with pytest.raises(ParameterError):
        privacy.suppress_table(df, ["nope"])
    with pytest.raises(ParameterError):
        privacy.suppress_table(df, ["numerator"], {"numerator": ["nope"]})


def test_mask_small_for_charts():
    masked, mask = privacy.mask_small(_area_table(), ["numerator", "denominator"], DERIVED)
    assert np.isnan(masked.loc[1, "numerator"]) and np.isnan(masked.loc[1, "upper"])
    assert np.isnan(masked.loc[3, "value"]) and masked.loc[3, "numerator"] == 40
    assert masked.loc[0, "numerator"] == 0
    assert masked["value"].dtype == float
    assert list(mask.any(axis=1)) == [False, True, False, True]
    assert mask.shape == _area_table().shape


@settings(max_examples=100, deadline=None)
@given(
    num=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    threshold=st.integers(2, 15),
)
def test_property_no_small_count_visible_after_suppression(num, threshold):
    df = pd.DataFrame({"numerator": num})
    df["denominator"] = df["numerator"] * 3 + 5
    df["value"] = df["numerator"] / df["denominator"]
    out = privacy.suppress_table(df, ["numerator", "denominator"],
                                 {"numerator": ["value"], "denominator": ["value"]}, threshold=threshold)
    for col in ("numerator", "denominator"):
        visible = pd.to_numeric(out[col], errors="coerce")
        assert not ((visible > 0) & (visible < threshold)).any()
    small = (df["numerator"] > 0) & (df["numerator"] < threshold)
    assert (out.loc[small, "value"] == MARK).all()
    assert (out.loc[df["numerator"] == 0, "numerator"] == 0).all()
    assert (out["suppressed"] == (small | ((df["denominator"] > 0) & (df["denominator"] < threshold)))).all()
    privacy.assert_no_small_counts(out, ["numerator", "denominator"], threshold)


def test_secondary_suppression_hand_example():
    # 3 is small. Without secondary suppression: 3 = 48 - 15 - 30.
    table = pd.DataFrame({"a": [3, 20], "b": [15, 12], "c": [30, 0], "total": [48, 32]}, index=["x", "y"])
    mask = privacy.secondary_suppress(table, total_col="total")
    assert mask.loc["x"].tolist() == [True, True, False, False]  # 15 (next smallest non-zero) hidden too
    assert not mask.loc["y"].any()
    shown = privacy.apply_suppression(table, mask)
    assert shown.loc["x"].tolist() == [MARK, MARK, 30, 48]
    # from the visible row, only a + b = 48 - 30 = 18 can be recovered, not a itself
    visible = shown.loc["x"].tolist()
    assert visible.count(MARK) == 2


def test_secondary_suppression_with_column_totals():
    table = pd.DataFrame({"a": [3, 20, 23], "b": [15, 12, 27], "c": [30, 0, 30], "total": [48, 32, 80]},
                         index=["x", "y", "合計"])
    mask = privacy.secondary_suppress(table, total_col="total", total_row="合計")
    expected = pd.DataFrame({"a": [True, True, False], "b": [True, True, False], "c": [False] * 3,
                             "total": [False] * 3}, index=table.index)
    assert mask.equals(expected)
    # every visible row and column has either 0 or at least 2 hidden cells
    body = mask.loc[["x", "y"], ["a", "b", "c"]]
    assert set(body.sum(axis=1)) <= {0, 2} and set(body.sum(axis=0)) <= {0, 2}


def test_secondary_suppression_single_nonzero_and_hidden_total():
    # 12 is the only non-zero cell besides the hidden 4: 12 is hidden
    t1 = pd.DataFrame({"a": [4], "b": [0], "c": [12], "total": [16]})
    assert privacy.secondary_suppress(t1, "total").iloc[0].tolist() == [True, False, True, False]
    # row total 7 is itself small: nothing can be subtracted, no secondary cell
    t2 = pd.DataFrame({"a": [4], "b": [3], "c": [0], "total": [7]})
    assert privacy.secondary_suppress(t2, "total").iloc[0].tolist() == [True, True, False, True]
    # no total column: primary suppression only
    t3 = pd.DataFrame({"a": [4], "b": [30]})
    assert privacy.secondary_suppress(t3).iloc[0].tolist() == [True, False]


def test_assert_no_small_counts_reports_details():
    df = pd.DataFrame({"n": [0, 10, 3, MARK]}, index=["A", "B", "C", "D"])
    with pytest.raises(AssertionError, match=r"row 'C', column 'n': 3"):
        privacy.assert_no_small_counts(df, ["n"])
    privacy.assert_no_small_counts(df.drop(index="C"), ["n"])  # marks and 0 are fine
    with pytest.raises(AssertionError):
        privacy.assert_no_small_counts(df, ["missing"])


def test_assert_no_person_ids():
    html = "<table><tr><td>金沢市</td><td>12.5%</td></tr></table>"
    privacy.assert_no_person_ids(html, ["P000123", "P000124"])
    with pytest.raises(AssertionError, match="P000123"):
        privacy.assert_no_person_ids(html + "<td>P000123</td>", ["P000123", "P000124"])
    # not a match inside a longer token
    privacy.assert_no_person_ids("id 10000123 here", ["0000123"])
    df = pd.DataFrame({"person_id": ["P000124"], "x": [1]})
    with pytest.raises(AssertionError, match="P000124"):
        privacy.assert_no_person_ids(df, pd.Series(["P000124"]))
    privacy.assert_no_person_ids(df.drop(columns="person_id"), ["P000124"])
