"""Tests of the demo prefecture generator (hsutils.demo.synth) at small scale."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.core import schema
from hsutils.demo import synth

ISHIKAWA_CODES = ["17201", "17202", "17203", "17204", "17205", "17206", "17207", "17209",
                  "17210", "17211", "17212", "17324", "17361", "17365", "17384", "17386",
                  "17407", "17461", "17463"]
FILES = ["enrollment.csv", "kenshin.csv", "guidance.csv", "claims_monthly.csv", "kaigo.csv",
         "questionnaire.csv", "municipalities.csv", "districts.csv"]
SCALE = 0.05
CSV = {"kenshin_format": "csv", "claims_format": "csv"}  # the CSV templates (a user may supply them)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    synth.write_demo(out, scale=SCALE, seed=2024, **CSV)
    return out


def _read(folder: Path, name: str) -> pd.DataFrame:
    """Read a demo file as text (cp932) and rename the Japanese headers to canonical names."""
    table = schema.TABLES[name]
    df = pd.read_csv(folder / f"{name}.csv", encoding="cp932", dtype=str, keep_default_na=False)
    return df.rename(columns={c.ja: c.name for c in table.columns})


@pytest.fixture(scope="module")
def tables(demo_dir) -> dict[str, pd.DataFrame]:
    return {name: _read(demo_dir, name) for name in synth.OUTPUT_TABLES}


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.replace("", np.nan))


# ------------------------------------------------------------------------------------------
# files, headers, encoding, determinism


def test_files_exist_with_schema_headers(demo_dir):
    for f in FILES:
        assert (demo_dir / f).exists(), f
    for name in synth.OUTPUT_TABLES:  # the demo writes these tables (not the UKE-derived ones)
        table = schema.TABLES[name]
        first = (demo_dir / f"{name}.csv").read_bytes().split(b"\r\n", 1)[0].decode("cp932")
        assert first.split(",") == [c.ja for c in table.columns]
    head = (demo_dir / "kenshin.csv").read_bytes().split(b"\r\n", 1)[0].decode("cp932")
    assert head.startswith("被保険者番号,年度,市町村コード,健診受診日")


def test_every_file_decodes_as_cp932_and_is_not_utf8(demo_dir):
    for f in FILES:
        data = (demo_dir / f).read_bytes()
        data.decode("cp932")  # strict: raises on any byte sequence cp932 cannot decode
    # Japanese text (header, 国保) is in cp932 bytes, which are not valid UTF-8
    with pytest.raises(UnicodeDecodeError):
        (demo_dir / "enrollment.csv").read_bytes().decode("utf-8")


def test_utf8_encoding_option(tmp_path):
    synth.write_demo(tmp_path, scale=0.01, seed=1, encoding="utf-8", **CSV)
    text = (tmp_path / "kaigo.csv").read_text(encoding="utf-8")
    assert text.startswith("被保険者番号,市町村コード,要介護度,認定開始日,認定終了日")


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synth.write_demo(a, scale=0.01, seed=7, **CSV)
    synth.write_demo(b, scale=0.01, seed=7, **CSV)
    synth.write_demo(c, scale=0.01, seed=8, **CSV)
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "kenshin.csv").read_bytes() != (c / "kenshin.csv").read_bytes()


def test_summary_is_japanese_rows_per_file(tmp_path):
    text = synth.write_demo(tmp_path, scale=0.01, seed=3, **CSV)
    assert "enrollment.csv" in text and "claims_monthly.csv" in text
    assert "行" in text


def test_the_demo_speaks_the_real_formats_by_default(demo_data_dir):
    """The test session's demo (conftest, `write_demo` defaults) is 特定健診 XML + UKE, not CSV."""
    assert (synth.DEMO_KENSHIN_FORMAT, synth.DEMO_CLAIMS_FORMAT) == ("xml", "uke")
    assert any((demo_data_dir / "kenshin_xml").glob("*.zip"))
    assert any((demo_data_dir / "uke").glob("*.UKE")) and (demo_data_dir / "uke_masters").is_dir()
    assert not (demo_data_dir / "kenshin.csv").exists() and not (demo_data_dir / "claims_monthly.csv").exists()


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="kenshin_format"):
        synth.write_demo(tmp_path, scale=0.01, kenshin_format="xlsx")


def test_scale_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        synth.write_demo(tmp_path, scale=0.0, **CSV)


# ------------------------------------------------------------------------------------------
# package population table


