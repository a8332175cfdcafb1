"""Reader for レセプト電算処理 files (`.UKE`): 医科 (incl. DPC), 歯科 and 調剤 receipts.

Field positions follow the 記録条件仕様 医科用 令和4年4月版 (令和5年3月13日更新) for 医科 and
the 調剤 layout noted in docs/claims_rules.md §2 (no primary 調剤 document was available; the
positions read here are the ones two independent sources agree on). See docs/claims_rules.md §1–§3.

How the file is read (vectorised; a Python loop runs per *chunk*, never per line; speed and the
benchmark in docs/claims_rules.md §7.2):

* the file is read in binary blocks of ``CHUNK_BYTES`` straight into one reused buffer with zero
  padding around the block; a block ends at its last line feed. Shift_JIS (cp932) never uses the
  bytes ``,`` ``\\r`` ``\\n`` inside a 2-byte character, so lines and fields are found on the raw
  bytes with numpy: one pass finds every separator (``,`` and ``\\n``), and a field of a line is two
  look-ups in that array;
* lines are selected by record type once (a look-up table from the 2-byte record id to a small
  number; field-count limits are a table by 点数表 and record type);
* numeric fields (codes, points, counts, dates) are decoded straight from the bytes, 8 digits at a
  time from one unaligned 64-bit word (SWAR arithmetic); quantities (``使用量``) as integer / 10**k;
* text fields (保険者番号・記号・番号, 枝番, 未コード化傷病名の名称) are cut out of the block and
  dictionary-encoded by Arrow; only their distinct values are decoded (cp932, NFKC) and the records
  keep int codes into `RawUke.texts`;
* `assemble` joins records by position: receipt ids are 1..n in file order, so the header, ``HO``,
  ``KO`` and ``SN`` of a receipt are array look-ups, not pandas merges; the 調剤 ``SH`` group of a
  ``CZ`` / ``IY`` line is found while reading (the last ``SH`` above it in the same receipt);
* text columns of the tables are built in Arrow from their distinct values, not as one Python
  string per row; person keys are computed once per distinct 保険者番号・記号・番号・枝番;
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
import pyarrow.compute as pc

from hsutils.inputs import person_keys
from hsutils.core.errors import DataError

CHUNK_BYTES = 8 << 20  # per-block arrays stay small enough to be reused by the allocator (no page faults per block)
PAD = 128  # bytes of zeros around a block (longest field read is 80 bytes)
UKE_SUFFIXES = (".uke",)
EXCLUSION_TABLE = "uke"
SCOPE_LINE = "行"
SCOPE_RECEIPT = "レセプト"

# 元号 code -> year offset (year = offset + YY); docs/claims_rules.md §1.2.
ERA_BASE = np.array([0, 1867, 1911, 1925, 1988, 2018], dtype=np.int64)

# 点数表 (IR idx 3 / YK idx 3; 数字 1 桁固定): IR 1 医科 (docs/formats/uke.md §3) or 3 歯科
# (docs/claims_rules.md §2.2), YK 4 調剤 (docs/formats/uke.md §4). Any other value, or a value that
# is not exactly one digit, makes the header unreadable (its receipts are excluded).
KIND_MEDICAL, KIND_DENTAL, KIND_PHARMACY = 1, 3, 4
KIND_LABELS = {KIND_MEDICAL: "医科", KIND_DENTAL: "歯科", KIND_PHARMACY: "調剤"}
HEADER_KINDS = {"IR": (KIND_MEDICAL, KIND_DENTAL), "YK": (KIND_PHARMACY,)}
HEADER_KIND_EXPECTED = {"IR": "1（医科）または 3（歯科）の1桁", "YK": "4（調剤）の1桁"}

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
    runs from separator k-1 (+1) to separator k; a line's last field ends at the line end.
    The block sits inside a buffer with PAD bytes before and after it (`padded`), so that
    fixed-width reads near its ends need no clipping."""

    buf: np.ndarray
    ls: np.ndarray
    le: np.ndarray
    ffirst: np.ndarray   # index of each line's first field (= separators before the line)
    nf: np.ndarray       # number of fields of each line
    sep: np.ndarray      # positions of ',' and '\n' (plus the block end if it has no '\n')
    _padded: np.ndarray | None = None
    _words: np.ndarray | None = None
    _rows: tuple | None = None   # per-line arrays of the last row selection (see `_row_info`)

    @classmethod
    def from_bytes(cls, data: bytes) -> "_Lines":
        padded = np.zeros(len(data) + 2 * PAD, np.uint8)
        padded[PAD:PAD + len(data)] = np.frombuffer(data, dtype=np.uint8)
        return cls.from_padded(padded, len(data))

    @classmethod
    def from_padded(cls, padded: np.ndarray, n: int) -> "_Lines":
        """The block is padded[PAD:PAD + n]; at least PAD bytes follow it in `padded`."""
        buf = padded[PAD:PAD + n]
        sep = np.flatnonzero((buf == 44) | (buf == 10))
        is_nl = buf[sep] == 10
        if n and buf[-1] != 10:  # a last line without line feed ends at the end of the block
            sep = np.append(sep, n)
            is_nl = np.append(is_nl, True)
        nl = np.flatnonzero(is_nl)                      # index in sep of each line's end
        ends = sep[nl]
        starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
        le = ends.copy()
        # drop a trailing CR and the EOF mark 0x1A (padded[PAD + p] is buf[p]; padded[PAD - 1] is 0)
        for byte in (13, 26, 13):
            le -= (le > starts) & (padded[le + (PAD - 1)] == byte)
        ffirst = np.concatenate([[0], nl[:-1] + 1]) if len(nl) else np.zeros(0, np.int64)
        nf = nl - ffirst + 1
        return cls(buf, starts, le, ffirst, nf, sep, _padded=padded)

    def _row_info(self, rows: np.ndarray) -> tuple:
        """nf, first field, line end and fewest fields of the given lines; kept for the next call
        with the same array (a record type's fields are read one after the other)."""
        if self._rows is None or self._rows[0] is not rows:
            nf = self.nf[rows]
            self._rows = (rows, nf, self.ffirst[rows], self.le[rows], int(nf.min()) if len(rows) else 0)
        return self._rows[1:]

    def span(self, rows: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Start/end of field j of the given lines (empty span where the line has fewer fields)."""
        if not len(rows):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        nf, ff, le, nf_min = self._row_info(rows)
        if j < nf_min - 1:  # every line has a field after j: both ends are separators
            k = ff + j
            return (self.sep[k - 1] + 1 if j else self.ls[rows]), self.sep[k]
        ok = j < nf
        k = ff + np.minimum(j, nf - 1)
        start = self.ls[rows] if j == 0 else self.sep[k - 1] + 1
        end = np.where(j >= nf - 1, le, self.sep[k])
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
        converted with SWAR arithmetic (8 digits per multiply chain, no per-byte matrix); fields
        of at most 2 digits byte by byte. A non-digit byte counts as 0 in the value and makes
        the field invalid."""
        if width > 16:
            raise ValueError("digits() reads at most 16 digits")
        s, e = self.span(rows, j)
        length = e - s
        if width <= 2:
            value, bad = _short_digits(self.padded(), e, length, width)
        else:
            n_in = np.minimum(length, width)
            words = self.words()
            value, bad = None, np.zeros(len(rows), bool)
            for end_off, inside in (((16, np.clip(n_in - 8, 0, 8)), (8, np.minimum(n_in, 8))) if width > 8
                                    else ((8, n_in),)):
                t = words[e + (PAD - end_off)]
                t ^= _ZEROS                      # digit bytes -> 0..9
                t &= _KEEP[inside]               # bytes outside the field -> 0
                high = t & _LOW7
                high += _ADD76
                high |= t
                high &= _HIGH                    # high bit set on a non-digit byte
                odd = np.flatnonzero(high)
                if len(odd):                     # non-digits count 0 (rare: only in broken fields)
                    bad[odd] = True
                    t[odd] &= ~((high[odd] >> np.uint64(7)) * np.uint64(0xFF))
                v = _swar8(t)
                value = v if value is None else value * np.uint64(100_000_000) + v
            value = value.astype(np.int64)
        valid = ~bad & (length > 0) & (length <= width)
        return value, length, valid


_ZEROS = np.uint64(0x3030303030303030)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ADD76 = np.uint64(0x7676767676767676)
_HIGH = np.uint64(0x8080808080808080)
# _KEEP[n]: mask of the last n bytes of an 8-byte little-endian word (its n most significant bytes)
_KEEP = np.array([((1 << 64) - 1) & ~((1 << (64 - 8 * n)) - 1) for n in range(9)], dtype=np.uint64)


def _swar8(t: np.ndarray) -> np.ndarray:
    """Eight bytes 0..9 (first byte = most significant digit, little-endian word) -> integer.
    Works in place on `t`."""
    for mul, shift, mask in ((10, 8, 0x00FF00FF00FF00FF), (100, 16, 0x0000FFFF0000FFFF),
                             (10000, 32, 0xFFFFFFFF)):
        hi = t >> np.uint64(shift)
        t *= np.uint64(mul)
        t += hi
        t &= np.uint64(mask)
    return t


def _short_digits(padded: np.ndarray, end: np.ndarray, length: np.ndarray, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Value and 'has a non-digit' of the last min(length, width) bytes before `end` (width <= 2),
    with the same rules as the SWAR path of `_Lines.digits`."""
    value = np.zeros(len(end), np.int64)
    bad = np.zeros(len(end), bool)
    for k in range(width):
        d = padded[end + (PAD - 1 - k)] ^ np.uint8(48)
        inside = length > k
        digit = d < 10
        value += np.where(inside & digit, d, 0) * 10 ** k
        bad |= inside & ~digit
    return value, bad


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
    for lines, first in _padded_blocks(path, chunk_bytes):
        yield lines.buf.tobytes(), first


def _padded_blocks(path: Path, chunk_bytes: int = CHUNK_BYTES, start: int = 0, stop: int | None = None,
                   first_line: int = 1):
    """Yield (`_Lines`, first line number) of blocks that end at a line feed (the last one may
    not). The file is read straight into one reused buffer with PAD bytes around the block: no
    copy of the block is made (a block's arrays must be used before the next one is read).
    ``start``/``stop``/``first_line``: read only bytes [start, stop) of the file, whose first line
    has that number (a segment, `segments`)."""
    line_no = first_line
    carry = b""
    store = bytearray()
    left = None if stop is None else stop - start
    with open(path, "rb") as fh:
        fh.seek(start)
        while True:
            head = PAD + len(carry)
            if len(store) < head + chunk_bytes + PAD:
                store = bytearray(head + chunk_bytes + PAD)
            view = memoryview(store)
            view[PAD:head] = carry
            want = chunk_bytes if left is None else min(chunk_bytes, left)
            got = fh.readinto(view[head:head + want]) if want > 0 else 0
            if left is not None:
                left -= got
            view.release()
            if not got:
                break
            end = head + got
            cut = store.rfind(b"\n", PAD, end)
            if cut < 0:
                carry = bytes(store[PAD:end])
                continue
            carry = bytes(store[cut + 1:end])
            store[cut + 1:cut + 1 + PAD] = bytes(PAD)
            lines = _Lines.from_padded(np.frombuffer(store, np.uint8, count=cut + 1 + PAD), cut + 1 - PAD)
            yield lines, line_no
            line_no += len(lines.ls)
    if carry:
        yield _Lines.from_bytes(carry), line_no


@dataclass
class _State:
    """Context carried from one block to the next (and across files)."""

    n_headers: int = 0
    n_receipts: int = 0
    header_open: bool = False   # last marker was a header (IR/YK): detail lines are orphans
    kind: int = 0               # 点数表 of the current header
    file_first_header: int = 0  # n_headers when the current file started
    sh_receipt: int = -1        # receipt of the last 調剤 SH line read


@dataclass
class RawUke:
    """What the reader extracted, before receipts are checked (arrays per record type).

    Text fields are kept as int32 codes into `texts` (distinct decoded values, '' = 0): a field
    such as 保険者番号 repeats on every receipt and is decoded once."""

    records: dict = field(default_factory=dict)
    exclusions: list = field(default_factory=list)
    lines_read: int = 0
    lines_ignored: int = 0
    files: list = field(default_factory=list)
    n_headers: int = 0
    n_receipts: int = 0
    n_sh: int = 0               # 調剤 SH (処方基本) lines read: their ids are 1..n_sh
    texts: dict = field(default_factory=lambda: {"": 0})
    raw_texts: dict = field(default_factory=dict)   # raw bytes -> code (each value decoded once)

    def add(self, rtype: str, columns: dict) -> None:
        """Keep the arrays of one block; the frame is built once for all blocks (less overhead)."""
        self.records.setdefault(rtype, []).append(columns)

    def text_codes(self, values) -> np.ndarray:
        """Codes of decoded texts (new texts are added)."""
        texts = self.texts
        return np.array([texts.setdefault(v, len(texts)) for v in values], dtype=np.int32)

    def byte_codes(self, values: list) -> np.ndarray:
        """Codes of raw field bytes, decoded as in `_decode` (cp932, NFKC, stripped; trailing NUL
        bytes dropped) the first time a value is seen."""
        seen = self.raw_texts
        new = [b for b in values if b not in seen]
        if new:
            norm = unicodedata.normalize
            texts = [norm("NFKC", b.rstrip(b"\0").decode("cp932", errors="replace")).strip() for b in new]
            seen.update(zip(new, self.text_codes(texts).tolist()))
        return np.array([seen[b] for b in values], dtype=np.int32)

    def labels(self) -> np.ndarray:
        return np.array(list(self.texts) + [None], dtype=object)[:-1]

    def arrays(self, rtype: str) -> dict:
        """The columns of a record type over all blocks; the file as codes into `file_names`."""
        parts = self.records.get(rtype, [])
        cols = {}
        if parts:
            names = self.file_names(rtype)
            for k in parts[0]:
                if k == "file":
                    cols[k] = np.concatenate([np.full(len(p["line"]), names.index(p[k]), np.int32) for p in parts])
                else:
                    cols[k] = np.concatenate([p[k] for p in parts])
        return cols

    def file_names(self, rtype: str) -> list:
        return list(dict.fromkeys(p["file"] for p in self.records.get(rtype, [])))

    def frame(self, rtype: str) -> pd.DataFrame:
        cols = self.arrays(rtype)
        if not cols:
            return pd.DataFrame()
        cols["file"] = pd.Categorical.from_codes(cols["file"], categories=self.file_names(rtype))
        labels = None
        for k in _TEXT_COLUMNS.intersection(cols):  # one category per file / text, not a string per line
            labels = self.labels() if labels is None else labels
            cols[k] = _str_from_codes(cols[k], labels)
        return pd.DataFrame(cols)


# Columns of `RawUke` records held as codes into `RawUke.texts`.
_TEXT_COLUMNS = frozenset({"insurer", "kigo", "bango", "edaban", "uncoded_name", "code_raw", "ym_raw", "type_raw",
                           "points_raw", "start_raw"})


def _excl(file: str, lines: np.ndarray, column, values, reason, scope=SCOPE_LINE) -> pd.DataFrame:
    n = len(lines)
    return pd.DataFrame({
        "file": pd.Series([file] * n, dtype="str"), "table": pd.Series([EXCLUSION_TABLE] * n, dtype="str"),
        "row": np.asarray(lines, dtype=np.int64),
        "column": pd.Series(np.broadcast_to(np.asarray(column, dtype=object), (n,)), dtype="str"),
        "value": pd.Series(np.asarray(values, dtype=object), dtype="str"),
        "reason": pd.Series(np.broadcast_to(np.asarray(reason, dtype=object), (n,)), dtype="str"),
        "scope": pd.Series([scope] * n, dtype="str")})


def _raw_text(lines: _Lines, rows: np.ndarray, j: int, width: int = 40) -> np.ndarray:
    raw, _ = lines.text(rows, j, width)
    return _decode(raw).to_numpy(dtype=object)


def _text_codes(L: _Lines, rows: np.ndarray, j: int, width: int, out: RawUke) -> np.ndarray:
    """Field j (at most `width` bytes) as codes into ``out.texts``, decoded as in `_decode`.

    The fields are cut out of the block by Arrow (a binary array whose offsets are the field
    starts and ends, one value per field and one per gap between fields) and dictionary-encoded
    there; only the distinct values reach Python."""
    n = len(rows)
    if n == 0:
        return np.zeros(0, np.int32)
    s, e = L.span(rows, j)
    e = np.minimum(e, s + width)
    empty = e <= s
    if empty.any():  # an empty span at the line start keeps the offsets in order
        ls = L.ls[rows]
        s, e = np.where(empty, ls, s), np.where(empty, ls, e)
    offsets = np.empty(2 * n + 1, np.int64)
    offsets[0:2 * n:2] = s + PAD
    offsets[1:2 * n:2] = e + PAD
    offsets[2 * n] = offsets[2 * n - 1]
    spans = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 2 * n,
                                             [None, pa.py_buffer(offsets), pa.py_buffer(L.padded())])
    enc = pc.dictionary_encode(spans.take(pa.array(np.arange(0, 2 * n, 2))))
    return out.byte_codes(enc.dictionary.to_pylist())[enc.indices.to_numpy(zero_copy_only=False)]


def _text_codes_where(L: _Lines, rows: np.ndarray, j: int, where: np.ndarray, out: RawUke,
                      width: int = 16, raw: bool = False) -> np.ndarray:
    """Field j as text codes only where `where` (values quoted in exclusion messages); '' elsewhere.
    ``raw``: the value as written (cp932 only: no NFKC, no strip), so that a message about a code
    shows the full-width digits or spaces that made it unreadable."""
    codes = np.zeros(len(rows), np.int32)
    if where.any():
        if raw:
            text, _ = L.text(rows[where], j, width)
            values = [b.decode("cp932", errors="replace") for b in text.tolist()]
        else:
            values = _raw_text(L, rows[where], j, width)
        codes[where] = out.text_codes(values)
    return codes


# Record types as small numbers (for look-up tables indexed by type and 点数表).
_TYPES = sorted(_RT_CODES.values())
_TYPE_NO = {t: i for i, t in enumerate(_TYPES)}
_TYPE_OF_CODE = np.full(65536, -1, np.int16)
for _t in _TYPES:
    _TYPE_OF_CODE[_rt(_t)] = _TYPE_NO[_t]


def _limits_table() -> tuple[np.ndarray, np.ndarray]:
    """(min, max) number of fields by [点数表, record type]; no limit for a type without a layout."""
    lo = np.zeros((10, len(_TYPES)), np.int64)
    hi = np.full((10, len(_TYPES)), 10_000, np.int64)
    for kind, table in ((KIND_MEDICAL, _COUNTS_MEDICAL), (KIND_DENTAL, _COUNTS_DENTAL),
                        (KIND_PHARMACY, _COUNTS_PHARMACY)):
        for t, (a, b) in table.items():
            lo[kind, _TYPE_NO[t]], hi[kind, _TYPE_NO[t]] = a, b
    return lo, hi


_LIMITS = _limits_table()
_HANDLED = np.isin(_TYPES, ["RE", "HO", "KO", "SY", "SI", "IY", "SH", "CZ", "SN", "IR", "YK"])


def _line_text(lines: _Lines, rows: np.ndarray, width: int = 24) -> np.ndarray:
    """The first four fields of each line (for exclusions of whole lines). RE 氏名 is field 4,
    so a patient name is never copied into an exclusion list."""
    end = np.where(lines.nf[rows] > 4, lines.span(rows, 3)[1], lines.le[rows])
    mat, _ = lines.matrix(lines.ls[rows], end, width)
    raw = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel()
    return _decode(raw).to_numpy(dtype=object)


def _header_kind(L: _Lines, rows: np.ndarray, is_ir: np.ndarray) -> np.ndarray:
    """点数表 of IR / YK lines, 0 where it is not one of the codes allowed for that record
    (`HEADER_KINDS`): exactly one digit, IR 1 or 3, YK 4."""
    if not len(rows):
        return np.zeros(0, np.int64)
    value, _, valid = L.digits(rows, 3, 1)
    allowed = np.where(is_ir, np.isin(value, HEADER_KINDS["IR"]), np.isin(value, HEADER_KINDS["YK"]))
    return np.where(valid & allowed, value, 0)


def _read_block(L: _Lines, first_line: int, file: str, st: _State, out: RawUke) -> None:
    n = len(L.ls)
    line_no = first_line + np.arange(n, dtype=np.int64)
    # blank lines (the line after the last CRLF, an EOF mark) are neither records nor errors
    rows = np.flatnonzero(L.le > L.ls)
    out.lines_read += len(rows)
    p = L.padded()
    ls = L.ls[rows]
    first_end = np.where(L.nf[rows] == 1, L.le[rows], L.sep[L.ffirst[rows]])
    code = np.where(first_end - ls == 2, p[ls + PAD].astype(np.int32) * 256 + p[ls + (PAD + 1)], 0)
    tcode = _TYPE_OF_CODE[code]
    known = tcode >= 0
    if not known.all():
        bad = rows[~known]
        out.exclusions.append(_excl(file, line_no[bad], "レコード識別情報", _line_text(L, bad),
                                    "レコード識別情報が記録条件仕様にありません（IR, RE, HO, SY, SI, IY など2文字）"))
        rows, tcode = rows[known], tcode[known]

    # context: header id, receipt id, 点数表 of each line
    is_hdr = (tcode == _TYPE_NO["IR"]) | (tcode == _TYPE_NO["YK"])
    is_re = tcode == _TYPE_NO["RE"]
    hdr_rows = rows[is_hdr]
    ir_h = tcode[is_hdr] == _TYPE_NO["IR"]
    kind_h = _header_kind(L, hdr_rows, ir_h)
    hdr_id = st.n_headers + np.cumsum(is_hdr)
    re_id = st.n_receipts + np.cumsum(is_re)
    marker = np.where(is_hdr, 1, np.where(is_re, 2, 0))
    pos = np.where(marker > 0, np.arange(len(rows)), -1)
    last = np.maximum.accumulate(pos) if len(pos) else pos
    last_kind = np.where(last >= 0, marker[np.maximum(last, 0)], 2 if not st.header_open else 1)
    no_header = (hdr_id == st.file_first_header) & ~is_hdr
    orphan = ((last_kind == 1) & ~is_hdr & (tcode != _TYPE_NO["GO"])) | no_header
    kind_all = np.concatenate([[st.kind], kind_h])
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
    lo, hi = _LIMITS[0][line_kind, tcode], _LIMITS[1][line_kind, tcode]
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
        ir = ir_h
        pref, _, pok = L.digits(hdr_rows, 2, 2)
        inst, _, iok = L.digits(hdr_rows, 4, 7)
        kok = kind_h > 0
        # an unreadable 点数表 / 医療機関コード is listed at the header line (its receipts are
        # excluded in `assemble` with a pointer to this line); values as written
        kind_raw = _text_codes_where(L, hdr_rows, 3, ~kok, out, raw=True)
        inst_raw = _text_codes_where(L, hdr_rows, 4, ~iok, out, raw=True)
        hdr_use = use[is_hdr]
        rec_name = np.where(ir, "IR", "YK")
        for bad, column, expected, raw in (
                (hdr_use & ~kok, np.char.add(rec_name, " 点数表"),
                 np.where(ir, HEADER_KIND_EXPECTED["IR"], HEADER_KIND_EXPECTED["YK"]), kind_raw),
                (hdr_use & kok & ~iok, np.where(ir, "IR 医療機関コード", "YK 薬局コード"), "7桁", inst_raw)):
            if bad.any():
                what = np.char.add(np.char.add(column[bad], "が記録条件仕様の値ではありません（"),
                                   np.char.add(np.broadcast_to(expected, bad.shape)[bad], "の数字）"))
                out.exclusions.append(_excl(file, line_no[hdr_rows[bad]], column[bad],
                                            out.labels()[raw[bad]], what))
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
            "kind": kind_h, "pref": np.where(pok, pref, 0),
            "institution": np.where(iok, inst, -1), "claim_ym": np.where(cok, claim_ym, 0),
            "header_ok": hdr_use & kok & iok, "is_ir": ir, "kind_raw": kind_raw, "inst_raw": inst_raw}))
        st.kind = int(kind_all[-1])
    st.n_headers = int(hdr_id[-1]) if len(hdr_id) else st.n_headers
    st.n_receipts = int(re_id[-1]) if len(re_id) else st.n_receipts
    if len(last):
        st.header_open = bool(last_kind[-1] == 1)

    rid = np.where(orphan, 0, re_id)
    used_type = np.where(use, tcode, -1)

    def rows_of(t: str, kind: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Used lines of record type t (of one 点数表 if given), in file order."""
        m = used_type == _TYPE_NO[t]
        if kind is not None:
            m &= line_kind == kind
        sel = np.flatnonzero(m)
        return rows[sel], sel

    def frame(sel_idx: np.ndarray, **cols) -> dict:
        return {"receipt_id": rid[sel_idx], "file": file, "line": line_no[rows[sel_idx]], **cols}

    # RE (all kinds)
    r, s = rows_of("RE")
    if len(r):
        rtype, _, tok = L.digits(r, 2, 4)
        ymv, ylen, yok = L.digits(r, 3, 6)
        ym, ymok = decode_date(ymv, ylen, yok, with_day=False)
        sex, _, sok = L.digits(r, 5, 1)
        rx_institution = np.full(len(r), -1, np.int64)
        pk = np.flatnonzero(line_kind[s] == KIND_PHARMACY)   # 処方医療機関: 調剤 receipts only
        if len(pk):
            rp = r[pk]
            ppref, _, _ = L.digits(rp, 9, 2)
            ptab, _, _ = L.digits(rp, 10, 1)
            pinst, _, piok = L.digits(rp, 11, 7)
            rx_institution[pk] = np.where(piok, ppref * 10**8 + ptab * 10**7 + pinst, -1)
        tok &= rtype >= 1000  # レセプト種別: 4 digits (docs/claims_rules.md §4.2)
        out.add("RE", frame(s, header_id=hdr_id[s], kind=line_kind[s], receipt_type=np.where(tok, rtype, -1),
                            type_raw=_text_codes_where(L, r, 2, ~tok, out, raw=True),
                            ym=ym, ym_ok=ymok, ym_raw=_text_codes_where(L, r, 3, ~ymok, out),
                            sex=np.where(sok, sex, 0), rx_institution=rx_institution))
    # HO
    r, s = rows_of("HO")
    if len(r):
        pts, _, pok = L.digits(r, 5, 8)
        out.add("HO", frame(s, insurer=_text_codes(L, r, 1, 8, out), kigo=_text_codes(L, r, 2, 40, out),
                            bango=_text_codes(L, r, 3, 40, out), points=np.where(pok, pts, -1),
                            points_raw=_text_codes_where(L, r, 5, ~pok, out, raw=True)))
    # KO (only counted per receipt)
    r, s = rows_of("KO")
    if len(r):
        out.add("KO", frame(s))
    # SN 枝番
    r, s = rows_of("SN")  # 資格確認 (医科・歯科・調剤 alike: docs/claims_rules.md §1.3)
    if len(r):
        who, _, _ = L.digits(r, 1, 1)
        out.add("SN", frame(s, payer_kind=who, edaban=_text_codes(L, r, 6, 4, out)))
    # SY
    r, s = rows_of("SY", KIND_MEDICAL)
    if len(r):
        dcode, dlen, dok = L.digits(r, 1, 7)
        sv, sl, sok = L.digits(r, 2, 8)
        start, stok = decode_date(sv, sl, sok, with_day=True)
        outcome, _, ook = L.digits(r, 3, 1)
        suspected = _has_modifier(L, r, 4, SUSPECTED_MODIFIER)
        main, _, mok = L.digits(r, 6, 2)
        uncoded = dok & (dcode == UNCODED_DISEASE)
        name = np.zeros(len(r), np.int32)
        if uncoded.any():
            name[uncoded] = _text_codes(L, r[uncoded], 5, 80, out)
        cok = dok & (dlen == 7)
        out.add("SY", frame(s, code=np.where(cok, dcode, -1), code_raw=_text_codes_where(L, r, 1, ~cok, out, raw=True),
                            start=start, start_ok=stok,
                            start_raw=_text_codes_where(L, r, 2, ~stok, out), outcome=np.where(ook, outcome, 0),
                            suspected=suspected, main=mok & (main == 1), uncoded_name=name))
    # SI / IY (医科)
    for t in ("SI", "IY"):
        r, s = rows_of(t, KIND_MEDICAL)
        if len(r):
            cls_, _, cok = L.digits(r, 1, 2)
            c, clen, ok = L.digits(r, 3, 9)
            qty = _decimal(L, r, 4)
            pts, plen, pok = L.digits(r, 5, 7)
            times, _, tok = L.digits(r, 6, 3)
            out.add(t, frame(s, cls=np.where(cok, cls_, -1), code=np.where(ok & (clen == 9), c, -1),
                             quantity=qty, points=np.where(pok, pts, -1), times=np.where(tok, times, 0),
                             code_raw=_text_codes_where(L, r, 3, ~(ok & (clen == 9)), out)))
    # 調剤: SH (剤形), CZ (調剤数量), IY; each CZ and IY line belongs to the last SH above it in
    # the same receipt (sh = its id, 0 = none; docs/claims_rules.md §2.3)
    is_sh = (used_type == _TYPE_NO["SH"]) & (line_kind == KIND_PHARMACY)
    sh_count = np.cumsum(is_sh)
    sh_receipt = np.concatenate([[st.sh_receipt], rid[is_sh]])

    def sh_of(sel_idx: np.ndarray) -> np.ndarray:
        k = sh_count[sel_idx]
        return np.where(sh_receipt[k] == rid[sel_idx], out.n_sh + k, 0)

    r, s = rows_of("SH", KIND_PHARMACY)
    if len(r):
        form, _, fok = L.digits(r, 2, 1)
        out.add("SH", frame(s, sh=out.n_sh + sh_count[s], form=np.where(fok, form, 0)))
    r, s = rows_of("CZ", KIND_PHARMACY)
    if len(r):
        qty, _, qok = L.digits(r, 5, 3)
        out.add("CZ", frame(s, sh=sh_of(s), days=np.where(qok, qty, 0)))
    r, s = rows_of("IY", KIND_PHARMACY)
    if len(r):
        c, clen, ok = L.digits(r, 2, 9)
        out.add("IYP", frame(s, code=np.where(ok & (clen == 9), c, -1), quantity=_decimal(L, r, 3),
                             code_raw=_text_codes_where(L, r, 2, ~(ok & (clen == 9)), out), sh=sh_of(s)))
    if len(sh_count) and sh_count[-1]:
        out.n_sh += int(sh_count[-1])
        st.sh_receipt = int(sh_receipt[-1])
    out.lines_ignored += int((use & ~_HANDLED[tcode]).sum())


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
    """Non-negative ints as zero-padded decimal strings of `width`, a pandas ``str`` array. Codes
    repeat (institutions, drugs, diseases): only the distinct values are formatted."""
    v = np.asarray(values, dtype=np.int64)
    uniq, inverse = np.unique(v, return_inverse=True)
    return _str_from_codes(inverse.ravel(), [str(x).zfill(width) for x in uniq.tolist()])


_POW10 = np.array([float(10 ** k) for k in range(13)])


def _decimal(L: _Lines, rows: np.ndarray, j: int) -> np.ndarray:
    """Field j (first 12 bytes) as float, NaN when empty. Plain decimals (digits with at most one
    '.') are converted here: integer of the digits / 10**(digits after the point), both exact
    doubles, so the quotient is the correctly rounded value that float() gives. Anything else
    (sign, blank, exponent, letters) goes through float() / pandas as before."""
    s, e = L.span(rows, j)
    mat, _ = L.matrix(s, e, 12)
    d = mat ^ np.uint8(48)
    inside = np.arange(mat.shape[1]) < np.minimum(e - s, 12)[:, None]
    digit = d < 10
    point = mat == 46
    n_point = point.sum(axis=1)
    plain = ((digit | point) == inside).all(axis=1) & (n_point <= 1) & (digit.any(axis=1) | ~inside.any(axis=1))
    if not plain.all():
        raw = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel()
        raw = np.where(raw == b"", b"nan", raw)
        try:
            return raw.astype(np.float64)
        except ValueError:
            return pd.to_numeric(pd.Series(raw.astype(object)).str.decode("ascii", errors="replace"),
                                 errors="coerce").to_numpy(dtype=float)
    value = np.zeros(len(rows), np.int64)
    for c in range(mat.shape[1]):
        value = np.where(digit[:, c], value * 10 + d[:, c], value)
    after = (digit & (np.cumsum(point, axis=1) > 0)).sum(axis=1)
    out = value / _POW10[after]
    out[~inside.any(axis=1)] = np.nan
    return out


def file_label(path, root=None) -> str:
    """How a file is named in the tables and exclusions: its path relative to ``root`` (the data
    folder; ``/``-separated, so that two same-named files in two sub-folders stay apart), else
    its base name (docs/claims_rules.md §4.1)."""
    path = Path(path)
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def read_raw(paths, chunk_bytes: int = CHUNK_BYTES, root=None) -> RawUke:
    """Stream one or more UKE files into per-record arrays (see module docstring); files are
    named by `file_label` (relative to ``root`` when given)."""
    out = RawUke()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"レセプト電算ファイル {path} が見つかりません")
        _read_range(out, path, file_label(path, root), chunk_bytes)
    return out


def _read_range(out: RawUke, path: Path, name: str, chunk_bytes: int, start: int = 0, stop: int | None = None,
                first_line: int = 1) -> None:
    st = _State(n_headers=out.n_headers, n_receipts=out.n_receipts, file_first_header=out.n_headers)
    out.files.append(name)
    for lines, first in _padded_blocks(path, chunk_bytes, start, stop, first_line):
        _read_block(lines, first, name, st, out)
    out.n_headers, out.n_receipts = st.n_headers, st.n_receipts


SEGMENT_BYTES = 16 << 20  # a file is read in segments of about this size (bounded memory; docs/claims_rules.md §7.1)
_HEADER_STARTS = (b"\nIR,", b"\nYK,")


def segments(path, segment_bytes: int | None = None, chunk_bytes: int = CHUNK_BYTES) -> list[tuple]:
    """(start byte, stop byte, first line number) of consecutive segments of a file, each of at
    least ``segment_bytes`` (except the last) and each after the first starting at an ``IR`` /
    ``YK`` line. A receipt never spans an institution header, so a segment read alone
    (`read_segment`) gives the rows, exclusions and counts of that part of the one-pass read."""
    path = Path(path)
    segment_bytes = segment_bytes or SEGMENT_BYTES
    size = path.stat().st_size
    bounds, start, line_no = [], 0, 1
    with open(path, "rb") as fh:
        while size - start > segment_bytes:
            cut = _next_header(fh, start + segment_bytes, chunk_bytes)
            if cut < 0:
                break
            fh.seek(start)
            n, left = 0, cut - start
            while left:
                block = fh.read(min(chunk_bytes, left))
                n += block.count(b"\n")
                left -= len(block)
            bounds.append((start, cut, line_no))
            start, line_no = cut, line_no + n
    bounds.append((start, size, line_no))
    return bounds


def _next_header(fh, target: int, chunk_bytes: int) -> int:
    """Byte offset of the first ``IR`` / ``YK`` line starting at or after ``target`` (-1: none)."""
    pos = target - 1  # the line feed before the header
    while True:
        fh.seek(pos)
        block = fh.read(chunk_bytes + 3)  # blocks overlap by 3 bytes: a 4-byte mark is never split
        if len(block) < 4:
            return -1
        hits = [i for i in (block.find(h) for h in _HEADER_STARTS) if i >= 0]
        if hits:
            return pos + min(hits) + 1
        pos += chunk_bytes


def read_segment(path, name: str, start: int, stop: int, first_line: int,
                 chunk_bytes: int = CHUNK_BYTES) -> "UkeTables":
    """One segment of a file (`segments`) read and checked alone; receipt ids are 1..n within the
    segment and lines are numbered as in the whole file."""
    out = RawUke()
    _read_range(out, Path(path), name, chunk_bytes, start, stop, first_line)
    return assemble(out)


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
    return np.asarray(pref, np.int64) * 10**8 + np.asarray(kind, np.int64) * 10**7 + np.asarray(inst, np.int64)


_SETTINGS = [SETTING_INPATIENT, SETTING_OUTPATIENT, SETTING_DENTAL, SETTING_PHARMACY]


def _setting(kind: np.ndarray, receipt_type: np.ndarray) -> np.ndarray:
    """入院 / 入院外 from the last digit of レセプト種別 (odd = 入院, docs/claims_rules.md §5); as
    codes into `_SETTINGS`."""
    inpatient = (receipt_type % 2) == 1
    return np.where(kind == KIND_DENTAL, 2, np.where(kind == KIND_PHARMACY, 3, np.where(inpatient, 0, 1)))


# Receipt-level checks in the order they are applied (the first that fails is reported).
_RECEIPT_CHECKS = [
    ("IR 医療機関コード", "医療機関情報レコード（IR/YK）の点数表・医療機関コードが読めません"),
    ("RE 診療年月", "診療年月が日付として読めません（西暦 YYYYMM 6桁、または元号1桁＋年月4桁の5桁）"),
    ("RE レセプト種別", "レセプト種別が4桁の数字ではありません"),
    ("HO", "保険者レコード（HO）がありません（公費単独のレセプトはこの集計の対象外です）"),
    ("HO 合計点数", "合計点数が数字ではありません"),
    ("HO 保険者番号", "保険者番号が空欄です"),
    ("HO 番号", "被保険者証等の番号が空欄です"),
]

# Empty record arrays (a file set without any line of that record type).
_EMPTY = {
    "HDR": {"header_id": np.int64, "line": np.int64, "kind": np.int64, "pref": np.int64, "institution": np.int64,
            "header_ok": bool, "is_ir": bool, "kind_raw": np.int32, "inst_raw": np.int32},
    "RE": {"receipt_id": np.int64, "file": np.int32, "line": np.int64, "header_id": np.int64,
           "receipt_type": np.int64, "type_raw": np.int32, "ym": np.int64, "ym_ok": bool, "ym_raw": np.int32,
           "sex": np.int64,
           "rx_institution": np.int64},
    "HO": {"receipt_id": np.int64, "file": np.int32, "line": np.int64, "insurer": np.int32, "kigo": np.int32,
           "bango": np.int32, "points": np.int64, "points_raw": np.int32},
    "SN": {"receipt_id": np.int64, "payer_kind": np.int64, "edaban": np.int32},
    "KO": {"receipt_id": np.int64},
}


def _arrays(raw: RawUke, rtype: str) -> dict:
    return raw.arrays(rtype) or {k: np.zeros(0, d) for k, d in _EMPTY[rtype].items()}


def _positions(ids: np.ndarray, n: int) -> np.ndarray:
    """Row of each id 0..n-1 in `ids` (its first row), -1 where absent."""
    pos = np.full(n, -1, np.int64)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    pos[ids[first[::-1]]] = first[::-1]  # ids ascend in file order; any order works (first kept)
    return pos


def _code_or_none(code: np.ndarray, width: int):
    """Zero-padded codes as a pandas ``str`` array, missing where code < 0 (as an object array of
    None when no code is present, which is what pandas makes of an all-None column)."""
    code = np.asarray(code, np.int64)
    has = code >= 0
    if not has.any():
        return np.full(len(code), None, dtype=object)
    uniq, inverse = np.unique(np.where(has, code, code[has][0]), return_inverse=True)
    labels = pa.array([str(x).zfill(width) for x in uniq.tolist()], pa.large_string())
    idx = pa.array(inverse.ravel().astype(np.int32), mask=~has)
    return pd.array(pa.DictionaryArray.from_arrays(idx, labels).dictionary_decode(), dtype="str")


def _person_keys(insurer, kigo, bango, edaban, labels: np.ndarray):
    """`person_keys.person_key` of each receipt, computed once per distinct (保険者番号, 記号, 番号,
    枝番) text codes: a person's receipts repeat the same four texts every month."""
    n_text = np.int64(len(labels) + 1)
    a, _ = pd.factorize(np.asarray(insurer, np.int64) * n_text + kigo)
    b, _ = pd.factorize(np.asarray(bango, np.int64) * n_text + edaban)
    combo, uniq = pd.factorize(a.astype(np.int64) * (b.max() + 1 if len(b) else 1) + b)
    first = np.zeros(len(uniq), np.int64)
    first[combo[::-1]] = np.arange(len(combo))[::-1]
    keys = person_keys.person_key(labels[insurer[first]], labels[kigo[first]], labels[bango[first]],
                                  labels[edaban[first]]).array
    return keys.take(combo)


def assemble(raw: RawUke) -> UkeTables:
    """Check receipts and build the long tables (docs/claims_rules.md §4).

    Receipt ids are 1..raw.n_receipts in file order, header ids 1..raw.n_headers: records are
    joined by position (an array indexed by id), not by pandas merges."""
    excl = [e for e in raw.exclusions if len(e)]
    labels = raw.labels()
    n_ids = raw.n_receipts + 1
    hd, rec, ho = _arrays(raw, "HDR"), _arrays(raw, "RE"), _arrays(raw, "HO")
    re_files = raw.file_names("RE")
    rid = rec["receipt_id"]

    # the header of each receipt (a sentinel row for a receipt without one)
    hpos = np.full(raw.n_headers + 1, len(hd["header_id"]), np.int64)
    hpos[hd["header_id"]] = np.arange(len(hd["header_id"]))
    hp = hpos[rec["header_id"]]
    hkind, pref, inst, header_ok = (np.append(hd[k], v)[hp] for k, v in (
        ("kind", 0), ("pref", 0), ("institution", -1), ("header_ok", 0)))
    header_ok = header_ok != 0

    # HO: exactly one per receipt
    ho_rid = ho["receipt_id"]
    dup = np.r_[False, ho_rid[1:] == ho_rid[:-1]] if len(ho_rid) else np.zeros(0, bool)
    if dup.any():
        excl.append(_excl_rows(ho["file"][dup], raw.file_names("HO"), ho["line"][dup], "HO",
                               "1つのレセプトに保険者レコード（HO）が複数あります（最初の HO を使います）"))
    ho_of = _positions(ho_rid, n_ids)[rid]
    has_ho = ho_of >= 0
    ho_of = np.where(has_ho, ho_of, len(ho_rid))   # the sentinel row
    insurer, kigo, bango, points = (np.append(ho[k], v)[ho_of] for k, v in (
        ("insurer", 0), ("kigo", 0), ("bango", 0), ("points", 0)))

    # receipt checks: the first failing one is the reason (index into _RECEIPT_CHECKS, -1 = kept)
    failed = np.full(len(rid), -1, np.int64)
    for k, fails in enumerate((~header_ok, ~rec["ym_ok"], rec["receipt_type"] < 1000, ~has_ho,
                               has_ho & (points < 0), has_ho & (insurer == 0), has_ho & (bango == 0))):
        failed[(failed < 0) & fails] = k
    bad = failed >= 0
    if bad.any():
        k = failed[bad]
        # the value each reason is about, as written: 診療年月, レセプト種別, HO 合計点数; a missing
        # HO or an empty 保険者番号 / 番号 has no value ('')
        ho_raw = np.append(ho["points_raw"], 0)[ho_of[bad]]
        vals = np.select([k == 1, k == 2, k == 4],
                         [labels[rec["ym_raw"][bad]], labels[rec["type_raw"][bad]], labels[ho_raw]],
                         np.array("", dtype=object)).astype(object)
        checks = np.array(_RECEIPT_CHECKS + [("", "")], dtype=object)
        columns, reasons = checks[k, 0], checks[k, 1]
        at = np.flatnonzero(bad)[k == 0]
        if len(at):  # an unreadable IR/YK: name its line, the field and the value as written
            columns[k == 0], reasons[k == 0], vals[k == 0] = _header_failure(hd, hp[at], labels)
        excl.append(_excl_rows(rec["file"][bad], re_files, rec["line"][bad], columns, reasons,
                               values=vals.astype(str), scope=SCOPE_RECEIPT))
    keep = ~bad
    kid = rid[keep]
    kind = hkind[keep]
    receipts = pd.DataFrame({
        "receipt_id": kid, "file": _str_from_codes(rec["file"][keep], re_files),
        "line": rec["line"][keep], "kind": _str_from_codes(np.searchsorted([1, 3, 4], kind),
                                                           [KIND_LABELS[k] for k in (1, 3, 4)]),
        "setting": _str_from_codes(_setting(kind, rec["receipt_type"][keep]), _SETTINGS),
        "ym": rec["ym"][keep], "receipt_type": rec["receipt_type"][keep],
        "institution": _int_str(_institution_code(pref[keep], kind, inst[keep]), 10),
        "rx_institution": _code_or_none(rec["rx_institution"][keep], 10),
        "sex": rec["sex"][keep],
        "insurer": _str_from_codes(insurer[keep], labels), "kigo": _str_from_codes(kigo[keep], labels),
        "bango": _str_from_codes(bango[keep], labels),
        "points": points[keep]})
    receipts["yen"] = receipts["points"] * YEN_PER_POINT
    receipts["n_kouhi"] = np.bincount(_arrays(raw, "KO")["receipt_id"], minlength=n_ids)[kid].astype(np.int64)
    # 枝番: the first SN (資格確認) of the insured person (payer kind 1) of each receipt
    sn = _arrays(raw, "SN")
    own = sn["payer_kind"] == 1
    sn_of = _positions(sn["receipt_id"][own], n_ids)[kid]
    edaban = np.append(sn["edaban"][own], 0)[np.where(sn_of >= 0, sn_of, own.sum())]
    receipts["edaban"] = (_str_from_codes(edaban, labels) if len(kid) else np.zeros(0, dtype=object))
    # one person key with the 特定健診 XML reader (docs/formats/person_key.md §1)
    receipts["person_key"] = _person_keys(insurer[keep], kigo[keep], bango[keep], edaban, labels)
    kept = np.zeros(n_ids, bool)
    kept[kid] = True

    # diagnoses
    sy = raw.frame("SY")
    if not sy.empty:
        sy = sy[kept[sy["receipt_id"].to_numpy()]]
        badc = sy["code"] < 0
        if badc.any():
            excl.append(_excl_frame(sy[badc], "SY 傷病名コード", "傷病名コードが7桁の数字ではありません"))
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
            "start": _ymd_dates(sy["start"].to_numpy(np.int64), sy["start_ok"].to_numpy(bool)),
            "outcome": sy["outcome"].to_numpy(np.int64), "suspected": suspected.to_numpy(bool),
            "main": sy["main"].to_numpy(bool),
            "uncoded_name": sy["uncoded_name"].array if len(sy) else sy["uncoded_name"].to_numpy()})
    else:
        diagnoses = pd.DataFrame({c: pd.Series(dtype=d) for c, d in (
            ("receipt_id", "int64"), ("file", "str"), ("line", "int64"), ("code", "str"),
            ("start", "datetime64[ns]"), ("outcome", "int64"), ("suspected", "bool"), ("main", "bool"),
            ("uncoded_name", "str"))})

    # procedures (SI) and drugs (医科 IY + 調剤 IY)
    procedures = _detail(raw.frame("SI"), kept, excl, "SI 診療行為コード", "診療行為コード")
    iy = _detail(raw.frame("IY"), kept, excl, "IY 医薬品コード", "医薬品コード")
    drugs_med = pd.DataFrame({
        "receipt_id": iy["receipt_id"], "file": iy["file"], "line": iy["line"], "code": iy["code"],
        "quantity": iy["quantity"], "form_code": np.where(iy["cls"] == 22, 3, np.where(iy["cls"] == 23, 5,
                                                                                      np.where(iy["cls"] == 21, 1, 0))),
        "cls": iy["cls"], "days": np.where(iy["cls"] == 21, iy["times"], 0), "dispensed": "院内"})
    iyp = _detail(raw.frame("IYP"), kept, excl, "IY 医薬品コード", "医薬品コード")
    if not iyp.empty:
        form, days = _pharmacy_groups(raw, iyp["sh"].to_numpy())
        drugs_ph = pd.DataFrame({
            "receipt_id": iyp["receipt_id"], "file": iyp["file"], "line": iyp["line"], "code": iyp["code"],
            "quantity": iyp["quantity"], "form_code": form, "cls": -1, "days": days, "dispensed": "院外"})
        drugs = pd.concat([drugs_med, drugs_ph], ignore_index=True)
    else:
        drugs = drugs_med
    exclusions = pd.concat(excl, ignore_index=True) if excl else _excl("", np.zeros(0, np.int64), "", [], "")
    if not exclusions.empty:
        exclusions = exclusions.sort_values(["file", "row"], kind="stable").reset_index(drop=True)
    n_line_excl = int((exclusions["scope"] == SCOPE_LINE).sum()) if not exclusions.empty else 0
    counts = {"files": len(raw.files), "lines_read": raw.lines_read, "lines_excluded": n_line_excl,
              "lines_ignored": raw.lines_ignored, "receipts_read": len(rid),
              "receipts_kept": len(receipts), "receipts_excluded": int(bad.sum())}
    return UkeTables(receipts=receipts, diagnoses=diagnoses, procedures=procedures, drugs=drugs,
                     exclusions=exclusions, counts=counts)


