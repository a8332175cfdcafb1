"""Municipality master, area roll-ups and boundaries (all offline).

Area hierarchy used everywhere (docs/design.md §2 `hsutils.inputs.regions`): 地区 (district) → 市町村 (muni) →
二次医療圏 (medical_area) → 都道府県 (pref) → 全国 (national). Roll-ups are group-by sums, so every
level equals the sum of its parts.

Built-in master: ``hsutils/data/municipalities_jp.csv`` (derived by ``scripts/build_master.py``):
* 1,741 市区町村 as of 2025-01-01; 政令指定都市 are one row each (``kind == "muni"``); their 171 wards
  are extra rows (``kind == "ward"``, ``parent_code`` = the city), used only when asked for.
* 二次医療圏 = 第8次医療計画 (2024) boundaries, 330 areas, codes of 国土数値情報 A38-20 / 厚生労働省
  R7 構想区域. 秋田県's three areas created in 2024 have no official code: placeholders
  ``05X1`` 県北, ``05X2`` 県央, ``05X3`` 県南 (a letter, so they never collide with an official code).
  川崎市 lies in two areas: the city row is in 川崎北部 (1404, most of its population), its wards
  carry their own area (川崎区・幸区・中原区 = 川崎南部 1405).
* lat/lon = municipal office (Code for FUKUI localgovjp, CC0; 国土地理院・J-LIS);
  population = 総務省 住民基本台帳人口 2025-01-01 (総計).

Boundaries are read from 国土数値情報 行政区域 N03 files (GeoJSON, TopoJSON, zipped shapefile); maps
drawn from them must show ``N03_CREDIT``.

Codes are strings: muni_code 5 digits, pref_code 2 digits ("17"), medical_area_code 4 characters.
"""
from __future__ import annotations

import functools
import hashlib
import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from hsutils.core import files, settings, vocab
from hsutils.inputs import io as hio
from hsutils.core.codes import normalize_insurer_number
from hsutils.core.errors import DataError

MASTER_PATH = settings.PACKAGE_DATA_DIR / "municipalities_jp.csv"
#: Shipped boundaries of all of Japan (国土数値情報 N03, 2021-01-01, simplified to 0.1 % of the
#: vertices, wards of designated cities separate; hsutils/data/PROVENANCE.md). Used by every map
#: unless the user gives a boundary file.
DEFAULT_BOUNDARY_FILE = settings.BOUNDARY_DIR / "japan_municipalities_N03-21_210101_s0001.topojson"
#: Edition of DEFAULT_BOUNDARY_FILE (municipalities created later have no shape in it).
DEFAULT_BOUNDARY_EDITION = "2021年1月1日"

MASTER_COLUMNS = ["muni_code", "name", "pref_code", "pref_name", "medical_area_code", "medical_area",
                  "lat", "lon", "population"]

LEVELS = ("district", "muni", "medical_area", "pref", "national")
LEVEL_LABELS = {"district": "地区", "muni": "市町村", "medical_area": "二次医療圏", "pref": "都道府県",
                "national": "全国"}
# Key columns and name column of each level in `area_levels` / `rollup` frames.
LEVEL_KEYS = {"district": ["muni_code", "district_code"], "muni": ["muni_code"],
              "medical_area": ["medical_area_code"], "pref": ["pref_code"], "national": ["national_code"]}
LEVEL_NAME_COLUMNS = {"district": "district_name", "muni": "muni_name", "medical_area": "medical_area",
                      "pref": "pref_name", "national": "national_name"}
NATIONAL_CODE, NATIONAL_NAME = "00", "全国"

PREF_NAMES = vocab.PREF_NAMES  # JIS X 0401 (hsutils.core.vocab)
PREF_NAME_BY_CODE = vocab.PREF_NAME_BY_CODE

FALLBACK_NOTE = "市町村境界ファイル（国土数値情報 行政区域 N03）を指定すると地図で表示できます"
N03_CREDIT = "出典：国土数値情報（行政区域データ）（国土交通省）を加工して作成"
MASTER_CREDIT = ("市町村マスタ：二次医療圏は国土数値情報（医療圏データ）（国土交通省）・厚生労働省 構想区域、"
                 "人口は総務省「住民基本台帳に基づく人口、人口動態及び世帯数」（令和7年1月1日）を加工して作成")

BOUNDARY_LEVELS = ("muni", "medical_area", "pref")
_CACHE_VERSION = "1"


class RegionCodeError(DataError, ValueError):
    """A code (市町村コード, 保険者番号, 都道府県) cannot be used. Japanese message.

    Subclasses both DataError (CLI prints it without traceback) and ValueError."""


# ---------------------------------------------------------------------------------------------
# Municipality master
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _builtin_master_all() -> pd.DataFrame:
    df = pd.read_csv(MASTER_PATH, comment="#", dtype=str, encoding="utf-8")
    df["lat"] = df["lat"].astype("float64")
    df["lon"] = df["lon"].astype("float64")
    df["population"] = df["population"].astype("Int64")
    df["parent_code"] = df["parent_code"].fillna("")
    return df


def _builtin_master(include_wards: bool = False) -> pd.DataFrame:
    df = _builtin_master_all()
    if not include_wards:
        df = df[df["kind"] == "muni"]
    return df.reset_index(drop=True).copy()


def _pref_code(value) -> str:
    """2-digit prefecture code from 17, '17', '17000', '石川県' or '石川' (`vocab.prefecture_code`)."""
    code = vocab.prefecture_code(value)
    if code is None:
        raise RegionCodeError(f"都道府県「{value}」が分かりません（{vocab.PREF_EXPECTED}）")
    return code


