"""UKE files in a data folder → the canonical claims tables (used by `hsutils.io.load_dataset`
and `hsutils check`).

Folder conventions (docs/claims_rules.md §7):

* ``*.UKE`` files directly in the data folder or in its ``uke/`` sub-folder (any number, any months;
  several institutions' files may be concatenated);
* ``uke_masters/`` — the user's current 傷病名・医薬品・診療行為 masters (b.csv, y.csv, s.csv as
  downloaded from 支払基金); required when UKE files are present;
* ``person_ids.csv`` (個人ID対応表, optional, shared with the 特定健診 XML reader) — 保険者番号, 記号,
  番号, 枝番 → person_id; the older ``uke_person_link.csv`` (same columns, 枝番 optional) is read
  when it is absent; without either the person key is 保険者番号-記号-番号-枝番 (one rule with the
  XML reader: `hsutils.person_keys`, docs/formats/person_key.md §1);
* ``claims_rules.yaml`` (optional) — the user's copy of the rules; else the shipped defaults.

The files are parsed together and cached as Parquet under ``cache_dir`` keyed by the sha256 of
every file (a second load parses nothing).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hsutils import claims_masters, claims_rules, person_keys, uke
from hsutils.errors import DataError

READER_VERSION = "uke-1"
MASTERS_DIR = "uke_masters"
LINK_FILE = "uke_person_link.csv"
RULES_FILE = "claims_rules.yaml"
_PARTS = ("receipts", "diagnoses", "procedures", "drugs", "exclusions")


@dataclass
class ClaimsLoad:
    tables: dict
    exclusions: pd.DataFrame
    counts: dict
    report: dict
    files: list


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(READER_VERSION.encode())
    return h.hexdigest()[:32]


def read_files(paths, cache_dir=None) -> uke.UkeTables:
    """Read UKE files in one pass (one assembly, unique receipt ids), cached as Parquet under
    ``cache_dir/uke`` keyed by the sha256 of every file's bytes and name (docs/claims_rules.md §7)."""
    paths = sorted(Path(p) for p in paths)
    if cache_dir is None:
        return uke.read_uke(paths)
    h = hashlib.sha256(READER_VERSION.encode())
    for p in paths:
        h.update(p.name.encode("utf-8") + b"\0" + _sha(p).encode())
    stem = Path(cache_dir) / "uke" / h.hexdigest()[:32]
    meta = Path(f"{stem}.meta.json")
    if meta.exists():
        try:
            parts = {p: pd.read_parquet(f"{stem}.{p}.parquet") for p in _PARTS}
            return uke.UkeTables(**parts, counts=json.loads(meta.read_text(encoding="utf-8")))
        except Exception:  # a damaged cache entry is rebuilt
            pass
    t = uke.read_uke(paths)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for p in _PARTS:
        tmp = Path(f"{stem}.{p}.parquet.tmp{os.getpid()}")
        getattr(t, p).to_parquet(tmp, index=False)
        os.replace(tmp, f"{stem}.{p}.parquet")
    tmp = meta.with_name(meta.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(t.counts), encoding="utf-8")
    os.replace(tmp, meta)  # meta last: its presence marks a complete entry
    return t


def read_link(folder: Path):
    """How receipts get their person_id (docs/formats/person_key.md §1): the 個人ID対応表 shared
    with the XML reader (``person_ids.csv``), else the older ``uke_person_link.csv`` (same
    columns, 枝番 optional), else a salt file (pseudonyms), else None (the person key itself)."""
    path = person_keys.find_file(folder, person_keys.PERSON_ID_FILES + (LINK_FILE,))
    if path is not None:
        return person_keys.read_person_ids(path)
    return person_keys.find_file(folder, person_keys.SALT_FILES)


def drug_names(folder) -> pd.Series:
    """医薬品コード → 漢字名称 from the 医薬品マスター in the data folder's ``uke_masters/`` (the one
    the receipts were read with); empty when the folder has no masters (CSV claims)."""
    mdir = Path(folder) / MASTERS_DIR
    if not mdir.is_dir():
        return pd.Series(dtype=str)
    drug = claims_masters.load_masters(mdir).drug
    return pd.Series(drug["name"].to_numpy(), index=drug["code"].to_numpy(), dtype=str)


def load_claims(folder, uke_files, enrollment: pd.DataFrame | None = None, cache_dir=None) -> ClaimsLoad:
    """Read the UKE files of a data folder and derive the canonical claims tables."""
    folder = Path(folder)
    mdir = folder / MASTERS_DIR
    if not mdir.is_dir():
        raise DataError(f"{folder}: レセプト電算ファイル（.UKE）がありますが、マスターのフォルダ {MASTERS_DIR}/ が"
                        "ありません。支払基金の傷病名・医薬品・診療行為マスター（b.csv, y.csv, s.csv）を置いてください")
    masters = claims_masters.load_masters(mdir)
    rules_path = folder / RULES_FILE
    rules = claims_rules.load_rules(rules_path if rules_path.exists() else None)
    raw = read_files(uke_files, cache_dir=cache_dir)
    derived = claims_rules.derive_tables(raw, masters, rules, enrollment=enrollment, link=read_link(folder))
    excl = [e for e in (raw.exclusions, derived.exclusions) if len(e)]
    exclusions = pd.concat(excl, ignore_index=True) if excl else raw.exclusions
    counts = dict(raw.counts)
    counts["receipts_unlinked"] = len(derived.exclusions)
    return ClaimsLoad(tables=derived.tables, exclusions=exclusions, counts=counts, report=derived.report,
                      files=[Path(p).name for p in uke_files])


def check_lines(folder, enrollment: pd.DataFrame | None = None) -> list[str]:
    """Japanese lines for `hsutils check`: receipts, lines, exclusions, unknown codes."""
    folder = Path(folder)
    files = uke.find_uke_files(folder)
    if not files:
        return []
    out = [f"■ レセプト電算ファイル（UKE） {len(files)} ファイル"]
    try:
        c = load_claims(folder, files, enrollment=enrollment)
    except DataError as e:
        return out + [f"  エラー: {e}"]
    k = c.counts
    out.append(f"  行 {k['lines_read']:,}（除外 {k['lines_excluded']:,}） / レセプト 読み込み {k['receipts_read']:,} 件"
               f" / 採用 {k['receipts_kept'] - k['receipts_unlinked']:,} 件 / 除外 "
               f"{k['receipts_excluded'] + k['receipts_unlinked']:,} 件（読み込み = 採用 + 除外）")
    out.append("  作成した表: " + "、".join(f"{n} {len(df):,} 行" for n, df in c.tables.items()))
    if len(c.exclusions):
        out.append("  除外の内訳（理由ごと）:")
        for (col, why), g in c.exclusions.groupby(["column", "reason"], sort=False):
            ex = "、".join(f"{f} {int(r)}行目" for f, r in zip(g["file"].head(3), g["row"].head(3)))
            out.append(f"    {col}: {why} … {len(g):,} 件（例: {ex}）")
    out.extend(claims_rules.unknown_codes_text(c.report))
    return out
