"""Synthetic demo prefecture: 石川県's 19 real municipalities with made-up people.

`write_demo(out)` writes the eight input tables (docs/design.md §3) as CSV files with the Japanese header
row of `hsutils.core.schema`, in cp932 by default, the way a KDB export would look:
enrollment.csv, kenshin.csv, guidance.csv, claims_monthly.csv, kaigo.csv, questionnaire.csv,
municipalities.csv, districts.csv. `generate_demo()` returns the same tables as DataFrames.

Nothing here is real data about a person. Sizes and age structure follow the real 住民基本台帳
population of each municipality (2025-01-01, package table `data/ishikawa_demo_population.csv`,
built by scripts/build_demo_population.py); at scale 1.0 the insured population is about a quarter
of 石川県's real 国保 (40–74) and 後期 (75+) insured.

Model (one numpy Generator; the same seed gives byte-identical files):

* People. 国保 share of residents by age (about 17–35 % at 40–64, 70–80 % at 65–74), everyone 75+
  is 後期. Fiscal years 2021–2024 are simulated (2021 only as claims look-back; tables cover
  FY2022–2024, claims 2021-04 … 2025-03). People age one year per year, die (Gompertz, higher with
  frailty), leave (job, moving) and enter (turning 40, retiring, moving in); entry or exit during
  the year gives `full_year` = 2. Nobody changes municipality.
* Clinical values come from correlated person-level latents (adiposity, glycaemia, blood pressure,
  lipids, kidney, frailty) plus yearly noise: BMI ↔ waist ↔ TG/HDL ↔ glucose/HbA1c ↔ BP, rising
  with age, with sex differences (men: larger waist, higher TG, lower HDL, ~25 % smokers vs ~6 %).
  Diagnosis of hypertension/diabetes/dyslipidaemia is a threshold on the latent that age lowers, so
  it persists; treatment (claims flags and 服薬 answers agree) lowers the measured value. About 12 %
  of treated diabetics stop treatment at some month (治療中断, docs/rules.md §5.4): no diabetes claim
  afterwards and a higher HbA1c. Levels are set near docs/rules.md §12 (受診率 ~38 % 国保, ~25 % 後期;
  メタボ 該当 ~17 %, 予備群 ~12 %; HbA1c ≥6.5 ~10 %, ≥8.0 ~1–1.5 %; SBP ≥140 ~20–25 %; eGFR <60
  ~15–20 %; 尿蛋白 1+ 以上 ~4–5 %; 服薬 血圧 ~30 %, 脂質 ~20 %, 血糖 ~8 %; 透析 ~0.2 %).
* 受診 is persistent within a person (person-level propensity): most participants come back.
  Creatinine/eGFR is measured only in some municipalities (about 60 % of participants); waist is
  not measured in 後期健診; about 15 % of blood samples are not fasting (随時血糖, TG non-fasting).
  All values lie inside the plausible ranges of `hsutils.core.schema` (no deliberate errors).
* 特定保健指導 (docs/rules.md §1): everyone whose 階層化 is 積極的/動機付け is listed in guidance.csv; about
  27 % start, most of them finish; finishing lowers adiposity in later years.
* claims_monthly: person × month rows for months with a medical or dental claim (vectorised per
  month). Flags follow the treatment states; costs, 薬剤数 (some elderly ≥15), 医療機関数, 睡眠薬.
* kaigo: certifications rising steeply with age and frailty (~18 % of 75+), 12-month first
  certification, then 24-month renewals with levels that may worsen; periods end at death/exit.
* questionnaire (後期高齢者の質問票, docs/rules.md §6.2) for 75+ participants and ~6 % of other 75+
  (通いの場), risk answers driven by frailty, age and 介護.
* About 3 % of people have no contact at all (no checkup, claim or 介護): 健康状態不明者.

Planted area effects (what the demo notebooks can show):

* 野々市市 (17212): low 受診率 (about 10 points below the prefecture).
* 川北町 (17324) and the small 能登中部 towns: higher 受診率.
* 白山市 (17210) and 七尾市 (17202): 受診率 rising FY2022 → FY2024.
* 輪島市 (17204) and 珠洲市 (17205): 受診率 drops in FY2024 (a disaster year is assumed).
* 能登町 (17463): high share of HbA1c ≥8.0 (worse glycaemia and less diabetes treatment).
* 宝達志水町 (17386): more 尿蛋白 positive and lower eGFR (CKD).
* 中能登町 (17407): more adiposity, so more メタボ 該当.
* 羽咋市 (17207): more 多剤 (≥15 drugs in a month).
* 珠洲市 (17205): more 健康状態不明者.
* 特定保健指導 実施率: 能美市 (17211) high (~55 %), 金沢市 and 加賀市 lower.
* 小松市 (17203): 入院 cost per stay +80 % (same stays), so its 地域差指数 入院 is high after age
  adjustment (notebook 06).
* 加賀市 (17206): 3.5 times the 人工透析 patients of its age structure (2.5 × the base prevalence added; they
  are dialysed every insured month at about 40万円 and skip the 健診), so its 人工透析 cost, 入院外 and
  計 地域差指数 are high (notebook 06).
* かほく市 (17209): 85 % of the persons treated for 生活習慣病 skip the 健診 while treated (70 to 74
  included), so many 治療中の健診未受診者, segment (a) of notebook 08. Its 受診率 is then the lowest
  of the prefecture (about 24 % at scale 0.3, 野々市市 about 31 %).
* 津幡町 (17361): 15 % more 国保 persons (≤ 74 in FY2024) with no 健診, claim or 介護 at all, so many
  健康状態不明, segment (c) of notebook 08.
  These last three are applied after everything else from their own random stream
  (`_Demo.apply_late_effects`): the data of every other town is byte-identical to the demo without them.
* 金沢市 districts: 駅西 has more untreated diabetes/hypertension (low treatment rates);
  泉野 higher and 医王山 lower 受診率. 白山市 districts: 白山ろく higher 受診率.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from hsutils.core import schema, vocab

FISCAL_YEARS = (2022, 2023, 2024)
SIM_YEARS = (2021, 2022, 2023, 2024)  # 2021 = claims look-back only
FIRST_YM, LAST_YM = 202104, 202503
N_MONTHS = 12 * len(SIM_YEARS)
PREF_CODE = 17
BASE_FRACTION = 0.25  # scale 1.0 = a quarter of the real insured population
MIN_PER_MUNI = 40  # expected persons per municipality at least, so tiny scales keep every town
AGES = np.arange(40, 106)  # single years simulated; 95+ band spread over 95..105
N_AGES = len(AGES)

KAIGO_LEVELS = vocab.KAIGO_LEVELS
OUTPUT_TABLES = ("enrollment", "kenshin", "guidance", "claims_monthly", "kaigo", "questionnaire",
                 "municipalities", "districts")

# Municipal effects (probit or latent shifts; documented in the module docstring).
#   kenshin: shift of the 受診 probit; kenshin_trend: per year from FY2022; kenshin_2024: FY2024 only;
#   glycemic: extra diabetic tail of HbA1c; treat: shift of the treatment probit (all conditions),
#   treat_dm: diabetes only; guidance: 保健指導 start probit; kidney: kidney latent (eGFR, 尿蛋白);
#   adiposity: latent shift; poly: multiplier of the 多剤 share; unknown: extra 健康状態不明 share;
#   inpatient_cost: extra share of the 入院 cost of each stay (notebook 06 finds it after age adjustment).
# Applied last, from their own random stream (`_Demo.apply_late_effects`), so that they change nothing else:
#   dialysis_extra: extra 人工透析 patients, as a multiple of the base prevalence by age (notebook 06);
#   skip_treated: share of persons who skip the 健診 while treated for 生活習慣病 (notebook 08, segment (a));
#   unknown_young: extra share of 国保 persons with no 健診, claim or 介護 at all (notebook 08, segment (c)).
MUNI_EFFECTS: dict[str, dict[str, float]] = {
    "17201": {"guidance": -0.15},
    "17202": {"kenshin_trend": 0.11},
    "17203": {"kenshin": 0.05, "inpatient_cost": 0.8},
    "17204": {"kenshin_2024": -0.45},
    "17205": {"kenshin_2024": -0.55, "unknown": 0.035},
    "17206": {"kenshin": -0.08, "guidance": -0.25, "dialysis_extra": 2.5},
    "17207": {"poly": 2.5},
    "17209": {"kenshin": 0.12, "skip_treated": 0.85},
    "17210": {"kenshin": -0.12, "kenshin_trend": 0.15},
    "17211": {"kenshin": 0.12, "guidance": 0.75},
    "17212": {"kenshin": -0.45},
    "17324": {"kenshin": 0.35},
    "17361": {"kenshin": 0.08, "unknown_young": 0.15},
    "17365": {"kenshin": 0.03},
    "17384": {"kenshin": 0.18},
    "17386": {"kenshin": 0.12, "kidney": 0.6},
    "17407": {"kenshin": 0.18, "adiposity": 0.3},
    "17461": {"kenshin": 0.10},
    "17463": {"kenshin": 0.05, "glycemic": 0.8, "treat_dm": -0.6},
}

# Municipalities whose checkup includes serum creatinine (about 60 % of participants).
CREATININE_MUNIS = frozenset({"17201", "17202", "17204", "17205", "17210", "17324", "17386", "17463"})


@dataclass(frozen=True)
class District:
    muni_code: str
    district_code: str
    name: str
    weight: float
    dlat: float
    dlon: float
    effects: tuple = ()


DISTRICTS: tuple[District, ...] = (
    District("17201", "1720101", "中央", 0.12, 0.000, 0.000),
    District("17201", "1720102", "東部", 0.11, 0.010, 0.030),
    District("17201", "1720103", "西部", 0.12, 0.000, -0.040),
    District("17201", "1720104", "南部", 0.11, -0.040, 0.010),
    District("17201", "1720105", "北部", 0.10, 0.040, 0.000),
    District("17201", "1720106", "駅西", 0.12, 0.010, -0.020, (("treat", -0.9),)),
    District("17201", "1720107", "泉野", 0.11, -0.025, -0.005, (("kenshin", 0.25),)),
    District("17201", "1720108", "元町", 0.09, 0.025, 0.020),
    District("17201", "1720109", "長田", 0.08, 0.005, -0.010),
    District("17201", "1720110", "医王山", 0.04, -0.020, 0.090, (("kenshin", -0.35),)),
    District("17210", "1721001", "松任", 0.60, 0.000, 0.000),
    District("17210", "1721002", "美川", 0.12, 0.030, -0.090),
    District("17210", "1721003", "鶴来", 0.20, -0.080, 0.050),
    District("17210", "1721004", "白山ろく", 0.08, -0.250, 0.100, (("kenshin", 0.30),)),
)

# 国保 share of residents by age (interpolated between band mid-points); 75+ are all 後期.
_KOKUHO_SHARE_AGE = np.array([40, 42, 47, 52, 57, 62, 64, 65, 67, 72, 74])
_KOKUHO_SHARE = np.array([0.17, 0.17, 0.18, 0.19, 0.22, 0.32, 0.40, 0.62, 0.70, 0.80, 0.82])

# Marginal 受診 probabilities by age (docs/rules.md §12: 国保 ~38 %, 後期 ~25 %).
_KENSHIN_AGE = np.array([40, 44, 49, 54, 59, 64, 67, 72, 74, 75, 77, 82, 87, 92, 105])
_KENSHIN_P = np.array([.22, .22, .24, .27, .31, .37, .45, .49, .49, .36, .36, .30, .18, .09, .04])

# Exam month distribution over the fiscal year (April … March).
_EXAM_MONTH_P = np.array([.02, .06, .14, .14, .12, .14, .14, .10, .07, .04, .02, .01])


def load_demo_population() -> pd.DataFrame:
    """The package table: 19 municipalities × sex, 5-year bands 40–44 … 95+ and all-age total."""
    ref = resources.files("hsutils") / "data" / "ishikawa_demo_population.csv"
    with resources.as_file(ref) as path:
        return pd.read_csv(path, dtype={"muni_code": str, "medical_area_code": str})


# --------------------------------------------------------------------------------------------
# small helpers


def _probit_shift(p, shift, sigma=0.0):
    """Latent intercept for a target marginal probability p with a N(0, sigma²) person effect."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return ndtri(p) * np.sqrt(1.0 + sigma ** 2) + shift