def load_master(pref_code=None, path=None, include_wards: bool = False) -> pd.DataFrame:
    """Municipality master: the built-in one (all of Japan) or a user file, optionally one prefecture.

    Columns: muni_code (str, 5 digits), name, pref_code (str, "17"), pref_name, medical_area_code,
    medical_area, lat, lon (float64), population (Int64); plus ``insurer_number`` when a user file
    has a 保険者番号 column, and ``kind``/``parent_code`` with ``include_wards`` (built-in only).

    A user file is read by `hsutils.inputs.io.read_table` like the 市町村マスタ of a data folder (schema
    MUNICIPALITIES, data_templates/DATA_DICTIONARY.md: Japanese or canonical headers; CSV in
    UTF-8/UTF-8-BOM/cp932, xlsx or Parquet; 6-digit codes must carry a valid check digit), but
    strictly: a row or value the reader would exclude raises DataError naming it. Missing
    lat/lon/population are filled from the built-in master, missing 二次医療圏コード from the built-in
    master when the 二次医療圏 name matches (otherwise the name is used as the code).
    """
    if path is None:
        df = _builtin_master(include_wards)
        cols = MASTER_COLUMNS + (["kind", "parent_code"] if include_wards else [])
        df = df[cols]
    else:
        df = _read_user_master(Path(path))
    if pref_code is not None:
        pc = _pref_code(pref_code)
        df = df[df["pref_code"] == pc].reset_index(drop=True)
        if df.empty:
            where = "同梱の市町村マスタ" if path is None else f"ファイル {path}"
            raise RegionCodeError(f"{where}に都道府県コード {pc}（{PREF_NAME_BY_CODE[pc]}）の市町村がありません")
    return df.reset_index(drop=True)


# Headers of the 国保 保険者番号 column of a user master. hsutils.inputs.io keeps it aside (it is not a
# column of the 市町村マスタ schema: a 保険者番号 is not a 市町村コード, see insurer_to_muni).
_INSURER_HEADERS = ("insurer_number", "保険者番号", "国保保険者番号")


def _norm_header(s) -> str:
    return unicodedata.normalize("NFKC", str(s)).strip().replace(" ", "").lower()


def _read_user_master(path: Path) -> pd.DataFrame:
    """A user 市町村マスタ, read by `hsutils.inputs.io.read_table` (the one reader of input files: encodings,
    title rows, header spellings, 6-digit codes with check digit, plausible ranges), then checked
    strictly: a master is small and every row matters, so any row or value the reader would exclude
    is an error naming the row. Then 都道府県名, the 保険者番号 column and the built-in fills."""
    if not path.exists():
        raise DataError(f"市町村マスタのファイル {path} が見つかりません")
    result = hio.read_table(path, "municipalities")
    if not result.exclusions.empty:
        raise DataError(_exclusion_errors(path, result.exclusions))
    df = result.data.copy()
    rows = pd.Series(result.row_numbers, index=df.index)  # Excel row numbers (header = 1)
    df["pref_code"] = df["pref_code"].map("{:02d}".format).astype(object)
    mismatch = df["pref_code"] != df["muni_code"].str[:2]
    if mismatch.any():
        raise DataError(_row_errors(path, "都道府県コード", df["pref_code"],
                                    pd.Series("が市町村コードの先頭2桁と一致しません", index=df.index), mismatch, rows))
    df["pref_name"] = df["pref_code"].map(PREF_NAME_BY_CODE)

    builtin = _builtin_master(include_wards=True).set_index("muni_code")
    for col in ("lat", "lon", "population"):
        df[col] = df[col].astype("float64").fillna(df["muni_code"].map(builtin[col].astype("float64")))
    df["population"] = df["population"].round().astype("Int64")

    df = _fill_area_columns(df, builtin)
    wanted = {_norm_header(h) for h in _INSURER_HEADERS}
    insurer_col = next((c for c in result.extra_columns.columns if _norm_header(c) in wanted), None)
    if insurer_col is not None:
        ins = result.extra_columns[insurer_col].astype(object).where(lambda v: v.str.strip() != "")
        has = ins.notna()
        norm, errs = {}, {}
        for v in pd.unique(ins[has]):  # a few dozen distinct insurers
            try:
                norm[v] = normalize_insurer_number(v)
            except ValueError as e:
                errs[v] = str(e)
        bad = ins.isin(list(errs))
        if bad.any():
            raise DataError(_row_errors(path, "保険者番号", ins, ins.map(errs), bad, rows))
        df["insurer_number"] = ins.map(norm).astype(object)
    extra = ["insurer_number"] if "insurer_number" in df.columns else []
    for col in ("name", "medical_area", "medical_area_code", "pref_name"):
        df[col] = df[col].astype(str)
    return df[MASTER_COLUMNS + extra].reset_index(drop=True)


def _exclusion_errors(path: Path, exclusions: pd.DataFrame) -> str:
    """Japanese message from the rows and values `hsutils.inputs.io` excluded (at most 10 listed)."""
    head = exclusions.head(10)
    parts = [f"「{c}」列 {r}行目「{v}」（{why}）"
             for c, r, v, why in zip(head["column"], head["row"], head["value"], head["reason"])]
    more = f" ほか{len(exclusions) - len(head)}件" if len(exclusions) > len(head) else ""
    return f"市町村マスタ {path.name}: " + "、".join(parts) + more