def test_population_table_matches_juki_2025_totals():
    pop = synth.load_demo_population()
    assert len(pop) == 38
    assert sorted(pop["muni_code"].unique()) == ISHIKAWA_CODES
    # 石川県 2025-01-01: 男 533,242 / 女 564,877; 40-44 歳 63,487; 95+ = 6,320 + 938
    assert pop.loc[pop["sex"] == 1, "total"].sum() == 533242
    assert pop.loc[pop["sex"] == 2, "total"].sum() == 564877
    assert pop["age_40_44"].sum() == 63487
    assert pop["age_95plus"].sum() == 7258
    kanazawa = pop[pop["muni_code"] == "17201"].iloc[0]
    assert kanazawa["name"] == "金沢市" and kanazawa["medical_area_code"] == "1702"
    assert set(pop["medical_area"]) == {"南加賀", "石川中央", "能登中部", "能登北部"}


# ------------------------------------------------------------------------------------------
# contents


def test_all_19_municipalities_present(tables):
    for name in ("enrollment", "kenshin", "claims_monthly", "municipalities"):
        assert sorted(tables[name]["muni_code"].unique()) == ISHIKAWA_CODES, name
    m = tables["municipalities"]
    assert (m["pref_code"] == "17").all()
    assert m.loc[m["muni_code"] == "17463", "name"].item() == "能登町"
    assert m.loc[m["muni_code"] == "17463", "medical_area_code"].item() == "1704"


def test_kanazawa_has_ten_districts_and_enrollment_uses_them(tables):
    d = tables["districts"]
    kanazawa = d[d["muni_code"] == "17201"]
    assert len(kanazawa) == 10
    assert {"駅西", "泉野", "医王山"} <= set(kanazawa["name"])
    e = tables["enrollment"]
    in_k = e[e["muni_code"] == "17201"]
    assert (in_k["district_code"] != "").all()
    assert set(in_k["district_code"]) <= set(kanazawa["district_code"])
    others = e[~e["muni_code"].isin(["17201", "17210"])]
    assert (others["district_code"] == "").all()


def test_fiscal_years_insurance_and_ages(tables):
    e = tables["enrollment"]
    assert sorted(e["fy"].unique()) == ["2022", "2023", "2024"]
    age = e["age"].astype(int)
    assert age.min() >= 40
    assert ((e["insurance"] == "後期") == (age >= 75)).all()
    assert set(e["sex"]) == {"1", "2"}
    assert set(e["full_year"]) == {"1", "2"}
    assert not e.duplicated(["person_id", "fy"]).any()


def test_people_persist_and_age_one_year(tables):
    e = tables["enrollment"]
    y22 = e[e["fy"] == "2022"].set_index("person_id")["age"].astype(int)
    y23 = e[e["fy"] == "2023"].set_index("person_id")["age"].astype(int)
    both = y22.index.intersection(y23.index)
    assert len(both) / len(y22) > 0.85  # most stay; some die or leave
    assert len(both) < len(y22)
    assert ((y23.loc[both] - y22.loc[both]) == 1).all()


def test_values_inside_schema_ranges(tables):
    for name, df in tables.items():
        table = schema.TABLES[name]
        for col in table.columns:
            if col.kind in ("float", "int") and col.lo is not None:
                v = _num(df[col.name]).dropna()
                assert ((v >= col.lo) & (v <= col.hi)).all(), (name, col.name)
    k = tables["kenshin"]
    assert set(k["urine_protein"]) <= {"-", "±", "+", "2+", "3+", ""}
    for col in ("med_bp", "med_glucose", "med_lipid", "smoking", "tg_fasting"):
        assert set(k[col]) == {"1", "2"}, col


def test_participation_rates_plausible(tables):
    e, k = tables["enrollment"], tables["kenshin"]
    den = e[(e["insurance"] == "国保") & (e["full_year"] == "1") & (e["excluded_statutory"] == "2")]
    took = den.merge(k[["person_id", "fy"]], on=["person_id", "fy"])
    rate = len(took) / len(den)
    assert 0.25 < rate < 0.5
    women = (took["sex"] == "2").sum() / (den["sex"] == "2").sum()
    men = (took["sex"] == "1").sum() / (den["sex"] == "1").sum()
    assert women > men
    kouki = e[e["insurance"] == "後期"]
    kouki_rate = len(kouki.merge(k[["person_id", "fy"]], on=["person_id", "fy"])) / len(kouki)
    assert 0.15 < kouki_rate < 0.35


