"""Applying an assignment document to the store, in one transaction.

HQ's installment figures are as of the money-lane ``seq`` it had applied when it
made the document (``as_of``). Payments and voids this device journaled after
that are applied again on top, so nothing HQ has not seen is lost or counted
twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import Connection

from kiosk.allocation import Due, allocate
from kiosk.documents import AssignmentDocument
from kiosk.store import sql

log = logging.getLogger(__name__)


def _upsert_collectors(conn: Connection, doc: AssignmentDocument) -> None:
    for c in doc.collectors:
        # A PIN changed at HQ resets the lockout; local failed attempts are
        # otherwise kept, so an import cannot be used to reset a lockout.
        sql(
            conn,
            (
                "INSERT INTO collector (id, name, role, pin_hash, failed_pins, "
                "locked_until, active) VALUES (:id, :n, :r, :h, 0, 0, 1) "
                "ON CONFLICT(id) DO UPDATE SET name=excluded.name, role=excluded.role, "
                "active=1, failed_pins=CASE WHEN pin_hash=excluded.pin_hash "
                "THEN failed_pins ELSE 0 END, locked_until=CASE WHEN "
                "pin_hash=excluded.pin_hash THEN locked_until ELSE 0 END, "
                "pin_hash=excluded.pin_hash"
            ),
            {"id": c.id, "n": c.name, "r": c.role, "h": c.pin_hash},
        )


def _upsert_customers(conn: Connection, doc: AssignmentDocument) -> None:
    for u in doc.customers:
        sql(
            conn,
            (
                "INSERT INTO customer (id, name, phone, address, lat, lon, radius_m, "
                "extra, expires_at) VALUES (:id, :n, :p, :a, :la, :lo, :r, :x, NULL) "
                "ON CONFLICT(id) DO UPDATE SET name=excluded.name, phone=excluded.phone, "
                "address=excluded.address, lat=excluded.lat, lon=excluded.lon, "
                "radius_m=excluded.radius_m, extra=excluded.extra, expires_at=NULL"
            ),
            {
                "id": u.id,
                "n": u.name,
                "p": u.phone,
                "a": u.address,
                "la": u.lat,
                "lo": u.lon,
                "r": u.radius_m,
                "x": u.extra_json(),
            },
        )


def _replace_contracts(conn: Connection, doc: AssignmentDocument) -> None:
    for k in doc.contracts:
        sql(
            conn,
            (
                "INSERT INTO contract (id, customer_id, currency, extra) "
                "VALUES (:id, :c, :cur, :x) ON CONFLICT(id) DO UPDATE SET "
                "customer_id=excluded.customer_id, currency=excluded.currency, "
                "extra=excluded.extra"
            ),
            {"id": k.id, "c": k.customer, "cur": k.currency, "x": k.extra_json()},
        )
        sql(conn, ("DELETE FROM installment WHERE contract_id=:c"), {"c": k.id})
        for i in k.installments:
            sql(
                conn,
                (
                    "INSERT INTO installment (contract_id, no, due, amount, paid) "
                    "VALUES (:c, :n, :d, :a, :p)"
                ),
                {"c": k.id, "n": i.no, "d": i.due, "a": i.amount, "p": i.paid},
            )


def _add_to_installments(
    conn: Connection, contract: str, parts: list[tuple[int, int]], sign: int
) -> None:
    """Apply stored allocations again; what no longer fits goes oldest-first."""
    dues = {
        r.no: Due(r.no, r.due, r.amount, r.paid)
        for r in sql(
            conn,
            ("SELECT no, due, amount, paid FROM installment WHERE contract_id=:c"),
            {"c": contract},
        )
    }
    spill = 0
    for no, amount in parts:
        due = dues.get(no)
        if due is None:
            spill += amount
            continue
        if sign > 0:
            take = min(amount, due.open)
            spill += amount - take
            new_paid = due.paid + take
        else:
            take = min(amount, due.paid)
            spill += amount - take
            new_paid = due.paid - take
        dues[no] = Due(no, due.due, due.amount, new_paid)
        sql(
            conn,
            ("UPDATE installment SET paid=:p WHERE contract_id=:c AND no=:n"),
            {"p": new_paid, "c": contract, "n": no},
        )
    if spill and sign > 0:
        split = allocate(spill, dues.values())
        for no, part in split.parts:
            sql(
                conn,
                ("UPDATE installment SET paid=paid+:a WHERE contract_id=:c AND no=:n"),
                {"a": part, "c": contract, "n": no},
            )
    elif spill:
        # Reverse a void HQ has not seen from the newest paid installments.
        for due in sorted(dues.values(), key=lambda d: (d.due, d.no), reverse=True):
            take = min(spill, due.paid)
            if take:
                sql(
                    conn,
                    (
                        "UPDATE installment SET paid=paid-:a WHERE contract_id=:c "
                        "AND no=:n"
                    ),
                    {"a": take, "c": contract, "n": due.no},
                )
                spill -= take


def _reapply_local(conn: Connection, doc: AssignmentDocument) -> int:
    contracts = {k.id for k in doc.contracts}
    if not contracts:
        return 0
    rows = sql(
        conn,
        (
            "SELECT p.id, p.contract_id, p.seq, p.voided_seq FROM payment p "
            "WHERE (p.seq > :s OR p.voided_seq > :s) ORDER BY p.seq"
        ),
        {"s": doc.as_of},
    ).all()
    applied = 0
    for row in rows:
        if row.contract_id not in contracts:
            continue
        parts = [
            (int(a.installment_no), int(a.amount))
            for a in sql(
                conn,
                (
                    "SELECT installment_no, amount FROM allocation WHERE payment_id=:p "
                    "ORDER BY installment_no"
                ),
                {"p": row.id},
            )
        ]
        seen_payment = row.seq <= doc.as_of
        seen_void = row.voided_seq is not None and row.voided_seq <= doc.as_of
        if not seen_payment and row.voided_seq is None:
            _add_to_installments(conn, row.contract_id, parts, +1)
            applied += 1
        elif seen_payment and row.voided_seq is not None and not seen_void:
            _add_to_installments(conn, row.contract_id, parts, -1)
            applied += 1
        # A payment and its void both after as_of cancel out: nothing to do.
    return applied


def apply_document(conn: Connection, doc: AssignmentDocument) -> dict[str, Any]:
    """Apply a validated document inside the caller's write transaction."""
    _upsert_collectors(conn, doc)
    _upsert_customers(conn, doc)
    _replace_contracts(conn, doc)
    if doc.mode == "replace":
        sql(conn, ("DELETE FROM assignment"))
    for a in doc.assignments:
        sql(
            conn,
            (
                "INSERT INTO assignment (id, contract_id, collector_id, date, priority, "
                "outcome, extra) VALUES (:id, :k, :c, :d, :p, NULL, :x) "
                "ON CONFLICT(id) DO UPDATE SET contract_id=excluded.contract_id, "
                "collector_id=excluded.collector_id, date=excluded.date, "
                "priority=excluded.priority, extra=excluded.extra"
            ),
            {
                "id": a.id,
                "k": a.contract,
                "c": a.collector,
                "d": a.date,
                "p": a.priority,
                "x": a.extra_json(),
            },
        )
    reapplied = _reapply_local(conn, doc)
    summary = {
        "mode": doc.mode,
        "as_of": doc.as_of,
        "collectors": len(doc.collectors),
        "customers": len(doc.customers),
        "contracts": len(doc.contracts),
        "assignments": len(doc.assignments),
        "reapplied": reapplied,
    }
    log.info("assignment document applied: %s", summary)
    return summary