def _fill_area_columns(df: pd.DataFrame, builtin: pd.DataFrame) -> pd.DataFrame:
    """Fill a missing 二次医療圏 code from the built-in master (same prefecture and name), else the name."""
    for col in ("medical_area", "medical_area_code"):
        df[col] = df[col].astype(object) if col in df.columns else pd.Series(np.nan, index=df.index, dtype=object)
    ref = builtin[builtin["kind"] == "muni"].drop_duplicates(["pref_code", "medical_area"])
    key = ref["pref_code"] + "|" + ref["medical_area"]
    code_by_name = pd.Series(ref["medical_area_code"].to_numpy(), index=key.to_numpy())
    name_by_code = pd.Series(ref["medical_area"].to_numpy(), index=ref["medical_area_code"].to_numpy())
    df["medical_area_code"] = df["medical_area_code"].fillna((df["pref_code"] + "|" + df["medical_area"]).map(code_by_name))
    df["medical_area_code"] = df["medical_area_code"].fillna(df["medical_area"])
    df["medical_area"] = df["medical_area"].fillna(df["medical_area_code"].map(name_by_code))
    df["medical_area"] = df["medical_area"].fillna(df["medical_area_code"])
    missing = df["medical_area_code"].isna()
    if missing.any():
        raise DataError("市町村マスタ: 二次医療圏が空欄の市町村があります: "
                        + "、".join(df.loc[missing, "muni_code"].head(10)))
    return df


def _row_errors(path: Path, column_ja: str, values: pd.Series, reasons: pd.Series, mask: pd.Series,
                rows: pd.Series) -> str:
    idx = mask[mask].index[:10]
    parts = [f"{rows[i]}行目「{values[i]}」{reasons[i]}" for i in idx]
    more = f" ほか{int(mask.sum()) - len(idx)}件" if mask.sum() > len(idx) else ""
    return f"市町村マスタ {path.name} の「{column_ja}」列: " + "、".join(parts) + more


# ---------------------------------------------------------------------------------------------
# 保険者番号 → 市町村
# ---------------------------------------------------------------------------------------------

def insurer_to_muni(insurer_number, master: pd.DataFrame):
    """市町村コード for a 国保 保険者番号 (scalar -> str; array/Series -> Series of str).

    A 国保 保険者番号 has 6 digits: 2-digit 都道府県番号 + 3-digit 保険者別番号 + 検証番号
    (hsutils.core.codes.insurer_check_digit). For a 市町村国保 it is NOT the 市町村コード (e.g. numbers
    are assigned in the prefecture's own order), so no rule can convert it: the master must have an
    ``insurer_number`` column (「保険者番号」 in the user's 市町村マスタ). Raises RegionCodeError
    (a ValueError) with a Japanese message for a malformed number, a wrong 検証番号, a number not in
    the master, or a master without the column.
    """
    scalar = np.ndim(insurer_number) == 0
    values = pd.Series([insurer_number] if scalar else list(insurer_number))
    if "insurer_number" not in master.columns or master["insurer_number"].isna().all():
        raise RegionCodeError(
            "市町村マスタに「保険者番号」の列がありません。市町村国保の保険者番号は市町村コードとは別の番号のため、"
            "市町村マスタに「保険者番号」列（6桁）を追加してください")
    known = master.dropna(subset=["insurer_number"])
    lookup = pd.Series(known["muni_code"].to_numpy(), index=known["insurer_number"].astype(str).to_numpy())
    result: dict = {}
    for v in pd.unique(values):  # distinct insurer numbers (a few dozen)
        try:
            num = normalize_insurer_number(v)
        except ValueError as e:
            raise RegionCodeError(str(e)) from None
        if num not in lookup.index:
            raise RegionCodeError(f"保険者番号「{num}」が市町村マスタにありません")
        result[v] = lookup[num]
    out = values.map(result)
    if scalar:
        return str(out.iloc[0])
    return pd.Series(out.to_numpy(), index=getattr(insurer_number, "index", None), dtype=object)


# ---------------------------------------------------------------------------------------------
# Roll-ups
# ---------------------------------------------------------------------------------------------

def _as_master(master: pd.DataFrame) -> pd.DataFrame:
    """Canonical string codes for a master from load_master or from hsutils.inputs.io (Int64 pref_code)."""
    m = master.copy()
    if "kind" in m.columns:
        m = m[m["kind"] == "muni"]
    m["muni_code"] = m["muni_code"].astype(str).str.zfill(5)
    if "pref_code" in m.columns:
        pc = pd.to_numeric(m["pref_code"], errors="coerce")
        m["pref_code"] = pc.map(lambda v: f"{int(v):02d}" if pd.notna(v) else None).astype(object)
        m["pref_code"] = m["pref_code"].fillna(m["muni_code"].str[:2])
    else:
        m["pref_code"] = m["muni_code"].str[:2]
    if "pref_name" not in m.columns:
        m["pref_name"] = m["pref_code"].map(PREF_NAME_BY_CODE)
    for a, b in (("medical_area_code", "medical_area"), ("medical_area", "medical_area_code")):
        if a not in m.columns:
            m[a] = m[b] if b in m.columns else np.nan
    m["medical_area_code"] = m["medical_area_code"].fillna(m["medical_area"])
    m["medical_area"] = m["medical_area"].fillna(m["medical_area_code"])
    if m["medical_area_code"].isna().any():
        raise DataError("市町村マスタ: 二次医療圏が空欄の市町村があります: "
                        + "、".join(m.loc[m["medical_area_code"].isna(), "muni_code"].head(10)))
    return m.reset_index(drop=True)


