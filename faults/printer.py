"""Family 3: the printer refusing, dropping mid-job, out of paper, very slow.

The device's own print queue drives a real TCP printer emulator. For each
fault a payment is made while the printer misbehaves: the payment must be kept,
its receipt must wait in the queue, and once the printer is back it must come
out exactly once.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter

from faults import Check, Context, FamilyResult
from faults.invariants import device_checks, printed_checks
from faults.parts import contract, prepare, wait_until, write_config
from kiosk.config import Config
from kiosk.hardware.printer import PrintQueue, open_printer
from kiosk.ledger import Ledger
from kiosk.printjobs import LedgerPrintJobs
from kiosk.receipt import ReceiptSettings
from tests.escpos_decode import decode
from tests.factories import PIN
from tests.printer_emulator import PrinterEmulator

log = logging.getLogger(__name__)

TITLE = "printer refusing, dropping mid-job, out of paper, very slow"
PROFILE = "POS-5890"
FAULTS = ("refuse", "drop", "paper_out", "slow")
KEPT = "the payment is kept while the printer fails"
WAITS = "the receipt waits in the queue while the printer fails"
ONCE = "each receipt prints exactly once when the printer returns"


def _job(config: Config, receipt: str) -> tuple[str, int]:
    db = sqlite3.connect(
        f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        row = db.execute(
            "SELECT status, attempts FROM printjob WHERE kind='receipt' AND ref=?",
            (receipt,),
        ).fetchone()
    finally:
        db.close()
    return (str(row[0]), int(row[1])) if row else ("missing", 0)


def _whole_receipts(emulator: PrinterEmulator) -> Counter[str]:
    seen: Counter[str] = Counter()
    for job in emulator.jobs:
        lines = decode(job, PROFILE).lines(32)
        number = [line.split()[-1] for line in lines if line.startswith("No. ")]
        if number and any("[QR]" in line for line in lines):
            seen[number[0]] += 1
    return seen


def _break(emulator: PrinterEmulator, fault: str) -> None:
    if fault == "refuse":
        emulator.refuse()
    elif fault == "drop":
        emulator.drop_next(after_bytes=200)
    elif fault == "paper_out":
        emulator.paper_out = True
    else:
        emulator.read_delay = 0.05  # a receipt takes seconds, not milliseconds


def _mend(emulator: PrinterEmulator) -> None:
    emulator.paper_out = False
    emulator.read_delay = 0.0
    emulator.accept()


def run(ctx: Context, result: FamilyResult) -> None:
    folder = ctx.folder("printer")
    config = prepare(write_config(folder, printer={"profile": PROFILE}))
    ledger = Ledger(config, check=False)
    actor = ledger.authenticate("c1", PIN)
    receipts: list[str] = []
    with PrinterEmulator() as emulator:
        queue = PrintQueue(
            LedgerPrintJobs(ledger),
            open_printer(emulator.spec, PROFILE, timeout=1.0),
            ReceiptSettings.from_config(config),
            retry_base_s=0.05,
            retry_max_s=0.2,
            poll_s=0.02,
        )
        queue.start()
        try:
            for n in range(ctx.scale(3, 25)):
                for fault in FAULTS:
                    _break(emulator, fault)
                    receipt = str(
                        ledger.collect(actor, contract(n), 3000 + n)["receipt"]
                    )
                    receipts.append(receipt)
                    queue.wake()
                    result.inject(f"printer {fault.replace('_', ' ')}")
                    if fault == "slow":
                        # Slow is not broken: the job is under way, not done.
                        waited = wait_until(
                            lambda receipt=receipt: (
                                _job(config, receipt)[0] == "printing"
                            ),
                            5,
                            0.01,
                        )
                    else:
                        waited = wait_until(
                            lambda receipt=receipt: _job(config, receipt)[1] >= 1,
                            5,
                            0.01,
                        )
                    status = _job(config, receipt)[0]
                    result.record(
                        [
                            Check(KEPT, receipt in _recorded(ledger), receipt),
                            Check(
                                WAITS,
                                waited and status != "done",
                                f"{receipt} {fault}: {status}",
                            ),
                        ]
                    )
                    _mend(emulator)
                    wait_until(
                        lambda receipt=receipt: _job(config, receipt)[0] == "done",
                        30,
                        0.02,
                    )
                    result.record(device_checks(config, receipts))
        finally:
            queue.stop()
        printed = _whole_receipts(emulator)
    ledger.close()
    wrong = {r: printed.get(r, 0) for r in receipts if printed.get(r, 0) != 1}
    result.record(printed_checks(config))
    result.record([Check(ONCE, not wrong, f"times printed: {wrong}")])
    result.notes.append(
        f"{len(receipts)} receipts, {sum(printed.values())} printed whole"
    )


def _recorded(ledger: Ledger) -> set[str]:
    db = sqlite3.connect(
        f"file:{ledger.config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        return {
            ledger.receipt_name(int(n))
            for (n,) in db.execute("SELECT receipt_no FROM payment")
        }
    finally:
        db.close()
