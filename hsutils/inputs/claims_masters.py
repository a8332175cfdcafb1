"""Readers for the レセプト電算処理システム code masters the user downloads (傷病名, 医薬品, 診療行為).

Layouts: 「レセプト電算処理システム マスターファイル仕様説明書」令和4年4月 (社会保険診療報酬支払基金),
see docs/claims_rules.md §3. Every field is quoted ("…"), comma separated, Shift_JIS. Only the
columns used are read (0-based index):

* 傷病名マスター (``b.csv``, マスター種別 B): 2 傷病名コード, 5 基本名称, 13 ICD-10-1,
  15 ICD-10-1 (2013) — the 2013 code is used when present;
* 医薬品マスター (``y.csv``, Y): 2 医薬品コード, 4 漢字名称, 27 剤形 (1 内用, 3 その他, 4 注射, 6 外用,
  8 歯科用), 31 薬価基準収載医薬品コード (its first 3 digits are the 薬効分類, its first 7 the 成分);
* 診療行為マスター (``s.csv``, S): 2 診療行為コード, 4 省略漢字名称.

The package ships tiny *synthetic* masters in the same layouts (``hsutils/data/uke_masters_synthetic``,
codes 999xxxx / 699xxxxxx / 199xxxxxx that are not in the real masters) for tests and the demo.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from hsutils.core.errors import DataError

# (file stem candidates, マスター種別, {column: index}, minimum number of fields)
LAYOUTS = {
    "disease": (("b", "傷病名マスター", "傷病名"), "B", {"code": 2, "name": 5, "icd10_1": 13, "icd10_2013": 15}, 16),
    "drug": (("y", "医薬品マスター", "医薬品"), "Y", {"code": 2, "name": 4, "form": 27, "yj": 31}, 32),
    "procedure": (("s", "診療行為マスター", "診療行為"), "S", {"code": 2, "name": 4}, 5),
}
LABELS = {"disease": "傷病名マスター", "drug": "医薬品マスター", "procedure": "診療行為マスター"}
CODE_WIDTH = {"disease": 7, "drug": 9, "procedure": 9}


@dataclass
class Masters:
    disease: pd.DataFrame    # code, name, icd10
    drug: pd.DataFrame       # code, name, form, yj, efficacy, ingredient
    procedure: pd.DataFrame  # code, name
    source: str = ""


def synthetic_masters_dir() -> Path:
    return Path(str(resources.files("hsutils") / "data" / "uke_masters_synthetic"))


def read_master(path, which: str) -> pd.DataFrame:
    """Read one master file in its published layout; Japanese DataError when it is not one."""
    path = Path(path)
    _, kind, cols, min_fields = LAYOUTS[which]
    label = LABELS[which]
    try:
        raw = pd.read_csv(path, header=None, dtype=str, encoding="cp932", keep_default_na=False)
    except UnicodeDecodeError:
        raw = pd.read_csv(path, header=None, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    except (pd.errors.ParserError, OSError) as e:
        raise DataError(f"{path.name}: {label}として読めません（{e}）。支払基金のマスターファイル（CSV）を"
                        "そのまま置いてください") from e
    if raw.shape[1] < min_fields:
        raise DataError(f"{path.name}: {label}の項目数が {raw.shape[1]} です（{min_fields} 以上のはず）。"
                        "支払基金のマスターファイル仕様の形式か確認してください")
    wrong = raw[1].str.strip() != kind
    if wrong.any():
        i = int(wrong.to_numpy().argmax())
        raise DataError(f"{path.name} {i + 1} 行目: マスター種別が「{raw.iloc[i, 1]}」です（{label}は「{kind}」）")
    out = pd.DataFrame({c: raw[i].str.strip() for c, i in cols.items()})
    bad = ~out["code"].str.fullmatch(r"\d{%d}" % CODE_WIDTH[which])
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise DataError(f"{path.name} {i + 1} 行目: コード「{out['code'].iloc[i]}」が"
                        f"{CODE_WIDTH[which]}桁の数字ではありません")
    out = out.drop_duplicates("code", keep="last")
    if which == "disease":
        icd = out["icd10_2013"].where(out["icd10_2013"] != "", out["icd10_1"])
        out = pd.DataFrame({"code": out["code"], "name": out["name"],
                            "icd10": icd.str.upper().str.replace(".", "", regex=False)})
    elif which == "drug":
        out["form"] = pd.to_numeric(out["form"], errors="coerce").fillna(0).astype("int64")
        out["efficacy"] = out["yj"].str.slice(0, 3)
        out["ingredient"] = out["yj"].str.slice(0, 7)
    return out.reset_index(drop=True)


def _find(folder: Path, which: str) -> Path | None:
    stems = LAYOUTS[which][0]
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".txt"))
    for stem in stems:
        for p in files:
            name = p.stem.lower()
            if name == stem or (len(stem) > 1 and stem in p.stem):
                return p
    return None


def load_masters(folder=None) -> Masters:
    """Masters from the user's folder (b.csv / y.csv / s.csv, or names containing 傷病名・医薬品・
    診療行為); without a folder, the shipped synthetic masters."""
    folder = Path(folder) if folder is not None else synthetic_masters_dir()
    if not folder.is_dir():
        raise DataError(f"マスターのフォルダ {folder} が見つかりません")
    found = {}
    for which in LAYOUTS:
        p = _find(folder, which)
        if p is None:
            raise DataError(f"{folder}: {LABELS[which]}がありません（ファイル名の例: "
                            f"{LAYOUTS[which][0][0]}.csv）")
        found[which] = read_master(p, which)
    return Masters(disease=found["disease"], drug=found["drug"], procedure=found["procedure"], source=str(folder))