def area_levels(master: pd.DataFrame, districts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mapping frame 地区 → 市町村 → 二次医療圏 → 都道府県 → 全国 (docs/design.md §2), codes and names.

    Columns: district_code, district_name, muni_code, muni_name, medical_area_code, medical_area,
    pref_code, pref_name, national_code ("00"), national_name ("全国"). One row per district (地区マスタ:
    muni_code, district_code, name); a municipality without districts has one row with
    district_code "" (the strata convention: "" where there is no district).
    """
    m = _as_master(master)
    munis = pd.DataFrame({
        "muni_code": m["muni_code"], "muni_name": m["name"].astype(str),
        "medical_area_code": m["medical_area_code"].astype(str), "medical_area": m["medical_area"].astype(str),
        "pref_code": m["pref_code"].astype(str), "pref_name": m["pref_name"].astype(str),
        "national_code": NATIONAL_CODE, "national_name": NATIONAL_NAME})
    if districts is None or len(districts) == 0:
        d = pd.DataFrame({"muni_code": pd.Series(dtype=str), "district_code": pd.Series(dtype=str),
                          "district_name": pd.Series(dtype=str)})
    else:
        d = pd.DataFrame({"muni_code": districts["muni_code"].astype(str).str.zfill(5),
                          "district_code": districts["district_code"].astype(str),
                          "district_name": districts["name"].astype(str)})
        unknown = ~d["muni_code"].isin(munis["muni_code"])
        if unknown.any():
            raise DataError("地区マスタの市町村コードが市町村マスタにありません: "
                            + "、".join(pd.unique(d.loc[unknown, "muni_code"])[:10]))
    without = munis.loc[~munis["muni_code"].isin(d["muni_code"]), ["muni_code"]].assign(
        district_code="", district_name="")
    d = pd.concat([d, without], ignore_index=True)
    out = d.merge(munis, on="muni_code", how="left")
    cols = ["district_code", "district_name"] + [c for c in munis.columns]
    return out[cols].sort_values(["muni_code", "district_code"]).reset_index(drop=True)


def _check_level(level: str) -> int:
    if level not in LEVELS:
        raise ValueError(f"集計単位「{level}」は使えません（{', '.join(LEVELS)} のいずれか）")
    return LEVELS.index(level)


def rollup(df: pd.DataFrame, from_level: str, to_level: str, value_cols, master: pd.DataFrame,
           by=None, districts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sum ``value_cols`` from one area level to a coarser one (groupby-sum; docs/design.md §2, internal API:
    "Roll-ups are group-by sums").

    ``df`` must carry the key columns of ``from_level`` (LEVEL_KEYS; district: muni_code +
    district_code, "" = no district). ``by`` = further grouping columns kept as they are (fy, sex,
    age_band, indicator_id ...). Result columns: by + to-level keys + to-level name + value_cols.
    An area code not in the master raises DataError (nothing is silently dropped). A group whose
    values are all missing sums to NaN.
    """
    i_from, i_to = _check_level(from_level), _check_level(to_level)
    if i_to < i_from:
        raise ValueError(f"{LEVEL_LABELS[from_level]}から細かい{LEVEL_LABELS[to_level]}へは集計できません")
    value_cols = [value_cols] if isinstance(value_cols, str) else list(value_cols)
    by = [] if by is None else ([by] if isinstance(by, str) else list(by))
    from_keys, to_keys = LEVEL_KEYS[from_level], LEVEL_KEYS[to_level]
    to_name = LEVEL_NAME_COLUMNS[to_level]
    missing = [c for c in from_keys + value_cols + by if c not in df.columns and c != "national_code"]
    if missing:
        raise DataError(f"集計表に列 {', '.join(missing)} がありません")

    levels = area_levels(master, districts)
    if "district_code" in from_keys:  # rows without a district ("") map to their municipality
        extra = levels.drop_duplicates("muni_code").assign(district_code="", district_name="")
        levels = pd.concat([levels, extra], ignore_index=True).drop_duplicates(["muni_code", "district_code"])
    mapping = levels[list(dict.fromkeys(from_keys + to_keys + [to_name]))].drop_duplicates(from_keys)

    work = df[list(dict.fromkeys(by + [k for k in from_keys if k in df.columns] + value_cols))].copy()
    if from_level == "national":
        work["national_code"] = NATIONAL_CODE
    work = _normalise_keys(work, from_keys)
    merged = work.merge(mapping, on=from_keys, how="left", validate="many_to_one", suffixes=("_in", ""))
    unmatched = merged[to_name].isna()
    if unmatched.any():
        shown = merged.loc[unmatched, from_keys[0]].astype(str)
        for k in from_keys[1:]:
            shown = shown + "-" + merged.loc[unmatched, k].astype(str)
        bad = shown.unique()[:10]
        raise DataError(f"{LEVEL_LABELS[from_level]}コードがマスタにありません: " + "、".join(bad))
    keys = list(dict.fromkeys(by + to_keys + [to_name]))
    out = merged.groupby(keys, sort=True, dropna=False)[value_cols].sum(min_count=1).reset_index()
    return out


def _normalise_keys(work: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if "muni_code" in keys:
        work["muni_code"] = work["muni_code"].astype(str).str.zfill(5)
    if "district_code" in keys:
        work["district_code"] = work["district_code"].fillna("").astype(str)
    if "pref_code" in keys:
        pc = pd.to_numeric(work["pref_code"], errors="coerce")
        work["pref_code"] = pc.map(lambda v: f"{int(v):02d}" if pd.notna(v) else "").astype(str)
    if "medical_area_code" in keys:
        work["medical_area_code"] = work["medical_area_code"].astype(str)
    return work


# ---------------------------------------------------------------------------------------------
# Boundaries
# ---------------------------------------------------------------------------------------------

def _polygonal(geom):
    """Polygon/MultiPolygon part of a geometry (repairs invalid rings); None when nothing is left."""
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    if not polys:
        return None
    return shapely.union_all(polys)


def _decode_topojson_arcs(topology: dict) -> list[np.ndarray]:
    """Absolute lon/lat arcs: quantized arcs are delta-encoded, position = cumsum × scale + translate."""
    tr = topology.get("transform")
    scale = np.asarray(tr["scale"], dtype=float) if tr else None
    translate = np.asarray(tr["translate"], dtype=float) if tr else None
    arcs = []
    for arc in topology["arcs"]:  # a few thousand arcs
        a = np.asarray(arc, dtype=float).reshape(-1, len(arc[0]) if arc else 2)[:, :2]
        if tr:
            a = np.cumsum(a, axis=0) * scale + translate
        arcs.append(a)
    return arcs


def _topojson_ring(indices, arcs: list[np.ndarray]) -> np.ndarray:
    """Join arcs into a ring; a negative index ~i is arc i reversed; shared end points appear once."""
    parts = []
    for k, i in enumerate(indices):
        a = arcs[i] if i >= 0 else arcs[~i][::-1]
        parts.append(a if k == 0 else a[1:])
    return np.concatenate(parts) if parts else np.empty((0, 2))


def _topojson_polygon(rings, arcs):
    coords = [_topojson_ring(r, arcs) for r in rings]
    coords = [c for c in coords if len(c) >= 4]
    if not coords:
        return None
    return Polygon(coords[0], coords[1:])


def _topojson_geometry(geom: dict, arcs: list[np.ndarray]):
    """shapely geometry of one TopoJSON geometry object (Polygon, MultiPolygon, GeometryCollection)."""
    kind = geom.get("type")
    if kind == "Polygon":
        return _polygonal(_topojson_polygon(geom["arcs"], arcs))
    if kind == "MultiPolygon":
        polys = [p for p in (_topojson_polygon(r, arcs) for r in geom["arcs"]) if p is not None]
        return _polygonal(MultiPolygon(polys)) if polys else None
    if kind == "GeometryCollection":
        parts = [g for g in (_topojson_geometry(x, arcs) for x in geom.get("geometries", [])) if g is not None]
        return _polygonal(shapely.union_all(parts)) if parts else None
    return None  # null geometry (islands lost to simplification), points, lines


def _read_topojson(topology: dict) -> list[tuple[dict, object]]:
    arcs = _decode_topojson_arcs(topology)
    out = []
    for obj in topology["objects"].values():
        members = obj.get("geometries", [obj]) if obj.get("type") == "GeometryCollection" else [obj]
        for g in members:  # one per N03 feature (≈2,000 nationwide)
            out.append((g.get("properties") or {}, _topojson_geometry(g, arcs)))
    return out


def _read_geojson(data: dict) -> list[tuple[dict, object]]:
    feats = data["features"] if data.get("type") == "FeatureCollection" else [data]
    return [(f.get("properties") or {}, _polygonal(shape(f["geometry"])) if f.get("geometry") else None)
            for f in feats]


def _read_shapefile(path: Path) -> list[tuple[dict, object]]:
    import shapefile  # pyshp

    for enc in ("utf-8", "cp932"):  # N03 up to 2016 is Shift_JIS, later editions UTF-8
        try:
            with shapefile.Reader(str(path), encoding=enc) as sr:
                out = []
                for sr_rec in sr.iterShapeRecords():
                    gi = sr_rec.shape.__geo_interface__ if sr_rec.shape.shapeType != shapefile.NULL else None
                    geom = _polygonal(shape(gi)) if gi and gi.get("coordinates") else None
                    out.append((sr_rec.record.as_dict(), geom))
                return out
        except UnicodeDecodeError:
            continue
    raise DataError(f"境界ファイル {path.name} の属性の文字コードを読めません")


def _read_features(path: Path) -> pd.DataFrame:
    """N03 features as (code, n03_name, geometry); features without N03_007 (所属未定地) dropped."""
    suffix = path.suffix.lower()
    if suffix in (".zip", ".shp"):
        feats = _read_shapefile(path)
    else:
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"境界ファイル {path.name} を GeoJSON/TopoJSON として読めません（{e}）") from None
        if data.get("type") == "Topology":
            feats = _read_topojson(data)
        elif data.get("type") in ("FeatureCollection", "Feature"):
            feats = _read_geojson(data)
        else:
            raise DataError(f"境界ファイル {path.name} は GeoJSON でも TopoJSON でもありません")
    rows = []
    for props, geom in feats:
        code = props.get("N03_007") or props.get("code") or props.get("muni_code")
        if code is None or geom is None:
            continue
        name = props.get("N03_004") or props.get("N03_003") or props.get("name") or ""
        rows.append((str(code).strip().zfill(5)[:5], str(name), geom))
    if not rows:
        raise DataError(f"境界ファイル {path.name} に行政区域コード（N03_007）付きの図形がありません")
    return pd.DataFrame(rows, columns=["code", "n03_name", "geometry"])


def designated_city_of(codes, master: pd.DataFrame | None = None) -> pd.Series:
    """City code for designated-city ward codes; other codes unchanged.

    Rule: a code that is not a municipality of the master is a ward of the designated city of the
    same prefecture with the largest city code below it, if that city is less than 50 codes away
    (e.g. 大阪市 27100 ← 27102…27128, 堺市 27140 ← 27141…27147, 浜松市 22130 ← old 22131…22137 and
    new 22138…22140). "Same first 4 digits" does not work: 大阪市北区 is 27127 (city 27100).
    The designated cities are the built-in master's cities that have wards.
    """
    builtin = _builtin_master_all()
    cities = sorted(set(builtin.loc[builtin["kind"] == "ward", "parent_code"]))
    known = set(builtin.loc[builtin["kind"] == "muni", "muni_code"])
    if master is not None:
        known |= set(_as_master(master)["muni_code"])
    s = pd.Series(codes).astype(str)
    mapping = {}
    for c in pd.unique(s):  # distinct codes (≤ ~2,000)
        mapping[c] = c
        if c in known:
            continue
        cand = [x for x in cities if x[:2] == c[:2] and x < c and int(c) - int(x) < 50]
        if cand:
            mapping[c] = max(cand)
    return s.map(mapping)


def _master_hash(master: pd.DataFrame) -> str:
    cols = [c for c in ("muni_code", "name", "medical_area_code", "medical_area", "kind", "parent_code")
            if c in master.columns]
    return hashlib.sha256(master[cols].astype(str).to_csv(index=False).encode()).hexdigest()[:12]


def load_boundaries(path, level: str = "muni", master: pd.DataFrame | None = None,
                    simplify_tolerance: float | None = None, cache_dir=None) -> pd.DataFrame:
    """Boundaries from a 国土数値情報 行政区域 N03 file → DataFrame(code, name, geometry).

    ``path``: GeoJSON, TopoJSON or zipped shapefile (.zip; a .shp is read too). Features (many per
    municipality: islands, wards) are dissolved by N03_007: ward codes go to their designated city
    (``designated_city_of``); ``level="medical_area"`` dissolves municipalities into 二次医療圏 of the
    master (a ward with its own area in the built-in master, e.g. 川崎市's, keeps it); ``"pref"`` into
    prefectures. Only codes of the master are kept (default: the built-in master, all of Japan).
    Geometries are shapely Polygon/MultiPolygon in lon/lat. ``simplify_tolerance`` (degrees, e.g.
    0.002) simplifies each shape with topology preserved (per shape: neighbours may show thin
    gaps). ``cache_dir`` caches the result as WKB Parquet keyed by file hash, level, tolerance and
    master. Maps must show ``N03_CREDIT``.
    """
    if level not in BOUNDARY_LEVELS:
        raise ValueError(f"境界の単位「{level}」は使えません（{', '.join(BOUNDARY_LEVELS)} のいずれか）")
    path = _existing_boundary_file(path)
    m_all = _builtin_master(include_wards=True) if master is None else master
    cache_file = None
    if cache_dir is not None:
        key = f"{files.sha256_file(path)[:20]}_{level}_{simplify_tolerance}_{_master_hash(m_all)}_v{_CACHE_VERSION}"
        cache_file = Path(cache_dir) / f"boundaries_{hashlib.sha256(key.encode()).hexdigest()[:24]}.parquet"
        if cache_file.exists():
            cached = pd.read_parquet(cache_file)
            return pd.DataFrame({"code": cached["code"].astype(str), "name": cached["name"].astype(str),
                                 "geometry": list(shapely.from_wkb(cached["geometry"].to_numpy()))})

    out = _boundaries_of(_read_features(path), level, m_all, simplify_tolerance)
    if cache_file is not None:
        _write_cache(out, cache_file)
    return out


def _existing_boundary_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"境界ファイル {path} が見つかりません")
    return path


