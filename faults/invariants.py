"""The invariants, checked on the device's store and on HQ's database.

Counts are read with plain SQL, not through the product's own summaries, so a
defect in those summaries cannot hide a defect in the books.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

from faults import CASH, DUPLICATED, GAPS, JOURNAL, JOURNAL_HQ, LINKED, LOST, Check
from kiosk.config import Config
from kiosk.ledger import Ledger

log = logging.getLogger(__name__)


def _rows(db: sqlite3.Connection, query: str) -> list[Any]:
    return db.execute(query).fetchall()


def device_checks(config: Config, acknowledged: Collection[str] = ()) -> list[Check]:
    """The device-side invariants, after a fault.

    Args:
        config: The device's configuration (its data folder and id).
        acknowledged: Receipt names the payer was told were recorded; each
            must still be there.
    """
    ledger = Ledger(config, check=False)
    try:
        verified = ledger.verify()
        name = ledger.receipt_name
        held_by = ledger.held_by
        db = sqlite3.connect(
            f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
        )
        try:
            payments = _rows(db, "SELECT receipt_no, seq, amount FROM payment")
            counter = db.execute(
                "SELECT value FROM counter WHERE name='receipt'"
            ).fetchone()
            events = Counter(
                seq for (seq,) in _rows(db, "SELECT seq FROM outbox WHERE lane='money'")
            )
            jobs = Counter(
                ref
                for (ref,) in _rows(db, "SELECT ref FROM printjob WHERE kind='receipt'")
            )
            journal = int(db.execute("SELECT count(*) FROM journal").fetchone()[0])
            movements = dict(
                _rows(
                    db,
                    "SELECT collector_id, sum(amount) FROM cashmovement "
                    "GROUP BY collector_id",
                )
            )
            paid_in = int(
                db.execute(
                    "SELECT coalesce(sum(amount), 0) FROM cashmovement "
                    "WHERE kind='payment'"
                ).fetchone()[0]
            )
        finally:
            db.close()
        held = {str(c): held_by(str(c)) for c in movements}
    finally:
        ledger.close()

    checks = [
        Check(
            JOURNAL,
            bool(verified["ok"]),
            "; ".join(map(str, list(verified.get("problems", []))[:3])),
        )
    ]

    # Gap-free numbers, and the counter agrees with the rows.
    numbers = sorted(int(str(row[0])) for row in payments)
    top = len(numbers)
    gapless = numbers == list(range(1, top + 1)) and (
        counter is None or counter[0] in (None, top)
    )
    checks.append(
        Check(
            GAPS, gapless, f"numbers {numbers[:5]}... counter {counter}, {top} payments"
        )
    )

    recorded = {name(n) for n in numbers}
    missing = sorted(set(acknowledged) - recorded)
    checks.append(
        Check(LOST, not missing, f"acknowledged but not recorded: {missing[:5]}")
    )

    # The cash box: each collector's held equals their movements, and every
    # payment's amount went into a box.
    paid = sum(int(str(row[2])) for row in payments)
    wrong = {c: (held[c], m) for c, m in movements.items() if held[str(c)] != m}
    checks.append(
        Check(
            CASH,
            not wrong and paid == paid_in,
            f"held vs movements {wrong}, paid {paid} vs moved in {paid_in}",
        )
    )

    unlinked = [
        name(int(str(no)))
        for no, seq, _ in payments
        if (events.get(seq), jobs.get(name(int(str(no))))) != (1, 1)
    ]
    same = journal == sum(events.values())
    checks.append(
        Check(
            LINKED,
            not unlinked and same,
            f"without exactly one event and job: {unlinked[:5]}; journal {journal} vs money events {sum(events.values())}",
        )
    )
    return checks


def hq_checks(hq_db: Path, config: Config) -> list[Check]:
    """HQ's copy against the device's: every money event once, in order, verified.

    Args:
        hq_db: HQ's SQLite database file.
        config: The device's configuration.
    """
    device = config.device.id
    ledger = Ledger(config, check=False)
    try:
        last = int(ledger.status()["journal"]["seq"])
        db = sqlite3.connect(
            f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
        )
        try:
            held = dict(
                _rows(
                    db,
                    "SELECT collector_id, sum(amount) FROM cashmovement GROUP BY collector_id",
                )
            )
        finally:
            db.close()
    finally:
        ledger.close()

    db = sqlite3.connect(f"file:{hq_db}?mode=ro", uri=True)
    try:
        # Rowid order is arrival order: an event stored once keeps its first place.
        seqs = [
            int(str(s))
            for (s,) in _rows_param(
                db,
                "SELECT seq FROM hq_event WHERE device=? AND lane='money' ORDER BY rowid",
                device,
            )
        ]
        chain = db.execute(
            "SELECT verified_seq, problem FROM hq_chain WHERE device=?", (device,)
        ).fetchone()
        cash = dict(
            _rows_param(
                db, "SELECT collector, held FROM hq_cash WHERE device=?", device
            )
        )
    finally:
        db.close()

    counts = Counter(seqs)
    twice = sorted(s for s, n in counts.items() if n > 1)
    complete = sorted(counts) == list(range(1, last + 1))
    checks = [
        Check(DUPLICATED, not twice, f"stored twice: {twice[:5]}"),
        Check(LOST, complete, f"HQ holds {len(counts)} of {last} money events"),
        Check(
            JOURNAL_HQ,
            chain is not None and chain[0] == last and not chain[1],
            f"HQ's chain: {chain}, device at {last}",
        ),
        Check(
            CASH,
            {str(k): int(str(v)) for k, v in cash.items()}
            == {str(k): int(str(v)) for k, v in held.items()},
            f"HQ's cash view {cash} vs device {held}",
        ),
    ]
    return checks


def _rows_param(db: sqlite3.Connection, query: str, *params: object) -> list[Any]:
    return db.execute(query, params).fetchall()


def printed_checks(config: Config) -> list[Check]:
    """Every receipt job reached paper; used once the printer is back."""
    db = sqlite3.connect(
        f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        waiting = _rows(
            db,
            "SELECT ref, status FROM printjob WHERE kind='receipt' AND status!='done'",
        )
    finally:
        db.close()
    return [
        Check(
            "every receipt printed once the printer is back",
            not waiting,
            f"still waiting: {waiting[:5]}",
        )
    ]


def count_payments(config: Config) -> int:
    """How many payments the device holds."""
    db = sqlite3.connect(
        f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        return int(db.execute("SELECT count(*) FROM payment").fetchone()[0])
    finally:
        db.close()


def arrival_note(hq_db: Path, device: str) -> str:
    """How many money events reached HQ after a later one (then resent)."""
    db = sqlite3.connect(f"file:{hq_db}?mode=ro", uri=True)
    try:
        seqs = [
            int(str(s))
            for (s,) in _rows_param(
                db,
                "SELECT seq FROM hq_event WHERE device=? AND lane='money' ORDER BY rowid",
                device,
            )
        ]
    finally:
        db.close()
    late, top = 0, 0
    for seq in seqs:
        late += seq < top
        top = max(top, seq)
    return (
        f"HQ stored {len(seqs)} money events; {late} arrived after a later one "
        "(resent after the broker lost them) and were applied in journal order"
    )
