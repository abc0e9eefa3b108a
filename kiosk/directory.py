"""Collectors and supervisors: adding them, and checking their PINs with lockout."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy import Connection

from kiosk.errors import BadInput, KioskError, LockedOut, WrongPin
from kiosk.pins import check_pin_format, hash_pin, verify_pin
from kiosk.store import sql

log = logging.getLogger(__name__)

MAX_WRONG_PINS = 5
LOCKOUT_S = 300


@dataclass(frozen=True, slots=True)
class Actor:
    """A collector whose PIN was checked."""

    id: str
    name: str
    role: str

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


def add_collector(
    conn: Connection, collector_id: str, name: str, role: str, pin: str
) -> None:
    if not collector_id or len(collector_id) > 64 or not collector_id.isprintable():
        raise BadInput("a collector id is 1 to 64 printable characters")
    if not name.strip():
        raise BadInput("a collector needs a name")
    if role not in ("collector", "supervisor"):
        raise BadInput(f"role {role!r}: expected collector or supervisor")
    check_pin_format(pin)
    sql(
        conn,
        (
            "INSERT INTO collector (id, name, role, pin_hash, failed_pins, "
            "locked_until, active) VALUES (:id, :name, :role, :hash, 0, 0, 1) "
            "ON CONFLICT(id) DO UPDATE SET name=excluded.name, role=excluded.role, "
            "pin_hash=excluded.pin_hash, failed_pins=0, locked_until=0, active=1"
        ),
        {"id": collector_id, "name": name.strip(), "role": role, "hash": hash_pin(pin)},
    )
    log.info("collector %s added as %s", collector_id, role)


def check_pin(
    conn: Connection, collector_id: str, pin: str, *, now: float | None = None
) -> Actor | KioskError:
    """Check a PIN inside a write transaction (it counts wrong attempts).

    Five wrong PINs lock that collector for five minutes. The refusal is
    returned, not raised, so that the caller commits the count before raising.
    """
    now = time.time() if now is None else now
    if not re.fullmatch(r"[0-9]{4,12}", pin or ""):
        # Not a PIN at all (empty, letters): bad input, not a wrong guess.
        return BadInput("a PIN is 4 to 12 digits")
    row = sql(
        conn,
        (
            "SELECT name, role, pin_hash, failed_pins, locked_until, active "
            "FROM collector WHERE id=:id"
        ),
        {"id": collector_id},
    ).first()
    if row is None or not row.active:
        return WrongPin(f"no active collector {collector_id!r} on this device")
    if row.locked_until > now:
        minutes = max(1, round((row.locked_until - now) / 60))
        return LockedOut(
            f"{collector_id} is locked after {MAX_WRONG_PINS} wrong PINs; "
            f"try again in {minutes} min or ask a supervisor"
        )
    if not verify_pin(pin or "", row.pin_hash):
        failed = row.failed_pins + 1
        locked_until = now + LOCKOUT_S if failed >= MAX_WRONG_PINS else 0.0
        sql(
            conn,
            ("UPDATE collector SET failed_pins=:f, locked_until=:l WHERE id=:id"),
            {"f": 0 if locked_until else failed, "l": locked_until, "id": collector_id},
        )
        log.warning("wrong PIN for collector %s (%d in a row)", collector_id, failed)
        if locked_until:
            return LockedOut(
                f"wrong PIN; {collector_id} is now locked for {LOCKOUT_S // 60} min"
            )
        left = MAX_WRONG_PINS - failed
        tries = "1 try" if left == 1 else f"{left} tries"
        return WrongPin(f"wrong PIN for {collector_id}; {tries} left")
    if row.failed_pins:
        sql(
            conn,
            ("UPDATE collector SET failed_pins=0 WHERE id=:id"),
            {"id": collector_id},
        )
    return Actor(collector_id, row.name, row.role)


def list_collectors(conn: Connection) -> list[dict[str, object]]:
    rows = sql(conn, ("SELECT id, name, role, active FROM collector ORDER BY id")).all()
    return [
        {"id": r.id, "name": r.name, "role": r.role, "active": bool(r.active)}
        for r in rows
    ]