def _boundaries_of(feats: pd.DataFrame, level: str, m_all: pd.DataFrame,
                   simplify_tolerance: float | None = None) -> pd.DataFrame:
    """`load_boundaries` of features already read (`_read_features`; not changed)."""
    m = _as_master(m_all)
    feats = feats.assign(muni_code=designated_city_of(feats["code"], m).to_numpy())
    feats = feats[feats["muni_code"].isin(m["muni_code"])]
    if level == "muni":
        feats["key"] = feats["muni_code"]
        names = m.set_index("muni_code")["name"]
    elif level == "medical_area":
        area = m.set_index("muni_code")["medical_area_code"]
        feats["key"] = feats["muni_code"].map(area)
        named = m[["medical_area_code", "medical_area"]]
        if "kind" in m_all.columns:  # wards with their own area (川崎市) keep it
            wards = m_all[m_all["kind"] == "ward"]
            ward_area = wards.set_index("muni_code")["medical_area_code"]
            feats["key"] = feats["code"].map(ward_area).fillna(feats["key"])
            named = pd.concat([named, wards[["medical_area_code", "medical_area"]]])
        names = named.drop_duplicates("medical_area_code").set_index("medical_area_code")["medical_area"]
    else:
        feats["key"] = feats["muni_code"].str[:2]
        names = pd.Series(PREF_NAME_BY_CODE)
    out = _dissolve(feats["key"], feats["geometry"])
    out["name"] = out["code"].map(names).astype(str)
    if simplify_tolerance:
        out["geometry"] = list(shapely.simplify(np.array(out["geometry"].tolist(), dtype=object),
                                                simplify_tolerance, preserve_topology=True))
    out = out[["code", "name", "geometry"]].sort_values("code").reset_index(drop=True)
    out["code"] = out["code"].astype(str)
    return out


