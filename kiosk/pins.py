"""PIN hashing with scrypt, stored as PHC strings (``$scrypt$ln=..,r=..,p=..$salt$hash``).

A PIN never leaves this module in any form but the hash: it is not logged, put in
an event, or echoed in an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from kiosk.errors import BadInput

# 2**14 iterations with r=8 costs about 16 MiB and tens of milliseconds on a Pi:
# slow enough to make guessing a stolen hash expensive, fast enough for sign-in.
DEFAULT_LN, DEFAULT_R, DEFAULT_P = 14, 8, 1
PHC = re.compile(
    r"\$scrypt\$ln=(?P<ln>\d+),r=(?P<r>\d+),p=(?P<p>\d+)"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def check_pin_format(pin: str) -> None:
    if not re.fullmatch(r"[0-9]{4,12}", pin or ""):
        raise BadInput("a PIN is 4 to 12 digits")


def hash_pin(pin: str, *, ln: int = DEFAULT_LN) -> str:
    check_pin_format(pin)
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        pin.encode(), salt=salt, n=2**ln, r=DEFAULT_R, p=DEFAULT_P, dklen=32
    )
    return f"$scrypt$ln={ln},r={DEFAULT_R},p={DEFAULT_P}${_b64(salt)}${_b64(digest)}"


def is_phc(value: str) -> bool:
    match = PHC.fullmatch(value)
    return bool(match) and 1 <= int(match["ln"]) <= 20 if match else False


def verify_pin(pin: str, phc: str) -> bool:
    match = PHC.fullmatch(phc)
    if match is None:
        return False
    ln, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not (1 <= ln <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    expected = _unb64(match["hash"])
    digest = hashlib.scrypt(
        pin.encode(),
        salt=_unb64(match["salt"]),
        n=2**ln,
        r=r,
        p=p,
        dklen=len(expected),
        maxmem=256 * 1024 * 1024,
    )
    return hmac.compare_digest(digest, expected)
