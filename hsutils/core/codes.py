"""全国地方公共団体コード: check digit and normalisation to the 5-digit form.

The 6th digit of the 全国地方公共団体コード is a check digit (総務省 地方公共団体コード):
    check = (11 - (Σ d_i × w_i) mod 11) mod 10, weights (6, 5, 4, 3, 2) over the 5 digits.
"""
from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

_WEIGHTS = np.array([6, 5, 4, 3, 2])


def code_text(value) -> str:
    """The text of a code as typed or exported from a spreadsheet: full-width digits made
    half-width (NFKC), spaces trimmed, and the ".0" a float column adds dropped (17201.0 -> "17201").
    The first step of every code parser (市町村コード, 保険者番号, `hsutils.analysis.areas.parse_code`)."""
    s = unicodedata.normalize("NFKC", str(value)).strip()
    return s[:-2] if s.endswith(".0") else s


def check_digit(code5: str) -> int:
    """Check digit of a 5-digit 全国地方公共団体コード (e.g. '17201' -> 4)."""
    digits = np.array([int(c) for c in code5])
    return int((11 - int((digits * _WEIGHTS).sum()) % 11) % 10)


def normalize_muni_code(value) -> str:
    """Return the 5-digit code for a 5- or 6-digit code (str or int, full-width accepted).

    A 6-digit code must carry a valid check digit; a 4-digit number is read as a code whose
    leading zero was lost (e.g. 1100 -> '01100'). Raises ValueError with a Japanese message.
    """
    s = code_text(value)
    if not s.isdigit():
        raise ValueError(f"市町村コード「{value}」は数字ではありません（5桁または検査数字付き6桁が必要）")
    if len(s) == 4:
        s = "0" + s
    if len(s) == 5:
        return s
    if len(s) == 6:
        expected = check_digit(s[:5])
        if int(s[5]) != expected:
            raise ValueError(
                f"6桁の市町村コード「{s}」の検査数字が正しくありません（{s[:5]} の検査数字は {expected}）")
        return s[:5]
    raise ValueError(f"市町村コード「{value}」の桁数が不正です（5桁または検査数字付き6桁が必要）")


def normalize_muni_codes(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Vectorised `normalize_muni_code` over unique values.

    Returns (codes, errors): codes is a str Series (NaN where invalid or missing), errors a Series
    of Japanese reasons (NaN where valid or missing).
    """
    s = pd.Series(values)
    uniq = pd.unique(s.dropna().astype(str))
    good: dict[str, str] = {}
    bad: dict[str, str] = {}
    for u in uniq:  # loop over distinct codes (a few dozen), not over persons
        try:
            good[u] = normalize_muni_code(u)
        except ValueError as e:
            bad[u] = str(e)
    as_str = s.astype("string")
    codes = as_str.map(good).astype(object)
    errors = as_str.map(bad).astype(object)
    return codes, errors


def code6(code5: str) -> str:
    """6-digit code with check digit for a 5-digit code."""
    return f"{code5}{check_digit(code5)}"


def insurer_check_digit(digits: str) -> int:
    """検証番号 of a 保険者番号 (厚生労働省 保険者番号設定要領, modulus 10 with weights 2, 1).

    `digits` are the number without its check digit: 5 digits for 国保 (2-digit 都道府県番号 +
    3-digit 保険者別番号) or 7 for an 8-digit number (法別番号 + 都道府県番号 + 保険者別番号).
    Starting from the last digit, the digits are multiplied by 2, 1, 2, 1, ...; two-digit products
    count as the sum of their digits; check = (10 - sum mod 10) mod 10.
    Example: 13101 (千代田区) -> 1, so the 国保 保険者番号 is 131011.
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        p = int(ch) * (2 if i % 2 == 0 else 1)
        total += p // 10 + p % 10
    return (10 - total % 10) % 10


def normalize_insurer_number(value) -> str:
    """Return a 6-digit 国保 保険者番号 as str after checking its 検証番号.

    Full-width digits are accepted; a 5-digit number is read as one whose leading zero was lost
    (北海道 01...). Raises ValueError with a Japanese message. The 保険者番号 of a 市町村国保 is not
    the 市町村コード: it must be looked up in a table (see hsutils.inputs.regions.insurer_to_muni).
    """
    s = code_text(value)
    if not s.isdigit():
        raise ValueError(f"保険者番号「{value}」は数字ではありません（国保は6桁）")
    if len(s) == 5:
        s = "0" + s
    if len(s) != 6:
        raise ValueError(f"保険者番号「{value}」の桁数が不正です（国民健康保険の保険者番号は6桁）")
    expected = insurer_check_digit(s[:5])
    if int(s[5]) != expected:
        raise ValueError(f"保険者番号「{s}」の検証番号が正しくありません（{s[:5]} の検証番号は {expected}）")
    return s