def _header_failure(hd: dict, at: np.ndarray, labels: np.ndarray) -> tuple:
    """Column, reason and value of the receipt exclusion for receipts whose IR/YK (rows `at` of the
    header arrays; a sentinel row past the end = no header) is unreadable: the field that failed
    (点数表, 医療機関コード / 薬局コード, else the line itself, listed for its number of fields),
    its value as written, and the header's line number."""
    n = len(hd["header_id"])
    present = at < n
    a = np.where(present, at, 0)
    take = (lambda k: hd[k][a]) if n else (lambda k: np.zeros(len(at), _EMPTY["HDR"][k]))
    is_ir = take("is_ir") | ~present
    name = np.where(is_ir, "IR", "YK")
    kind_bad = (take("kind") == 0) & present
    inst_bad = (take("institution") < 0) & present & ~kind_bad
    field_name = np.where(kind_bad, "点数表", np.where(inst_bad, np.where(is_ir, "医療機関コード", "薬局コード"),
                                                        "項目数"))
    value = np.where(kind_bad, labels[take("kind_raw")], np.where(inst_bad, labels[take("inst_raw")], ""))
    line = np.where(present, take("line"), 0).astype(str)
    where = np.char.add(np.char.add(np.char.add(name, "、"), line), "行目")
    reason = np.char.add(np.char.add(np.char.add("医療機関情報レコード（", where), "）の"), field_name)
    reason = np.char.add(np.char.add(np.char.add(reason, "が読めないため、このレセプトは集計できません（"), line),
                         "行目の除外理由を参照）")
    return (np.char.add(np.char.add(name, " "), field_name).astype(object), reason.astype(object),
            value.astype(object))


