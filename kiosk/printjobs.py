"""The print queue as the store keeps it, for the printer worker.

A receipt that reached paper is a journal entry of its own (``receipt_printed``,
``receipt_reprinted``), so HQ can tell an issued receipt that never printed.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from kiosk.hardware.printer.queue import PrintJob
from kiosk.store import sql

if TYPE_CHECKING:
    from kiosk.ledger import Ledger

log = logging.getLogger(__name__)


class LedgerPrintJobs:
    """Implements the printer worker's ``PrintJobStore`` on the ledger's store."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def recover(self) -> int:
        """Jobs caught mid-print by a crash go back in the queue, flagged: the
        paper may already hold them, so the copy says it may be a duplicate."""
        with self.ledger.store.write() as conn:
            result = sql(
                conn,
                (
                    "UPDATE printjob SET status='queued', possible_duplicate=1, "
                    "retry_at=0 WHERE status='printing'"
                ),
            )
        count = int(result.rowcount or 0)
        if count:
            log.warning("%d print jobs were interrupted; printing them again", count)
        return count

    def next_print_job(self) -> PrintJob | None:
        with self.ledger.store.read() as conn:
            row = sql(
                conn,
                (
                    "SELECT id, payload, attempts, possible_duplicate FROM printjob "
                    "WHERE status IN ('queued', 'failed') AND retry_at <= :now "
                    "ORDER BY id LIMIT 1"
                ),
                {"now": time.time()},
            ).first()
        if row is None:
            return None
        payload = json.loads(row.payload)
        return PrintJob(
            id=int(row.id),
            kind=str(payload.get("kind", "")),
            payload=payload,
            attempts=int(row.attempts),
            possible_duplicate=bool(row.possible_duplicate),
        )

    def mark_print_started(self, job_id: int) -> None:
        with self.ledger.store.write() as conn:
            sql(
                conn,
                ("UPDATE printjob SET status='printing' WHERE id=:id"),
                {"id": job_id},
            )

    def mark_printed(self, job_id: int) -> None:
        ledger = self.ledger
        with ledger.store.write() as conn:
            row = sql(
                conn,
                (
                    "SELECT kind, ref, payload, possible_duplicate FROM printjob WHERE id=:id"
                ),
                {"id": job_id},
            ).one()
            sql(
                conn,
                (
                    "UPDATE printjob SET status='done', printed_at=:t, last_error='' "
                    "WHERE id=:id"
                ),
                {"t": time.time(), "id": job_id},
            )
            if row.kind not in ("receipt", "reprint"):
                return
            payload: dict[str, Any] = json.loads(row.payload)
            sql(
                conn,
                ("UPDATE payment SET printed = printed + 1 WHERE receipt_no=:n"),
                {"n": ledger.receipt_number(row.ref)},
            )
            ledger.journal_entry(
                conn,
                "receipt_printed" if row.kind == "receipt" else "receipt_reprinted",
                payload.get("collector", {}).get("id"),
                {
                    "receipt": row.ref,
                    "copy": payload.get("copy", 0),
                    "job": job_id,
                    "possible_duplicate": bool(row.possible_duplicate),
                },
            )

    def mark_print_failed(self, job_id: int, error: str, retry_at: float) -> None:
        with self.ledger.store.write() as conn:
            sql(
                conn,
                (
                    "UPDATE printjob SET status='failed', attempts=attempts+1, "
                    "last_error=:e, retry_at=:r WHERE id=:id"
                ),
                {"e": error[:500], "r": retry_at, "id": job_id},
            )

    def waiting(self) -> list[dict[str, Any]]:
        """Jobs not yet on paper, for the collector to see."""
        with self.ledger.store.read() as conn:
            rows = sql(
                conn,
                (
                    "SELECT id, kind, ref, status, attempts, last_error FROM printjob "
                    "WHERE status != 'done' ORDER BY id"
                ),
            ).all()
        return [r._asdict() for r in rows]