def test_metabolic_and_clinical_prevalences_plausible(tables):
    """Recomputed here from the CSV with docs/rules.md §2 rules, not with synth's own function."""
    k = tables["kenshin"]
    k = k[k["age"].astype(int) <= 74]
    waist, sex = _num(k["waist"]), k["sex"]
    over = ((sex == "1") & (waist >= 85)) | ((sex == "2") & (waist >= 90))
    fpg, casual, hba1c = _num(k["fpg"]), _num(k["casual_glucose"]), _num(k["hba1c"])
    glucose = fpg.fillna(casual)
    r_glu = np.where(glucose.notna(), glucose >= 110, hba1c >= 6.0) | (k["med_glucose"] == "1")
    r_lip = (_num(k["tg"]) >= 150) | (_num(k["hdl"]) < 40) | (k["med_lipid"] == "1")
    r_bp = (_num(k["sbp"]) >= 130) | (_num(k["dbp"]) >= 85) | (k["med_bp"] == "1")
    n = r_glu.astype(int) + r_lip.astype(int) + r_bp.astype(int)
    gaito = (over & (n >= 2)).mean()
    yobi = (over & (n == 1)).mean()
    assert 0.10 < gaito < 0.25
    assert 0.05 < yobi < 0.20
    assert 0.05 < (hba1c.dropna() >= 6.5).mean() < 0.16
    assert 0.10 < (_num(k["sbp"]) >= 140).mean() < 0.30
    egfr = _num(k["egfr"]).dropna()
    assert 0.08 < (egfr < 60).mean() < 0.30
    assert 0.02 < k["urine_protein"].isin(["+", "2+", "3+"]).mean() < 0.09
    smoke_m = (k.loc[sex == "1", "smoking"] == "1").mean()
    smoke_f = (k.loc[sex == "2", "smoking"] == "1").mean()
    assert 0.15 < smoke_m < 0.35 and smoke_f < 0.10
    assert 0.2 < (k["med_bp"] == "1").mean() < 0.4
    # creatinine only in some municipalities; waist missing in 後期 健診
    measured = _num(k["creatinine"]).notna()
    assert 0.4 < measured.mean() < 0.8
    assert set(k.loc[measured, "muni_code"]) < set(ISHIKAWA_CODES)
    all_k = tables["kenshin"]
    assert (all_k.loc[all_k["age"].astype(int) >= 75, "waist"] == "").all()


def test_bmi_consistent_with_height_and_weight(tables):
    k = tables["kenshin"]
    bmi = _num(k["weight"]) / (_num(k["height"]) / 100) ** 2
    assert (np.abs(bmi - _num(k["bmi"])) <= 0.051).all()


def test_reported_egfr_follows_jsn_formula(tables):
    k = tables["kenshin"]
    cr, age = _num(k["creatinine"]), _num(k["age"])
    f = np.where(k["sex"] == "1", 1.0, 0.739)
    calc = 194 * cr ** -1.094 * age ** -0.287 * f
    ok = cr.notna()
    assert (np.abs(calc[ok] - _num(k["egfr"])[ok]) <= 0.051).all()
    assert (_num(k["egfr"]).isna() == cr.isna()).all()


def test_guidance_targets_and_uptake(tables):
    g, k = tables["guidance"], tables["kenshin"]
    assert set(g["level"]) == {"積極的支援", "動機付け支援"}
    started = (g["started"] == "1").mean()
    assert 0.15 < started < 0.45
    assert not ((g["completed"] == "1") & (g["started"] == "2")).any()
    assert (g["completed"] == "1").sum() > 0.6 * (g["started"] == "1").sum()
    # every guidance row is a 40-74 participant whose reported level is 1 or 2
    joined = g.merge(k, on=["person_id", "fy"], how="left", suffixes=("", "_k"))
    assert joined["age"].astype(int).between(40, 74).all()
    assert set(joined["guidance_level_reported"]) <= {"1", "2"}
    # 積極的支援 only under 65 (docs/rules.md §1.3)
    strong = joined[joined["level"] == "積極的支援"]
    assert (strong["age"].astype(int) <= 64).all()