def _ymd_dates(ymd: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """YYYYMMDD ints (valid where ok) as datetime64, NaT elsewhere; the unit is the one that
    pandas.to_datetime gives for such strings (us, or s when there is no date at all)."""
    months = (ymd // 10000 - 1970) * 12 + (ymd // 100 % 100 - 1)
    days = months.astype("M8[M]").astype("M8[D]") + (ymd % 100 - 1)
    return np.where(ok, days, np.datetime64("NaT")).astype("M8[us]" if ok.any() else "M8[s]")


def _excl_rows(file_codes: np.ndarray, file_names: list, lines: np.ndarray, column, reason, values="",
               scope: str = SCOPE_LINE) -> pd.DataFrame:
    """Exclusion rows of record arrays (the file as codes into `file_names`)."""
    return pd.DataFrame({"file": _str_from_codes(file_codes, file_names), "table": EXCLUSION_TABLE,
                         "row": np.asarray(lines, np.int64), "column": column, "value": values,
                         "reason": reason, "scope": scope})


def _excl_frame(d: pd.DataFrame, column: str, reason: str, values=None, scope: str = SCOPE_LINE) -> pd.DataFrame:
    vals = d["code_raw"] if values is None and "code_raw" in d else (values if values is not None else "")
    return pd.DataFrame({"file": d["file"].astype(str).to_numpy(), "table": EXCLUSION_TABLE,
                         "row": d["line"].to_numpy(np.int64), "column": column,
                         "value": pd.Series(vals).astype(str).to_numpy() if not isinstance(vals, str) else vals,
                         "reason": reason, "scope": scope})


def _detail(df: pd.DataFrame, kept: np.ndarray, excl: list, column: str, what: str) -> pd.DataFrame:
    """Lines of kept receipts (`kept`: bool by receipt id) with a readable code."""
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in (
            ("receipt_id", "int64"), ("file", "str"), ("line", "int64"), ("code", "str"), ("quantity", "float64"),
            ("cls", "int64"), ("points", "int64"), ("times", "int64"))})
    df = df[kept[df["receipt_id"].to_numpy()]]
    badc = df["code"] < 0
    if badc.any():
        excl.append(_excl_frame(df[badc], column, f"{what}が9桁の数字ではありません"))
    df = df[~badc].copy()
    if "cls" in df:
        # 診療識別 may be left empty on the following records of a group: carry it forward
        df["cls"] = _fill_forward(df["cls"].to_numpy(np.int64), df["receipt_id"].to_numpy())
    df["code"] = _int_str(df["code"].to_numpy(), 9)
    return df.reset_index(drop=True)