def _dissolve(keys: pd.Series, geoms: pd.Series) -> pd.DataFrame:
    """Union of the geometries sharing a key (loop over areas, not persons)."""
    codes, shapes = [], []
    for key, idx in keys.groupby(keys, sort=True).groups.items():
        parts = geoms.loc[idx].tolist()
        g = parts[0] if len(parts) == 1 else shapely.union_all(parts)
        codes.append(str(key))
        shapes.append(_polygonal(g))
    return pd.DataFrame({"code": codes, "geometry": shapes})


def _write_cache(out: pd.DataFrame, cache_file: Path) -> None:
    frame = pd.DataFrame({"code": out["code"], "name": out["name"],
                          "geometry": list(shapely.to_wkb(np.array(out["geometry"].tolist(), dtype=object)))})
    with files.atomic_path(cache_file) as tmp:  # a failed run leaves no half-written cache
        frame.to_parquet(tmp, index=False)


#: File types of a user's boundary file (`load_boundaries` reads them all).
BOUNDARY_SUFFIXES = (".geojson", ".topojson", ".zip", ".shp", ".json")


def find_boundary_file(data_dir=None) -> Path | None:
    """A user's boundary file (N03 .geojson/.topojson/.json/.zip/.shp) in `data_dir` or its
    `boundaries/` sub-folder, the first by name (folder first); None when there is none."""
    if not data_dir:
        return None
    for folder in (Path(data_dir), Path(data_dir) / "boundaries"):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BOUNDARY_SUFFIXES)
            if found:
                return found[0]
    return None


