"""Report-level suppression on the real outputs of notebooks 01, 02 and 04 (docs/rules.md §9, docs/design.md §6).

The committee tables are built with the module functions the notebooks call and saved through
one `privacy.SuppressionPlan` each (what `NotebookContext.save_table` does); then, from every
table of the report, no count 1–9 may be recoverable by subtraction from any published total
(`audit_recoverable` over every registered relation), and no count 1–9 may be visible.
"""
from __future__ import annotations

import pandas as pd
import pytest

from hsutils.publish import privacy
from hsutils.patterns import districts, overview
from hsutils.patterns import nephropathy as nep

T = privacy.DEFAULT_THRESHOLD
MUNI = "17201"  # the demo's 金沢市 (has districts)


class _Report:
    """The saving half of NotebookContext: one plan, tables shown in notebook order."""

    def __init__(self):
        self.plan = privacy.SuppressionPlan(T)
        self.shown: dict[str, pd.DataFrame] = {}

    def save(self, df, name, count_cols, derived_cols=None, relations=()):
        self.plan.add_table(name, df, count_cols, derived_cols=derived_cols, relations=relations)
        self.plan.solve()
        self.shown[name] = self.plan.shown(name)
        self.plan.publish(name)
        return self.shown[name]

    def check(self):
        assert self.plan.audit() == []
        assert privacy.audit_recoverable(self.shown, self.plan.relation_cells(), T) == []
        for name, reg in self.plan.tables.items():
            privacy.assert_no_small_counts(self.shown[name], reg.count_cols, T)


def test_report_04_nephropathy(prepared):
    fy = prepared.fiscal_years[-1]
    params = nep.nephropathy_params()
    rows = nep.area_rows(prepared.person_year, MUNI, fy, "国保")
    claims = nep.area_claims(prepared.tables.get("claims_monthly"), rows)
    targets = nep.target_frame(rows, claims, fy, params)
    flow = nep.flow_counts(rows, claims, fy, params)
    r = _Report()
    r.save(nep.flow_table(flow, T), "flow_counts", ["count"], relations=nep.flow_relations(flow))
    r.save(nep.ckd_table(nep.ckd_counts(targets), T), "ckd_heatmap", ["count"], relations=nep.CKD_RELATIONS)
    counts = nep.target_counts(targets, prepared.districts, prepared.municipalities, T,
                               nep.target_totals_hidden(flow, T))
    r.save(counts, "target_counts", ["referral", "guidance"], relations=nep.target_count_relations(counts))
    dist, _ = nep.district_indicator(prepared, MUNI, "dm_untreated", fy)
    r.save(dist, "district_untreated", ["numerator", "denominator"], ["value", "lower", "upper", "comparison"])
    trend = nep.trend_table(prepared, MUNI, None)
    name = prepared.muni_name(MUNI)
    # the relation is real: the districts add up to the municipal figure of the trends table
    muni_row = trend[(trend["indicator_id"] == "dm_untreated") & (trend["fy"] == fy) & (trend["area_name"] == name)]
    assert dist["numerator"].sum() == muni_row["numerator"].iloc[0]
    r.save(trend, "trends", ["numerator", "denominator"], ["value", "lower", "upper"],
           relations=nep.trend_relations(name, fy))
    funnel = pd.concat([nep.funnel_table(nep.funnel_frame(prepared, ind, fy)[0], ind)
                        for ind in nep.FUNNEL_INDICATORS], ignore_index=True)
    pref_name = str(prepared.municipalities["pref_name"].iloc[0])
    pref_rows = trend[(trend["fy"] == fy) & (trend["area_name"] == pref_name)].set_index("indicator_id")
    sums = funnel.groupby("indicator_id")["numerator"].sum()
    assert sums.to_dict() == pref_rows.loc[list(sums.index), "numerator"].to_dict()
    r.save(funnel, "funnel", ["numerator", "denominator"], ["rate", "funnel"],
           relations=nep.funnel_relations(pref_name, fy))
    assert len(r.plan.relations) > 20
    r.check()


