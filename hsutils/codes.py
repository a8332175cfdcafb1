"""全国地方公共団体コード: check digit and normalisation to the 5-digit form.

The 6th digit of the 全国地方公共団体コード is a check digit (総務省 地方公共団体コード):
    check = (11 - (Σ d_i × w_i) mod 11) mod 10, weights (6, 5, 4, 3, 2) over the 5 digits.
"""
from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

_WEIGHTS = np.array([6, 5, 4, 3, 2])


def check_digit(code5: str) -> int:
    """Check digit of a 5-digit 全国地方公共団体コード (e.g. '17201' -> 4)."""
    digits = np.array([int(c) for c in code5])
    return int((11 - int((digits * _WEIGHTS).sum()) % 11) % 10)


def normalize_muni_code(value) -> str:
    """Return the 5-digit code for a 5- or 6-digit code (str or int, full-width accepted).

    A 6-digit code must carry a valid check digit; a 4-digit number is read as a code whose
    leading zero was lost (e.g. 1100 -> '01100'). Raises ValueError with a Japanese message.
    """
    s = unicodedata.normalize("NFKC", str(value)).strip()
    if s.endswith(".0"):
        s = s[:-2]
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