def resolve_boundary_file(boundary_file=None, data_dir=None) -> Path:
    """The boundary file a map uses: `boundary_file` when given, else one in `data_dir`
    (`find_boundary_file`), else the nationwide file shipped with the package
    (`DEFAULT_BOUNDARY_FILE`), so every prefecture gets a real map offline."""
    if boundary_file:
        return Path(boundary_file)
    return find_boundary_file(data_dir) or DEFAULT_BOUNDARY_FILE


def _missing_boundary_note(path: Path, missing: list[str], master: pd.DataFrame) -> str:
    """Why the tile map is drawn: which municipalities the boundary file lacks (Japanese)."""
    m = _as_master(master)
    names = pd.Series(m["name"].astype(str).to_numpy(), index=m["muni_code"].to_numpy())
    shown = "、".join(f"{names.get(c, c)}（{c}）" for c in missing[:5]) + (" ほか" if len(missing) > 5 else "")
    where = (f"同梱の境界データ（国土数値情報 行政区域、{DEFAULT_BOUNDARY_EDITION}時点）"
             if Path(path) == DEFAULT_BOUNDARY_FILE else f"境界ファイル {Path(path).name}")
    return (f"{where}に {shown} の境界がないため、市町村を同じ大きさのタイルで表示しています"
            "（その市町村を含む境界ファイルを指定すると地図で表示できます）")


#: Radius (degrees) of the circle drawn at the office of a municipality whose shape the simplified
#: shipped file lost (tiny islands such as 利島村, 青ヶ島村): visible at prefecture scale.
MARKER_RADIUS = 0.015


def _office_markers(master: pd.DataFrame, codes: list[str]) -> pd.DataFrame:
    """Circles at the office position (master lat/lon) of `codes` known to the built-in master →
    DataFrame(code, name, medical_area_code, geometry); codes without a position are left out."""
    m = _as_master(master)
    known = set(_builtin_master()["muni_code"])
    m = m[m["muni_code"].isin(codes) & m["muni_code"].isin(known)
          & pd.to_numeric(m["lat"], errors="coerce").notna() & pd.to_numeric(m["lon"], errors="coerce").notna()]
    points = shapely.points(m["lon"].astype(float).to_numpy(), m["lat"].astype(float).to_numpy())
    return pd.DataFrame({"code": m["muni_code"].to_numpy(), "name": m["name"].astype(str).to_numpy(),
                         "medical_area_code": m["medical_area_code"].astype(str).to_numpy(),
                         "geometry": list(shapely.buffer(points, MARKER_RADIUS))})


def boundary_layers(master: pd.DataFrame, boundary_file=None, data_dir=None) -> dict:
    """Shapes for the maps of one area (municipalities and 二次医療圏), never failing.

    Returns {"muni": DataFrame|None, "medical_area": DataFrame|None, "tiles": DataFrame,
    "source": Path|None, "note": Japanese note}. The boundaries come from the user's file
    (`boundary_file`, or one in `data_dir`), else from the shipped nationwide N03 file; 二次医療圏
    are dissolved from the municipalities via the master. With the shipped file, the few
    municipalities whose shape its 0.1 % simplification lost (9 of 1,741, e.g. 利島村) are drawn as
    a small circle at their office and the note says so. When a municipality still has no shape
    (one created after the boundary edition, a user file that lacks it, an unreadable file) the
    whole map is the tile grid (`tiles`, tile_grid_layout) and the note says why. Maps drawn from
    boundaries must show ``N03_CREDIT`` and a non-empty note.
    """
    path = resolve_boundary_file(boundary_file, data_dir)
    layers = {"muni": None, "medical_area": None, "tiles": tile_grid_layout(master),
              "source": None, "note": FALLBACK_NOTE}
    try:
        feats = _read_features(_existing_boundary_file(path))  # once for both layers (about 0.4 s: the shipped file)
        muni = _boundaries_of(feats, "muni", master)
        areas = _boundaries_of(feats, "medical_area", master)
        missing = sorted(set(_as_master(master)["muni_code"]) - set(muni["code"]))
        note = ""
        if missing and path == DEFAULT_BOUNDARY_FILE:
            markers = _office_markers(master, missing)
            if len(markers):
                muni, areas = _with_markers(muni, areas, markers)
                missing = sorted(set(missing) - set(markers["code"]))
                note = ("○ " + "・".join(markers["name"]) + "は境界データの簡略化で形が残らないため、"
                        "役場の位置に小さな円で表示")
        if missing:
            layers["note"] = _missing_boundary_note(path, missing, master)
            return layers
        layers.update(muni=muni, medical_area=areas, source=path, note=note)
    except Exception as e:  # noqa: BLE001 - a map must never stop a notebook: tiles instead
        layers["note"] = f"境界ファイル {Path(path).name} を読めないため、タイル表示にしました（{e}）"
    return layers