def test_claims_cover_lookback_months_and_events(tables):
    c = tables["claims_monthly"]
    ym = c["ym"].astype(int)
    months = sorted(ym.unique())
    assert months[0] == 202104 and months[-1] == 202503 and len(months) == 48
    for flag in ("diabetes", "hypertension", "dyslipidemia", "ckd", "dialysis", "heart_failure",
                 "stroke", "hypnotic"):
        assert set(c[flag]) == {"0", "1"}, flag
    assert (c["n_drugs"].astype(int) >= 15).any()
    assert (c["cost_dental"].astype(int) > 0).any()
    assert not c.duplicated(["person_id", "ym"]).any()
    e = tables["enrollment"]
    no_claims = ~e["person_id"].drop_duplicates().isin(c["person_id"])
    assert 0 < no_claims.mean() < 0.2


def test_diabetes_treatment_interruption_exists(tables):
    """Some people with diabetes claims have none in the last 6 months (docs/rules.md §5.4)."""
    c = tables["claims_monthly"]
    dm = c[c["diabetes"] == "1"]
    last = dm.groupby("person_id")["ym"].max().astype(int)
    still = tables["enrollment"]
    alive = set(still.loc[(still["fy"] == "2024") & (still["full_year"] == "1"), "person_id"])
    stopped = last[(last < 202410) & last.index.isin(alive)]
    assert len(stopped) >= 3
    assert len(stopped) < 0.5 * len(last)


def test_kaigo_periods_and_prevalence(tables):
    kg, e = tables["kaigo"], tables["enrollment"]
    assert set(kg["level"]) <= set(synth.KAIGO_LEVELS)
    assert (kg["start"] <= kg["end"]).all()
    assert (kg["end"] >= "2021-04-01").all() and (kg["start"] <= "2025-03-31").all()
    elder = e[(e["fy"] == "2024") & (e["age"].astype(int) >= 75)]
    share = elder["person_id"].isin(kg["person_id"]).mean()
    assert 0.10 < share < 0.30


def test_questionnaire_answers_valid_and_for_elderly(tables):
    q, e = tables["questionnaire"], tables["enrollment"]
    for i in range(1, 16):
        allowed = {str(a) for a in schema.TABLES["questionnaire"].column(f"q{i}").allowed}
        assert set(q[f"q{i}"]) <= allowed, i
    ages = q.merge(e, on=["person_id", "fy"])["age"].astype(int)
    assert len(ages) == len(q) and (ages >= 75).all()


def test_health_status_unknown_share(tables):
    """75+ with no checkup, claim or 介護 in FY2023–2024 (docs/rules.md §6.1 ⑩): a few percent."""
    e, k, c, kg = (tables[n] for n in ("enrollment", "kenshin", "claims_monthly", "kaigo"))
    elder = e[(e["fy"] == "2024") & (e["age"].astype(int) >= 75)]["person_id"]
    seen = (set(k.loc[k["fy"] >= "2023", "person_id"])
            | set(c.loc[c["ym"].astype(int) >= 202304, "person_id"]) | set(kg["person_id"]))
    share = (~elder.isin(seen)).mean()
    assert 0.01 < share < 0.07


def test_planted_effects_visible_at_larger_scale():
    """野々市市 low 受診率; 能登町 high HbA1c ≥8.0; 白山市 受診率 rising (module docstring)."""
    t = synth.generate_demo(scale=0.3, seed=2024)
    e, k = t["enrollment"], t["kenshin"]
    den = e[(e["insurance"] == "国保") & (e["full_year"] == 1) & (e["excluded_statutory"] == 2)]
    took = den.merge(k[["person_id", "fy"]], on=["person_id", "fy"])
    rate = took.groupby("muni_code").size() / den.groupby("muni_code").size()
    # かほく市 (17209) is left out: its planted treated non-participants (notebook 08) lower its 受診率 too
    assert rate["17212"] < rate.drop(["17212", "17209"]).min()
    assert rate["17212"] < rate.mean() - 0.05
    by_fy = (took[took["muni_code"] == "17210"].groupby("fy").size()
             / den[den["muni_code"] == "17210"].groupby("fy").size())
    assert by_fy[2024] > by_fy[2022] + 0.02
    poor = (k["hba1c"] >= 8.0).groupby(k["muni_code"]).mean()
    assert poor["17463"] > 2 * poor.drop("17463").median()


# ------------------------------------------------------------------------------------------
# the internal 階層化 / メタボ rules used to build guidance.csv (boundaries, docs/rules.md §1–2)


def _person(**over):
    base = dict(sex=1, age=50, waist=80.0, bmi=22.0, sbp=120.0, dbp=70.0, tg=100.0,
                tg_fasting=True, hdl=60.0, fpg=90.0, casual_glucose=np.nan, hba1c=5.2,
                med_bp=False, med_glucose=False, med_lipid=False, smoking=False)
    base.update(over)
    return {key: np.array([v]) for key, v in base.items()}


