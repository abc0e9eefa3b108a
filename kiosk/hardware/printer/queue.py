"""The print queue worker: prints stored jobs, one at a time, in a thread.

The core writes a print job into the store in the same transaction as the
payment, then calls :meth:`PrintQueue.wake`, which returns at once. The worker
takes the oldest job that is due, marks it started, prints it and marks it
printed only after its bytes were written. A failed job is marked failed with
the next attempt due after a growing pause, so a printer out of paper is not
hammered, and prints as soon as it is back. A job found "started" after a
crash is printed again, marked on paper as a possible duplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kiosk.errors import BadInput
from kiosk.hardware.printer.connection import ReceiptPrinter
from kiosk.receipt import ReceiptSettings, render_lines

log = logging.getLogger(__name__)


@dataclass
class PrintJob:
    """A print job as the store hands it out.

    Attributes:
        id: The store's id of the job.
        kind: "receipt", "void", "deposit", "x_report", "z_report" or "hub".
        payload: The job's JSON payload.
        attempts: Failed attempts so far.
        possible_duplicate: The job was started before and may have printed.
    """

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int = 0
    possible_duplicate: bool = False


class PrintJobStore(Protocol):
    """What the worker needs from the store."""

    def next_print_job(self) -> PrintJob | None:
        """The oldest queued or failed job that is due now, if any."""
        ...

    def mark_print_started(self, job_id: int) -> None: ...

    def mark_printed(self, job_id: int) -> None: ...

    def mark_print_failed(self, job_id: int, error: str, retry_at: float) -> None:
        """Record a failure; the job is due again at ``retry_at`` (epoch s)."""
        ...


def job_name(job: PrintJob) -> str:
    """A file-safe name for a job, e.g. ``000012-KIOSK-01-000042-copy1``."""
    payload = job.payload
    name = f"{job.id:06d}-{payload.get('receipt') or job.kind}"
    copy = payload.get("copy") or 0
    return f"{name}-copy{copy}" if copy else name


class PrintQueue(threading.Thread):
    """Prints the store's jobs on one printer, retrying with backoff.

    Args:
        store: Where jobs come from and their outcome goes.
        printer: The printer, or None when none is configured (jobs then stay
            queued untouched).
        settings: Receipt layout settings.
        on_status: Called with a sentence when printing starts failing, when
            the reason changes and when it works again.
        retry_base_s: Pause after the first failure; doubled each attempt.
        retry_max_s: The longest pause between attempts.
        poll_s: How often to look for due jobs without a wake-up.
        clock: Epoch seconds, replaceable in tests.
    """

    def __init__(
        self,
        store: PrintJobStore,
        printer: ReceiptPrinter | None,
        settings: ReceiptSettings,
        *,
        on_status: Callable[[str], None] | None = None,
        retry_base_s: float = 2.0,
        retry_max_s: float = 300.0,
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="print-queue", daemon=True)
        self.store = store
        self.printer = printer
        self.settings = settings
        self.on_status = on_status
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.poll_s = poll_s
        self.clock = clock
        self.problem: str | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Finish the job in hand and stop; safe to call more than once."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        if self.printer is None:
            log.info("no printer configured: print jobs stay queued")
            self._stopping.wait()
            return

        log.info("print queue started on %s", self.printer.spec)
        while not self._stopping.is_set():
            try:
                job = self.store.next_print_job()
            except Exception:
                log.exception("could not read the print queue")
                job = None

            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._print(job, self.printer)
        log.info("print queue stopped")

    def _print(self, job: PrintJob, printer: ReceiptPrinter) -> None:
        try:
            self.store.mark_print_started(job.id)
            lines = render_lines(
                job.payload, self.settings, possible_duplicate=job.possible_duplicate
            )
        except BadInput as exc:
            # A job that cannot be laid out will not improve by retrying
            # soon; keep it visible as failed and try rarely.
            log.error("print job %s cannot be printed: %s", job.id, exc)
            self._failed(job, str(exc), self.retry_max_s)
            return
        except Exception:
            log.exception("print job %s could not be started", job.id)
            self._stopping.wait(self.poll_s)
            return

        try:
            printer.print_lines(job_name(job), lines, self.settings.columns)
        except Exception as exc:
            pause = min(self.retry_max_s, self.retry_base_s * 2**job.attempts)
            log.warning("print job %s failed (retry in %g s): %s", job.id, pause, exc)
            self._failed(job, str(exc), pause)
            self._report(str(exc))
            return

        try:
            self.store.mark_printed(job.id)
        except Exception:
            log.exception("print job %s printed but could not be marked", job.id)
        self._report(None)

    def _failed(self, job: PrintJob, error: str, pause: float) -> None:
        try:
            self.store.mark_print_failed(job.id, error, self.clock() + pause)
        except Exception:
            log.exception("print job %s failed and could not be marked", job.id)
            self._stopping.wait(self.poll_s)

    def _report(self, problem: str | None) -> None:
        if problem == self.problem:
            return
        self.problem = problem
        if problem is not None:
            text = f"Printer problem: {problem}. Receipts wait in the print queue."
        else:
            text = "Printer working again."
        if self.on_status is not None:
            try:
                self.on_status(text)
            except Exception:
                log.exception("the printer status callback failed")
