"""Money parsing and formatting: integers in minor units, read by locale."""

from __future__ import annotations

import pytest

from kiosk.config import parse_config
from kiosk.errors import AmountError
from kiosk.money import divide, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "exponent", "locale", "expected"),
    [
        ("1.500.000", 0, "id", 1_500_000),
        ("1500000", 0, "id", 1_500_000),
        ("500", 0, "id", 500),
        (" 1.500.000 ", 0, "id", 1_500_000),
        ("1.500,50", 2, "id", 150_050),
        ("1.500,5", 2, "id", 150_050),
        ("1500000,50", 2, "id", 150_000_050),
        ("1,500,000", 0, "en", 1_500_000),
        ("1500000.50", 2, "en", 150_000_050),
        ("12.5", 2, "en", 1250),
        ("0.125", 3, "en", 125),
        ("١٢٣", 0, "id", 123),  # Arabic-Indic digits are read as the digits they are
        ("１５００", 0, "id", 1500),  # full-width digits from an input method
    ],
)
def test_parse_accepts_locale_forms(
    text: str, exponent: int, locale: str, expected: int
) -> None:
    assert parse_amount(text, exponent, locale) == expected


@pytest.mark.parametrize(
    ("text", "exponent", "locale", "fragment"),
    [
        ("-500", 0, "id", "negative"),
        ("+500", 0, "id", "'+'"),
        ("0", 0, "id", "zero"),
        ("0,00", 2, "id", "zero"),
        ("", 0, "id", "empty"),
        ("1e5", 0, "id", "exponent"),
        ("1E5", 0, "en", "exponent"),
        ("e", 0, "en", "exponent"),
        ("12abc", 0, "id", "'a'"),
        ("1.500,5", 0, "id", "no decimals"),
        ("1500000.50", 0, "en", "no decimals"),
        ("1,505", 2, "id", "at most 2"),
        ("1.50.000", 0, "id", "threes"),
        ("1,5", 0, "en", "threes"),
        ("1..500", 0, "id", "threes"),
        (".500", 0, "id", "threes"),
        ("1.500.", 0, "id", "threes"),
        ("1,2,3", 2, "id", "more than one"),
        ("5,", 2, "id", "nothing after"),
        ("9" * 16, 0, "id", "too large"),
        ("1 500", 0, "id", "' '"),
        ("Rp 500", 0, "id", "'R'"),
    ],
)
def test_parse_refuses_with_its_own_message(
    text: str, exponent: int, locale: str, fragment: str
) -> None:
    with pytest.raises(AmountError) as caught:
        parse_amount(text, exponent, locale)
    assert fragment in str(caught.value)


def test_idr_uses_no_decimals_although_iso_says_two(tmp_path) -> None:
    """ISO 4217 gives IDR two decimals; the practical exponent is 0, so that
    "500.000" typed in rupiah is 500000, not 5000 or 50000000."""
    config = parse_config({"device": {"currency": "IDR", "data_dir": str(tmp_path)}})
    assert config.device.exponent == 0
    assert parse_amount("500.000", config.device.exponent, "id") == 500_000
    usd = parse_config({"device": {"currency": "USD"}})
    kwd = parse_config({"device": {"currency": "KWD"}})
    jpy = parse_config({"device": {"currency": "JPY"}})
    assert (usd.device.exponent, kwd.device.exponent, jpy.device.exponent) == (2, 3, 0)
    forced = parse_config({"device": {"currency": "IDR", "currency_exponent": 2}})
    assert forced.device.exponent == 2


@pytest.mark.parametrize(
    ("minor", "exponent", "locale", "shown"),
    [
        (1_500_000, 0, "id", "1.500.000"),
        (1_500_000, 0, "en", "1,500,000"),
        (150_050, 2, "id", "1.500,50"),
        (150_050, 2, "en", "1,500.50"),
        (5, 2, "en", "0.05"),
        (125, 3, "en", "0.125"),
        (-2500, 0, "id", "-2.500"),
        (0, 0, "id", "0"),
    ],
)
def test_format_by_locale(minor: int, exponent: int, locale: str, shown: str) -> None:
    assert format_amount(minor, exponent, locale) == shown
    if minor > 0:
        assert parse_amount(shown, exponent, locale) == minor


def test_format_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_amount(1.5, 2, "en")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("num", "den", "half_up", "half_even"),
    [
        (5, 2, 3, 2),
        (7, 2, 4, 4),
        (1, 3, 0, 0),
        (2, 3, 1, 1),
        (15, 10, 2, 2),
        (25, 10, 3, 2),
    ],
)
def test_rounding_rules(num: int, den: int, half_up: int, half_even: int) -> None:
    assert divide(num, den, "half_up") == half_up
    assert divide(num, den, "half_even") == half_even
