"""The verification code printed as a QR code on every receipt.

The code reads ``K1|<device>|<receipt>|<amount>|<currency>|<time>|<mac>``. The
mac is the first 16 hex digits of HMAC-SHA256 over everything before it (the
text up to and including the last ``|``), keyed with
HMAC-SHA256(device key, "receipt"), so HQ, which holds every device's key, can
tell a genuine receipt from an altered or invented one without a network call
from the device.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass

from kiosk.errors import BadInput

log = logging.getLogger(__name__)

VERSION = "K1"
MAC_DIGITS = 16

# Fields are separated by "|", so none of them may contain one; the patterns
# also keep the code short enough for a small QR code.
_DEVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_RECEIPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_AMOUNT = re.compile(r"-?(0|[1-9]\d{0,17})")
_MAC = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class ParsedCode:
    """The fields of a verified receipt code."""

    device: str
    receipt: str
    amount: int
    currency: str
    time: str
    mac: str


def receipt_key(device_key: bytes) -> bytes:
    """Derive the receipt-signing key from the device key."""
    return hmac.new(device_key, b"receipt", hashlib.sha256).digest()


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(receipt_key(key), body.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:MAC_DIGITS]


def _check(name: str, value: str, pattern: re.Pattern[str]) -> None:
    if not pattern.fullmatch(value):
        raise BadInput(f"receipt code: the {name} {value!r} is not valid")


def make_code(
    key: bytes, device: str, receipt: str, amount: int, currency: str, time: str
) -> str:
    """Build the verification code for one receipt.

    Args:
        key: The device key (32 bytes).
        device: The device id, e.g. ``KIOSK-01``.
        receipt: The receipt number as printed, e.g. ``KIOSK-01-000042``.
        amount: The amount paid, an integer in minor units.
        currency: The ISO 4217 code, e.g. ``IDR``.
        time: The payment time, RFC 3339 UTC, e.g. ``2026-12-04T08:15:02.123Z``.

    Returns:
        The text to put in the QR code.

    Raises:
        BadInput: A field would make the code ambiguous or unreadable.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise BadInput("receipt code: the amount must be an integer in minor units")

    _check("device", device, _DEVICE)
    _check("receipt number", receipt, _RECEIPT)
    _check("currency", currency, _CURRENCY)
    _check("time", time, _TIME)

    body = f"{VERSION}|{device}|{receipt}|{amount}|{currency}|{time}|"
    return body + _mac(key, body)


def verify_code(key: bytes, text: str) -> ParsedCode:
    """Check a scanned code against the device key and return its fields.

    Args:
        key: The key of the device the code names.
        text: The scanned text.

    Raises:
        BadInput: The code is malformed, or was altered or forged.
    """
    text = text.strip()
    parts = text.split("|")
    if len(parts) != 7 or parts[0] != VERSION:
        raise BadInput(
            "receipt code: not a receipt code (expected K1 and seven fields "
            "separated by '|')"
        )

    _, device, receipt, amount, currency, time, mac = parts
    _check("device", device, _DEVICE)
    _check("receipt number", receipt, _RECEIPT)
    _check("amount", amount, _AMOUNT)
    _check("currency", currency, _CURRENCY)
    _check("time", time, _TIME)
    if not _MAC.fullmatch(mac):
        raise BadInput("receipt code: the check digits are malformed")

    expected = _mac(key, text[: -len(mac)])
    if not hmac.compare_digest(expected, mac):
        raise BadInput(
            f"receipt code: receipt {receipt} does not match the key of device "
            f"{device}; it was altered or not issued by that device"
        )
    return ParsedCode(device, receipt, int(amount), currency, time, mac)
