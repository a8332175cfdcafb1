"""The demo's claims written as レセプト電算処理 files (UKE), plus the synthetic masters.

`write_uke(out, tables)` takes the demo tables of `hsutils.demo.synth.generate_demo` and writes, under
``out``:

* ``uke/ika_YYYYMM.UKE`` (医科), ``uke/shika_YYYYMM.UKE`` (歯科), ``uke/chozai_YYYYMM.UKE`` (調剤): one file per
  診療年月 and kind, each a sequence of ``IR``/``YK`` … ``GO`` blocks, one per institution
  (docs/claims_rules.md §1.1), cp932, CR LF, EOF mark;
* ``uke_masters/`` — the synthetic masters (`hsutils.inputs.claims_masters.synthetic_masters_dir`);
* ``person_ids.csv`` — the 個人ID対応表 shared with the XML demo (`hsutils.demo.synth_xml.write_person_ids`):
  保険者番号・記号・番号・枝番 → the demo's 被保険者番号.

The receipts are built so that `hsutils.inputs.claims_rules.derive_tables` gives back exactly the
``claims_monthly`` rows the generator intended (tests/test_synth_uke.py), person by person:

* each flag of the month is one 傷病名 line of its group on the person's main 医科 receipt (with variety:
  E11.9 or E14.9, I10 or an uncoded 「高血圧症」, N18.9 or N18.5 with dialysis); persons without
  diabetes sometimes carry a suspected 「糖尿病」 (修飾語 8002), which the rules do not count;
* the persons' other diseases (`CONDITIONS`: 悪性新生物, 虚血性心疾患, 精神, 筋骨格; own random stream, likelier
  for a person with an 入院 month) are the 主傷病 of their main clinic's and hospital's receipts, so that every
  cost group of notebook 06 (claims_rules.yaml `cost_groups`) has costs; they set no flag;
* 人工透析 is an 人工腎臓 procedure; 睡眠薬 is a 屯服 given by the institution (院内), so it never changes
  the count of 内服 drugs; every third person gets a second hypnotic in those months, and every tenth
  person gets the pharmacy's first 内服 drug again from each further clinic (院内, same 成分), which
  notebook 07 finds as 重複 and 睡眠薬の併用 (docs/rules.md §10);
* costs are 点数 × 10円; a month with ``n_institutions`` > 1 gets receipts from further clinics (a 歯科
  receipt counts as one institution); ``n_drugs`` distinct 内服 drugs are dispensed by a pharmacy on one
  調剤 receipt that names the main clinic as the prescriber (院外処方); about 2 % of 国保 outpatient
  receipts carry a 公費 (KO).

Vectorised: each kind of line is one Arrow concatenation (`pyarrow.compute.binary_join_element_wise`)
over the receipts that carry it, the lines are put in file order by one integer sort, and each file's
bytes are cut from the sorted text buffer; a loop runs per file only (no Python object per line: 35 M
lines at scale 1). Nothing here describes a real person or institution; patient names are a fixed placeholder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hsutils.inputs.claims_masters import synthetic_masters_dir
from hsutils.inputs.lookback import fiscal_year_of_month
from hsutils.demo.synth_xml import write_person_ids

PREF = "17"
PLACEHOLDER_NAME = "デモ　患者"
PLACEHOLDER_KANA = "デモ　カンジャ"
N_CLINICS, N_DENTAL, N_PHARMACY = 40, 15, 20
FILLER_DRUGS = [f"69900{1000 + i:04d}" for i in range(45)]   # 内服, neither 糖尿病 nor 睡眠薬
DM_DRUG, HYPNOTIC_DRUG, SECOND_HYPNOTIC_DRUG = "699000001", "699000007", "699000014"  # 14: brotizolam
DIALYSIS_CODE, REVISIT_CODE, INPATIENT_CODE = "199000003", "199000002", "199000007"
DIALYSIS_POINTS, DIALYSIS_TIMES = 1990, 12
CHUNK_RECEIPTS = 400_000  # receipts written per pass (about 2.5 M lines, a few hundred MB)
# 傷病名 codes of the synthetic master per flag (docs/claims_rules.md §6.1)
DX = {"diabetes": ("9990001", "9990021"), "hypertension": ("9990005", "0000999"),
      "dyslipidemia": ("9990007", "9990007"), "ckd": ("9990008", "9990014"),
      "heart_failure": ("9990009", "9990009"), "stroke": ("9990010", "9990011")}
FILLER_DX, DENTAL_DX = "9990012", "9990017"
# 主傷病 of the cost groups that no flag covers (docs/claims_rules.md §6.7, claims_rules.yaml `cost_groups`):
# person-level conditions, (name, 傷病名 codes, prevalence at ages 40/60/75/90, odds factor for a person with
# an 入院 month, comes before the flags). The first condition a person has (in this order) is the 主傷病 of
# his 医科 receipts at the main clinic and in hospital; 悪性新生物, 虚血性心疾患 and 精神 come before the flags'
# diseases, 筋骨格 only where no flag is written (else 急性上気道炎, その他).
CONDITIONS = (
    ("cancer", ("9990025", "9990026", "9990027", "9990028"), (0.010, 0.025, 0.050, 0.060), 5.0, True),
    ("ihd", ("9990020", "9990031"), (0.006, 0.020, 0.045, 0.060), 2.5, True),
    ("mental", ("9990029", "9990030"), (0.030, 0.028, 0.022, 0.022), 4.0, True),
    ("musculoskeletal", ("9990019", "9990024", "9990016"), (0.060, 0.120, 0.200, 0.220), 1.5, False),
)


def _arrow_text(x) -> pa.Array:
    """A column as Arrow UTF-8 text: integers as their decimal text (as ``str(int)``), text as is."""
    if isinstance(x, (pa.Array, pa.ChunkedArray)):
        a = x
    elif isinstance(x, pd.Series):
        a = pa.array(x)
    else:
        x = np.asarray(x)
        a = pa.array(x.astype(np.int64) if x.dtype.kind in "iub" else x)
    return a if a.type == pa.string() else a.cast(pa.string())


def _text(idx: np.ndarray, *parts) -> pa.Array:
    """The lines at rows `idx`: the concatenation of `parts`, each a literal ``str`` or a column (one value
    per receipt: numpy, pandas or Arrow) taken at `idx`. Arrow kernels over whole columns: no Python
    object per line (the demo's 35 M lines)."""
    cols = []
    for x in parts:
        if isinstance(x, str):
            cols.append(x)
        elif isinstance(x, pa.Array):
            cols.append(_arrow_text(x.take(pa.array(idx))))
        else:
            cols.append(_arrow_text(np.asarray(x)[idx]))
    if all(isinstance(c, str) for c in cols):
        return pa.array(np.full(len(idx), "".join(cols), dtype=object), type=pa.string())
    return pc.binary_join_element_wise(*cols, "")


def _fields(*parts) -> list:
    """`parts` with a comma between each two (for `_text`)."""
    out = []
    for x in parts:
        out += [",", x] if out else [x]
    return out


DAYS30 = "," * 30  # the 31 算定日 fields of SI/IY: the count on day 1, the other days empty


def _person_frame(tables: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    cm = tables["claims_monthly"].reset_index(drop=True)
    enr = tables["enrollment"]
    first = enr.sort_values("fy").drop_duplicates("person_id").set_index("person_id")
    fy = fiscal_year_of_month(cm["ym"])
    age = first["age"].reindex(cm["person_id"]).to_numpy() + (fy - first["fy"].reindex(cm["person_id"]).to_numpy())
    p = pd.DataFrame({
        "person_id": cm["person_id"], "ym": cm["ym"].astype(np.int64),
        "pid": cm["person_id"].str.slice(1).astype(np.int64),
        "muni": cm["muni_code"].astype(str), "sex": first["sex"].reindex(cm["person_id"]).to_numpy(),
        "kouki": age >= 75, "birth_year": (fy - age).astype(np.int64)})
    return cm, p


def person_conditions(cm: pd.DataFrame, p: pd.DataFrame, seed: int) -> np.ndarray:
    """Index into CONDITIONS (-1 = none) per person number (``H00000123`` → 123), from its own random
    stream (one draw per person number and condition: the other receipts' content does not change).
    Prevalence rises with age (FY2024 age); a person with an 入院 month has the odds × the factor, so
    the conditions carry their share of hospital costs (悪性新生物 most)."""
    n_pid = int(p["pid"].max()) + 1 if len(p) else 1
    age = np.zeros(n_pid)
    age[p["pid"].to_numpy()] = 2024 - p["birth_year"].to_numpy()
    inpatient = np.zeros(n_pid, dtype=bool)
    inpatient[p["pid"].to_numpy()[cm["cost_inpatient"].to_numpy() > 0]] = True
    u = np.random.default_rng([seed, 19]).random((len(CONDITIONS), n_pid))
    cond = np.full(n_pid, -1)
    for j, (_, _, prev, factor, _) in enumerate(CONDITIONS):
        base = np.interp(age, [40, 60, 75, 90], prev)
        odds = base / (1 - base) * np.where(inpatient, factor, 1.0)
        cond = np.where((cond < 0) & (u[j] < odds / (1 + odds)), j, cond)
    return cond


def _insurer(p: pd.DataFrame) -> pd.DataFrame:
    """The demo's 被保険者証 of each person-month: the same card as in the XML demo
    (`hsutils.demo.synth_xml.insurance_card`), written as a receipt writes it: a 6-digit 国保 保険者番号
    right-aligned in 8 with spaces, 記号 in 全角 digits (docs/formats/person_key.md)."""
    from hsutils.demo.synth_xml import insurance_card

    card = insurance_card(p["person_id"], p["muni"].to_numpy(), p["kouki"].to_numpy())
    ins = card["保険者番号"].str.lstrip("0").str.rjust(8)  # 00170010 → "  170010" (国保), 後期 unchanged
    return pd.DataFrame({"insurer": ins.to_numpy(), "kigo": card["記号"].str.replace("17", "１７").to_numpy(),
                         "bango": card["番号"].to_numpy(), "edaban": card["枝番"].to_numpy()}, index=p.index)


def build_receipts(tables: dict, seed: int = 2024) -> pd.DataFrame:
    """One row per receipt: person-month index, kind, setting, institution, points, role."""
    cm, p = _person_frame(tables)
    rng = np.random.default_rng(seed + 16)
    n = len(cm)
    out_pts = (cm["cost_outpatient"].to_numpy(np.int64) // 10)
    inp_pts = (cm["cost_inpatient"].to_numpy(np.int64) // 10)
    den_pts = (cm["cost_dental"].to_numpy(np.int64) // 10)
    ph_pts = (cm["cost_pharmacy"].to_numpy(np.int64) // 10)
    med = (out_pts > 0) | (inp_pts > 0)
    dent = den_pts > 0
    k2 = np.where(med, cm["n_institutions"].to_numpy(np.int64) - dent - 1, 0)
    sec_setting_out = out_pts > 0
    base_pts = np.where(sec_setting_out, out_pts, inp_pts)
    s = np.where(k2 > 0, np.minimum(73, base_pts // (k2 + 1)), 0)
    main_clinic = p["pid"].to_numpy() % N_CLINICS
    parts = []

    def add(rows, kind, setting, inst, pts, role):
        parts.append(pd.DataFrame({"i": rows, "kind": kind, "setting": setting, "inst": inst,
                                   "points": pts, "role": role}))

    rows = np.flatnonzero(out_pts > 0)
    add(rows, 1, "out", main_clinic[rows], out_pts[rows] - np.where(sec_setting_out[rows], k2[rows] * s[rows], 0),
        "main")
    rows = np.flatnonzero(inp_pts > 0)
    add(rows, 1, "inp", main_clinic[rows], inp_pts[rows] - np.where(~sec_setting_out[rows], k2[rows] * s[rows], 0),
        np.where(out_pts[rows] > 0, "inp", "main"))
    rows = np.repeat(np.arange(n), np.maximum(k2, 0))
    j = np.arange(len(rows)) - np.repeat(np.cumsum(np.maximum(k2, 0)) - np.maximum(k2, 0), np.maximum(k2, 0))
    add(rows, 1, np.where(sec_setting_out[rows], "out", "inp"), (main_clinic[rows] + 1 + j) % N_CLINICS,
        s[rows], "secondary")
    rows = np.flatnonzero(dent)
    add(rows, 3, "out", p["pid"].to_numpy()[rows] % N_DENTAL, den_pts[rows], "dental")
    rows = np.flatnonzero(ph_pts > 0)
    add(rows, 4, "out", p["pid"].to_numpy()[rows] % N_PHARMACY, ph_pts[rows], "pharmacy")
    r = pd.concat(parts, ignore_index=True)
    r["kouhi"] = (r["kind"] == 1) & (r["setting"] == "out") & ~p["kouki"].to_numpy()[r["i"]] & \
        (rng.random(len(r)) < 0.02)
    r["inst7"] = p["muni"].str.slice(2, 5).to_numpy()[r["i"]] + pd.Series(r["inst"]).astype(str).str.zfill(4).to_numpy()
    r["ym"] = p["ym"].to_numpy()[r["i"]]
    return r


def _write_month(r: pd.DataFrame, i: np.ndarray, cm: pd.DataFrame, p: pd.DataFrame, ins: pd.DataFrame,
                 rng: np.random.Generator, udir: Path, cond: np.ndarray) -> tuple[int, int]:
    """Write the files of one month's receipts `r` (rid = 0…n-1 in file/institution order);
    returns (lines, files). Each kind of line is one Arrow concatenation over the receipts that
    carry it; the lines are then put in file order by one integer sort and each file's bytes are
    cut from the sorted text buffer."""
    rid_all = r["rid"].to_numpy(np.int64)
    ym = _arrow_text(r["ym"].to_numpy())
    ym01 = pc.binary_join_element_wise(ym, "01", "")
    mm01 = pc.binary_join_element_wise(pc.utf8_slice_codeunits(ym, 4, 6), "01", "")
    sex = p["sex"].to_numpy()[i]
    birth = p["birth_year"].to_numpy()[i] * 10000 + 101
    kouki = p["kouki"].to_numpy()[i]
    ratio = np.where(kouki, "", "70")
    recno, rtype, points = r["recno"].to_numpy(), r["rtype"].to_numpy(), r["points"].to_numpy()
    lines: list[tuple[np.ndarray, object, pa.Array]] = []

    def emit(mask, seq, *parts):
        idx = np.flatnonzero(mask)
        lines.append((rid_all[idx], seq, _text(idx, *parts)))

    k = r["kind"].to_numpy()
    med_or_dent = k != 4
    inpm = (r["setting"] == "inp").to_numpy()
    admit = pc.if_else(pa.array(inpm), ym01, "")
    re_head = _fields("RE", recno, rtype, ym, PLACEHOLDER_NAME, sex, birth, ratio)
    emit(med_or_dent, 0, *re_head, ",", admit, "," * 28 + PLACEHOLDER_KANA + ",")
    muni = _arrow_text(p["muni"]).take(pa.array(i))
    rx = pc.binary_join_element_wise(pc.utf8_slice_codeunits(muni, 2, 5),
                                     pc.utf8_lpad(_arrow_text(p["pid"].to_numpy()[i] % N_CLINICS), 4, "0"), "")
    emit(k == 4, 0, *re_head, f",,{PREF},1,", rx, ",デモ医院," + "," * 28 + PLACEHOLDER_KANA)
    ho_head = _fields("HO", ins["insurer"].to_numpy()[i], ins["kigo"].to_numpy()[i], ins["bango"].to_numpy()[i],
                      "1", points)
    emit(med_or_dent, 1, *ho_head, "," * 9)
    emit(k == 4, 1, *ho_head, "," * 8)
    # SN 資格確認 with the 枝番 on about a third of the 国保 receipts (the others link by 記号・番号)
    eda = ins["edaban"].to_numpy()[i]
    emit((eda != "") & (rng.random(len(r)) < 0.3), 3, "SN,1,01,,,,", eda, ",,")
    emit(r["kouhi"].to_numpy(), 2, "KO,54170019,1234567,,1,", points, ",0" + "," * 5)

    # diagnoses on the flag receipt (the main 医科 receipt of the month)
    flag_rec = (r["role"] == "main").to_numpy()
    u = rng.random((8, len(r)))
    seq = 10
    # the person's condition (CONDITIONS) as 主傷病 of the main clinic's and the hospital's receipt
    c = cond[p["pid"].to_numpy()[i]]
    flagged = flag_rec & np.any([cm[f].to_numpy()[i] == 1 for f in DX], axis=0)
    first = np.array([x[4] for x in CONDITIONS] + [False])[c]
    cond_main = (k == 1) & r["role"].isin(["main", "inp"]).to_numpy() & (c >= 0) & (first | ~flagged)
    n_codes = np.array([len(x[1]) for x in CONDITIONS] + [1])[c]
    which = p["pid"].to_numpy()[i] % n_codes  # a person keeps his code
    codes = np.array([x[1][min(j, len(x[1]) - 1)] for x in CONDITIONS for j in range(4)] + [FILLER_DX] * 4)
    emit(cond_main, 9, "SY,", codes[np.where(c >= 0, c, len(CONDITIONS)) * 4 + which], ",", ym01, ",1,,,01,")
    any_dx = cond_main.copy()
    for flag, (code_a, code_b) in DX.items():
        has = flag_rec & (cm[flag].to_numpy()[i] == 1)
        if flag == "ckd":
            alt = cm["dialysis"].to_numpy()[i] == 1
        elif flag == "hypertension":
            alt = u[0] < 0.1
        else:
            alt = u[1] < 0.3
        code = np.where(alt, code_b, code_a)
        name = np.where(code == "0000999", "高血圧症", "")
        outcome = np.where(u[2] < 0.02, "2", "1")
        main = np.where(~any_dx, "01", "")
        emit(has, seq, "SY,", code, ",", ym01, ",", outcome, ",,", name, ",", main, ",")
        any_dx |= has
        seq += 1
    no_dm = flag_rec & (cm["diabetes"].to_numpy()[i] == 0) & (u[3] < 0.03) & (k == 1)
    emit(no_dm, seq, "SY,9990001,", ym01, ",1,8002,,,")   # 糖尿病の疑い: not counted
    need_filler = (k != 4) & ~any_dx
    filler = np.where(k == 3, DENTAL_DX, FILLER_DX)
    emit(need_filler, seq + 1, "SY,", filler, ",", ym01, ",", np.where(u[4] < 0.1, "2", "1"), ",,,01,")
    # procedures and 院内 drugs; the last SI carries the points left
    dial = flag_rec & (cm["dialysis"].to_numpy()[i] == 1) & (k == 1)
    emit(dial, 40, f"SI,40,1,{DIALYSIS_CODE},,{DIALYSIS_POINTS},{DIALYSIS_TIMES},,,,,,,{DIALYSIS_TIMES}" + DAYS30)
    hyp = flag_rec & (cm["hypnotic"].to_numpy()[i] == 1) & (k == 1)
    emit(hyp, 41, f"IY,22,1,{HYPNOTIC_DRUG},1,1,1,,,,,,,1" + DAYS30)
    # planted for notebook 07 (docs/rules.md §10), leaving claims_monthly unchanged: every third
    # person with a hypnotic month also gets a second hypnotic (屯服, not a 内服 drug); every tenth
    # person gets, on each further clinic's receipt, the same 内服 drug the pharmacy dispenses
    # (same 成分, so n_drugs does not change) -> 重複 when such months follow each other
    pid = p["pid"].to_numpy()[i]
    hyp2 = hyp & (pid % 3 == 0)
    emit(hyp2, 41, f"IY,22,1,{SECOND_HYPNOTIC_DRUG},1,1,1,,,,,,,1" + DAYS30)
    has_rx = (cm["cost_pharmacy"].to_numpy()[i] > 0) & (cm["n_drugs"].to_numpy()[i] > 0)
    dup = (r["role"] == "secondary").to_numpy() & (k == 1) & has_rx & (pid % 10 == 0) & (points > 29)
    dup_drug = np.where(cm["diabetes"].to_numpy()[i] == 1, DM_DRUG, FILLER_DRUGS[0])
    emit(dup, 43, "IY,21,1,", dup_drug, ",1,1,28,,,,,,,28" + DAYS30)
    rest = points - dial * DIALYSIS_POINTS * DIALYSIS_TIMES - hyp * 1 - hyp2 * 1 - dup * 28
    code = np.where(k == 3, "399000001", np.where(inpm, INPATIENT_CODE, REVISIT_CODE))
    cls = np.where(inpm, "90", "12")
    emit(k != 4, 42, "SI,", cls, ",1,", code, ",,", rest, ",1,,,,,,,1" + DAYS30)
    # 調剤: one SH/CZ group of n_drugs 内服 drugs (metformin first for a diabetic month)
    ph = np.flatnonzero(k == 4)
    nd = cm["n_drugs"].to_numpy()[i[ph]].astype(np.int64)
    emit(k == 4, 50, "SH,01,1,006,,", points, ",,,,")
    emit(k == 4, 51, "CZ,1,", mm01, ",", mm01, ",1,28,1,,,,,,,", points)
    rows = np.repeat(ph, nd)
    j = np.arange(len(rows)) - np.repeat(np.cumsum(nd) - nd, nd)
    dm = cm["diabetes"].to_numpy()[i[rows]] == 1
    drug = np.where(dm & (j == 0), DM_DRUG, np.array(FILLER_DRUGS)[np.minimum(j, len(FILLER_DRUGS) - 1)])
    lines.append((rid_all[rows], 60 + j, _text(np.arange(len(rows)), "IY,1,", drug, ",1,,,,,,")))

    # institution blocks: header + receipts + GO
    blocks = r.groupby(["file", "inst7"], sort=True).agg(kind=("kind", "first"), ym=("ym", "first"),
                                                         n=("rid", "size"), pts=("points", "sum"),
                                                         first=("rid", "min"), last=("rid", "max")).reset_index()
    all_blocks = np.arange(len(blocks))
    claim = np.where(blocks["ym"] % 100 == 12, blocks["ym"] + 89, blocks["ym"] + 1)
    inst7 = blocks["inst7"].to_numpy()
    hdr = pc.if_else(pa.array(blocks["kind"].to_numpy() == 4),
                     _text(all_blocks, f"YK,2,{PREF},4,", inst7, ",デモ薬局,", claim, ",00,"),
                     _text(all_blocks, f"IR,2,{PREF},", blocks["kind"].to_numpy(), ",", inst7, ",,デモ医療機関,",
                           claim, ",00,"))
    go = _text(all_blocks, "GO,", blocks["n"].to_numpy(), ",", blocks["pts"].to_numpy(), ",99")
    # one integer sort: receipts are numbered in (file, institution) order, so (rid, seq) puts each
    # block's header first (seq -1) and its GO last (the block's last rid, seq after every line)
    parts = [(blocks["first"].to_numpy(np.int64), -1, hdr)] + lines + \
        [(blocks["last"].to_numpy(np.int64), 1 << 30, go)]
    rid = np.concatenate([x[0] for x in parts])
    seq = np.concatenate([np.broadcast_to(np.asarray(x[1], dtype=np.int64), len(x[0])) for x in parts])
    order = np.lexsort((seq, rid))
    text = pa.concat_arrays([x[2] for x in parts]).take(pa.array(order))
    text = pc.binary_join_element_wise(text, "\r\n", "")  # each line with its CR LF, in one buffer
    rid = rid[order]
    file_of = r["file"].to_numpy()[rid]
    cuts = np.flatnonzero(file_of[1:] != file_of[:-1]) + 1
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    data = text.buffers()[2]
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(text)]):  # one loop per file
        utf8 = data[offsets[a]:offsets[b]].to_pybytes()
        (udir / file_of[a]).write_bytes(utf8.decode("utf-8").encode("cp932") + b"\x1a")
    return len(text), len(cuts) + 1


def write_uke(out: Path, tables: dict, seed: int = 2024) -> str:
    """Write the demo's claims as UKE files + synthetic masters + person link (see module doc)."""
    out = Path(out)
    cm, p = _person_frame(tables)
    ins = _insurer(p)
    r = build_receipts(tables, seed=seed)
    cond = person_conditions(cm, p, seed)
    rng = np.random.default_rng(seed + 17)
    i = r["i"].to_numpy()
    kind = r["kind"].to_numpy()
    inp = (r["setting"] == "inp").to_numpy()
    kouki = p["kouki"].to_numpy()[i]
    # レセプト種別 (docs/claims_rules.md §5): 1 医科 / 3 歯科 / 4 調剤; 国保 1-1-x, 後期 1-3-x; 公費併用 1-2-x
    rtype = np.where(kouki, np.where(inp, 317, 318), np.where(r["kouhi"], 122, np.where(inp, 111, 112)))
    rtype = kind * 1000 + rtype
    r["file"] = np.select([kind == 1, kind == 3], ["ika", "shika"], "chozai")
    r["file"] = r["file"] + "_" + r["ym"].astype(str) + ".UKE"
    r = r.assign(rtype=rtype).sort_values(["file", "inst7", "i", "setting", "role"], kind="stable").reset_index(drop=True)
    r["recno"] = r.groupby(["file", "inst7"]).cumcount() + 1
    udir = out / "uke"
    if udir.exists():
        shutil.rmtree(udir)
    udir.mkdir(parents=True)
    n_lines = n_files = 0
    # whole months in chunks of about CHUNK_RECEIPTS receipts (each file holds one 診療年月): memory
    # is bounded by a chunk, and a small demo is one chunk (no per-month overhead)
    per_month = r.groupby("ym").size()
    chunk_of = pd.Series((per_month.cumsum() - per_month).to_numpy() // CHUNK_RECEIPTS, index=per_month.index)
    for _, month in r.groupby(r["ym"].map(chunk_of).to_numpy(), sort=True):
        month = month.reset_index(drop=True)
        month["rid"] = np.arange(len(month))
        nl, nf = _write_month(month, month["i"].to_numpy(), cm, p, ins, rng, udir, cond)
        n_lines, n_files = n_lines + nl, n_files + nf
    mdir = out / "uke_masters"
    if mdir.exists():
        shutil.rmtree(mdir)
    shutil.copytree(synthetic_masters_dir(), mdir)
    (out / "uke_person_link.csv").unlink(missing_ok=True)  # written by earlier versions
    write_person_ids(tables, out)
    return (f"  レセプト電算ファイル（uke/）: {n_files:,} ファイル、{n_lines:,} 行、"
            f"レセプト {len(r):,} 件（合成マスター uke_masters/、個人ID対応表 person_ids.csv）")