def _fill_forward(values: np.ndarray, receipt: np.ndarray) -> np.ndarray:
    """Negative values (empty) take the last non-negative value above them in the same receipt,
    -1 when there is none. A receipt's lines are consecutive (ids ascend in file order)."""
    n = len(values)
    at = np.arange(n)
    last = np.maximum.accumulate(np.where(values >= 0, at, -1)) if n else at
    first = np.maximum.accumulate(np.where(np.r_[True, receipt[1:] != receipt[:-1]], at, 0)) if n else at
    return np.where(last >= first, values[last], -1).astype(np.int64)


def _pharmacy_groups(raw: RawUke, sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """剤形 and days of 調剤 IY lines given their SH (処方基本) ids: the form of that SH and the
    sum of the 調剤数量 of the CZ lines of that SH group (docs/claims_rules.md §2.3). The reader
    gives each CZ / IY line the id of the last SH above it in the same receipt (0 = none)."""
    form = np.zeros(raw.n_sh + 1, np.int64)
    days = np.zeros(raw.n_sh + 1, np.int64)
    sh_rec, cz = raw.arrays("SH"), raw.arrays("CZ")
    if sh_rec:
        form[sh_rec["sh"]] = sh_rec["form"]
        if cz:
            days = np.bincount(cz["sh"], weights=cz["days"], minlength=raw.n_sh + 1).astype(np.int64)
            days[0] = 0
    return form[sh], days[sh]


def read_uke(paths, chunk_bytes: int = CHUNK_BYTES, root=None) -> UkeTables:
    """Read UKE files into receipts / diagnoses / procedures / drugs (+ exclusions, counts); files
    are named relative to ``root`` (the data folder) when given, else by their base name."""
    return assemble(read_raw(paths, chunk_bytes=chunk_bytes, root=root))


def find_uke_files(folder) -> list[Path]:
    """UKE files of a data folder: ``*.UKE`` directly in it or in its ``uke/`` sub-folder."""
    folder = Path(folder)
    found = []
    for d in (folder, folder / "uke"):
        if d.is_dir():
            found += [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in UKE_SUFFIXES]
    return sorted(found)