def test_report_02_districts(prepared):
    fy = prepared.fiscal_years[-1]
    dlist = districts.district_list(prepared.districts, prepared.person_year, MUNI)
    r = _Report()
    ov = districts.district_overview(prepared.person_year, dlist, MUNI, fy)
    cols = ["kokuho_insured", "kouki_insured", "kenshin_target", "kenshin_participants", "kouki_participants"]
    shown = districts.suppress_wide_counts(ov, cols, derived={"kenshin_target": ["kenshin_rate"]}, threshold=T)
    r.save(shown, "district_overview", cols, relations=[privacy.Margin("district_name", districts.TOTAL_LABEL)])
    tg = districts.program_targets(prepared.person_year, dlist, MUNI, fy)
    tcols = [c for c in tg.columns if c not in ("district_code", "district_name")]
    r.save(districts.suppress_wide_counts(tg, tcols, threshold=T), "targets_by_district", tcols,
           relations=[privacy.Margin("district_name", districts.TOTAL_LABEL)])
    table = districts.district_indicator_table(prepared.strata, prepared.municipalities, dlist, MUNI, [fy],
                                               list(districts.DEFAULT_INDICATORS))
    r.save(districts.suppress_district_table(table, T), "indicators_by_district", ["numerator", "denominator"])
    r.check()


def test_report_01_overview(prepared):
    years = prepared.fiscal_years
    r = _Report()
    persons = overview.persons_by_year(prepared)
    r.save(persons, "persons_by_year", list(persons.columns[1:]))
    table, _ = overview.municipal_indicator_table(prepared, years, reference_area="pref")
    r.save(table, "indicators_by_municipality", overview.INDICATOR_COUNT_COLUMNS,
           overview.INDICATOR_DERIVED_COLUMNS)
    r.check()


@pytest.mark.parametrize("hidden_total", [False, True])
def test_plan_protects_prefecture_total_across_tables(hidden_total):
    """The issue's example: a prefecture total minus the other towns (tables of one report)."""
    pref = pd.DataFrame({"area": ["県"], "n": [privacy.SUPPRESSION_MARK if hidden_total else 120]})
    towns = pd.DataFrame({"area": ["a", "b", "c", "d"], "n": [3, 12, 45, 60]})
    r = _Report()
    r.save(pref, "pref", ["n"])
    out = r.save(towns, "towns", ["n"], relations=[privacy.Link("pref", "n")])
    # shown total: 120 − 12 − 45 − 60 would give a = 3, so b (12) is hidden too;
    # hidden total: nothing can be subtracted from, a alone is hidden
    b = 12 if hidden_total else privacy.SUPPRESSION_MARK
    assert out["n"].tolist() == [privacy.SUPPRESSION_MARK, b, 45, 60]
    r.check()


def test_report_07_medication(prepared):
    from hsutils.patterns import medication as med

    fy = prepared.fiscal_years[-1]
    p = med.medication_params()
    monthly = med.monthly_from_claims(prepared.tables["claims_monthly"])  # the test demo is CSV: 多剤 only
    flags_shown = med.available_flags(False)
    persons = med.area_persons(prepared.person_year, MUNI, fy, "全体")
    f = med.with_persons(med.person_flags(monthly, fy, p), persons)
    r = _Report()
    r.save(med.summary_table(f, flags_shown), "flag_counts", ["denominator", *flags_shown],
           med.summary_derived(flags_shown), relations=med.summary_table_relations())
    curve = med.threshold_counts(monthly, fy, persons["person_id"])
    r.save(med.threshold_table(curve), "threshold_curve", ["persons"], relations=med.threshold_relations(curve))
    yearly = med.yearly_flags(monthly, prepared.fiscal_years, p)
    pref = str(prepared.municipalities["pref_code"].iloc[0]).zfill(2)
    counts = med.flag_counts(yearly, prepared.person_year)
    trend = pd.concat([med.flag_rates_by(counts, list(yearly), None, code, "全体", flags_shown)
                       .assign(area_name=name) for code, name in ((MUNI, "金沢市"), (pref, "県全体"))],
                      ignore_index=True)
    r.save(trend, "trends", ["numerator", "denominator"], ["value", "lower", "upper"])
    funnel = med.flag_rates_by(counts, [fy], "muni_code", pref, "全体", flags_shown)
    # the relation is real: the municipalities add up to the prefecture row of the trends
    pref_row = trend[(trend["fy"] == fy) & (trend["area_name"] == "県全体")]
    assert funnel["numerator"].sum() == pref_row["numerator"].sum()
    r.save(funnel, "funnel", ["numerator", "denominator"], ["value", "lower", "upper"],
           relations=med.funnel_relations("県全体", fy))
    r.check()
    for t in r.shown.values():  # committee tables never carry a person
        assert "person_id" not in t.columns and not set(persons["person_id"]) & set(t.astype(str).to_numpy().ravel())