def _interp(x, xp, fp):
    return np.interp(np.asarray(x, dtype=float), xp, fp)


def _month_index(fy, m):
    """Month counter (months since 2000-01) for fiscal year fy and month m (0 = April)."""
    return (np.asarray(fy) - 2000) * 12 + 3 + np.asarray(m)


def _dates(month_index, day):
    """ISO date strings from a month counter (months since 2000-01) and a day of month (1–28)."""
    months = np.datetime64("2000-01", "M") + np.asarray(month_index).astype("timedelta64[M]")
    d = months.astype("datetime64[D]") + (np.asarray(day) - 1).astype("timedelta64[D]")
    return np.datetime_as_string(d, unit="D")


def _effect(codes: np.ndarray, key: str) -> np.ndarray:
    """Per-person municipal effect `key` (0 where the municipality has none)."""
    table = {m: e.get(key, 0.0) for m, e in MUNI_EFFECTS.items()}
    uniq, inv = np.unique(codes, return_inverse=True)
    return np.array([table.get(u, 0.0) for u in uniq])[inv]


def _district_effect(district_idx: np.ndarray, key: str) -> np.ndarray:
    vals = np.array([dict(d.effects).get(key, 0.0) for d in DISTRICTS] + [0.0])
    return vals[district_idx]


# --------------------------------------------------------------------------------------------
# population


def _residents_2024(pop: pd.DataFrame, scale: float) -> np.ndarray:
    """Scaled residents R[muni, sex, age] in FY2024 (age at fiscal-year end), single years."""
    munis = sorted(pop["muni_code"].unique())
    bands = ["40_44", "45_49", "50_54", "55_59", "60_64", "65_69", "70_74", "75_79", "80_84",
             "85_89", "90_94"]
    r = np.zeros((len(munis), 2, N_AGES))
    top = 0.72 ** np.arange(N_AGES - 55)
    top = top / top.sum()
    for i, m in enumerate(munis):
        for s in (1, 2):
            row = pop[(pop["muni_code"] == m) & (pop["sex"] == s)].iloc[0]
            r[i, s - 1] = np.concatenate([np.repeat(row[f"age_{b}"] / 5.0, 5) for b in bands]
                                         + [row["age_95plus"] * top])
    r = r * BASE_FRACTION * scale
    insured = (r * _insured_share()).sum(axis=(1, 2))
    boost = np.maximum(1.0, MIN_PER_MUNI / np.maximum(insured, 1e-9))
    return r * boost[:, None, None]


def _insured_share() -> np.ndarray:
    """Share of residents in our insured population by age: 国保 share below 75, all 後期 from 75."""
    return np.where(AGES >= 75, 1.0, _interp(AGES, _KOKUHO_SHARE_AGE, _KOKUHO_SHARE))


def _targets(residents_2024: np.ndarray, year: int) -> np.ndarray:
    """Expected insured persons T[muni, sex, age] in `year`: the 2024 cohorts projected back
    (the person aged a in `year` is a + k in 2024, k = 2024 − year, divided by survival)."""
    k = 2024 - year
    r = np.zeros_like(residents_2024)
    if k == 0:
        r = residents_2024.copy()
    else:
        r[:, :, :N_AGES - k] = residents_2024[:, :, k:]
        sex_grid = np.array([1, 2])[None, :, None]
        for j in range(k):
            age_then = np.clip(AGES + j, 40, AGES[-1])[None, None, :]
            r = r / (1.0 - _mortality(age_then, sex_grid, 0.0))
    return r * _insured_share()


class _Cohort:
    """Persons and their enrollment spells over SIM_YEARS (arrays indexed by person)."""

    def __init__(self):
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in (
            "muni", "sex", "age21", "first_fy", "start_m", "frail")}

    def add(self, muni, sex, age21, first_fy, start_m, frail):
        for k, v in zip(self.cols, (muni, sex, age21, first_fy, start_m, frail)):
            self.cols[k].append(np.asarray(v))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.cols.items()}


def _mortality(age, sex, frail):
    """Annual death probability: Gompertz, women lower, frailty higher."""
    q = 0.0020 * np.exp(0.095 * (age - 50)) * np.where(sex == 1, 1.0, 0.55)
    return np.clip(q * np.exp(0.35 * frail - 0.06), 0, 0.6)


def _leave_prob(age):
    """Annual probability of leaving the insurer alive (employment, moving away)."""
    return np.where(age < 65, 0.06, np.where(age < 75, 0.015, 0.006))


def _simulate_cohort(rng: np.random.Generator, residents: np.ndarray):
    """Stock-flow simulation: returns person arrays and exit (fy, month, reason)."""
    n_muni = residents.shape[0]
    cohort = _Cohort()
    cell_shape = (n_muni, 2, N_AGES)

    def create(counts: np.ndarray, year: int):
        cells = np.repeat(np.arange(counts.size), counts.ravel())
        mi, si, ai = np.unravel_index(cells, cell_shape)
        age = AGES[ai]
        n = len(cells)
        if year == SIM_YEARS[0]:
            start = np.zeros(n, dtype=int)
        else:  # turning 40 = already insured at 39; others join during the year
            start = np.where(age == 40, 0, rng.integers(0, 12, n))
        cohort.add(mi, si + 1, age - (year - 2021), np.full(n, year), start, rng.standard_normal(n))

    create(rng.poisson(_targets(residents, SIM_YEARS[0])), SIM_YEARS[0])
    exit_fy = np.full(0, 9999)
    exit_m = np.zeros(0, dtype=int)
    exit_reason = np.zeros(0, dtype=int)
    for year in SIM_YEARS:
        p = cohort.arrays()
        n = len(p["muni"])
        grow = n - len(exit_fy)
        exit_fy = np.concatenate([exit_fy, np.full(grow, 9999)])
        exit_m = np.concatenate([exit_m, np.zeros(grow, dtype=int)])
        exit_reason = np.concatenate([exit_reason, np.zeros(grow, dtype=int)])
        active = (p["first_fy"] <= year) & (exit_fy == 9999)
        age = p["age21"] + (year - 2021)
        idx = np.flatnonzero(active)
        qd = _mortality(age[idx], p["sex"][idx], p["frail"][idx])
        ql = _leave_prob(age[idx])
        u = rng.random(len(idx))
        dies = u < qd
        leaves = ~dies & (u < qd + ql)
        gone = idx[dies | leaves]
        start = np.where(p["first_fy"][gone] == year, p["start_m"][gone], 0)
        exit_fy[gone] = year
        exit_m[gone] = start + np.floor(rng.random(len(gone)) * (12 - start)).astype(int)
        exit_reason[gone] = np.where(dies[dies | leaves], 1, 2)
        if year == SIM_YEARS[-1]:
            break
        # entrants next year: the expected gap between the target of each cell and the expected
        # survivors of the cell one year younger (expected, not realised, so that the top-up is
        # unbiased: truncating realised gaps at 0 would inflate small cells)
        want_now = _targets(residents, year)
        sex_grid = np.array([1, 2])[None, :, None]
        stay = 1.0 - _mortality(AGES[None, None, :], sex_grid, 0.0) - _leave_prob(AGES)[None, None, :]
        expected = np.zeros_like(want_now)
        expected[:, :, 1:] = (want_now * stay)[:, :, :-1]
        want = _targets(residents, year + 1)
        create(rng.poisson(np.maximum(want - expected, 0)), year + 1)
    p = cohort.arrays()
    grow = len(p["muni"]) - len(exit_fy)
    exit_fy = np.concatenate([exit_fy, np.full(grow, 9999)])
    exit_m = np.concatenate([exit_m, np.zeros(grow, dtype=int)])
    exit_reason = np.concatenate([exit_reason, np.zeros(grow, dtype=int)])
    p.update(exit_fy=exit_fy, exit_m=exit_m, exit_reason=exit_reason)
    return p