@pytest.mark.parametrize("over, expected", [
    (dict(waist=85.0, sbp=130.0, tg=150.0), 1),             # exactly at thresholds: 該当
    (dict(waist=84.9, sbp=130.0, tg=150.0), 3),             # waist just below
    (dict(waist=85.0, sbp=129.0, tg=150.0), 2),             # one risk: 予備群
    (dict(sex=2, waist=89.9, sbp=140.0, tg=200.0), 3),      # women need 90
    (dict(waist=90.0, med_bp=True, hdl=39.0), 1),           # medication counts as a risk
    (dict(waist=90.0, fpg=np.nan, hba1c=6.0, sbp=130.0), 1),  # HbA1c only without glucose
    (dict(waist=90.0, fpg=109.0, hba1c=6.5, sbp=130.0), 2),   # glucose present: HbA1c ignored
    (dict(waist=np.nan), 4),                                # 判定不能
])
def test_metabolic_code_boundaries(over, expected):
    assert synth.metabolic_code(_person(**over))[0] == expected


@pytest.mark.parametrize("over, expected", [
    (dict(waist=85.0, sbp=130.0, fpg=100.0), 1),            # 腹囲 + 2 risks, 40-64: 積極的
    (dict(waist=85.0, sbp=130.0, fpg=100.0, age=65), 2),    # 65-74: 動機付け
    (dict(waist=85.0, sbp=130.0), 2),                       # 腹囲 + 1 risk
    (dict(waist=85.0, smoking=True), 3),                    # smoking alone does not count
    (dict(waist=85.0, sbp=130.0, smoking=True), 1),         # smoking with a risk counts
    (dict(bmi=25.0, sbp=130.0, fpg=100.0, hdl=39.0), 1),    # BMI group needs 3 for 積極的
    (dict(bmi=25.0, sbp=130.0, fpg=100.0), 2),
    (dict(bmi=24.9, sbp=130.0, fpg=100.0, hdl=39.0), 3),    # BMI just below 25
    (dict(waist=85.0, tg=174.0, tg_fasting=False), 3),      # non-fasting TG needs 175
    (dict(waist=85.0, tg=175.0, tg_fasting=False), 2),
    (dict(waist=85.0, sbp=140.0, fpg=120.0, med_lipid=True), 5),  # 服薬中
])
def test_guidance_code_boundaries(over, expected):
    assert synth.guidance_code(_person(**over))[0] == expected


# ------------------------------------------------------------------------------------------
# reading back through hsutils.inputs.io


def test_demo_loads_with_zero_exclusions(demo_dir):
    if importlib.util.find_spec("hsutils.inputs.io") is None:
        pytest.skip("hsutils.inputs.io not available")
    from hsutils.inputs import io

    if not hasattr(io, "load_dataset"):
        pytest.skip("hsutils.inputs.io.load_dataset not available")
    ds = io.load_dataset(demo_dir)
    summary = ds.summary.set_index("table")
    assert (summary["dropped_rows"] == 0).all(), summary
    assert (summary["excluded_values"] == 0).all(), summary
    assert len(ds.exclusions) == 0
    assert summary.loc["claims_monthly", "read"] == summary.loc["claims_monthly", "kept"] > 0
    k = ds.tables["kenshin"]
    # "+" is read as 1+ (ordinal 2), "-" as − (0)
    assert set(k["urine_protein"].dropna().unique()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert (k["urine_protein"] == 2.0).any()


def test_xml_archives_are_byte_identical_for_the_same_seed(tmp_path):
    """Members carry the archive's own date (30 June after the fiscal year), not the writing time,
    so a second write a moment later gives the same bytes."""
    import zipfile

    a, b = tmp_path / "a", tmp_path / "b"
    synth.write_demo(a, scale=0.01, seed=7)
    synth.write_demo(b, scale=0.01, seed=7)
    zips = sorted((a / "kenshin_xml").glob("*.zip"))
    assert zips
    for z in zips:
        assert z.read_bytes() == (b / "kenshin_xml" / z.name).read_bytes(), z.name
        with zipfile.ZipFile(z) as f:
            fy = int(z.stem.split("_")[2][:4]) - 1  # the archive's date is 30 June after the year
            assert {i.date_time for i in f.infolist()} == {(fy + 1, 6, 30, 0, 0, 0)}