def boundary_footer(layers: dict) -> str:
    """What a map's footer adds for `boundary_layers`: " ｜ " + the 国土数値情報 credit (and the
    marker note) when boundaries are drawn; "" for a tile map (its note is shown instead)."""
    if layers.get("muni") is None:
        return ""
    return f" ｜ {N03_CREDIT}" + (f" ｜ {layers['note']}" if layers.get("note") else "")


def _with_markers(muni: pd.DataFrame, areas: pd.DataFrame, markers: pd.DataFrame):
    """Municipality and 二次医療圏 layers with the marker circles added (areas: union into their area)."""
    muni = pd.concat([muni, markers[["code", "name", "geometry"]]], ignore_index=True)
    muni = muni.sort_values("code").reset_index(drop=True)
    areas = areas.copy()
    for code, group in markers.groupby("medical_area_code"):  # a handful of markers
        parts = group["geometry"].tolist()
        hit = areas["code"] == code
        if hit.any():
            i = areas.index[hit][0]
            areas.at[i, "geometry"] = _polygonal(shapely.union_all([areas.at[i, "geometry"], *parts]))
    return muni, areas


def prefecture_shapes(rough: bool = False) -> pd.DataFrame:
    """Outline of the 47 prefectures (offline, from the `japanmap` package) → DataFrame(code, name, geometry).

    code "01".."47". japanmap stores one ring per prefecture: the main area containing the 県庁
    (outlying islands such as 伊豆・小笠原諸島 or 先島諸島 are not included), in real lon/lat
    (北海道 and 沖縄 are not moved). Good enough for a small prefecture map; for municipal maps use
    ``load_boundaries``. ``rough=True`` uses japanmap's coarser outline.
    """
    import japanmap

    points = japanmap.pref_points(japanmap.get_data(rough=rough))
    geoms = [_polygonal(Polygon(p)) for p in points]
    codes = [f"{i:02d}" for i in range(1, len(points) + 1)]
    return pd.DataFrame({"code": codes, "name": [PREF_NAME_BY_CODE[c] for c in codes], "geometry": geoms})


# ---------------------------------------------------------------------------------------------
# Tile-grid fallback
# ---------------------------------------------------------------------------------------------

def tile_grid_layout(master: pd.DataFrame, ncols: int | None = None) -> pd.DataFrame:
    """Place municipalities on a grid that keeps rough geography (fallback when no boundary file).

    Deterministic: x = lon × cos(mean lat), y = lat are scaled to a grid of ``ncols`` columns
    (default ≈ √(1.6·n) adjusted to the area's aspect ratio) and enough rows for 1.6 cells per
    municipality; municipalities are placed in order of population (largest first, then code) on
    their own cell or, if taken, on the nearest free cell (Euclidean distance to the exact position;
    ties: smaller row, then smaller column). Municipalities without lat/lon take the prefecture's
    mean position. Returns DataFrame(code, name, col, row), row 0 = north (top of the map).
    Show ``FALLBACK_NOTE`` next to a tile map.
    """
    m = _as_master(master)
    lat = pd.to_numeric(m.get("lat"), errors="coerce") if "lat" in m.columns else pd.Series(np.nan, index=m.index)
    lon = pd.to_numeric(m.get("lon"), errors="coerce") if "lon" in m.columns else pd.Series(np.nan, index=m.index)
    lat = lat.fillna(lat.groupby(m["pref_code"]).transform("mean")).fillna(lat.mean()).fillna(0.0)
    lon = lon.fillna(lon.groupby(m["pref_code"]).transform("mean")).fillna(lon.mean()).fillna(0.0)
    n = len(m)
    if n == 0:
        return pd.DataFrame({"code": pd.Series(dtype=str), "name": pd.Series(dtype=str),
                             "col": pd.Series(dtype="int64"), "row": pd.Series(dtype="int64")})
    x = lon.to_numpy() * np.cos(np.radians(lat.mean()))
    y = lat.to_numpy()
    w, h = max(np.ptp(x), 1e-9), max(np.ptp(y), 1e-9)
    cells = 1.6 * n
    if ncols is None:
        ncols = int(np.clip(round(np.sqrt(cells * w / h)), 1, max(n, 1)))
    nrows = max(int(np.ceil(cells / ncols)), 1)
    while ncols * nrows < n:
        nrows += 1
    fx = (x - x.min()) / w * (ncols - 1)
    fy = (y.max() - y) / h * (nrows - 1)
    grid_r, grid_c = np.divmod(np.arange(ncols * nrows), ncols)
    free = np.ones(ncols * nrows, dtype=bool)
    pop = pd.to_numeric(m["population"], errors="coerce").fillna(0).to_numpy() if "population" in m.columns \
        else np.zeros(n)
    order = np.lexsort((m["muni_code"].to_numpy(), -pop))
    col = np.empty(n, dtype="int64")
    row = np.empty(n, dtype="int64")
    for i in order:  # one placement per municipality (≤ 1,741), vectorised over cells
        d2 = (grid_c - fx[i]) ** 2 + (grid_r - fy[i]) ** 2
        d2 = np.where(free, d2, np.inf)
        best = int(np.argmin(d2))  # argmin takes the first minimum: smaller row, then column
        free[best] = False
        row[i], col[i] = grid_r[best], grid_c[best]
    return pd.DataFrame({"code": m["muni_code"].astype(str), "name": m["name"].astype(str),
                         "col": col, "row": row})