def _person_year(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per person × simulated fiscal year in which the person is insured."""
    parts = []
    for year in SIM_YEARS:
        idx = np.flatnonzero((p["first_fy"] <= year) & (p["exit_fy"] >= year)
                             & (p["age21"] + (year - 2021) <= AGES[-1]))
        start = np.where(p["first_fy"][idx] == year, p["start_m"][idx], 0)
        end = np.where(p["exit_fy"][idx] == year, p["exit_m"][idx], 11)
        parts.append((idx, np.full(len(idx), year), start, end))
    pid = np.concatenate([x[0] for x in parts])
    fy = np.concatenate([x[1] for x in parts])
    start = np.concatenate([x[2] for x in parts])
    end = np.concatenate([x[3] for x in parts])
    age = p["age21"][pid] + (fy - 2021)
    return {"pid": pid, "fy": fy, "start_m": start, "end_m": end, "age": age,
            "sex": p["sex"][pid], "full_year": (start == 0) & (end == 11)
            & (p["exit_fy"][pid] != fy)}


# --------------------------------------------------------------------------------------------
# person-level latents


def _latents(rng: np.random.Generator, n: int, p: dict[str, np.ndarray], munis: np.ndarray):
    """Correlated health latents and behaviour traits per person."""
    names = ["adip", "gly", "bp", "lip", "kid"]
    corr = np.array([
        [1.00, 0.45, 0.25, 0.30, 0.10],
        [0.45, 1.00, 0.20, 0.20, 0.20],
        [0.25, 0.20, 1.00, 0.15, 0.25],
        [0.30, 0.20, 0.15, 1.00, 0.05],
        [0.10, 0.20, 0.25, 0.05, 1.00]])
    z = rng.standard_normal((n, len(names))) @ np.linalg.cholesky(corr).T
    lat = {k: z[:, i] for i, k in enumerate(names)}
    code = munis[p["muni"]]
    lat["adip"] = lat["adip"] + _effect(code, "adiposity")
    lat["kid"] = lat["kid"] - _effect(code, "kidney")  # "kid" is kidney health: a positive effect means worse kidneys
    for k in ("e_htn", "e_lip", "h", "care", "alcohol", "height", "waist", "smk", "cert",
              "poly", "dental_u"):
        lat[k] = rng.standard_normal(n)
    for k in ("hf", "stroke", "dial", "dial_dm", "hyp", "unknown", "adh_htn", "adh_dm", "adh_lip", "stop",
              "sglt2", "ex_smk", "excluded"):
        lat[k] = rng.random(n)
    return lat


# --------------------------------------------------------------------------------------------
# clinical rules used to build guidance.csv (docs/rules.md §1, §2): the library's own rules, so that the
# demo's reported codes and its guidance targets follow exactly what hsutils.rules.clinical computes


_RULE_COLUMNS = ("sex", "age", "waist", "bmi", "sbp", "dbp", "tg", "tg_fasting", "hdl", "fpg",
                 "casual_glucose", "hba1c", "med_bp", "med_glucose", "med_lipid", "smoking")


def _rule_frame(k: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({c: k[c] for c in _RULE_COLUMNS if c in k})


def _codes(labels: pd.Series, codes: dict[str, int], undetermined: int) -> np.ndarray:
    return labels.astype(object).map(codes).fillna(undetermined).to_numpy(dtype=int)


def metabolic_code(k: dict[str, np.ndarray]) -> np.ndarray:
    """メタボ判定 code 1 基準該当 / 2 予備群 / 3 非該当 / 4 判定不能 (docs/rules.md §2.2–2.4) from
    `hsutils.rules.clinical.metabolic_status`. `k` holds numpy arrays with canonical names."""
    from hsutils.rules import clinical

    return _codes(clinical.metabolic_status(_rule_frame(k)), {"該当": 1, "予備群": 2, "非該当": 3}, 4)


def guidance_code(k: dict[str, np.ndarray]) -> np.ndarray:
    """階層化 code 1 積極的 / 2 動機付け / 3 情報提供 / 5 服薬中 / 4 判定不能 (docs/rules.md §1.1–1.4) from
    `hsutils.rules.clinical.guidance_level`. Used to decide who is listed in guidance.csv and for the
    reported 保健指導レベル."""
    from hsutils.rules import clinical

    return _codes(clinical.guidance_level(_rule_frame(k)),
                  {"積極的支援": 1, "動機付け支援": 2, "情報提供": 3, "服薬中": 5}, 4)


# --------------------------------------------------------------------------------------------
# the generator


class _Demo:
    def __init__(self, scale: float, seed: int):
        if not scale > 0:
            raise ValueError("scale must be positive")
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.pop = load_demo_population()
        self.munis = np.array(sorted(self.pop["muni_code"].unique()))
        self.scale = scale

    # -- people ------------------------------------------------------------------------------
    def build_people(self):
        rng = self.rng
        p = _simulate_cohort(rng, _residents_2024(self.pop, self.scale))
        n = len(p["muni"])
        self.p = p
        self.n = n
        self.code = self.munis[p["muni"]]
        self.lat = _latents(rng, n, p, self.munis)
        # district: 金沢市 and 白山市 only; index len(DISTRICTS) = none
        dist = np.full(n, len(DISTRICTS))
        u = rng.random(n)
        for muni in ("17201", "17210"):
            ids = [i for i, d in enumerate(DISTRICTS) if d.muni_code == muni]
            w = np.cumsum([DISTRICTS[i].weight for i in ids])
            w = w / w[-1]
            sel = self.code == muni
            dist[sel] = np.array(ids)[np.searchsorted(w, u[sel], side="right").clip(0, len(ids) - 1)]
        self.district = dist
        # birth time (decimal years): fy-end age in FY2021 = age21
        self.birth = 2022.25 - p["age21"] - rng.random(n)
        lat = self.lat
        unknown_p = 0.03 + _effect(self.code, "unknown")
        self.unknown = lat["unknown"] < unknown_p
        self.py = _person_year(p)

    # -- yearly clinical state for every person-year ------------------------------------------
    def build_states(self):
        lat, py = self.lat, self.py
        pid, age, sex = py["pid"], py["age"].astype(float), py["sex"]
        n = len(pid)
        male = sex == 1
        code = self.code[pid]
        treat_shift = _district_effect(self.district[pid], "treat") + _effect(code, "treat")
        # hypertension (diagnosis threshold lowered by age -> persistent)
        p_htn = _interp(age, [40, 50, 60, 70, 80, 90], [0.06, 0.16, 0.30, 0.44, 0.56, 0.60])
        l_htn = 0.75 * lat["bp"][pid] + 0.66 * lat["e_htn"][pid]
        htn_dx = l_htn > ndtri(1 - p_htn)
        htn_tx = htn_dx & (lat["adh_htn"][pid] < ndtr(ndtri(0.85) + treat_shift))
        # dyslipidaemia
        p_lip = _interp(age, [40, 50, 60, 70, 80, 90], [0.06, 0.12, 0.21, 0.27, 0.26, 0.20])
        p_lip = p_lip + np.where(~male & (age >= 55), 0.06, 0.0)
        l_lip = 0.7 * lat["lip"][pid] + 0.71 * lat["e_lip"][pid]
        lip_dx = l_lip > ndtri(1 - p_lip)
        lip_tx = lip_dx & (lat["adh_lip"][pid] < ndtr(ndtri(0.80) + treat_shift))
        # glycaemia: untreated HbA1c level (core without yearly noise decides the diagnosis)
        z = lat["gly"][pid]
        tail_mult = 1.0 + _effect(code, "glycemic")
        core = (5.27 + 0.010 * (age - 40) + 0.24 * z
                + 1.2 * tail_mult * np.maximum(z - 0.6, 0) ** 1.3)
        dm_dx = core >= 6.4
        dm_adherent = lat["adh_dm"][pid] < ndtr(ndtri(0.78) + treat_shift + _effect(code, "treat_dm"))
        # dialysis: rare, older, often diabetic
        p_dial = _interp(age, [40, 60, 70, 80, 95], [0.0007, 0.0018, 0.0035, 0.0045, 0.003])
        dial = lat["dial"][pid] < p_dial
        # about half of dialysis patients are diabetic (diabetic nephropathy)
        dm_dx = dm_dx | (dial & (lat["dial_dm"][pid] < 0.45))
        # heart failure, stroke (history that stays)
        hf = lat["hf"][pid] < _interp(age, [40, 65, 75, 85, 95], [0.003, 0.015, 0.045, 0.10, 0.16])
        stroke = lat["stroke"][pid] < _interp(age, [40, 65, 75, 85, 95], [0.006, 0.025, 0.05, 0.08, 0.10])
        # smoking: current if under the age/sex curve; falls with age (people quit, never restart)
        p_smk = np.where(male, _interp(age, [40, 50, 60, 70, 80], [0.40, 0.37, 0.30, 0.21, 0.11]),
                         _interp(age, [40, 50, 60, 70, 80], [0.12, 0.10, 0.07, 0.04, 0.015]))
        smoker = ndtr(lat["smk"][pid]) < p_smk
        # kaigo certification status at mid fiscal year
        cert_time = self.cert_time[pid]
        kaigo_now = cert_time < py["fy"] + 0.75
        self.st = dict(htn_dx=htn_dx, htn_tx=htn_tx, lip_dx=lip_dx, lip_tx=lip_tx, gly_core=core,
                       dm_dx=dm_dx, dm_tx=dm_dx & dm_adherent, dial=dial, hf=hf, stroke=stroke,
                       smoker=smoker, kaigo=kaigo_now & ~self.unknown[pid], code=code, n=n)
        # diabetes treatment interruption (docs/rules.md §5.4): ~12 % of persons have a stop month
        # (month counter from 2021-04); it matters only while they are treated for diabetes
        stop_month = np.floor(self.rng.random(self.n) * (N_MONTHS - 6)) + 3
        self.dm_stop_t = np.where(lat["stop"] < 0.12, stop_month, 10 ** 6)

    def build_kaigo_times(self):
        """Certification time per person: age at certification from a cumulative curve."""
        lat = self.lat
        x = 0.8 * self.p["frail"] + 0.6 * lat["cert"]
        v = 1.0 - ndtr(x)  # high frailty -> small v -> early certification
        ages = np.array([55, 65, 70, 75, 80, 85, 90, 95, 100, 106, 140], dtype=float)
        cum = np.array([0.0, 0.009, 0.018, 0.038, 0.082, 0.205, 0.41, 0.62, 0.78, 0.90, 1.0])
        a_cert = np.interp(v, cum, ages)
        self.cert_time = np.where(self.unknown, np.inf, self.birth + a_cert)

    # -- checkups ----------------------------------------------------------------------------
    def build_kenshin(self):
        rng, lat, py, st = self.rng, self.lat, self.py, self.st
        pid, fy = py["pid"], py["fy"]
        age = py["age"].astype(float)
        sex = py["sex"]
        male = sex == 1
        code = st["code"]
        n = len(pid)
        adip_shift = np.zeros(self.n)

        # participation (probit with a strong person effect -> people come back)
        sigma = 1.6
        base = _interp(age, _KENSHIN_AGE, _KENSHIN_P)
        c = _probit_shift(base, np.where(male, -0.11, 0.11), sigma)
        c = c + _effect(code, "kenshin") + _effect(code, "kenshin_trend") * (fy - 2022)
        c = c + np.where(fy == 2024, _effect(code, "kenshin_2024"), 0.0)
        c = c + _district_effect(self.district[pid], "kenshin")
        c = c - 0.6 * st["kaigo"] - 1.0 * st["dial"]
        excluded = (lat["excluded"][pid] < np.where(age < 75, 0.004, 0.0))
        self.py["excluded"] = excluded
        takes = rng.random(n) < ndtr(c + sigma * lat["h"][pid])
        month = rng.choice(12, size=n, p=_EXAM_MONTH_P)
        takes &= (month >= py["start_m"]) & (month <= py["end_m"]) & ~excluded
        takes &= ~self.unknown[pid] & (fy >= FISCAL_YEARS[0])
        self.py["exam_m"] = month
        self.py["kenshin"] = takes

        rows = []
        for year in FISCAL_YEARS:  # sequential: finishing guidance changes later years
            sel = np.flatnonzero(takes & (fy == year))
            k = self._kenshin_values(sel, adip_shift)
            lvl = guidance_code(k)
            k["guidance_level_reported"] = np.where(k["age"] >= 75, -1,
                                                    np.where(lvl == 5, 3, np.minimum(lvl, 4)))
            k["metabo_reported"] = np.where(k["age"] >= 75, -1, metabolic_code(k))
            g = self._guidance(sel, lvl, k)
            done = g["person"][g["completed"]]
            adip_shift[done] -= 0.3
            rows.append((k, g))
        self.kenshin_parts = rows

    def _kenshin_values(self, sel: np.ndarray, adip_shift: np.ndarray) -> dict[str, np.ndarray]:
        rng, lat, py, st = self.rng, self.lat, self.py, self.st
        pid = py["pid"][sel]
        fy = py["fy"][sel]
        age = py["age"][sel].astype(float)
        sex = py["sex"][sel]
        male = sex == 1
        n = len(sel)
        code = self.code[pid]
        kouki = age >= 75
        noise = lambda: rng.standard_normal(n)  # noqa: E731  (short local helper)
        t_exam = (fy - 2021) * 12 + py["exam_m"][sel]  # month counter from 2021-04
        frail = np.maximum(self.p["frail"][pid], 0)

        # anthropometry
        mu_bmi = np.where(male, 24.3 - 0.035 * np.maximum(age - 45, 0),
                          21.8 + 0.04 * np.clip(age - 40, 0, 30) - 0.05 * np.maximum(age - 78, 0))
        bmi_true = (mu_bmi + np.where(male, 3.1, 3.3) * (lat["adip"][pid] + adip_shift[pid])
                    + 0.35 * noise() - 0.7 * frail * kouki)
        bmi_true = np.clip(bmi_true, 15.0, 45.0)
        height = np.where(male, 171.0 - 0.15 * (age - 40), 158.0 - 0.17 * (age - 40))
        height = np.round(np.clip(height + np.where(male, 5.8, 5.3) * lat["height"][pid]
                                  + 0.3 * noise(), 130, 200), 1)
        weight = np.round(np.clip(bmi_true * (height / 100) ** 2, 30, 150), 1)
        bmi = np.round(weight / (height / 100) ** 2, 1)
        waist = np.where(male, 84.5 + 2.6 * (bmi - 24.0), 79.5 + 2.5 * (bmi - 22.5) + 0.08 * (age - 40))
        waist = waist + 3.2 * lat["waist"][pid] + 1.6 * noise()
        waist = np.round(np.clip(waist, 55, 150), 1)
        waist = np.where(kouki | (rng.random(n) < 0.01), np.nan, waist)

        # blood pressure
        ub = (114 + 0.55 * (age - 40) + 0.9 * (bmi - 23) + 4 * male + 13 * lat["bp"][pid]
              + 7.5 * noise())
        htn_tx = st["htn_tx"][sel]
        sbp = np.round(np.clip(ub - htn_tx * (11 + 6 * noise()), 85, 230))
        dbp = 76 + 0.5 * (sbp - 125) - 0.25 * np.maximum(age - 60, 0) + 4 * male + 6.5 * noise()
        dbp = np.round(np.clip(dbp, 45, 130))
        dbp = np.minimum(dbp, sbp - 15)

        # glycaemia
        dm_on = st["dm_tx"][sel] & (t_exam < self.dm_stop_t[pid])
        stopped = st["dm_tx"][sel] & ~dm_on
        core = st["gly_core"][sel] + 0.035 * (bmi - 23) + 0.2 * stopped
        untreated = core + 0.13 * noise()
        treated = 6.3 + 0.6 * (core - 6.3) + 0.3 * noise()
        hba1c = np.round(np.clip(np.where(dm_on, treated, untreated), 4.3, 14.5), 1)
        fasting = rng.random(n) < 0.85
        fpg = np.clip(30.0 * hba1c - 73 + 6.5 * noise(), 70, 450)
        casual = np.clip(fpg * 1.12 + 12 * np.abs(noise()), 70, 500)
        fpg = np.where(fasting, np.round(fpg), np.nan)
        casual = np.where(fasting, np.nan, np.round(casual))
        hba1c = np.where(rng.random(n) < 0.03, np.nan, hba1c)

        # lipids
        lip_tx = st["lip_tx"][sel]
        log_tg = (np.log(82) + 0.25 * male + 0.03 * (bmi - 23) + 0.20 * lat["lip"][pid]
                  + 0.40 * noise() + np.where(fasting, 0.0, 0.2) - 0.12 * lip_tx)
        tg = np.round(np.clip(np.exp(log_tg), 30, 1500))
        hdl = np.where(male, 57 - 1.5 * (bmi - 24), 68 - 1.5 * (bmi - 22.5))
        hdl = hdl - 9.0 * (log_tg - np.log(100)) + 11 * noise()
        hdl = np.round(np.clip(hdl, 25, 120))
        ldl = (120 + np.where(~male & (age >= 55), 12, 0) + 27 * lat["lip"][pid]
               + 12 * noise() - 38 * lip_tx)
        ldl = np.round(np.clip(ldl, 50, 260))
        non_hdl = np.round(ldl + tg / 5)

        # liver
        alt = np.exp(np.log(17) + 0.05 * (bmi - 23) + 0.15 * male + 0.4 * noise())
        ast = 6 + 0.5 * alt + np.exp(np.log(9) + 0.3 * noise())
        ggt = np.exp(np.log(np.where(male, 28, 17)) + 0.45 * lat["alcohol"][pid] * (1 + 0.5 * male)
                     + 0.02 * (bmi - 23) + 0.25 * noise())
        alt, ast, ggt = (np.round(np.clip(v, 5, 600)) for v in (alt, ast, ggt))

        # kidney
        dial = st["dial"][sel]
        kz = lat["kid"][pid]
        egfr = (96 - 0.38 * age + 9.5 * kz - 3.5 * st["dm_dx"][sel] - 2.5 * st["htn_dx"][sel]
                - 13 * np.maximum(-kz - 1.4, 0) ** 1.2 + 4 * noise())
        egfr = np.where(dial, 4 + 4 * rng.random(n), egfr)
        egfr = np.clip(egfr, 4, 130)
        f = np.where(male, 1.0, 0.739)
        creat = np.round(np.clip((egfr / (194 * age ** -0.287 * f)) ** (-1 / 1.094), 0.3, 12.0), 2)
        egfr_rep = np.round(194 * creat ** -1.094 * age ** -0.287 * f, 1)
        has_creat = np.isin(code, list(CREATININE_MUNIS)) & (rng.random(n) < 0.96)
        creat = np.where(has_creat, creat, np.nan)
        egfr_rep = np.where(has_creat, egfr_rep, np.nan)

        # urine
        up_lat = (0.55 * -kz + 0.35 * np.maximum(untreated - 6.0, 0) + 0.02 * (ub - 130)
                  + 0.45 * _effect(code, "kidney") + 0.8 * noise())
        protein = np.searchsorted(np.array([1.15, 1.72, 2.45, 3.0]), up_lat)  # 0..4
        protein = np.where(dial, 4, protein)
        ug_lat = np.where(hba1c >= 7.0, (hba1c - 7.0) * 1.2, -1.0) + 0.5 * noise()
        ug_lat = np.where(np.isnan(hba1c), -1.0, ug_lat)
        glucose_u = np.searchsorted(np.array([0.9, 1.2, 1.6, 2.2]), ug_lat)
        sglt2 = dm_on & (lat["sglt2"][pid] < 0.25)  # SGLT2 inhibitors: 尿糖 3+
        glucose_u = np.where(sglt2, 4, glucose_u)
        miss_u = rng.random(n) < 0.02
        protein = np.where(miss_u, -1, protein)
        glucose_u = np.where(miss_u, -1, glucose_u)

        # blood count
        hb = np.where(male, 15.2 - 0.03 * np.maximum(age - 50, 0), 13.3 - 0.005 * np.maximum(age - 50, 0))
        hb = hb - 0.05 * np.maximum(60 - egfr, 0) + 0.95 * noise()
        hb = np.round(np.clip(hb, 8.0, 18.5), 1)
        hb = np.where(rng.random(n) < 0.3, np.nan, hb)

        fy_start = _month_index(fy, 0)
        exam_m = py["exam_m"][sel]
        exam_date = _dates(fy_start + exam_m, rng.integers(1, 29, n))
        return {
            "sel": sel, "person": pid, "fy": fy, "exam_date": exam_date, "sex": sex,
            "age": py["age"][sel], "height": height, "weight": weight, "bmi": bmi, "waist": waist,
            "sbp": sbp, "dbp": dbp, "tg": tg, "tg_fasting": fasting, "hdl": hdl, "ldl": ldl,
            "non_hdl": non_hdl, "ast": ast, "alt": alt, "ggt": ggt, "fpg": fpg,
            "casual_glucose": casual, "hba1c": hba1c, "urine_glucose": glucose_u,
            "urine_protein": protein, "creatinine": creat, "egfr": egfr_rep, "hemoglobin": hb,
            "med_bp": htn_tx, "med_glucose": dm_on, "med_lipid": lip_tx,
            "smoking": self.st["smoker"][sel],
        }

    def _guidance(self, sel, lvl, k) -> dict[str, np.ndarray]:
        """特定保健指導: targets (積極的/動機付け, 40–74) with start and completion (docs/rules.md §1)."""
        rng = self.rng
        is_target = np.isin(lvl, (1, 2)) & (k["age"] >= 40) & (k["age"] <= 74)
        t = np.flatnonzero(is_target)
        pid = k["person"][t]
        code = self.code[pid]
        u = rng.random(len(t))
        u2 = rng.random(len(t))
        started = u < ndtr(ndtri(0.27) + _effect(code, "guidance"))
        completed = started & (u2 < np.where(lvl[t] == 1, 0.75, 0.88))
        return {"person": pid, "fy": k["fy"][t], "level": lvl[t], "started": started,
                "completed": completed}

    # -- claims ------------------------------------------------------------------------------
    def build_claims(self) -> dict[str, np.ndarray]:
        """Person × month rows (April 2021 … March 2025) for months with a medical or dental claim.

        Vectorised per month: one Bernoulli draw per insured person and month; chronic
        treatment raises the monthly claim probability and sets the matching disease flags.
        """
        rng, lat, py, st = self.rng, self.lat, self.py, self.st
        pid = py["pid"]
        age = py["age"].astype(float)
        unknown = self.unknown[pid]
        # monthly probability of a medical claim without chronic treatment, person-varied
        base = _interp(age, [40, 49, 59, 64, 74, 84, 100], [0.16, 0.18, 0.22, 0.28, 0.36, 0.48, 0.52])
        c_med = _probit_shift(base, 0.0, 1.0) + 1.0 * lat["care"][pid]
        p_med = ndtr(c_med)
        ckd_state = st["dial"] | (lat["kid"][pid] < -1.9) | (st["dm_dx"] & (lat["kid"][pid] < -1.2))
        kouki = age >= 75
        poly_share = (np.where(kouki, 0.045, np.where(age >= 65, 0.015, 0.004))
                      * (1.0 + _effect(st["code"], "poly")))
        poly = ndtr(lat["poly"][pid]) < poly_share
        hyp_user = lat["hyp"][pid] < np.where(kouki, 0.10, np.where(age >= 65, 0.06, 0.035))
        dental_u = ndtr(lat["dental_u"][pid])
        p_dent = np.where(dental_u < 0.3, 0.0, np.where(age >= 85, 0.06, np.where(kouki, 0.09, 0.11)))
        p_inp = (np.where(age < 65, 0.003, np.where(age < 75, 0.007, np.where(age < 85, 0.018, 0.03)))
                 * (1 + 1.5 * st["hf"] + 1.0 * st["stroke"] + 1.0 * st["kaigo"]))
        lam = (0.6 + 1.3 * st["htn_tx"] + 1.0 * st["lip_tx"] + 2.2 * st["hf"] + 1.4 * st["stroke"]
               + 0.6 * hyp_user + 0.035 * np.maximum(age - 40, 0) + 11.0 * poly)
        n_cond = (st["htn_tx"].astype(int) + st["lip_tx"] + st["hf"] + st["stroke"] + st["dial"])
        fy_idx = py["fy"] - SIM_YEARS[0]
        in_tables = np.zeros(self.n, dtype=bool)
        in_tables[pid[py["fy"] >= FISCAL_YEARS[0]]] = True
        chunks = []
        for t in range(N_MONTHS):
            fy_i, m = divmod(t, 12)
            rows = np.flatnonzero((fy_idx == fy_i) & (py["start_m"] <= m) & (py["end_m"] >= m)
                                  & ~unknown & in_tables[pid])
            person = pid[rows]
            k = len(rows)
            dm_now = st["dm_tx"][rows] & (t < self.dm_stop_t[person])
            chronic = (st["htn_tx"][rows] | st["lip_tx"][rows] | dm_now | st["hf"][rows]
                       | st["stroke"][rows] | st["kaigo"][rows])
            pm = np.where(chronic, np.maximum(p_med[rows], 0.80), p_med[rows])
            pm = np.where(st["dial"][rows], 1.0, pm)
            u = rng.random((10, k))
            inp = u[0] < p_inp[rows]
            med = (u[1] < pm) | inp
            dent = u[2] < p_dent[rows]
            keep = med | dent
            r = rows[keep]
            person = person[keep]
            med, dent, inp, dm_now = med[keep], dent[keep], inp[keep], dm_now[keep]
            u = u[:, keep]
            kk = len(r)
            n_drugs = np.where(med, rng.poisson(lam[r] + 1.6 * dm_now), 0)
            n_drugs = np.minimum(n_drugs, 40)
            cost_out = np.where(med & ~inp, np.exp(np.log(np.where(kouki[r], 9500, 7000))
                                                    + 0.25 * n_cond[r] + 0.7 * rng.standard_normal(kk)), 0)
            cost_out = np.where(st["dial"][r] & med, 380000 + 40000 * rng.random(kk), cost_out)
            cost_inp = np.where(inp, np.exp(np.log(450000) + 0.6 * rng.standard_normal(kk)), 0)
            # planted: higher 入院 cost per stay (not more stays: the claims flags stay as they were)
            cost_inp = cost_inp * (1.0 + _effect(st["code"][r], "inpatient_cost"))
            cost_den = np.where(dent, np.exp(np.log(7000) + 0.6 * rng.standard_normal(kk)), 0)
            cost_ph = np.where(n_drugs > 0, n_drugs * np.exp(np.log(2200) + 0.35 * rng.standard_normal(kk)), 0)
            n_inst = np.where(med, 1 + rng.poisson(0.12 + 0.15 * n_cond[r] + 0.9 * poly[r]), 0) + dent
            chunks.append({
                "pid": person, "ym": np.full(kk, (2021 + (t + 3) // 12) * 100 + (t + 3) % 12 + 1),
                "diabetes": med & dm_now & (u[3] < 0.97),
                "hypertension": med & st["htn_tx"][r] & (u[4] < 0.97),
                "dyslipidemia": med & st["lip_tx"][r] & (u[5] < 0.95),
                "ckd": med & ckd_state[r] & ((u[6] < 0.7) | st["dial"][r]),
                "dialysis": med & st["dial"][r],
                "heart_failure": med & st["hf"][r] & (u[7] < 0.75),
                "stroke": med & st["stroke"][r] & (u[8] < 0.7),
                "cost_inpatient": np.round(cost_inp, -1), "cost_outpatient": np.round(cost_out, -1),
                "cost_dental": np.round(cost_den, -1), "cost_pharmacy": np.round(cost_ph, -1),
                "n_drugs": n_drugs, "n_institutions": np.minimum(n_inst, 12),
                "hypnotic": med & hyp_user[r] & (u[9] < 0.9),
            })
        self.claims_aux = {"lam": lam, "hyp_user": hyp_user}  # for the late effects (apply_late_effects)
        return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

    # -- planted effects of notebooks 06 and 08, applied last ---------------------------------
    def apply_late_effects(self, claims: dict, kaigo: dict, quest: dict) -> tuple[dict, dict, dict]:
        """The municipal effects `dialysis_extra`, `skip_treated` and `unknown_young` (module docstring).

        They are applied to the finished rows and draw from their own random stream (three uniforms
        per person), so the main stream is consumed exactly as without them: every row of a town
        without these effects stays byte-identical, and so do the other planted effects.
        """
        rng = np.random.default_rng([self.seed, 2119])
        u = rng.random((4, self.n))
        py, st, code = self.py, self.st, self.code
        age24 = self.p["age21"] + 3  # age at the end of FY2024 (persons who left earlier: as if alive)
        # 人工透析 (issue 19): extra patients, `dialysis_extra` × the base prevalence by age; they are
        # dialysed every month they are insured and do not come to the 健診
        dial_before = np.zeros(self.n, dtype=bool)
        dial_before[py["pid"][st["dial"]]] = True
        p_extra = _effect(code, "dialysis_extra") * _interp(age24, [40, 60, 70, 80, 95],
                                                             [0.0007, 0.0018, 0.0035, 0.0045, 0.003])
        extra_dial = (u[0] < p_extra) & ~self.unknown & ~dial_before
        # 健康状態不明 (issue 21): persons insured in 国保 only (≤ 74 in FY2024) with no contact at all
        extra_unknown = ((age24 <= 74) & ~self.unknown & ~extra_dial
                         & (u[1] < _effect(code, "unknown_young")))
        # treated non-participants (issue 21): persons treated for 生活習慣病 who skip the 健診 while
        # treated (a persistent habit: "I see my doctor anyway")
        skipper = u[2] < _effect(code, "skip_treated")
        treated = st["htn_tx"] | st["lip_tx"] | st["dm_tx"]

        parts = []
        for k, g in self.kenshin_parts:
            drop = (extra_dial[k["person"]] | extra_unknown[k["person"]]
                    | (skipper[k["person"]] & treated[k["sel"]] & (k["age"] <= 74)))
            self.py["kenshin"][k["sel"][drop]] = False
            gone = k["person"][drop] * 10000 + k["fy"][drop]
            keep_g = ~np.isin(g["person"] * 10000 + g["fy"], gone)
            parts.append(({key: v[~drop] for key, v in k.items()}, {key: v[keep_g] for key, v in g.items()}))
        self.kenshin_parts = parts
        kaigo = {key: v[~extra_unknown[kaigo["pid"]]] for key, v in kaigo.items()}
        quest = {key: v[~extra_unknown[quest["pid"]]] for key, v in quest.items()}
        claims = {key: v[~extra_unknown[claims["pid"]]] for key, v in claims.items()}
        return self._with_dialysis(claims, extra_dial, rng), kaigo, quest

    def _with_dialysis(self, claims: dict, extra: np.ndarray, rng: np.random.Generator) -> dict:
        """Every insured month of the `extra` persons becomes a 人工透析 month (flags and the
        dialysis outpatient cost of `build_claims`); months without a claim get one."""
        py, st = self.py, self.st
        in_tables = np.zeros(self.n, dtype=bool)
        in_tables[py["pid"][py["fy"] >= FISCAL_YEARS[0]]] = True
        rows = np.flatnonzero(extra[py["pid"]] & in_tables[py["pid"]])
        n_m = py["end_m"][rows] - py["start_m"][rows] + 1
        r = np.repeat(rows, n_m)
        m = py["start_m"][r] + (np.arange(len(r)) - np.repeat(np.cumsum(n_m) - n_m, n_m))
        t = (py["fy"][r] - SIM_YEARS[0]) * 12 + m  # month counter from 2021-04
        ym = (2021 + (t + 3) // 12) * 100 + (t + 3) % 12 + 1
        person = py["pid"][r]
        key_new = person.astype(np.int64) * 1000000 + ym
        key_old = claims["pid"].astype(np.int64) * 1000000 + claims["ym"]
        hit = np.isin(key_old, key_new)
        claims = dict(claims)
        was_med = (claims["cost_outpatient"] > 0) | (claims["cost_inpatient"] > 0)
        claims["n_institutions"] = np.where(hit & ~was_med, claims["n_institutions"] + 1, claims["n_institutions"])
        for flag in ("dialysis", "ckd"):
            claims[flag] = claims[flag] | hit
        dial_cost = np.round(380000 + 40000 * rng.random(len(key_old)), -1)
        claims["cost_outpatient"] = np.where(hit, dial_cost, claims["cost_outpatient"])
        new = ~np.isin(key_new, key_old)
        r, person, ym, t = r[new], person[new], ym[new], t[new]
        kk = len(r)
        v = rng.random((6, kk))
        lam = self.claims_aux["lam"][r]
        dm_now = st["dm_tx"][r] & (t < self.dm_stop_t[person])
        n_drugs = np.minimum(rng.poisson(lam + 1.6 * dm_now), 40)
        add = {
            "pid": person, "ym": ym,
            "diabetes": dm_now & (v[0] < 0.97), "hypertension": st["htn_tx"][r] & (v[1] < 0.97),
            "dyslipidemia": st["lip_tx"][r] & (v[2] < 0.95), "ckd": np.ones(kk, bool),
            "dialysis": np.ones(kk, bool), "heart_failure": st["hf"][r] & (v[3] < 0.75),
            "stroke": st["stroke"][r] & (v[4] < 0.7),
            "cost_inpatient": np.zeros(kk), "cost_outpatient": np.round(380000 + 40000 * rng.random(kk), -1),
            "cost_dental": np.zeros(kk),
            "cost_pharmacy": np.round(np.where(n_drugs > 0, n_drugs * np.exp(np.log(2200) + 0.35
                                                                            * rng.standard_normal(kk)), 0), -1),
            "n_drugs": n_drugs, "n_institutions": np.ones(kk, dtype=np.int64),
            "hypnotic": self.claims_aux["hyp_user"][r] & (v[5] < 0.9),
        }
        return {key: np.concatenate([claims[key], add[key].astype(claims[key].dtype)]) for key in claims}

    # -- kaigo -------------------------------------------------------------------------------
    def build_kaigo(self) -> dict[str, np.ndarray]:
        """Certification periods overlapping April 2021 … March 2025 (first 12 months, then 24)."""
        rng, p = self.rng, self.p
        window_start, window_end = 2021.25, 2025.25
        exit_time = np.where(p["exit_fy"] < 9999,
                             p["exit_fy"] + 0.25 + (p["exit_m"] + 0.5) / 12.0, np.inf)
        in_tables = np.zeros(self.n, dtype=bool)
        in_tables[self.py["pid"][self.py["fy"] >= FISCAL_YEARS[0]]] = True
        cert = self.cert_time
        who = np.flatnonzero(in_tables & (cert < np.minimum(exit_time, window_end)))
        cert_m = np.floor((cert[who] - 2000) * 12).astype(int)
        cert_d = rng.integers(1, 29, len(who))
        window_m0 = (2021 - 2000) * 12 + 3
        # first period index that ends after the window start
        since = window_m0 - cert_m
        k0 = np.where(since < 12, 0, 1 + np.maximum(since - 12, 0) // 24)
        age_cert = cert[who] - self.birth[who]
        lvl0 = np.clip(np.floor(ndtr(0.05 * (age_cert - 85) + 0.3 * self.p["frail"][who] - 0.25
                                     + 0.9 * rng.standard_normal(len(who))) * 7), 0, 6)
        lvl0 = np.minimum(lvl0 + rng.binomial(k0, 0.2), 6)
        rows_person = np.repeat(np.arange(len(who)), 3)
        j = np.tile(np.arange(3), len(who))
        k = k0[rows_person] + j
        start_m = cert_m[rows_person] + np.where(k == 0, 0, 12 + 24 * (k - 1))
        end_m = cert_m[rows_person] + 12 + 24 * k
        step = rng.binomial(1, 0.25, len(k)) * (j > 0)
        step = step.reshape(-1, 3).cumsum(axis=1).ravel()
        level = np.minimum(lvl0[rows_person] + step, 6).astype(int)
        person = who[rows_person]
        start_t = 2000 + start_m / 12.0
        ex = exit_time[person]
        keep = (start_t < np.minimum(ex, window_end)) & (2000 + end_m / 12.0 > window_start)
        person, start_m, end_m, level = person[keep], start_m[keep], end_m[keep], level[keep]
        day = cert_d[rows_person][keep]
        start = _dates(start_m, day)
        # a period ends the day before the next one starts
        end_day = ((np.datetime64("2000-01", "M") + end_m.astype("timedelta64[M]")).astype("datetime64[D]")
                   + (day - 2).astype("timedelta64[D]"))
        end = np.datetime_as_string(end_day, unit="D")
        # the period running when the person died or left ends then
        ended = np.isfinite(ex[keep]) & (ex[keep] < 2000 + end_m / 12.0)
        exit_m_abs = _month_index(self.p["exit_fy"][person], self.p["exit_m"][person])
        exit_date = _dates(np.where(ended, exit_m_abs, 0), np.full(len(person), 15))
        end = np.where(ended, exit_date, end)
        end = np.where(end < start, start, end)
        return {"pid": person, "level": level, "start": start, "end": end}

    # -- questionnaire -----------------------------------------------------------------------
    def build_questionnaire(self) -> dict[str, np.ndarray]:
        """後期高齢者の質問票 for 75+ participants and ~6 % of other 75+ (docs/rules.md §6.2)."""
        rng, py, st = self.rng, self.py, self.st
        age = py["age"].astype(float)
        pid = py["pid"]
        elder = (age >= 75) & (py["fy"] >= FISCAL_YEARS[0]) & ~self.unknown[pid]
        take = elder & ((py["kenshin"] & (rng.random(len(age)) < 0.97))
                        | (~py["kenshin"] & (rng.random(len(age)) < 0.06)))
        sel = np.flatnonzero(take)
        n = len(sel)
        p = pid[sel]
        frail = (0.8 * self.p["frail"][p] + 0.05 * (age[sel] - 80) + 0.8 * st["kaigo"][sel]
                 + 0.3 * rng.standard_normal(n))
        out = {"pid": p, "fy": py["fy"][sel]}
        # binary items: (item, marginal share at risk, frailty loading)
        items = (("q3", 0.05, 0.4), ("q4", 0.28, 0.5), ("q5", 0.20, 0.5), ("q6", 0.11, 0.6),
                 ("q7", 0.55, 0.8), ("q8", 0.18, 0.6), ("q9", 0.35, 0.6), ("q10", 0.17, 0.6),
                 ("q11", 0.24, 0.6), ("q13", 0.08, 0.9), ("q14", 0.07, 0.6), ("q15", 0.05, 0.4))
        risk_code = {q: schema.QUESTIONNAIRE_RISK[q][0] for q, _, _ in items}
        for q, share, load in items:
            thr = ndtri(1 - share) * np.sqrt(1 + load ** 2)
            at_risk = load * frail + rng.standard_normal(n) > thr
            other = 2 if risk_code[q] == 1 else 1
            out[q] = np.where(at_risk, risk_code[q], other)
        q1_lat = 0.8 * frail + rng.standard_normal(n)
        out["q1"] = 1 + np.searchsorted(np.array([-1.35, -0.6, 1.3, 2.4]) * np.sqrt(1.64), q1_lat)
        q2_lat = 0.5 * frail + rng.standard_normal(n)
        out["q2"] = 1 + np.searchsorted(np.array([-0.25, 1.5, 2.2]) * np.sqrt(1.25), q2_lat)
        male = py["sex"][sel] == 1
        ex = self.lat["ex_smk"][p] < np.where(male, 0.6, 0.08)
        out["q12"] = np.where(st["smoker"][sel], 1, np.where(ex, 3, 2))
        return out


# --------------------------------------------------------------------------------------------
# assembling the tables (canonical column names, export-style values)


def _yn(x) -> np.ndarray:
    """Boolean → 1 (あり) / 2 (なし) (docs/rules.md §1.5)."""
    return np.where(np.asarray(x, dtype=bool), vocab.YES, vocab.NO)


def _int_col(x) -> pd.Series:
    """Float array with NaN → nullable Int64 (so the CSV shows 123, not 123.0)."""
    return pd.Series(pd.array(np.round(np.asarray(x, dtype=float)), dtype="Float64")).astype("Int64")


_URINE = np.array([vocab.URINE_EXPORT_TEXT[o] for o in range(5)], dtype=object)


def _urine(code) -> np.ndarray:
    code = np.asarray(code)
    return np.where(code < 0, None, _URINE[np.clip(code, 0, 4)])


def generate_demo(scale: float = 1.0, seed: int = 2024, first_id: int = 1) -> dict[str, pd.DataFrame]:
    """All demo tables as DataFrames with canonical column names (schema order) and the values
    as they are written to CSV (codes, strings), keyed by table name.

    `first_id` numbers the persons H{first_id:08d}, … (a block of `write_demo_streamed` continues the
    numbering of the blocks before it)."""
    demo = _Demo(scale, seed)
    demo.build_people()
    demo.build_kaigo_times()
    demo.build_states()
    demo.build_kenshin()
    claims = demo.build_claims()
    kaigo = demo.build_kaigo()
    quest = demo.build_questionnaire()
    claims, kaigo, quest = demo.apply_late_effects(claims, kaigo, quest)
    ids = np.char.add("H", np.char.zfill(np.arange(first_id, first_id + demo.n).astype(str), 8))
    codes = demo.code
    dist_codes = np.array([d.district_code for d in DISTRICTS] + [None], dtype=object)
    tables: dict[str, pd.DataFrame] = {}

    py = demo.py
    rows = np.flatnonzero(py["fy"] >= FISCAL_YEARS[0])
    pid = py["pid"][rows]
    tables["enrollment"] = pd.DataFrame({
        "person_id": ids[pid], "fy": py["fy"][rows], "muni_code": codes[pid],
        "district_code": dist_codes[demo.district[pid]], "sex": py["sex"][rows],
        "age": py["age"][rows], "insurance": np.where(py["age"][rows] >= 75, "後期", "国保"),
        "full_year": _yn(py["full_year"][rows]),
        "months": (py["end_m"][rows] - py["start_m"][rows] + 1).astype(np.int64),
        "excluded_statutory": _yn(py["excluded"][rows]),
    })

    k = {key: np.concatenate([part[0][key] for part in demo.kenshin_parts])
         for key in demo.kenshin_parts[0][0]}
    g = {key: np.concatenate([part[1][key] for part in demo.kenshin_parts])
         for key in demo.kenshin_parts[0][1]}
    ken = pd.DataFrame({"person_id": ids[k["person"]], "fy": k["fy"], "muni_code": codes[k["person"]],
                        "exam_date": k["exam_date"], "sex": k["sex"], "age": k["age"]})
    for col in ("height", "weight", "bmi", "waist", "hba1c", "creatinine", "egfr", "hemoglobin"):
        ken[col] = k[col]
    for col in ("sbp", "dbp", "tg", "hdl", "ldl", "non_hdl", "ast", "alt", "ggt", "fpg",
                "casual_glucose"):
        ken[col] = _int_col(k[col])
    ken["tg_fasting"] = _yn(k["tg_fasting"])
    ken["urine_glucose"] = _urine(k["urine_glucose"])
    ken["urine_protein"] = _urine(k["urine_protein"])
    for col in ("med_bp", "med_glucose", "med_lipid", "smoking"):
        ken[col] = _yn(k[col])
    for col in ("guidance_level_reported", "metabo_reported"):
        ken[col] = _int_col(np.where(k[col] < 0, np.nan, k[col]))
    tables["kenshin"] = ken[schema.TABLES["kenshin"].names]

    tables["guidance"] = pd.DataFrame({
        "person_id": ids[g["person"]], "fy": g["fy"], "muni_code": codes[g["person"]],
        "level": np.where(g["level"] == 1, "積極的支援", "動機付け支援"),
        "started": _yn(g["started"]), "completed": _yn(g["completed"])})

    cl = pd.DataFrame({"person_id": ids[claims["pid"]], "muni_code": codes[claims["pid"]],
                       "ym": claims["ym"]})
    for col in ("diabetes", "hypertension", "dyslipidemia", "ckd", "dialysis", "heart_failure",
                "stroke"):
        cl[col] = claims[col].astype(np.int8)
    for col in ("cost_inpatient", "cost_outpatient", "cost_dental", "cost_pharmacy", "n_drugs",
                "n_institutions"):
        cl[col] = claims[col].astype(np.int64)
    cl["hypnotic"] = claims["hypnotic"].astype(np.int8)
    order = np.lexsort((cl["ym"].to_numpy(), claims["pid"]))
    tables["claims_monthly"] = cl.iloc[order].reset_index(drop=True)

    kg = pd.DataFrame({"person_id": ids[kaigo["pid"]], "muni_code": codes[kaigo["pid"]],
                       "level": np.array(KAIGO_LEVELS, dtype=object)[kaigo["level"]],
                       "start": kaigo["start"], "end": kaigo["end"]})
    tables["kaigo"] = kg.iloc[np.lexsort((kaigo["start"], kaigo["pid"]))].reset_index(drop=True)

    q = pd.DataFrame({"person_id": ids[quest["pid"]], "fy": quest["fy"], "muni_code": codes[quest["pid"]]})
    for i in range(1, 16):
        q[f"q{i}"] = quest[f"q{i}"].astype(np.int64)
    tables["questionnaire"] = q

    pop = demo.pop
    first = pop.drop_duplicates("muni_code").set_index("muni_code").loc[demo.munis]
    tables["municipalities"] = pd.DataFrame({
        "muni_code": demo.munis, "name": first["name"].to_numpy(), "pref_code": PREF_CODE,
        "medical_area_code": first["medical_area_code"].to_numpy(),
        "medical_area": first["medical_area"].to_numpy(), "lat": first["lat"].to_numpy(),
        "lon": first["lon"].to_numpy(),
        "population": pop.groupby("muni_code")["total"].sum().loc[demo.munis].to_numpy()})
    office = first[["lat", "lon"]]
    tables["districts"] = pd.DataFrame({
        "muni_code": [d.muni_code for d in DISTRICTS],
        "district_code": [d.district_code for d in DISTRICTS],
        "name": [d.name for d in DISTRICTS],
        "lat": [round(office.loc[d.muni_code, "lat"] + d.dlat, 5) for d in DISTRICTS],
        "lon": [round(office.loc[d.muni_code, "lon"] + d.dlon, 5) for d in DISTRICTS]})
    for name in OUTPUT_TABLES:
        tables[name] = tables[name][schema.TABLES[name].names]
    return tables


#: The demo's formats (`write_demo`): the real ones by default; CSV templates on request.
FORMATS_KENSHIN, FORMATS_CLAIMS = ("xml", "csv"), ("uke", "csv")
DEMO_KENSHIN_FORMAT, DEMO_CLAIMS_FORMAT = "xml", "uke"


def write_demo(out: Path, scale: float = 1.0, seed: int = 2024, encoding: str = "cp932",
               claims_format: str = DEMO_CLAIMS_FORMAT, kenshin_format: str = DEMO_KENSHIN_FORMAT) -> str:
    """Generate the demo and write it in the formats users hold (docs/architecture.md).

    By default 健診 is written as 特定健診 XML archives (`hsutils.demo.synth_xml`) and the claims as
    レセプト電算処理 files + synthetic masters (`hsutils.demo.synth_uke`; docs/claims_rules.md §7), so
    that every demo run (`make demo`, a notebook's first run, the tests) reads them back through
    the same import code as a user's files. ``kenshin_format="csv"`` / ``claims_format="csv"``
    write kenshin.csv / claims_monthly.csv (the CSV templates, which users may supply instead).
    The other tables are CSV (Japanese headers from `schema.TABLES`). Returns a short Japanese
    summary (rows per file). The same seed gives byte-identical files.
    """
    if kenshin_format not in FORMATS_KENSHIN or claims_format not in FORMATS_CLAIMS:
        raise ValueError(f"kenshin_format は {FORMATS_KENSHIN}、claims_format は {FORMATS_CLAIMS} のいずれかです")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = generate_demo(scale=scale, seed=seed)
    lines = [f"デモデータ（架空の石川県19市町, scale={scale:g}, seed={seed}, 文字コード {encoding}）"]
    for name in OUTPUT_TABLES:
        if claims_format == "uke" and name == "claims_monthly":
            from hsutils.demo import synth_uke

            (out / schema.DEFAULT_FILENAMES[name]).unlink(missing_ok=True)
            lines.append(synth_uke.write_uke(out, tables, seed=seed))
            continue
        if name == "kenshin" and kenshin_format == "xml":
            from hsutils.demo import synth_xml

            (out / schema.DEFAULT_FILENAMES[name]).unlink(missing_ok=True)
            lines.extend(synth_xml.write_kenshin_archives(tables, out, seed=seed))
            continue
        if name == "guidance" and kenshin_format == "xml":  # hg08 documents in the 健診 archives
            (out / schema.DEFAULT_FILENAMES[name]).unlink(missing_ok=True)
            continue
        if name == "kenshin":  # a CSV demo written over an XML demo: no stale archives
            from hsutils.demo import synth_xml

            synth_xml.remove_archives(out)
        df = tables[name]
        header = [c.ja for c in schema.TABLES[name].columns]
        path = out / schema.DEFAULT_FILENAMES[name]
        tmp = path.with_name(path.name + ".tmp")
        df.to_csv(tmp, index=False, header=header, encoding=encoding, lineterminator="\r\n")
        tmp.replace(path)
        lines.append(f"  {schema.TABLES[name].ja}（{path.name}）: {len(df):,} 行")
    if claims_format != "uke" and (out / "uke").is_dir():  # an earlier UKE demo would win over the CSV
        import shutil

        shutil.rmtree(out / "uke")
    lines.append(f"  作成時間: {time.perf_counter() - t0:.1f} 秒")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# a large prefecture, streamed (issue 17's benchmark: scale 40 ≈ 東京都 does not fit in memory at once)

#: Scale of one block of `write_demo_streamed`: the largest demo generated in memory at once.
STREAM_BLOCK_SCALE = 1.0
#: The streamed demo's file formats (one file per table; the importer reads both).
STREAM_FORMATS = ("parquet", "csv")
#: Rows per Parquet row group of the streamed demo.
STREAM_ROW_GROUP = 500_000
#: The tables that repeat in every block (masters: written once).
_MASTER_TABLES = ("municipalities", "districts")


def stream_block_scales(scale: float, block_scale: float = STREAM_BLOCK_SCALE) -> list[float]:
    """The scales of the blocks of a streamed demo: ceil(scale / block_scale) equal blocks summing to
    `scale` (one block, the demo itself, when scale ≤ block_scale)."""
    if not scale > 0 or not block_scale > 0:
        raise ValueError("scale and block_scale must be positive")
    n = max(1, int(np.ceil(scale / block_scale - 1e-9)))
    return [scale / n] * n


def _block_seed(seed: int, block: int) -> int:
    """Block 0 is the demo of `seed` itself; the others have their own streams."""
    return seed if block == 0 else seed + 7919 * block


def iter_demo_blocks(scale: float, seed: int = 2024, block_scale: float = STREAM_BLOCK_SCALE):
    """`generate_demo` block by block: the same model at scale `scale`, as independent replicates of
    the 19 municipalities of scale ≤ `block_scale` each (their own random streams, persons numbered on).

    The persons of a municipality are Poisson counts per sex × age cell and every person's life is drawn
    independently given the cell (the module docstring), so the union of the blocks has the same
    distribution as `generate_demo(scale)`; with one block it *is* `generate_demo(scale, seed)`.
    Yields (block number, block scale, tables). Memory is that of one block, whatever the scale.
    """
    first_id = 1
    for b, s in enumerate(stream_block_scales(scale, block_scale)):
        tables = generate_demo(scale=s, seed=_block_seed(seed, b), first_id=first_id)
        ids = pd.concat([tables[t]["person_id"] for t in ("enrollment", "claims_monthly", "kaigo")])
        first_id = int(ids.str[1:].astype(np.int64).max()) + 1 if len(ids) else first_id
        yield b, s, tables


def _arrow_schema(df: pd.DataFrame, names: list[str]):
    """A fixed Parquet schema for a demo table (text columns as strings even when a block has only
    nulls in them), so that every block appends to the same file."""
    import pyarrow as pa

    fields = []
    for c, name in zip(df.columns, names):
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            t = pa.bool_()
        elif pd.api.types.is_integer_dtype(s):
            t = pa.int64()
        elif pd.api.types.is_float_dtype(s):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


class _StreamWriter:
    """One output file per table, appended block by block (Parquet row groups or CSV rows)."""

    def __init__(self, out: Path, fmt: str, encoding: str):
        self.out, self.fmt, self.encoding = out, fmt, encoding
        self.writers: dict[str, object] = {}
        self.tmp: dict[str, Path] = {}
        self.rows: dict[str, int] = {}

    def path(self, name: str) -> Path:
        return self.out / f"{name}.{self.fmt}"

    def append(self, name: str, df: pd.DataFrame) -> None:
        header = [c.ja for c in schema.TABLES[name].columns]
        first = name not in self.tmp
        if first:
            self.tmp[name] = self.path(name).with_name(self.path(name).name + ".tmp")
            self.rows[name] = 0
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            if first:
                self.writers[name] = pq.ParquetWriter(self.tmp[name], _arrow_schema(df, header))
            w = self.writers[name]
            frame = df.set_axis(header, axis=1)
            # row groups of STREAM_ROW_GROUP rows: a chunked reader holds one at a time
            w.write_table(pa.Table.from_pandas(frame, schema=w.schema, preserve_index=False),
                          row_group_size=STREAM_ROW_GROUP)
        else:
            df.to_csv(self.tmp[name], index=False, header=header if first else False, mode="w" if first else "a",
                      encoding=self.encoding, lineterminator="\r\n")
        self.rows[name] += len(df)

    def close(self, complete: bool) -> None:
        """Close the files; a complete demo replaces the final names, an interrupted one is removed."""
        for w in self.writers.values():
            w.close()
        for name, tmp in self.tmp.items():
            if complete:
                tmp.replace(self.path(name))
            else:
                tmp.unlink(missing_ok=True)


def write_demo_streamed(out: Path, scale: float, seed: int = 2024, fmt: str = "parquet",
                        block_scale: float = STREAM_BLOCK_SCALE, encoding: str = "utf-8", progress=None) -> str:
    """Write a demo of any size block by block (`iter_demo_blocks`) in bounded memory: one file per table
    (`<table>.parquet` with the Japanese headers of `schema.TABLES`, or `<table>.csv`), read by the same
    import code as a user's files (`hsutils.inputs.io.load_dataset`). 健診 and claims are the CSV-template
    tables (kenshin, guidance, claims_monthly), not XML/UKE: at scale 40 (≈ 東京都) those would take
    about 100 GB. `progress`, when given, is called with (block, number of blocks) after each block.
    Returns a short Japanese summary (rows per file)."""
    if fmt not in STREAM_FORMATS:
        raise ValueError(f"fmt は {STREAM_FORMATS} のいずれかです")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_TABLES:  # files of another format or an earlier demo would be read instead
        for ext in ("csv", "parquet"):
            (out / f"{name}.{ext}").unlink(missing_ok=True)
    from hsutils.demo import synth_xml

    synth_xml.remove_archives(out)
    if (out / "uke").is_dir():
        import shutil

        shutil.rmtree(out / "uke")
    writer = _StreamWriter(out, fmt, encoding)
    n_blocks = len(stream_block_scales(scale, block_scale))
    complete = False
    try:
        for b, _s, tables in iter_demo_blocks(scale, seed, block_scale):
            for name in OUTPUT_TABLES:
                if b == 0 or name not in _MASTER_TABLES:
                    writer.append(name, tables[name])
            del tables
            if progress is not None:
                progress(b + 1, n_blocks)
        complete = True
    finally:
        writer.close(complete)
    lines = [f"デモデータ（架空の石川県19市町, scale={scale:g}, seed={seed}, {n_blocks} ブロックに分けて作成, "
             f"形式 {fmt}）"]
    for name in OUTPUT_TABLES:
        lines.append(f"  {schema.TABLES[name].ja}（{writer.path(name).name}）: {writer.rows[name]:,} 行")
    lines.append(f"  作成時間: {time.perf_counter() - t0:.1f} 秒")
    return "\n".join(lines)
