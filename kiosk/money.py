"""Money as integers in the currency's minor unit, read and written by locale.

No float ever touches an amount. Typed text is read strictly: ``1.500.000`` and
``1500000`` are the same in the ``id`` locale, ``1,500,000`` and ``1500000.50``
in ``en``; anything that a person could have meant two ways is refused with a
message that says what was wrong.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from kiosk.errors import AmountError

Rounding = Literal["half_up", "half_even"]

# Fifteen digits keep every amount exact in JSON readers that use doubles, and
# are far beyond any cash a collector could carry in any currency.
MAX_DIGITS = 15


@dataclass(frozen=True, slots=True)
class Separators:
    group: str
    decimal: str


SEPARATORS = {"id": Separators(".", ","), "en": Separators(",", ".")}


def _ascii_digits(text: str) -> str:
    """Map decimal digits of any script (Arabic-Indic, full-width...) to 0-9.

    A keypad or input method may send them; their value is unambiguous, so they
    are read as the digits they are rather than refused.
    """
    out = []
    for char in text:
        if char.isdigit() and not ("0" <= char <= "9"):
            value = unicodedata.decimal(char, None)
            if value is None:
                raise AmountError(f"amount {text!r}: {char!r} is not a decimal digit")
            out.append(str(value))
        else:
            out.append(char)
    return "".join(out)


def parse_amount(
    text: str, exponent: int, locale: str = "id", *, allow_zero: bool = False
) -> int:
    """Read a typed amount into minor units.

    Args:
        text: What was typed, e.g. ``"1.500.000"`` or ``"12.50"``.
        exponent: Digits after the decimal point in the currency (IDR 0, USD 2).
        locale: ``"id"`` (``.`` groups, ``,`` decimals) or ``"en"`` (the reverse).
        allow_zero: Accept ``0`` (a counted cash box may be empty).

    Raises:
        AmountError: with a message naming what was wrong.
    """
    seps = SEPARATORS.get(locale)
    if seps is None:
        raise AmountError(f"unknown locale {locale!r} (expected 'id' or 'en')")

    raw = text
    text = _ascii_digits(text.strip().replace("\u00a0", " "))
    if not text:
        raise AmountError("amount is empty: type a number such as 150000")
    if text[0] in "-\u2212":
        raise AmountError(f"amount {raw!r} is negative: amounts are always positive")
    if text[0] == "+":
        raise AmountError(f"amount {raw!r}: leave out the '+' sign")
    if re.search(r"[eE]", text) and re.fullmatch(r"[\d.,]*[eE][+-]?\d*", text):
        raise AmountError(f"amount {raw!r}: exponent forms are not accepted")
    if re.search(r"[^\d.,]", text):
        bad = re.search(r"[^\d.,]", text)
        assert bad is not None
        raise AmountError(
            f"amount {raw!r}: {bad.group()!r} is not a digit or separator"
        )

    # Split at the decimal separator, then check the grouping of the whole part.
    if text.count(seps.decimal) > 1:
        raise AmountError(f"amount {raw!r}: more than one decimal separator")
    whole, _, fraction = text.partition(seps.decimal)
    if seps.decimal in text and not fraction:
        raise AmountError(f"amount {raw!r}: nothing after the decimal separator")
    if not whole:
        raise AmountError(f"amount {raw!r}: no digits before the decimal separator")
    if seps.group in fraction:
        raise AmountError(f"amount {raw!r}: a group separator after the decimals")
    if seps.group in whole:
        groups = whole.split(seps.group)
        if not (1 <= len(groups[0]) <= 3) or any(len(g) != 3 for g in groups[1:]):
            raise AmountError(
                f"amount {raw!r}: digits must be grouped in threes "
                f"(e.g. {format_amount(1500000 * 10**exponent, exponent, locale)})"
            )
        whole = "".join(groups)

    if len(fraction) > exponent:
        if exponent == 0:
            raise AmountError(f"amount {raw!r}: this currency has no decimals")
        raise AmountError(
            f"amount {raw!r}: at most {exponent} digits after the decimal separator"
        )
    digits = (whole + fraction.ljust(exponent, "0")).lstrip("0")
    if len(digits) > MAX_DIGITS:
        raise AmountError(f"amount {raw!r} is too large")
    value = int(digits or "0")
    if value == 0 and not allow_zero:
        raise AmountError(f"amount {raw!r} is zero: type the amount received")
    return value


def format_amount(minor: int, exponent: int, locale: str = "id") -> str:
    """Show an amount with the locale's separators: ``1.500.000``, ``12.50``."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"amounts are integers in minor units, not {type(minor)}")
    seps = SEPARATORS.get(locale, SEPARATORS["en"])
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    grouped = f"{whole:,}".replace(",", seps.group)
    if exponent:
        return f"{sign}{grouped}{seps.decimal}{fraction:0{exponent}d}"
    return f"{sign}{grouped}"


def format_money(minor: int, currency: str, exponent: int, locale: str = "id") -> str:
    return f"{currency} {format_amount(minor, exponent, locale)}"


def divide(numerator: int, denominator: int, rounding: Rounding = "half_up") -> int:
    """Integer division with the currency's rounding rule, for shares and ratios."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (
        twice == denominator and (rounding == "half_up" or quotient % 2 == 1)
    ):
        quotient += 1
    return quotient


def scale(amount: int, per_mille: int, rounding: Rounding = "half_up") -> int:
    """``amount`` times ``per_mille``/1000, rounded by the rule."""
    return divide(amount * per_mille, 1000, rounding)
