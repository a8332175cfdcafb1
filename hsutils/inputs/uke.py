"""Reader for レセプト電算処理 files (`.UKE`): 医科 (incl. DPC), 歯科 and 調剤 receipts.

Field positions follow the 記録条件仕様 医科用 令和4年4月版 (令和5年3月13日更新) for 医科 and
the 調剤 layout noted in docs/claims_rules.md §2 (no primary 調剤 document was available; the
positions read here are the ones two independent sources agree on). See docs/claims_rules.md §1–§3.

How the file is read (vectorised; a Python loop runs per *chunk*, never per line):

* the file is read in binary blocks of ``CHUNK_BYTES``; a block ends at its last line feed.
  Shift_JIS (cp932) never uses the bytes ``,`` ``\\r`` ``\\n`` inside a 2-byte character, so lines
  and fields are found on the raw bytes with numpy: one pass finds every separator (``,`` and
  ``\\n``), and a field of a line is two look-ups in that array;
* numeric fields (codes, points, counts, dates) are decoded straight from the bytes, 8 digits at a
  time from one unaligned 64-bit word (SWAR arithmetic);
* text columns of the tables (file, codes, institutions) are built in Arrow from their distinct
  values, not as one Python string per row;
* only the few text fields that may hold 漢字 (記号・番号, 未コード化傷病名の名称) are decoded;
* patient names (RE 氏名, カタカナ氏名) are never extracted.

Every line belongs to the receipt opened by the last ``RE`` before it, and every receipt to the
institution (``IR`` / 調剤 ``YK``) above it. Several ``IR``…``GO`` blocks in one file (several
institutions' files concatenated) are accepted.

Dates: 6/8 digits are western (``YYYYMM`` / ``YYYYMMDD``, editions from 令和2年); 5/7 digits are
和暦 with a leading 元号 digit (1 明治, 2 大正, 3 昭和, 4 平成, 5 令和).

Validation (docs/claims_rules.md §4): a line with a wrong number of fields, an unknown record type,
a bad date or code, a receipt without ``HO`` — each is listed in the exclusions frame of
`hsutils.inputs.io` (file, line, record, field, value, Japanese reason). A receipt with a fatal problem
is excluded with all its lines; ``receipts_read == receipts_kept + receipts_excluded`` and
``lines_read == lines_used + lines_ignored + lines_excluded`` always hold.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hsutils.inputs import person_keys
from hsutils.core.errors import DataError

CHUNK_BYTES = 32 << 20
PAD = 128  # bytes of zeros around a block (longest field read is 80 bytes)
UKE_SUFFIXES = (".uke",)
EXCLUSION_TABLE = "uke"
SCOPE_LINE = "行"
SCOPE_RECEIPT = "レセプト"

# 元号 code -> year offset (year = offset + YY); docs/claims_rules.md §1.2.
ERA_BASE = np.array([0, 1867, 1911, 1925, 1988, 2018], dtype=np.int64)

# 点数表 (IR idx 3 / YK idx 3): 1 医科, 3 歯科, 4 調剤.
KIND_MEDICAL, KIND_DENTAL, KIND_PHARMACY = 1, 3, 4
KIND_LABELS = {KIND_MEDICAL: "医科", KIND_DENTAL: "歯科", KIND_PHARMACY: "調剤"}

# Record types. Numbers of fields (min, max) per layout; "header" types open an institution block.
_COUNTS_MEDICAL = {"IR": (10, 10), "RE": (38, 38), "HO": (15, 15), "KO": (12, 12), "SN": (9, 9),
                   "JD": (33, 33), "SY": (8, 8), "SI": (44, 44), "IY": (44, 44), "TO": (48, 48),
                   "CO": (5, 5), "GO": (4, 4)}
# 調剤: MED-confidence layout; CZ's tail differs by edition, so only the fields read are required.
_COUNTS_PHARMACY = {"YK": (9, 9), "RE": (42, 42), "HO": (14, 14), "KO": (10, 10), "SH": (10, 10),
                    "CZ": (14, 80), "IY": (10, 10), "CO": (5, 5), "GO": (4, 4)}
# 歯科: only the common fields this reader uses are required (layout not verified beyond them).
_COUNTS_DENTAL = {"IR": (10, 10), "RE": (7, 60), "HO": (6, 20), "KO": (6, 20), "GO": (4, 4)}
# Record types that exist in the specifications but carry nothing this suite uses.
IGNORED_TYPES = frozenset({
    "SN", "JD", "MF", "GR", "TO", "CO", "SJ", "TI", "NI", "TS", "ON", "RC", "KH", "GT",  # 医科
    "BU", "SB", "KK", "GA", "HH", "CD", "DK", "CK", "SK", "GD", "TK",                    # DPC
    "HS", "SS", "LS", "IR", "YK", "GO",                                                    # 歯科, headers, trailer
    "SH", "CZ", "KI", "ST", "ZN",                                                          # 調剤
})
KNOWN_TYPES = frozenset(IGNORED_TYPES | {"RE", "HO", "KO", "SY", "SI", "IY"})

# Japanese field names for exclusion messages (index -> name), by record.
FIELD_NAMES = {
    "IR": {3: "点数表", 4: "医療機関コード", 7: "請求年月", 2: "都道府県"},
    "YK": {3: "点数表", 4: "薬局コード", 6: "請求年月", 2: "都道府県"},
    "RE": {1: "レセプト番号", 2: "レセプト種別", 3: "診療年月", 5: "男女区分", 9: "処方医療機関の都道府県",
           10: "処方医療機関の点数表", 11: "処方医療機関コード"},
    "HO": {1: "保険者番号", 2: "記号", 3: "番号", 5: "合計点数"},
    "KO": {1: "負担者番号", 5: "合計点数"},
    "SY": {1: "傷病名コード", 2: "診療開始日", 3: "転帰区分", 4: "修飾語コード", 6: "主傷病"},
    "SI": {1: "診療識別", 3: "診療行為コード", 5: "点数", 6: "回数"},
    "IY": {1: "診療識別", 3: "医薬品コード", 4: "使用量", 5: "点数", 6: "回数"},
    "IYP": {2: "医薬品コード", 3: "使用量"},
    "SH": {2: "剤形コード"},
    "CZ": {5: "調剤数量"},
    "SN": {6: "枝番"},
}
UNCODED_DISEASE = 999          # 傷病名コード 0000999 = 未コード化傷病名
SUSPECTED_MODIFIER = "8002"    # 修飾語 「の疑い」 (S3 修飾語マスター)


def _rt(code: str) -> int:
    return ord(code[0]) * 256 + ord(code[1])


_RT_CODES = {_rt(t): t for t in KNOWN_TYPES | set(_COUNTS_PHARMACY) | set(_COUNTS_MEDICAL)}


# ---------------------------------------------------------------------------------------------
# Byte-level field access
# ---------------------------------------------------------------------------------------------

@dataclass
class _Lines:
    """Lines of one block: byte buffer, line start/end (end excludes CR LF and EOF), and the
    separators (commas and line feeds) of the block, found in one pass. Field k of the block
    runs from separator k-1 (+1) to separator k; a line's last field ends at the line end."""

    buf: np.ndarray
    ls: np.ndarray
    le: np.ndarray
    ffirst: np.ndarray   # index of each line's first field (= separators before the line)
    nf: np.ndarray       # number of fields of each line
    sep: np.ndarray      # positions of ',' and '\n' (plus the block end if it has no '\n')
    _padded: np.ndarray | None = None
    _words: np.ndarray | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> "_Lines":
        buf = np.frombuffer(data, dtype=np.uint8)
        n = len(buf)
        sep = np.flatnonzero((buf == 44) | (buf == 10))
        is_nl = buf[sep] == 10
        if n and buf[-1] != 10:  # a last line without line feed ends at the end of the block
            sep = np.append(sep, n)
            is_nl = np.append(is_nl, True)
        nl = np.flatnonzero(is_nl)                      # index in sep of each line's end
        ends = sep[nl]
        starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
        le = ends.copy()
        # drop a trailing CR and the EOF mark 0x1A
        for byte in (13, 26, 13):
            has = (le > starts) & (buf[np.maximum(le - 1, 0)] == byte) if n else le > starts
            le = le - has
        ffirst = np.concatenate([[0], nl[:-1] + 1]) if len(nl) else np.zeros(0, np.int64)
        nf = nl - ffirst + 1
        return cls(buf, starts, le, ffirst, nf, sep)

    def span(self, rows: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Start/end of field j of the given lines (empty span where the line has fewer fields)."""
        nf = self.nf[rows]
        ok = j < nf
        if not len(rows):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        k = self.ffirst[rows] + np.minimum(j, nf - 1)
        start = self.ls[rows] if j == 0 else self.sep[k - 1] + 1
        end = np.where(j >= nf - 1, self.le[rows], self.sep[k])
        return np.where(ok, start, 0), np.where(ok, end, 0)

    def padded(self) -> np.ndarray:
        if self._padded is None:  # zeros around the block so that no index needs clipping
            self._padded = np.concatenate([np.zeros(PAD, np.uint8), self.buf, np.zeros(PAD, np.uint8)])
        return self._padded

    def matrix(self, start: np.ndarray, end: np.ndarray, width: int, right: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """Bytes of each span in a (n, w) uint8 matrix, NUL-padded, w = min(width, longest span);
        also a 'longer than width' flag. Rows are copied from a sliding-window view of the
        block (one gather of w bytes per row, no (n, w) index matrix)."""
        length = end - start
        too_long = length > width
        w = int(min(width, length.max())) if len(length) else 0
        w = max(w, 1)
        win = np.lib.stride_tricks.sliding_window_view(self.padded(), w)
        pos = np.arange(w, dtype=np.int64)
        if right:
            mat = win[end + PAD - w]
            inside = pos[None, :] >= (w - np.minimum(length, w))[:, None]
        else:
            mat = win[start + PAD]
            inside = pos[None, :] < np.minimum(length, w)[:, None]
        mat &= np.where(inside, np.uint8(255), np.uint8(0))
        return mat, too_long

    def text(self, rows: np.ndarray, j: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Field j as raw bytes (numpy 'S' array, truncated at `width`) and a too-long flag."""
        s, e = self.span(rows, j)
        mat, long = self.matrix(s, e, width)
        return np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel(), long

    def words(self) -> np.ndarray:
        """Unaligned little-endian uint64 view of the padded block: word p = bytes p..p+7."""
        if self._words is None:
            p = self.padded()
            self._words = np.ndarray(shape=(len(p) - 7,), dtype="<u8", buffer=p, strides=(1,))
        return self._words

    def digits(self, rows: np.ndarray, j: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Field j as an unsigned integer: (value, length, valid). Empty -> length 0, valid False.

        The last min(length, width) bytes of the field are read as one or two 8-byte words and
        converted with SWAR arithmetic (8 digits per multiply chain, no per-byte matrix). As
        before, a non-digit byte counts as 0 in the value and makes the field invalid."""
        if width > 16:
            raise ValueError("digits() reads at most 16 digits")
        s, e = self.span(rows, j)
        length = e - s
        n_in = np.minimum(length, width)
        words = self.words()
        value = np.zeros(len(rows), np.uint64)
        bad = np.zeros(len(rows), bool)
        for part, end_off in ((1, 16), (0, 8)) if width > 8 else ((0, 8),):
            w = words[e + PAD - end_off]
            inside = np.clip(n_in - 8 * part, 0, 8).astype(np.uint64)   # bytes of the field in this word
            keep = np.where(inside >= 8, _ALL, ~((_ONE << (np.uint64(64) - 8 * inside) % _U64_64) - _ONE)
                            * (inside > 0))
            t = (w & keep) ^ (_ZEROS & keep)        # digit bytes -> 0..9, bytes outside the field -> 0
            high = (((t & _LOW7) + _ADD76) | t) & _HIGH   # high bit set on a non-digit byte
            bad |= high != 0
            t &= ~((high >> np.uint64(7)) * np.uint64(0xFF))
            value = value * np.uint64(100_000_000) + _swar8(t)
        valid = ~bad & (length > 0) & (length <= width)
        return value.astype(np.int64), length, valid


_U64_64 = np.uint64(64)
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ZEROS = np.uint64(0x3030303030303030)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ADD76 = np.uint64(0x7676767676767676)
_HIGH = np.uint64(0x8080808080808080)


def _swar8(t: np.ndarray) -> np.ndarray:
    """Eight bytes 0..9 (first byte = most significant digit, little-endian word) -> integer."""
    t = ((t * np.uint64(10)) + (t >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    t = ((t * np.uint64(100)) + (t >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return ((t * np.uint64(10000)) + (t >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


def _decode(raw: np.ndarray) -> pd.Series:
    """cp932 bytes -> NFKC-normalised str (full-width digits become half-width), stripped.
    Only the distinct values are decoded (a field such as 保険者番号 repeats on every receipt),
    in plain Python: a few thousand short values, where pandas' string machinery costs more."""
    if len(raw) == 0:
        return pd.Series([], dtype=object)
    uniq, inverse = np.unique(raw, return_inverse=True)
    norm = unicodedata.normalize
    s = np.array([norm("NFKC", b.decode("cp932", errors="replace")).strip() for b in uniq.tolist()] + [""],
                 dtype=object)[:-1]  # the extra "" keeps a 1-d object array whatever the texts
    return pd.Series(s[inverse.ravel()], dtype=object)


def decode_date(value: np.ndarray, length: np.ndarray, valid: np.ndarray, with_day: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """Decode 年月 (5/6 digits) or 年月日 (7/8 digits) to YYYYMM / YYYYMMDD ints.

    Returns (int value, ok). 5 and 7 digits are 和暦 with a leading 元号 digit (1–5); 6 and 8
    digits are western (docs/claims_rules.md §1.2). One 元号 arithmetic for both forms: the
    part after the year (MM or MMDD) has `scale` = 100 or 10,000.
    """
    value = np.asarray(value, dtype=np.int64)
    scale = 10_000 if with_day else 100
    western = length == (8 if with_day else 6)
    wareki = length == (7 if with_day else 5)
    era = np.where(wareki, value // (100 * scale), 0)
    rest = value % scale
    year = np.where(western, value // scale, ERA_BASE[np.clip(era, 0, 5)] + (value // scale) % 100)
    mm = rest // 100 if with_day else rest
    ok = valid & (western | (wareki & (era >= 1) & (era <= 5))) & (mm >= 1) & (mm <= 12)
    if with_day:
        dd = rest % 100
        mdays = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(mm, 0, 12)]
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        ok &= (dd >= 1) & (dd <= np.where((mm == 2) & ~leap, 28, mdays))
    ok &= (year >= 1868) & (year <= 2100)
    return np.where(ok, year * scale + rest, 0), ok


# ---------------------------------------------------------------------------------------------
# Streaming over blocks
# ---------------------------------------------------------------------------------------------

def iter_blocks(path: Path, chunk_bytes: int = CHUNK_BYTES):
    """Yield (bytes, first line number) blocks that end at a line feed."""
    line_no = 1
    carry = b""
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk_bytes)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            block, carry = data[:cut + 1], data[cut + 1:]
            yield block, line_no
            line_no += block.count(b"\n")
    if carry:
        yield carry, line_no


@dataclass
class _State:
    """Context carried from one block to the next (and across files)."""

    n_headers: int = 0
    n_receipts: int = 0
    header_open: bool = False   # last marker was a header (IR/YK): detail lines are orphans
    kind: int = 0               # 点数表 of the current header
    file_first_header: int = 0  # n_headers when the current file started


@dataclass
class RawUke:
    """What the reader extracted, before receipts are checked (arrays per record type)."""

    headers: list = field(default_factory=list)
    records: dict = field(default_factory=dict)
    exclusions: list = field(default_factory=list)
    lines_read: int = 0
    lines_ignored: int = 0
    files: list = field(default_factory=list)
    n_headers: int = 0
    n_receipts: int = 0

    def add(self, rtype: str, columns: dict) -> None:
        """Keep the arrays of one block; the frame is built once for all blocks (less overhead)."""
        self.records.setdefault(rtype, []).append(columns)

    def frame(self, rtype: str) -> pd.DataFrame:
        parts = self.records.get(rtype, [])
        if not parts:
            return pd.DataFrame()
        cols = {}
        for k in parts[0]:
            if isinstance(parts[0][k], str):  # the file name: one category per file, not a string per line
                names = list(dict.fromkeys(p[k] for p in parts))
                codes = np.concatenate([np.full(len(p["line"]), names.index(p[k]), np.int32) for p in parts])
                cols[k] = pd.Categorical.from_codes(codes, categories=names)
            else:
                cols[k] = np.concatenate([p[k] for p in parts])
        return pd.DataFrame(cols)


def _excl(file: str, lines: np.ndarray, column, values, reason, scope=SCOPE_LINE) -> pd.DataFrame:
    n = len(lines)
    return pd.DataFrame({
        "file": pd.Series([file] * n, dtype="str"), "table": pd.Series([EXCLUSION_TABLE] * n, dtype="str"),
        "row": np.asarray(lines, dtype=np.int64),
        "column": pd.Series(np.broadcast_to(np.asarray(column, dtype=object), (n,)), dtype="str"),
        "value": pd.Series(np.asarray(values, dtype=object), dtype="str"),
        "reason": pd.Series(np.broadcast_to(np.asarray(reason, dtype=object), (n,)), dtype="str"),
        "scope": pd.Series([scope] * n, dtype="str")})


def _field_label(rtype: str, j: int) -> str:
    name = FIELD_NAMES.get(rtype, {}).get(j, f"項目{j + 1}")
    return f"{rtype} {name}"


def _raw_text(lines: _Lines, rows: np.ndarray, j: int, width: int = 40) -> np.ndarray:
    raw, _ = lines.text(rows, j, width)
    return _decode(raw).to_numpy(dtype=object)


def _limits_table():
    keys, lo, hi = [], [], []
    for kind, table in ((KIND_MEDICAL, _COUNTS_MEDICAL), (KIND_DENTAL, _COUNTS_DENTAL),
                        (KIND_PHARMACY, _COUNTS_PHARMACY)):
        for t, (a, b) in table.items():
            keys.append(kind * 65536 + _rt(t))
            lo.append(a)
            hi.append(b)
    order = np.argsort(keys)
    return np.array(keys)[order], np.array(lo)[order], np.array(hi)[order]


_LIMITS = _limits_table()


def _count_limits(line_kind: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Allowed (min, max) number of fields of each line by 点数表 and record type (no limit for
    record types without a layout)."""
    keys, lo, hi = _LIMITS
    k = line_kind.astype(np.int64) * 65536 + code
    pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
    found = keys[pos] == k
    return np.where(found, lo[pos], 0), np.where(found, hi[pos], 10_000)


def _raw_where(lines: _Lines, rows: np.ndarray, j: int, where: np.ndarray, width: int = 16) -> np.ndarray:
    """Field j as text only where `where` (values quoted in exclusion messages); '' elsewhere."""
    out = np.full(len(rows), "", dtype=object)
    if where.any():
        out[where] = _raw_text(lines, rows[where], j, width)
    return out


def _line_text(lines: _Lines, rows: np.ndarray, width: int = 24) -> np.ndarray:
    """The first four fields of each line (for exclusions of whole lines). RE 氏名 is field 4,
    so a patient name is never copied into an exclusion list."""
    end = np.where(lines.nf[rows] > 4, lines.span(rows, 3)[1], lines.le[rows])
    mat, _ = lines.matrix(lines.ls[rows], end, width)
    raw = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel()
    return _decode(raw).to_numpy(dtype=object)


def _read_block(data: bytes, first_line: int, file: str, st: _State, out: RawUke) -> None:
    L = _Lines.from_bytes(data)
    n = len(L.ls)
    line_no = first_line + np.arange(n, dtype=np.int64)
    nonblank = L.le > L.ls
    b0 = L.buf[np.minimum(L.ls, max(len(L.buf) - 1, 0))].astype(np.int64) if len(L.buf) else np.zeros(n, np.int64)
    b1 = L.buf[np.minimum(L.ls + 1, max(len(L.buf) - 1, 0))].astype(np.int64) if len(L.buf) else np.zeros(n, np.int64)
    s0, e0 = L.span(np.arange(n), 0)
    first_len = e0 - s0
    code = np.where(first_len == 2, b0 * 256 + b1, -1)
    # blank lines (the line after the last CRLF, an EOF mark) are neither records nor errors
    rows = np.flatnonzero(nonblank)
    out.lines_read += len(rows)
    code_r = code[rows]
    known_codes = np.array(sorted(_RT_CODES), dtype=np.int64)
    known = np.isin(code_r, known_codes)
    if (~known).any():
        bad = rows[~known]
        out.exclusions.append(_excl(file, line_no[bad], "レコード識別情報", _line_text(L, bad),
                                    "レコード識別情報が記録条件仕様にありません（IR, RE, HO, SY, SI, IY など2文字）"))
    rows, code_r = rows[known], code_r[known]

    # context: header id, receipt id, 点数表 of each line
    is_hdr = (code_r == _rt("IR")) | (code_r == _rt("YK"))
    is_re = code_r == _rt("RE")
    hdr_rows = rows[is_hdr]
    kinds_h, kok, _ = L.digits(hdr_rows, 3, 1) if len(hdr_rows) else (np.zeros(0, np.int64),) * 3
    hdr_id = st.n_headers + np.cumsum(is_hdr)
    re_id = st.n_receipts + np.cumsum(is_re)
    marker = np.where(is_hdr, 1, np.where(is_re, 2, 0))
    pos = np.where(marker > 0, np.arange(len(rows)), -1)
    last = np.maximum.accumulate(pos) if len(pos) else pos
    last_kind = np.where(last >= 0, marker[np.maximum(last, 0)], 2 if not st.header_open else 1)
    no_header = (hdr_id == st.file_first_header) & ~is_hdr
    orphan = ((last_kind == 1) & ~is_hdr & (code_r != _rt("GO"))) | no_header
    kind_all = np.concatenate([[st.kind], np.where((kinds_h >= 1) & (kinds_h <= 9), kinds_h, 0)])
    line_kind = kind_all[hdr_id - st.n_headers]
    if orphan.any():
        bad = rows[orphan & ~no_header]
        out.exclusions.append(_excl(file, line_no[bad], "レコード識別情報", _line_text(L, bad),
                                    "レセプト共通レコード（RE）より前にある明細行です（RE の後に記録してください）"))
        bad = rows[no_header]
        out.exclusions.append(_excl(file, line_no[bad], "レコード識別情報", _line_text(L, bad),
                                    "医療機関情報レコード（IR、調剤は YK）より前にある行です（ファイルの先頭は IR/YK）"))

    # field counts
    nf = L.nf[rows]
    lo, hi = _count_limits(line_kind, code_r)
    badcount = ((nf < lo) | (nf > hi)) & ~orphan
    if badcount.any():
        bad = rows[badcount]
        expect = np.where(lo[badcount] == hi[badcount], lo[badcount].astype(str),
                          np.char.add(np.char.add(lo[badcount].astype(str), "–"), hi[badcount].astype(str)))
        reasons = np.char.add(np.char.add(np.char.add("項目数が ", nf[badcount].astype(str)),
                                          " です（記録条件仕様では "), np.char.add(expect.astype(str), "）"))
        out.exclusions.append(_excl(file, line_no[bad], "項目数", _line_text(L, bad), reasons))
    use = ~badcount & ~orphan

    # headers (always processed so that later receipts know their institution)
    if len(hdr_rows):
        ir = code_r[is_hdr] == _rt("IR")
        pref, _, pok = L.digits(hdr_rows, 2, 2)
        inst, _, iok = L.digits(hdr_rows, 4, 7)
        ym_j = np.where(ir, 7, 6)
        ymv = np.zeros(len(hdr_rows), np.int64)
        ylen = np.zeros(len(hdr_rows), np.int64)
        yok = np.zeros(len(hdr_rows), bool)
        for j in (6, 7):
            sel = ym_j == j
            if sel.any():
                v, ln, ok = L.digits(hdr_rows[sel], j, 6)
                ymv[sel], ylen[sel], yok[sel] = v, ln, ok
        claim_ym, cok = decode_date(ymv, ylen, yok, with_day=False)
        out.add("HDR", ({
            "header_id": hdr_id[is_hdr], "file": file, "line": line_no[hdr_rows],
            "kind": np.where(kok, kinds_h, 0), "pref": np.where(pok, pref, 0),
            "institution": np.where(iok, inst, -1), "claim_ym": np.where(cok, claim_ym, 0),
            "header_ok": use[is_hdr] & kok & iok & np.isin(kinds_h, list(KIND_LABELS))}))
        st.kind = int(kind_all[-1])
    st.n_headers = int(hdr_id[-1]) if len(hdr_id) else st.n_headers
    st.n_receipts = int(re_id[-1]) if len(re_id) else st.n_receipts
    if len(last):
        st.header_open = bool(last_kind[-1] == 1)

    rid = np.where(orphan, 0, re_id)

    # used lines grouped by (record type, 点数表) with one stable sort: each type is one slice
    used = np.flatnonzero(use)
    gkey = code_r[used] * 16 + line_kind[used]
    order = np.argsort(gkey, kind="stable")
    used, gkey = used[order], gkey[order]

    def rows_of(t: str, kinds=tuple(range(10))) -> tuple[np.ndarray, np.ndarray]:
        parts = [used[np.searchsorted(gkey, _rt(t) * 16 + k):np.searchsorted(gkey, _rt(t) * 16 + k, "right")]
                 for k in kinds]
        sel = np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0]
        return rows[sel], sel

    def frame(sel_idx: np.ndarray, **cols) -> dict:
        return {"receipt_id": rid[sel_idx], "file": file, "line": line_no[rows[sel_idx]], **cols}

    # RE (all kinds)
    r, s = rows_of("RE")
    if len(r):
        rno, _, _ = L.digits(r, 1, 6)
        rtype, _, tok = L.digits(r, 2, 4)
        ymv, ylen, yok = L.digits(r, 3, 6)
        ym, ymok = decode_date(ymv, ylen, yok, with_day=False)
        sex, _, sok = L.digits(r, 5, 1)
        pk = line_kind[s] == KIND_PHARMACY
        ppref, _, _ = L.digits(r, 9, 2)
        ptab, _, _ = L.digits(r, 10, 1)
        pinst, _, piok = L.digits(r, 11, 7)
        out.add("RE", frame(s, header_id=hdr_id[s], kind=line_kind[s], receipt_type=np.where(tok, rtype, -1),
                            ym=ym, ym_ok=ymok, ym_raw=_raw_where(L, r, 3, ~ymok), sex=np.where(sok, sex, 0),
                            rx_institution=np.where(pk & piok, ppref * 10**8 + ptab * 10**7 + pinst, -1)))
    # HO
    r, s = rows_of("HO")
    if len(r):
        insurer = _raw_text(L, r, 1, 8)
        kigo = _raw_text(L, r, 2, 40)
        bango = _raw_text(L, r, 3, 40)
        pts, _, pok = L.digits(r, 5, 8)
        out.add("HO", frame(s, insurer=insurer, kigo=kigo, bango=bango, points=np.where(pok, pts, -1)))
    # KO
    r, s = rows_of("KO")
    if len(r):
        payer = _raw_text(L, r, 1, 8)
        out.add("KO", frame(s, payer=payer))
    # SN 枝番
    r, s = rows_of("SN")  # 資格確認 (医科・歯科・調剤 alike: docs/claims_rules.md §1.3)
    if len(r):
        who, _, _ = L.digits(r, 1, 1)
        out.add("SN", frame(s, payer_kind=who, edaban=_raw_text(L, r, 6, 4)))
    # SY
    r, s = rows_of("SY", [KIND_MEDICAL])
    if len(r):
        dcode, dlen, dok = L.digits(r, 1, 7)
        sv, sl, sok = L.digits(r, 2, 8)
        start, stok = decode_date(sv, sl, sok, with_day=True)
        outcome, _, ook = L.digits(r, 3, 1)
        suspected = _has_modifier(L, r, 4, SUSPECTED_MODIFIER)
        main, _, mok = L.digits(r, 6, 2)
        uncoded = dok & (dcode == UNCODED_DISEASE)
        name = np.full(len(r), "", dtype=object)
        if uncoded.any():
            name[uncoded] = _raw_text(L, r[uncoded], 5, 80)
        out.add("SY", frame(s, code=np.where(dok & (dlen == 7), dcode, -1), start=start, start_ok=stok,
                            start_raw=_raw_where(L, r, 2, ~stok), outcome=np.where(ook, outcome, 0),
                            suspected=suspected, main=mok & (main == 1), uncoded_name=name))
    # SI / IY (医科)
    for t in ("SI", "IY"):
        r, s = rows_of(t, [KIND_MEDICAL])
        if len(r):
            cls_, _, cok = L.digits(r, 1, 2)
            c, clen, ok = L.digits(r, 3, 9)
            pts, plen, pok = L.digits(r, 5, 7)
            times, _, tok = L.digits(r, 6, 3)
            qty = _decimal(L, r, 4)
            out.add(t, frame(s, cls=np.where(cok, cls_, -1), code=np.where(ok & (clen == 9), c, -1),
                             quantity=qty, points=np.where(pok, pts, -1), times=np.where(tok, times, 0),
                             code_raw=_raw_where(L, r, 3, ~(ok & (clen == 9)))))
    # 調剤: SH (剤形), CZ (調剤数量), IY
    r, s = rows_of("SH", [KIND_PHARMACY])
    if len(r):
        form, _, fok = L.digits(r, 2, 1)
        out.add("SH", frame(s, form=np.where(fok, form, 0)))
    r, s = rows_of("CZ", [KIND_PHARMACY])
    if len(r):
        qty, _, qok = L.digits(r, 5, 3)
        out.add("CZ", frame(s, days=np.where(qok, qty, 0)))
    r, s = rows_of("IY", [KIND_PHARMACY])
    if len(r):
        c, clen, ok = L.digits(r, 2, 9)
        out.add("IYP", frame(s, code=np.where(ok & (clen == 9), c, -1), quantity=_decimal(L, r, 3),
                             code_raw=_raw_where(L, r, 2, ~(ok & (clen == 9)))))
    handled = {"RE", "HO", "KO", "SY", "SI", "IY", "SH", "CZ", "SN", "IR", "YK"}
    used_codes = np.array([_rt(t) for t in handled])
    out.lines_ignored += int((use & ~np.isin(code_r, used_codes)).sum())


def _has_modifier(L: _Lines, rows: np.ndarray, j: int, code: str) -> np.ndarray:
    """True where field j (concatenated 4-digit 修飾語 codes) holds `code` as one of its groups."""
    s, e = L.span(rows, j)
    mat, _ = L.matrix(s, e, 80)
    w = mat.shape[1]
    if w % 4:
        mat = np.pad(mat, ((0, 0), (0, 4 - w % 4)))
    groups = np.ascontiguousarray(mat).view("S4").reshape(len(rows), -1)
    return (groups == code.encode("ascii")).any(axis=1)


def _str_from_codes(codes, labels) -> pd.api.extensions.ExtensionArray:
    """pandas ``str`` array of labels[codes], built in Arrow from the distinct labels (a text per
    row costs a Python object per row otherwise; codes and file names repeat on every line)."""
    labels = pa.array(list(labels), pa.large_string())
    codes = pa.array(np.asarray(codes, dtype=np.int32))
    return pd.array(pa.DictionaryArray.from_arrays(codes, labels).dictionary_decode(), dtype="str")


def _str_of(values) -> pd.api.extensions.ExtensionArray:
    """pandas ``str`` array of repeated values (a categorical keeps its codes; other values are
    factorised once)."""
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pd.Categorical):
        return _str_from_codes(values.codes, [str(c) for c in values.categories])
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    return _str_from_codes(codes, [str(u) for u in uniques])


def _int_str(values, width: int) -> pd.api.extensions.ExtensionArray:
    """Like `_int_text`, as a pandas ``str`` array."""
    v = np.asarray(values, dtype=np.int64)
    uniq, inverse = np.unique(v, return_inverse=True)
    return _str_from_codes(inverse.ravel(), [str(x).zfill(width) for x in uniq.tolist()])


def _int_text(values, width: int) -> np.ndarray:
    """Non-negative ints as zero-padded decimal strings of `width` (object array). Codes repeat
    (institutions, drugs, diseases): only the distinct values are formatted."""
    v = np.asarray(values, dtype=np.int64)
    if len(v) == 0:
        return np.zeros(0, dtype=object)
    uniq, inverse = np.unique(v, return_inverse=True)
    text = np.array([str(x).zfill(width) for x in uniq.tolist()] + [""], dtype=object)[:-1]
    return text[inverse.ravel()]


def _decimal(L: _Lines, rows: np.ndarray, j: int) -> np.ndarray:
    raw, _ = L.text(rows, j, 12)
    raw = np.where(raw == b"", b"nan", raw)
    try:
        return raw.astype(np.float64)
    except ValueError:
        return pd.to_numeric(pd.Series(raw.astype(object)).str.decode("ascii", errors="replace"),
                             errors="coerce").to_numpy(dtype=float)


def read_raw(paths, chunk_bytes: int = CHUNK_BYTES) -> RawUke:
    """Stream one or more UKE files into per-record arrays (see module docstring)."""
    out = RawUke()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"レセプト電算ファイル {path} が見つかりません")
        st = _State(n_headers=out.n_headers, n_receipts=out.n_receipts, file_first_header=out.n_headers)
        out.files.append(path.name)
        for block, first in iter_blocks(path, chunk_bytes):
            _read_block(block, first, path.name, st, out)
        out.n_headers, out.n_receipts = st.n_headers, st.n_receipts
    return out


# ---------------------------------------------------------------------------------------------
# Receipts: checks and long tables
# ---------------------------------------------------------------------------------------------

SETTING_INPATIENT, SETTING_OUTPATIENT, SETTING_DENTAL, SETTING_PHARMACY = "入院", "入院外", "歯科", "調剤"
YEN_PER_POINT = 10  # 1点 = 10円 (医科・歯科・調剤; docs/claims_rules.md §5)


@dataclass
class UkeTables:
    """Receipt-level and line-level tables read from UKE files (person keys, never names)."""

    receipts: pd.DataFrame
    diagnoses: pd.DataFrame
    procedures: pd.DataFrame
    drugs: pd.DataFrame
    exclusions: pd.DataFrame
    counts: dict

    def summary_lines(self) -> list[str]:
        c = self.counts
        return [
            f"  ファイル {c['files']:,} 件 / 行 {c['lines_read']:,}（採用 {c['lines_read'] - c['lines_excluded']:,}"
            f"、除外 {c['lines_excluded']:,}）",
            f"  レセプト 読み込み {c['receipts_read']:,} 件 / 採用 {c['receipts_kept']:,} 件 / "
            f"除外 {c['receipts_excluded']:,} 件（読み込み = 採用 + 除外）",
        ]


def _institution_code(pref, kind, inst) -> np.ndarray:
    """10-digit 医療機関コード: 都道府県(2) + 点数表(1) + 医療機関コード(7)."""
    code = np.asarray(pref, np.int64) * 10**8 + np.asarray(kind, np.int64) * 10**7 + np.asarray(inst, np.int64)
    return _code_text(code, 10)


def _code_text(code: np.ndarray, width: int) -> np.ndarray:
    return _int_text(code, width)


def _setting(kind: np.ndarray, receipt_type: np.ndarray) -> np.ndarray:
    """入院 / 入院外 from the last digit of レセプト種別 (odd = 入院, docs/claims_rules.md §5)."""
    inpatient = (receipt_type % 2) == 1
    return np.where(kind == KIND_DENTAL, SETTING_DENTAL,
                    np.where(kind == KIND_PHARMACY, SETTING_PHARMACY,
                             np.where(inpatient, SETTING_INPATIENT, SETTING_OUTPATIENT))).astype(object)


def assemble(raw: RawUke) -> UkeTables:
    """Check receipts and build the long tables (docs/claims_rules.md §4)."""
    excl = [e for e in raw.exclusions if len(e)]
    headers = raw.frame("HDR") if raw.records.get("HDR") else pd.DataFrame(
        {"header_id": pd.Series(dtype="int64"), "kind": pd.Series(dtype="int64")})
    re_ = raw.frame("RE")
    ho = raw.frame("HO")
    if re_.empty:
        re_ = pd.DataFrame({c: pd.Series(dtype=d) for c, d in (
            ("receipt_id", "int64"), ("file", "str"), ("line", "int64"), ("header_id", "int64"),
            ("kind", "int64"), ("receipt_type", "int64"), ("ym", "int64"), ("ym_ok", "bool"),
            ("ym_raw", "str"), ("sex", "int64"), ("rx_institution", "int64"))})
    rec = re_.merge(headers.drop(columns=["file", "line"], errors="ignore").rename(columns={"kind": "hkind"}),
                    on="header_id", how="left")
    reason = pd.Series("", index=rec.index, dtype=object)
    column = pd.Series("", index=rec.index, dtype=object)
    value = rec.get("ym_raw", pd.Series("", index=rec.index)).astype(object).copy()

    def flag(mask, col, why):
        m = np.asarray(mask, bool) & (reason == "").to_numpy()
        reason[m] = why
        column[m] = col

    flag(~rec["header_ok"].fillna(False).astype(bool), "IR 医療機関コード",
         "医療機関情報レコード（IR/YK）の点数表・医療機関コードが読めません")
    flag(~rec["ym_ok"], "RE 診療年月",
         "診療年月が日付として読めません（西暦 YYYYMM 6桁、または元号1桁＋年月4桁の5桁）")
    flag(rec["receipt_type"] < 1000, "RE レセプト種別", "レセプト種別が4桁の数字ではありません")
    # HO: exactly one per receipt
    if ho.empty:
        ho = pd.DataFrame({"receipt_id": pd.Series(dtype="int64"), "line": pd.Series(dtype="int64"),
                           "file": pd.Series(dtype="str"), "insurer": pd.Series(dtype="str"),
                           "kigo": pd.Series(dtype="str"), "bango": pd.Series(dtype="str"),
                           "points": pd.Series(dtype="int64")})
    dup = ho.duplicated("receipt_id", keep="first")
    if dup.any():
        d = ho[dup]
        excl.append(_excl_frame(d, "HO", "1つのレセプトに保険者レコード（HO）が複数あります（最初の HO を使います）"))
        ho = ho[~dup]
    ho = ho.set_index("receipt_id")
    has_ho = rec["receipt_id"].isin(ho.index)
    flag(~has_ho, "HO", "保険者レコード（HO）がありません（公費単独のレセプトはこの集計の対象外です）")
    ho_r = ho.reindex(rec["receipt_id"])
    flag(has_ho.to_numpy() & (ho_r["points"].to_numpy() < 0), "HO 合計点数", "合計点数が数字ではありません")
    flag(has_ho.to_numpy() & (ho_r["insurer"].fillna("").to_numpy() == ""), "HO 保険者番号", "保険者番号が空欄です")
    flag(has_ho.to_numpy() & (ho_r["bango"].fillna("").to_numpy() == ""), "HO 番号", "被保険者証等の番号が空欄です")
    bad = (reason != "").to_numpy()
    if bad.any():
        vals = np.where(column[bad].str.startswith("RE 診療").to_numpy(), value[bad].to_numpy(),
                        rec["receipt_type"][bad].astype(str).to_numpy())
        excl.append(pd.DataFrame({"file": rec["file"][bad].astype(str).to_numpy(), "table": EXCLUSION_TABLE,
                                  "row": rec["line"][bad].to_numpy(np.int64),
                                  "column": column[bad].to_numpy(), "value": vals.astype(str),
                                  "reason": reason[bad].to_numpy(), "scope": SCOPE_RECEIPT}))
    keep = rec[~bad].copy()
    ho_k = ho.reindex(keep["receipt_id"])
    kind = keep["hkind"].to_numpy(np.int64)
    receipts = pd.DataFrame({
        "receipt_id": keep["receipt_id"].to_numpy(np.int64), "file": _str_of(keep["file"]),
        "line": keep["line"].to_numpy(np.int64), "kind": _str_of(pd.Series(kind).map(KIND_LABELS)),
        "setting": _str_of(_setting(kind, keep["receipt_type"].to_numpy(np.int64))),
        "ym": keep["ym"].to_numpy(np.int64), "receipt_type": keep["receipt_type"].to_numpy(np.int64),
        "institution": _str_of(_institution_code(keep["pref"].to_numpy(np.int64), kind,
                                                 keep["institution"].to_numpy(np.int64))),
        "rx_institution": np.where(keep["rx_institution"].to_numpy(np.int64) >= 0,
                                   _code_text(keep["rx_institution"].to_numpy(np.int64), 10), None),
        "sex": keep["sex"].to_numpy(np.int64),
        "insurer": _str_of(ho_k["insurer"].astype(str)), "kigo": _str_of(ho_k["kigo"].astype(str)),
        "bango": _str_of(ho_k["bango"].astype(str)),
        "points": ho_k["points"].to_numpy(np.int64)})
    receipts["yen"] = receipts["points"] * YEN_PER_POINT
    ko = raw.frame("KO")
    receipts["n_kouhi"] = (receipts["receipt_id"].map(ko.groupby("receipt_id").size()).fillna(0).astype(np.int64)
                           if not ko.empty else 0)
    sn = raw.frame("SN")
    eda = pd.Series("", index=receipts.index, dtype=object)
    if not sn.empty:
        sn1 = sn[sn["payer_kind"] == 1].drop_duplicates("receipt_id").set_index("receipt_id")["edaban"]
        eda = receipts["receipt_id"].map(sn1).fillna("").astype(object)
    receipts["edaban"] = eda.to_numpy()
    # one person key with the 特定健診 XML reader (docs/formats/person_key.md §1)
    receipts["person_key"] = person_keys.person_key(receipts["insurer"], receipts["kigo"], receipts["bango"],
                                                    receipts["edaban"]).array
    kept_ids = receipts["receipt_id"].to_numpy()

    # diagnoses
    sy = raw.frame("SY")
    if not sy.empty:
        sy = sy[sy["receipt_id"].isin(kept_ids)]
        badc = sy["code"] < 0
        if badc.any():
            excl.append(_excl_frame(sy[badc], "SY 傷病名コード", "傷病名コードが7桁の数字ではありません",
                                    values=sy["code"][badc].astype(str)))
        sy = sy[~badc]
        bads = ~sy["start_ok"] & (sy["start_raw"] != "")
        if bads.any():
            d = sy[bads]
            excl.append(_excl_frame(d, "SY 診療開始日",
                                    "診療開始日が日付として読めません（西暦8桁、または元号1桁＋6桁の7桁）。開始日を欠損として扱います",
                                    values=d["start_raw"], scope="項目"))
        # 修飾語 codes are 4-digit groups; 「の疑い」 8002 as one of them marks a suspected disease
        suspected = sy["suspected"]
        diagnoses = pd.DataFrame({
            "receipt_id": sy["receipt_id"].to_numpy(np.int64), "file": _str_of(sy["file"]),
            "line": sy["line"].to_numpy(np.int64), "code": _int_str(sy["code"].to_numpy(), 7),
            "start": pd.to_datetime(pd.Series(np.where(sy["start_ok"], sy["start"], 0)).astype(str),
                                    format="%Y%m%d", errors="coerce").to_numpy(),
            "outcome": sy["outcome"].to_numpy(np.int64), "suspected": suspected.to_numpy(bool),
            "main": sy["main"].to_numpy(bool), "uncoded_name": sy["uncoded_name"].to_numpy()})
    else:
        diagnoses = pd.DataFrame({c: pd.Series(dtype=d) for c, d in (
            ("receipt_id", "int64"), ("file", "str"), ("line", "int64"), ("code", "str"),
            ("start", "datetime64[ns]"), ("outcome", "int64"), ("suspected", "bool"), ("main", "bool"),
            ("uncoded_name", "str"))})

    # procedures (SI) and drugs (医科 IY + 調剤 IY)
    procedures = _detail(raw.frame("SI"), kept_ids, excl, "SI 診療行為コード", "診療行為コード")
    iy = _detail(raw.frame("IY"), kept_ids, excl, "IY 医薬品コード", "医薬品コード")
    drugs_med = pd.DataFrame({
        "receipt_id": iy["receipt_id"], "file": iy["file"], "line": iy["line"], "code": iy["code"],
        "quantity": iy["quantity"], "form_code": np.where(iy["cls"] == 22, 3, np.where(iy["cls"] == 23, 5,
                                                                                      np.where(iy["cls"] == 21, 1, 0))),
        "cls": iy["cls"], "days": np.where(iy["cls"] == 21, iy["times"], 0), "dispensed": "院内"})
    iyp = _detail(raw.frame("IYP"), kept_ids, excl, "IY 医薬品コード", "医薬品コード")
    if not iyp.empty:
        grp = _pharmacy_groups(raw, iyp)
        drugs_ph = pd.DataFrame({
            "receipt_id": iyp["receipt_id"], "file": iyp["file"], "line": iyp["line"], "code": iyp["code"],
            "quantity": iyp["quantity"], "form_code": grp["form"].to_numpy(), "cls": -1,
            "days": grp["days"].to_numpy(), "dispensed": "院外"})
        drugs = pd.concat([drugs_med, drugs_ph], ignore_index=True)
    else:
        drugs = drugs_med
    exclusions = pd.concat(excl, ignore_index=True) if excl else _excl("", np.zeros(0, np.int64), "", [], "")
    if not exclusions.empty:
        exclusions = exclusions.sort_values(["file", "row"], kind="stable").reset_index(drop=True)
    n_line_excl = int((exclusions["scope"] == SCOPE_LINE).sum()) if not exclusions.empty else 0
    counts = {"files": len(raw.files), "lines_read": raw.lines_read, "lines_excluded": n_line_excl,
              "lines_ignored": raw.lines_ignored, "receipts_read": len(rec),
              "receipts_kept": len(receipts), "receipts_excluded": int(bad.sum())}
    return UkeTables(receipts=receipts, diagnoses=diagnoses, procedures=procedures, drugs=drugs,
                     exclusions=exclusions, counts=counts)


def _excl_frame(d: pd.DataFrame, column: str, reason: str, values=None, scope: str = SCOPE_LINE) -> pd.DataFrame:
    vals = d["code_raw"] if values is None and "code_raw" in d else (values if values is not None else "")
    return pd.DataFrame({"file": d["file"].astype(str).to_numpy(), "table": EXCLUSION_TABLE,
                         "row": d["line"].to_numpy(np.int64), "column": column,
                         "value": pd.Series(vals).astype(str).to_numpy() if not isinstance(vals, str) else vals,
                         "reason": reason, "scope": scope})


def _detail(df: pd.DataFrame, kept_ids: np.ndarray, excl: list, column: str, what: str) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in (
            ("receipt_id", "int64"), ("file", "str"), ("line", "int64"), ("code", "str"), ("quantity", "float64"),
            ("cls", "int64"), ("points", "int64"), ("times", "int64"))})
    df = df[df["receipt_id"].isin(kept_ids)]
    badc = df["code"] < 0
    if badc.any():
        excl.append(_excl_frame(df[badc], column, f"{what}が9桁の数字ではありません"))
    df = df[~badc].copy()
    if "cls" in df:
        # 診療識別 may be left empty on the following records of a group: carry it forward
        cls = df["cls"].where(df["cls"] >= 0)
        df["cls"] = cls.groupby(df["receipt_id"]).ffill().fillna(-1).astype(np.int64)
    df["code"] = _int_str(df["code"].to_numpy(), 9)
    return df.reset_index(drop=True)


def _pharmacy_groups(raw: RawUke, iyp: pd.DataFrame) -> pd.DataFrame:
    """剤形 and days of each 調剤 IY line: the SH (処方基本) above it and the sum of the 調剤数量
    of the CZ lines of that SH group (docs/claims_rules.md §2.3)."""
    sh, cz = raw.frame("SH"), raw.frame("CZ")
    if sh.empty:
        return pd.DataFrame({"form": np.zeros(len(iyp), np.int64), "days": np.zeros(len(iyp), np.int64)})
    sh = sh.assign(file=sh["file"].astype(str)).sort_values(["file", "line"])
    cz = cz.assign(file=cz["file"].astype(str)) if not cz.empty else cz
    iyp = iyp.assign(file=iyp["file"].astype(str))
    key_sh = sh[["file", "line", "receipt_id", "form"]].rename(columns={"line": "sh_line"})
    # each line takes the last SH at or above it in the same file and receipt
    def attach(df):
        m = pd.merge_asof(df.sort_values("line").assign(_o=np.arange(len(df))), key_sh.sort_values("sh_line"),
                          left_on="line", right_on="sh_line", by=["file", "receipt_id"], direction="backward")
        return m.sort_values("_o")
    a = attach(iyp.reset_index(drop=True)[["file", "line", "receipt_id"]].assign(_i=np.arange(len(iyp))))
    a = a.sort_values("_i")
    if not cz.empty:
        c = attach(cz[["file", "line", "receipt_id", "days"]])
        days = c.groupby(["file", "sh_line"])["days"].sum()
        a["days"] = a.merge(days.rename("d").reset_index(), on=["file", "sh_line"], how="left")["d"].fillna(0).to_numpy()
    else:
        a["days"] = 0
    return pd.DataFrame({"form": a["form"].fillna(0).to_numpy(np.int64), "days": a["days"].to_numpy(np.int64)})


def read_uke(paths, chunk_bytes: int = CHUNK_BYTES) -> UkeTables:
    """Read UKE files into receipts / diagnoses / procedures / drugs (+ exclusions, counts)."""
    return assemble(read_raw(paths, chunk_bytes=chunk_bytes))


def find_uke_files(folder) -> list[Path]:
    """UKE files of a data folder: ``*.UKE`` directly in it or in its ``uke/`` sub-folder."""
    folder = Path(folder)
    found = []
    for d in (folder, folder / "uke"):
        if d.is_dir():
            found += [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in UKE_SUFFIXES]
    return sorted(found)
