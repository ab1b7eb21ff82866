"""Reading the checkable facts out of a text (numbers, amounts, dates, times, phone numbers, e-mail addresses,
URLs), each in a canonical form. Whether one text holds another's facts (the `fact` metric, grounding) is
``smelt.eval.fact_matching``.

Extraction (deterministic, offline; Japanese and English). The text is NFKC-normalised first (full-width
digits and signs become half-width), then read by patterns in a fixed order, each claiming its span so a
later pattern cannot read it again (the 2026 of a date is not also a number):

    kind    canonical value     as written
    url     host/path           https://www.city.example.jp/pool/, www.city.example.jp/pool, city.example.jp
    email   local@host          Bosai@Example.jp (lower-cased)
    date    2026-08-31          2026-08-31, 2026/8/31, 2026年8月31日, 令和8年8月31日 (平成, 昭和, 大正; 元年 = year 1),
                                August 31, 2026, 31 August 2026, 8/31/2026 (month first); a month's end:
                                2026年8月末, end of August 2026
            2026-03-31          令和7年度末, 2025年度末: the end of a Japanese fiscal year (April to March)
            --08-31             8月31日, August 31, 31 August, 8/31(月) (a bare 1/3 is two numbers), 8月末
            2026-08 / 2026      2026年8月, 令和7年2月, August 2026 / 2026年, 令和8年度
    bad_date 2026-06-31         a day the calendar does not have, written as a date no other way reads
                                (2026-06-31, 2026-14-14, 令和8年2月30日, June 31, 2026): never grounded
    time    09:00               9:00, 9時, 午前9時, 9 a.m., 9 o'clock; 17:30, 午後5時半, 5:30 p.m.; 正午, noon
    phone   0312345678          03-1234-5678, (03) 1234-5678, +81-3-1234-5678, 0120-555-318 (digits only)
    amount  JPY 30000           3万円, 30,000円, 30000 yen, ¥30,000, 三万円 (kanji numerals before 円: 千二百円 is
                                JPY 1200); USD 5 ($5, 5 dollars), EUR, GBP
    number  30000               30,000, 3万, 1億2000万, 3 million, 37.5 (thousands separators dropped)

An hour written without a.m./p.m./午前/午後 (9:00, 9時) reads as either 9:00 or 21:00. Numbers written in
kanji (三万) are read only as an amount of yen; English number words (one ... twelve, first ... twelfth) are no
facts of their own, and neither are digits glued to Latin letters (r03, DVD3点), but both count as the number
when another text's fact is looked up (gold "2 weeks" is found in "two weeks", an answer's 3点 in a source's DVD3点).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

KINDS = ("url", "email", "date", "bad_date", "time", "phone", "amount", "number")


@dataclass(frozen=True)
class Fact:
    kind: str  # one of KINDS
    value: str  # the canonical form (see the module docstring)
    raw: str  # as written in the text
    readings: tuple[str, ...] = ()  # a time: every HH:MM it can mean (9:00 -> 09:00, 21:00)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


# --- patterns ---------------------------------------------------------------------------------------------

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_JA_MULT = r"[億万千]"
_EN_MULT = r"(?:thousand|million|billion)\b"
# 3万5千, 1億2000万, 30,000, 3 million
_CNUM = rf"{_NUM}(?:\s?{_JA_MULT}(?:\s?{_NUM}\s?{_JA_MULT})*(?:\s?{_NUM})?|\s{_EN_MULT})?"
_MULTIPLIERS = {"億": 10**8, "万": 10**4, "千": 10**3, "thousand": 10**3, "million": 10**6, "billion": 10**9}
_NUM_PART = re.compile(rf"({_NUM})\s?({_JA_MULT}|{_EN_MULT})?", re.I)

_CURRENCY_WORDS = {"円": "JPY", "yen": "JPY", "jpy": "JPY", "¥": "JPY", "$": "USD", "us$": "USD", "ドル": "USD",
                   "dollar": "USD", "dollars": "USD", "usd": "USD", "€": "EUR", "ユーロ": "EUR", "euro": "EUR",
                   "euros": "EUR", "eur": "EUR", "£": "GBP", "pound": "GBP", "pounds": "GBP", "gbp": "GBP"}
_PREFIX_CURRENCY = r"(US\$|\$|¥|€|£)"
_SUFFIX_CURRENCY = r"(円|ドル|ユーロ|yen|jpy|dollars?|usd|euros?|eur|pounds?|gbp)(?![a-z])"

_MONTHS = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
           "nov": 11, "dec": 12}
_MONTH = (r"(January|February|March|April|May|June|July|August|September|October|November|December|"
          r"Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?)(?![a-z])")
_ERAS = {"令和": 2018, "平成": 1988, "昭和": 1925, "大正": 1911}  # era year 1 = base + 1
_LOOSE_NUMBER = re.compile(_NUM)

_WEEKDAYS = r"[月火水木金土日]|mon|tue|wed|thu|fri|sat|sun"
_TLDS = r"(?:jp|com|org|net|gov|edu|io|info|uk|us|de|fr|cn|kr|tw|au|ca)"
_URL_END = r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%]*"  # ASCII URL characters, brackets and quotes left out
_TRAILING = ".,;:!?)]}'\""


def _ymd(year, month, day) -> str | None:
    """The canonical date, or None when the calendar has no such day (a 13th month, June 31, 2026-02-29)."""
    if month is not None and not 1 <= month <= 12:
        return None
    if day is not None and not 1 <= day <= calendar.monthrange(year or 2000, month)[1]:  # 2000: a leap year, so
        return None  # a yearless February 29 exists
    if year is None:
        return f"--{month:02d}-{day:02d}" if day is not None else None
    if month is None:
        return f"{year:04d}"
    return f"{year:04d}-{month:02d}" + (f"-{day:02d}" if day is not None else "")


def _int(text):
    return int(text) if text else None


def _era_year(era: str, year: str) -> int:
    return _ERAS[era] + (1 if year == "元" else int(year))


def _era_date(m):
    return _date(m, _ymd(_era_year(m.group(1), m.group(2)), _int(m.group(3)), _int(m.group(4))))


def _fiscal_year_end(year: int):  # a Japanese fiscal year runs April to March: 令和7年度 (2025) ends 2026-03-31
    return "date", f"{year + 1:04d}-03-31"


def _era_fiscal_end(m):
    return _fiscal_year_end(_era_year(m.group(1), m.group(2)))


def _ja_fiscal_end(m):
    return _fiscal_year_end(int(m.group(1)))


def _month_end(m, year: int | None, month: int):
    if not 1 <= month <= 12:
        return _date(m, None)
    return _date(m, _ymd(year, month, calendar.monthrange(year or 2001, month)[1]))  # 2001: February ends on 28


def _era_month_end(m):
    return _month_end(m, _era_year(m.group(1), m.group(2)), int(m.group(3)))


def _ja_month_end(m):  # 2026年3月末, 3月末日
    return _month_end(m, _int(m.group(1)), int(m.group(2)))


def _en_month_end(m):  # the end of March 2026
    return _month_end(m, _int(m.group(2)), _month_number(m.group(1)))


def _ja_date(m):
    return _date(m, _ymd(int(m.group(1)), _int(m.group(2)), _int(m.group(3))))


def _ja_month_day(m):
    return _date(m, _ymd(None, int(m.group(1)), int(m.group(2))))


def _iso_date(m):  # 2026-08-31, 2026/8/31, 2026.8.31
    return _date(m, _ymd(int(m.group(1)), int(m.group(3)), int(m.group(4))))


def _month_number(name: str) -> int:
    return _MONTHS[name.lower().rstrip(".")[:3]]


def _en_month_day(m):  # August 31, 2026 / August 31; a day past 31 is no date (March 45 is two words)
    day = int(m.group(2))
    return _date(m, _ymd(_int(m.group(3)), _month_number(m.group(1)), day)) if day <= 31 else None


def _en_day_month(m):  # 31 August 2026 / 31 August
    day = int(m.group(1))
    return _date(m, _ymd(_int(m.group(3)), _month_number(m.group(2)), day)) if day <= 31 else None


def _en_month_year(m):  # August 2026
    return _date(m, _ymd(int(m.group(2)), _month_number(m.group(1)), None))


def _slash_date(m):  # 8/31/2026, 8/31; 31/8/2026 may be day first: no date, but no bad one either
    value = _ymd(_int(m.group(3)), int(m.group(1)), int(m.group(2)))
    return None if value is None else ("date", value)


def _date(m, value):
    """A date, or for a day the calendar lacks a bad date (its text, spaces collapsed)."""
    return ("date", value) if value is not None else ("bad_date", " ".join(m.group(0).split()))


def _time_value(hour: int, minute: int, marker: str | None) -> tuple[str, tuple[str, ...]] | None:
    if not (0 <= hour <= 24 and 0 <= minute <= 59):
        return None
    marker = (marker or "").lower()
    if marker in ("午前", "a"):
        if hour > 12:
            return None
        hours = [0 if hour == 12 else hour]
    elif marker in ("午後", "p"):
        if hour > 12:
            return None
        hours = [hour if hour == 12 else hour + 12]
    else:
        hours = [hour, hour + 12] if 1 <= hour <= 11 else [hour]
    readings = tuple(f"{h:02d}:{minute:02d}" for h in hours)
    return readings[0], readings


def _colon_time(m):
    return _time(_time_value(int(m.group(2)), int(m.group(3)), m.group(1) or m.group(4)))


def _ja_time(m):
    minute = 30 if m.group(4) else _int(m.group(3)) or 0
    return _time(_time_value(int(m.group(2)), minute, m.group(1)))


def _ampm_time(m):
    return _time(_time_value(int(m.group(1)), 0, m.group(2)))


def _oclock_time(m):
    return _time(_time_value(int(m.group(1)), 0, None))


def _noon(m):
    return _time(("12:00", ("12:00",)))


def _time(value):
    return None if value is None else ("time", value[0], value[1])


def _phone(m):
    text = m.group(0)
    digits = re.sub(r"\D", "", text)
    country = re.match(r"\+(\d{1,3})", text)
    if country:
        rest = digits[len(country.group(1)):].lstrip("0")
        digits = "0" + rest if country.group(1) == "81" else "+" + digits
    count = len(digits.lstrip("+"))
    return ("phone", digits) if 9 <= count <= 13 else None


def _number_value(text: str) -> str | None:
    total = Decimal(0)
    for number, multiplier in _NUM_PART.findall(text):
        try:
            value = Decimal(number.replace(",", ""))
        except InvalidOperation:
            return None
        total += value * _MULTIPLIERS.get(multiplier.lower(), 1)
    return _decimal_text(total)


def _decimal_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _amount_prefix(m):
    value = _number_value(m.group(2))
    return None if value is None else ("amount", f"{_CURRENCY_WORDS[m.group(1).lower()]} {value}")


def _amount_suffix(m):
    value = _number_value(m.group(1))
    return None if value is None else ("amount", f"{_CURRENCY_WORDS[m.group(2).lower()]} {value}")


def _number(m):
    value = _number_value(m.group(0))
    return None if value is None else ("number", value)


_KANJI_DIGITS = {ch: n for n, ch in enumerate("〇一二三四五六七八九")}
_KANJI_UNITS = {"十": 10, "百": 100, "千": 1000}
_KANJI_LARGE = {"万": 10**4, "億": 10**8}


def kanji_number(text: str) -> int:
    """三万 -> 30000, 千二百 -> 1200, 二〇二六 -> 2026: kanji numerals, positional or with 十百千万億."""
    total = section = digits = 0
    for ch in text:
        if ch in _KANJI_DIGITS:
            digits = digits * 10 + _KANJI_DIGITS[ch]
        elif ch in _KANJI_UNITS:
            section += (digits or 1) * _KANJI_UNITS[ch]
            digits = 0
        else:
            total += ((section + digits) or 1) * _KANJI_LARGE[ch]
            section = digits = 0
    return total + section + digits


def _kanji_amount(m):
    return "amount", f"JPY {kanji_number(m.group(1))}"


def _url(m):
    text = m.group(0).rstrip(_TRAILING)
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text, flags=re.I)
    host, slash, path = value.partition("/")
    host = host.lower().removeprefix("www.")
    path = path.rstrip("/")
    return ("url", host + (("/" + path) if path else "")), len(text)


def _email(m):
    text = m.group(0).rstrip(_TRAILING)
    return ("email", text.lower()), len(text)


_NOT_AFTER_WORD = r"(?<![A-Za-z0-9_])"
_PATTERNS = [  # (pattern, reader): in this order, each claiming its span
    (rf"(?<![A-Za-z0-9])(?:https?://|www\.){_URL_END}", _url),
    (r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", _email),
    (rf"(?<![A-Za-z0-9@.-])(?:[a-z0-9][a-z0-9-]*\.)+{_TLDS}(?![A-Za-z0-9-])(?:/{_URL_END})?", _url),
    (r"(令和|平成|昭和|大正)\s*(元|\d{1,2})\s*年度\s*末", _era_fiscal_end),
    (r"(?<!\d)(\d{4})\s*年度\s*末", _ja_fiscal_end),
    (r"(令和|平成|昭和|大正)\s*(元|\d{1,2})\s*年\s*(\d{1,2})\s*月\s*末日?", _era_month_end),
    (r"(?:(?<!\d)(\d{4})\s*年\s*)?(?<!\d)(\d{1,2})\s*月\s*末日?", _ja_month_end),
    (r"(令和|平成|昭和|大正)\s*(元|\d{1,2})\s*年(?:度)?(?:\s*(\d{1,2})\s*月(?:\s*(\d{1,2})\s*日)?)?", _era_date),
    (r"(?<!\d)(\d{4})\s*年(?:度)?(?:\s*(\d{1,2})\s*月(?:\s*(\d{1,2})\s*日)?)?", _ja_date),
    (r"(?<![\d.])(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?![\d.])", _iso_date),
    (rf"(?<![A-Za-z]){_MONTH}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?!\d)(?:,?\s+(\d{{4}})(?!\d))?", _en_month_day),
    (rf"(?<![\d.,])(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?(?:,?\s+(\d{{4}})(?!\d))?", _en_day_month),
    (rf"(?<![A-Za-z])end\s+of\s+{_MONTH}\.?(?:,?\s+(\d{{4}})(?!\d))?", _en_month_end),
    (rf"(?<![A-Za-z]){_MONTH}\.?,?\s+(\d{{4}})(?!\d)", _en_month_year),
    (r"(?<!\d)(\d{1,2})\s*月\s*(\d{1,2})\s*日", _ja_month_day),
    (r"(?:(午前|午後)\s*)?(?<![\d:.])(\d{1,2}):([0-5]\d)(?![\d:])(?:\s*([ap])\.?\s?m\b\.?)?", _colon_time),
    (r"(?:(午前|午後)\s*)?(?<!\d)(\d{1,2})\s*時(?![間点])(?:\s*(\d{1,2})\s*分|(半))?", _ja_time),
    (rf"{_NOT_AFTER_WORD}(\d{{1,2}})\s*([ap])\.?\s?m\b\.?", _ampm_time),
    (rf"{_NOT_AFTER_WORD}(\d{{1,2}})\s*o'clock", _oclock_time),
    (r"正午|(?<![A-Za-z])noon(?![A-Za-z])", _noon),
    (r"(?<![A-Za-z0-9+.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)\s?|\d{1,5}[\s.-])\d{1,4}[\s.-]\d{3,4}(?![\d])", _phone),
    (r"(?<![\d,.])0\d{9,10}(?![\d,])", _phone),
    (r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4})(?![\d/])", _slash_date),
    (rf"(?<![\d/])(\d{{1,2}})/(\d{{1,2}})()(?=\s?\((?:{_WEEKDAYS})\b)", _slash_date),  # 8/31(月)
    (rf"{_PREFIX_CURRENCY}\s?({_CNUM})", _amount_prefix),
    (rf"{_NOT_AFTER_WORD}({_CNUM})\s?{_SUFFIX_CURRENCY}", _amount_suffix),
    (r"(?<![数何幾〇一二三四五六七八九十百千万億])([一二三四五六七八九十百千][〇一二三四五六七八九十百千万億]*)円",
     _kanji_amount),
    (rf"{_NOT_AFTER_WORD}(?<!\d[.,]){_CNUM}", _number),
]


_COMPILED = [(re.compile(pattern, re.I), reader) for pattern, reader in _PATTERNS]
_MASK = "\x00"


def _normalized(text: str) -> tuple[str, list[int]]:
    """NFKC character by character, with each normalised character's index in the original text."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        norm = unicodedata.normalize("NFKC", ch)
        out.append(norm)
        index.extend([i] * len(norm))
    return "".join(out), index


