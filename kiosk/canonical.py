"""Canonical JSON, the byte form that hashes and signatures are computed over.

Modelled on RFC 8785: UTF-8, keys sorted, no insignificant white space. Amounts
are always integers in minor units; the few floats that appear (coordinates,
accuracy) are written in Python's shortest round-trip form, which both the device
and HQ compute the same way. NaN and infinities are refused: they have no JSON form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any


def _check(value: Any, path: str = "$") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: {value} has no JSON form")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: object keys must be strings")
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")


def canonical_bytes(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of a JSON-compatible value."""
    _check(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def hmac_hex(key: bytes, value: Any) -> str:
    return hmac.new(key, canonical_bytes(value), hashlib.sha256).hexdigest()