def purge_expired(conn: Connection, today: dt.date, retention_days: int) -> int:
    """Remove customers whose assignments ended more than the retention ago.

    Payments, allocations and the journal stay; only the personal data the
    assignments needed goes.
    """
    cutoff = (today - dt.timedelta(days=retention_days)).isoformat()
    stale = [
        r[0]
        for r in sql(
            conn,
            (
                "SELECT u.id FROM customer u WHERE NOT EXISTS (SELECT 1 FROM contract k "
                "JOIN assignment a ON a.contract_id = k.id WHERE k.customer_id = u.id "
                "AND a.date >= :cut)"
            ),
            {"cut": cutoff},
        )
    ]
    for customer in stale:
        contracts = [
            r[0]
            for r in sql(
                conn, ("SELECT id FROM contract WHERE customer_id=:u"), {"u": customer}
            )
        ]
        for contract in contracts:
            sql(conn, ("DELETE FROM installment WHERE contract_id=:c"), {"c": contract})
            sql(conn, ("DELETE FROM assignment WHERE contract_id=:c"), {"c": contract})
        sql(conn, ("DELETE FROM contract WHERE customer_id=:u"), {"u": customer})
        sql(conn, ("DELETE FROM customer WHERE id=:u"), {"u": customer})
    if stale:
        log.info("removed %d customers whose assignments ended", len(stale))
    return len(stale)
