"""The wire protocol between devices and HQ: topics, commands and their signatures.

Every command carries ``sig``: HMAC-SHA256, in hex, with the device's key over the
canonical JSON of all its other fields. A device checks, in this order, that the
message is well formed, meant for it, signed with its key, not expired, and not
seen before; the first failure is the reason in its ``ack``.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kiosk.canonical import hmac_hex
from kiosk.errors import CommandRejected
from kiosk.timefmt import parse_rfc3339, rfc3339

VERSION = 1
ROOT = "kiosk/v1"
COMMAND_NAMES = (
    "assignments",
    "policy",
    "message",
    "print",
    "lock",
    "unlock",
    "resync",
    "journal_ack",
)
COMMAND_FIELDS = {
    "v",
    "id",
    "name",
    "device",
    "issued",
    "expires",
    "nonce",
    "body",
    "sig",
}


def device_topic(device: str, *parts: str) -> str:
    return "/".join((ROOT, device, *parts))


def command_topic(device: str, name: str) -> str:
    return device_topic(device, "cmd", name)


def parse_topic(topic: str) -> tuple[str, str, str | None]:
    """``kiosk/v1/<device>/<kind>[/<name>]`` as (device, kind, name)."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        raise ValueError(f"not a kiosk topic: {topic}")
    return parts[2], parts[3], parts[4] if len(parts) > 4 else None


def sign(key: bytes, fields: dict[str, Any]) -> str:
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    return hmac_hex(key, unsigned)


def build_command(
    key: bytes,
    device: str,
    name: str,
    body: Any,
    *,
    expires_in_s: int = 24 * 3600,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A signed command, ready to publish on ``command_topic(device, name)``."""
    if name not in COMMAND_NAMES:
        raise CommandRejected(
            f"unknown command {name!r}; one of {', '.join(COMMAND_NAMES)}"
        )
    issued = now or datetime.now(UTC)
    command = {
        "v": VERSION,
        "id": str(uuid.uuid4()),
        "name": name,
        "device": device,
        "issued": rfc3339(issued),
        "expires": rfc3339(issued + timedelta(seconds=expires_in_s)),
        "nonce": os.urandom(12).hex(),
        "body": body,
    }
    command["sig"] = sign(key, command)
    return command


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    name: str
    device: str
    issued: datetime
    expires: datetime
    nonce: str
    body: Any


def command_id(payload: bytes) -> str | None:
    """The id of a command, if one can be read, so even a refusal can be acked."""
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


def check_command(
    payload: bytes,
    *,
    key: bytes,
    device: str,
    now: datetime,
    max_bytes: int,
    topic_name: str | None = None,
) -> Command:
    """Parse and authenticate a command; raise CommandRejected with the reason.

    The nonce check is the caller's, against its store, after this passes.
    """
    if len(payload) > max_bytes:
        raise CommandRejected(
            f"command is {len(payload)} bytes, over the {max_bytes} limit"
        )
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise CommandRejected("malformed JSON") from None
    except RecursionError:
        raise CommandRejected("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise CommandRejected("a command is a JSON object")
    missing = COMMAND_FIELDS - data.keys()
    if missing:
        raise CommandRejected(f"missing fields: {', '.join(sorted(missing))}")
    extra = data.keys() - COMMAND_FIELDS
    if extra:
        raise CommandRejected(f"unknown fields: {', '.join(sorted(extra))}")
    for name in ("id", "name", "device", "issued", "expires", "nonce", "sig"):
        if not isinstance(data[name], str):
            raise CommandRejected(f"{name} must be a string")
    # Exactly the integer: 1.0 and true compare equal to 1 in Python.
    if type(data["v"]) is not int or data["v"] != VERSION:
        raise CommandRejected(f"unsupported protocol version {data['v']!r}")
    if not 1 <= len(data["id"]) <= 64:
        raise CommandRejected("id must be 1 to 64 characters")
    if data["device"] != device:
        raise CommandRejected(
            f"command is for device {data['device']!r}, not {device!r}"
        )
    if data["name"] not in COMMAND_NAMES:
        raise CommandRejected(f"unknown command {data['name']!r}")
    if topic_name is not None and topic_name != data["name"]:
        raise CommandRejected(
            f"command {data['name']!r} arrived on the topic for {topic_name!r}"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", data["sig"]):
        raise CommandRejected("missing or malformed signature")
    try:
        expected = sign(key, data)
    except ValueError as exc:
        raise CommandRejected(f"cannot be signed: {exc}") from None
    except RecursionError:
        raise CommandRejected("cannot be signed: nested too deeply") from None
    if not hmac.compare_digest(expected, data["sig"]):
        raise CommandRejected("bad signature")

    try:
        issued = parse_rfc3339(data["issued"])
        expires = parse_rfc3339(data["expires"])
    except (ValueError, OverflowError):  # overflow: year 9999 with an offset
        raise CommandRejected("issued and expires must be RFC 3339 times") from None
    if expires <= now:
        raise CommandRejected(f"expired at {data['expires']}")
    if not (8 <= len(data["nonce"]) <= 64):
        raise CommandRejected("nonce must be 8 to 64 characters")
    return Command(
        data["id"],
        data["name"],
        data["device"],
        issued,
        expires,
        data["nonce"],
        data["body"],
    )


def ack_message(
    device: str, command_id_: str | None, ok: bool, reason: str = ""
) -> dict[str, Any]:
    return {
        "v": VERSION,
        "id": command_id_,
        "device": device,
        "ok": ok,
        "reason": reason,
        "time": rfc3339(datetime.now(UTC)),
    }