def extract_facts(text: str | None) -> list[Fact]:
    """The facts of a text, in the order they appear (see the module docstring)."""
    if not text:
        return []
    original = str(text)
    work, index = _normalized(original)
    found: list[tuple[int, Fact]] = []
    for pattern, reader in _COMPILED:
        for m in pattern.finditer(work):
            if _MASK in m.group(0):
                continue
            result = reader(m)
            if result is None:
                continue
            length = m.end() - m.start()
            if isinstance(result[-1], int) and isinstance(result[0], tuple):  # (fact, length) for trimmed spans
                result, length = result
            start, end = m.start(), m.start() + length
            if end <= start:
                continue
            raw = original[index[start]: index[end - 1] + 1].strip()
            kind, value = result[0], result[1]
            readings = result[2] if len(result) > 2 else ()
            found.append((start, Fact(kind, value, raw, readings)))
            work = work[:start] + _MASK * (end - start) + work[end:]
    return [fact for _, fact in sorted(found, key=lambda pair: pair[0])]


def loose_numbers(text: str | None) -> set[str]:
    """Every number written in digits in ``text`` (NFKC), in a number fact's canonical form (30,000 -> 30000),
    whether or not a pattern reads it as a fact: the 3 of DVD3点, the 03 of r03."""
    normalized = unicodedata.normalize("NFKC", text or "")
    return {_decimal_text(Decimal(n.replace(",", ""))) for n in _LOOSE_NUMBER.findall(normalized)}
