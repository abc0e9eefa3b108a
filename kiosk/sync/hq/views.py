"""What HQ answers from its database: devices, events, and receipt checks."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from kiosk.errors import BadInput, Refused
from kiosk.receipt_code import verify_code
from kiosk.sync.hq.commands import KeyRing, check_device_id
from kiosk.sync.hq.store import HqStore, chains, devices, events, loads
from kiosk.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)


def list_devices(store: HqStore, keys: KeyRing) -> dict[str, Any]:
    """Every device HQ has heard from, its health, cash and open alarms."""
    now = time.time()
    out = []
    with store.begin() as conn:
        chain_rows = {r.device: r for r in conn.execute(select(chains)).all()}
        alarms = store.open_alarms(conn)
        for row in conn.execute(select(devices).order_by(devices.c.id)).all():
            chain = chain_rows.get(row.id)
            out.append(
                {
                    "device": row.id,
                    "online": row.online,
                    "boot": row.boot,
                    "version": row.version,
                    "last_seen": rfc3339_epoch(row.last_seen),
                    "last_seen_age_s": round(now - row.last_seen),
                    "cash_held": store.cash_view(conn, row.id),
                    "reported_cash_held": loads(row.reported_cash),
                    "outbox_depth": row.outbox_depth,
                    "outbox_oldest_age_s": row.outbox_oldest_age_s,
                    "time_trust": loads(row.time_trust),
                    "last_fix": loads(row.last_fix),
                    "last_location": loads(row.last_location),
                    "last_seq": row.last_seq,
                    "reported_seq": row.state_seq,
                    "verified_seq": chain.verified_seq if chain else 0,
                    "verified_hash": chain.verified_hash if chain else None,
                    "chain_problem": chain.problem if chain else None,
                    "gap_seq": chain.gap_seq if chain else None,
                    "has_key": keys.path(row.id).exists(),
                    "alarms": [
                        {
                            "kind": a["kind"],
                            "seq": a["seq"],
                            "message": a["message"],
                            "raised_at": rfc3339_epoch(a["raised_at"]),
                        }
                        for a in alarms
                        if a["device"] == row.id
                    ],
                }
            )
    return {"devices": out}


def rfc3339_epoch(value: float | None) -> str | None:
    if value is None:
        return None
    return rfc3339(datetime.fromtimestamp(value, UTC))


def _since(value: str) -> str:
    """A ``--since`` time (RFC 3339, or a date meaning its UTC midnight)."""
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00Z"
    try:
        return rfc3339(parse_rfc3339(text))
    except ValueError:
        raise BadInput(
            f"--since {value!r}: expected a date (2026-12-04) or an RFC 3339 time "
            "(2026-12-04T08:00:00Z)"
        ) from None


def list_events(
    store: HqStore,
    *,
    device: str | None = None,
    since: str | None = None,
    type_: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Events in time order: from ``since`` on, else the newest ``limit``."""
    if limit < 1 or limit > 100_000:
        raise BadInput("--limit must be between 1 and 100000")
    query = select(events)
    if device:
        query = query.where(events.c.device == check_device_id(device))
    if type_:
        query = query.where(events.c.type == type_)
    order = (events.c.time, events.c.device, events.c.lane, events.c.seq)
    if since:
        query = query.where(events.c.time >= _since(since)).order_by(*order)
    else:
        query = query.order_by(*(c.desc() for c in order))

    with store.begin() as conn:
        rows = conn.execute(query.limit(limit)).all()
        chain = store.chain(conn, device) if device else None
    if not since:
        rows = list(reversed(rows))
    result: dict[str, Any] = {
        "events": [
            {
                "id": r.id,
                "device": r.device,
                "lane": r.lane,
                "seq": r.seq,
                "type": r.type,
                "time": r.time,
                "collector": r.collector,
                "status": r.status,
                "problem": r.problem,
                "hash": r.hash,
                "data": loads(r.data),
            }
            for r in rows
        ]
    }
    if device:
        result["chain"] = (
            {
                "verified_seq": chain["verified_seq"],
                "verified_hash": chain["verified_hash"],
                "problem": chain["problem"],
                "gap_seq": chain["gap_seq"],
            }
            if chain
            else None
        )
    return result


def verify_receipt(store: HqStore, keys: KeyRing, text: str) -> dict[str, Any]:
    """Check a receipt code against the device's key and HQ's journal copy.

    Raises:
        BadInput: The code is malformed, altered or not made with the device's key.
        NotFound: HQ has no key for the device the code names.
        Refused: The code is genuine but HQ's journal does not back it.
    """
    parts = text.strip().split("|")
    if len(parts) != 7:
        raise BadInput(
            "receipt code: not a receipt code (expected K1 and seven fields "
            "separated by '|')"
        )
    device = check_device_id(parts[1])
    code = verify_code(keys.require(device), text)
    where = f"receipt {code.receipt} of {device}"

    with store.begin() as conn:
        rows = conn.execute(
            select(events)
            .where(
                events.c.device == device,
                events.c.lane == "money",
                events.c.ref == code.receipt,
            )
            .order_by(events.c.seq)
        ).all()
        newest = conn.execute(
            select(func.max(events.c.time)).where(events.c.device == device)
        ).scalar()

    payment = next((r for r in rows if r.type == "payment"), None)
    if payment is None:
        raise Refused(
            f"the code is genuine, but HQ has no payment for {where} (newest event "
            f"from {device}: {newest or 'none'}); it may not have arrived yet"
        )
    data = loads(payment.data)
    mismatches = [
        f"{name} {value} (code: {found})"
        for name, value, found in (
            ("amount", data.get("amount"), code.amount),
            ("currency", data.get("currency"), code.currency),
            ("time", payment.time, code.time),
        )
        if value != found
    ]
    if mismatches:
        raise Refused(
            f"the code is genuine, but HQ's journal records {where} with "
            + ", ".join(mismatches)
        )
    if payment.status in ("tampered", "conflict"):
        raise Refused(
            f"the code matches, but HQ's copy of {where} failed the chain check: "
            f"{payment.problem}"
        )
    void = next((r for r in rows if r.type == "void"), None)
    if void is not None:
        reason = loads(void.data).get("reason", "")
        raise Refused(f"{where} is genuine but was voided at {void.time}: {reason}")

    return {
        "ok": True,
        "device": device,
        "receipt": code.receipt,
        "amount": code.amount,
        "currency": code.currency,
        "time": code.time,
        "seq": payment.seq,
        "chain": payment.status,
        "contract": data.get("contract"),
        "collector": payment.collector,
    }
