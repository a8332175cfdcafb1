"""One person key for every source that names the insured person by card: 特定健診 XML headers
(`hsutils.inputs.tokutei_xml`) and レセプト電算 HO/SN records (`hsutils.inputs.uke` → `hsutils.inputs.claims_rules`).

The rule (docs/formats/person_key.md):

* key = 保険者番号 (NFKC, digits zero-padded to 8: a 6-digit 国保 number such as ``  170019`` in a
  UKE HO record and ``00170019`` in an XML header are the same insurer) ``-`` 記号 ``-`` 番号 ``-``
  枝番, each part NFKC-normalised (全角 → 半角) and trimmed; a part not recorded is ''.
* With a 個人ID対応表 (``person_ids.csv``; for claims also the older ``uke_person_link.csv``), the
  person_id is the one of the row with the same four parts; when the record has no 枝番, or the
  table row has none, the row with the same 保険者番号-記号-番号 is used **if those three parts
  name exactly one person_id in the table** (a household's 記号・番号 shared by several members
  without 枝番 is ambiguous and is listed, never guessed). 枝番 is recorded in XML headers since
  2021 and on receipts only in the SN record (資格確認), so the same person often has it in one
  source and not in the other.
* With a salt file (``person_id_salt.txt``) and no table: ``P`` + the first 20 hex digits of
  SHA-256(salt + key).
* Otherwise the key itself is the person_id; a receipt without 枝番 first takes the 枝番 of the
  other receipts of the same 保険者番号-記号-番号 when exactly one occurs among them (`fill_edaban`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils.core.errors import DataError

#: 個人ID対応表 file names (data folder), in the order they are looked for.
PERSON_ID_FILES = ("person_ids.csv", "個人ID対応表.csv")
SALT_FILES = ("person_id_salt.txt",)


def normalise(s) -> pd.Series:
    """NFKC (全角 → 半角) and trim; '' and None become missing."""
    s = pd.Series(s, dtype="object").astype("str")
    if len(s) and not bool(s.dropna().str.isascii().all()):
        s = s.str.normalize("NFKC")
    return s.str.strip().replace("", np.nan)


def insurer_number(s) -> pd.Series:
    """保険者番号 as 8 digits (国保's 6-digit numbers are zero-padded, as in the XML)."""
    s = normalise(s)
    return s.where(~s.str.fullmatch(r"\d{1,8}").fillna(False).astype(bool), s.str.zfill(8))


def person_key(insurer, kigo, bango, edaban) -> pd.Series:
    """The person key 保険者番号-記号-番号-枝番 (module docstring); the index of `insurer` when it
    is a Series."""
    index = insurer.index if isinstance(insurer, pd.Series) else None
    p = [insurer_number(np.asarray(insurer, dtype=object)).fillna("")]
    p += [normalise(np.asarray(x, dtype=object)).fillna("") for x in (kigo, bango, edaban)]
    key = p[0] + "-" + p[1] + "-" + p[2] + "-" + p[3]
    return key.set_axis(index) if index is not None else key


def fill_edaban(key: pd.Series) -> pd.Series:
    """Keys without 枝番 get the 枝番 of the other records of the same 保険者番号-記号-番号 when
    exactly one 枝番 occurs among them (used only when there is no 個人ID対応表: module docstring)."""
    fam = _family_key(key)
    eda = key.str.rsplit("-", n=1).str[1]
    seen = pd.DataFrame({"f": fam, "e": eda})[eda != ""].drop_duplicates()
    one = seen.drop_duplicates("f", keep=False).set_index("f")["e"]
    fill = (eda == "") & fam.isin(one.index)
    # object first: mapping onto an empty table gives float NaN, which a text fill must not meet
    return key.where(~fill, fam + "-" + fam.map(one).astype(object).fillna(""))


def _family_key(key: pd.Series) -> pd.Series:
    """保険者番号-記号-番号 of a full key (the 枝番 dropped)."""
    return key.str.rsplit("-", n=1).str[0]


def positions(persons: pd.Index, person_id) -> np.ndarray:
    """Position of each person id in `persons` (int64; -1: not there, or missing). Each distinct id
    is looked up once: a person has many receipts a month, and the ids are factorised as they are
    stored (Arrow strings), without a Python string per row."""
    each, distinct = pd.factorize(person_id)
    found = persons.get_indexer(np.asarray(distinct, dtype=object)).astype(np.int64, copy=False)
    return np.append(found, -1)[each]  # a missing id (code -1) takes the appended -1


class PersonIds:
    """A 個人ID対応表 read into full keys and the unambiguous 3-part keys (module docstring)."""

    def __init__(self, key: pd.Series, person_id: pd.Series, name: str):
        self.name = name
        full = pd.Series(person_id.to_numpy(), index=key.to_numpy())
        self.full = full[~full.index.duplicated()]
        fam = pd.DataFrame({"f": _family_key(key).to_numpy(), "p": person_id.to_numpy()}).drop_duplicates()
        one = fam.drop_duplicates("f", keep=False)  # 記号・番号 that name exactly one person
        self.family = pd.Series(one["p"].to_numpy(), index=one["f"].to_numpy())

    def lookup(self, key: pd.Series) -> pd.Series:
        """person_id of each key (NaN where not found or ambiguous)."""
        key = pd.Series(key, dtype="object")
        # each distinct key once (a person has several receipts a month); the 3-part key only of the
        # keys not found (splitting every key cost more than the look-up)
        code, distinct = pd.factorize(key.to_numpy(dtype=object))
        distinct = pd.Series(distinct, dtype="object")
        pid = np.array(distinct.map(self.full), dtype=object)  # a writable copy
        miss = pd.isna(pid)
        if miss.any():
            pid[miss] = _family_key(distinct[miss]).map(self.family).astype(object).to_numpy()
        out = np.append(pid, np.nan)[code]  # a missing key (code -1) has no person_id
        return pd.Series(out, index=key.index, dtype="object")


def read_helper_csv(path: Path) -> pd.DataFrame:
    """A small helper table of the data folder (個人ID対応表, 保険者市町村対応表) as text, with the
    loader's encoding detection and header normalisation."""
    import io as stdio

    from hsutils.inputs import io as _io

    path = Path(path)
    text, _ = _io._decode_bytes(path.read_bytes(), path.name)
    try:
        df = pd.read_csv(stdio.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path.name}: CSV として読めません（{e}）")
    df.columns = [_io._header_key(c) for c in df.columns]
    return df


def pick(df: pd.DataFrame, name: str, *alts: str, required=True) -> pd.Series:
    """The column `name` (or one of `alts`) of a helper table; '' when optional and absent."""
    from hsutils.inputs import io as _io

    for n in (name, *alts):
        k = _io._header_key(n)
        if k in df.columns:
            return df[k]
    if required:
        raise DataError(f"列「{name}」がありません（使える見出し: {name}, {', '.join(alts)}）")
    return pd.Series([""] * len(df), dtype="object")


def read_person_ids(path: Path) -> PersonIds:
    """個人ID対応表 (columns 保険者番号, 記号, 番号, 枝番 (optional), person_id / 個人ID / 被保険者番号)."""
    path = Path(path)
    df = read_helper_csv(path)
    try:
        key = person_key(pick(df, "保険者番号", "insurer"), pick(df, "記号", "被保険者証記号", "kigo", required=False),
                         pick(df, "番号", "被保険者証番号", "bango"), pick(df, "枝番", "edaban", required=False))
        pid = normalise(pick(df, "person_id", "個人ID", "被保険者番号"))
    except DataError as e:
        raise DataError(f"{path.name}: {e}")
    clash = key.duplicated(keep=False) & ~pd.DataFrame({"k": key, "p": pid}).duplicated(keep=False)
    if clash.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(clash.to_numpy())[:5])
        raise DataError(f"{path.name}: 同じ被保険者（保険者番号-記号-番号-枝番）に別の person_id があります"
                        f"（{rows} 行目）。1人に1つの person_id が必要です")
    return PersonIds(key, pid, path.name)


def find_file(folder, names) -> Path | None:
    if folder is None:
        return None
    for n in names:
        if (Path(folder) / n).is_file():
            return Path(folder) / n
    return None


def pseudonyms(key: pd.Series, salt_file: Path) -> pd.Series:
    """Salted SHA-256 pseudonym ``P`` + 20 hex digits of each key."""
    salt = Path(salt_file).read_text(encoding="utf-8").strip()
    if not salt:
        raise DataError(f"{Path(salt_file).name}: 仮名化用の文字列（ソルト）が空です")
    uniq = pd.unique(key.to_numpy(dtype=object))
    digest = {k: "P" + hashlib.sha256((salt + k).encode("utf-8")).hexdigest()[:20]
              for k in uniq}  # one hash per distinct person: hashlib has no vector form
    return key.map(digest)
