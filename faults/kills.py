"""Family 1: SIGKILL at random moments, while paying, printing and draining.

Payers and draining links are forked from this process, which has everything
imported already, so a kill lands on real work within milliseconds rather than
on interpreter start-up. Printing runs in the real agent (``kiosk agent``) with
a slow TCP printer emulator, killed mid-job.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from faults import LOST, Check, Context, FamilyResult
from faults.invariants import count_payments, device_checks, hq_checks, printed_checks
from faults.parts import (
    AUTH,
    contract,
    prepare,
    wait_for_service,
    wait_until,
    write_config,
)
from kiosk.config import Config, load_config
from kiosk.control import ControlClient
from kiosk.errors import KioskError
from kiosk.ledger import Ledger
from tests.brokers import Broker
from tests.cli_helpers import start_agent, stop
from tests.conftest import ROOT
from tests.escpos_decode import decode
from tests.factories import PIN
from tests.printer_emulator import PrinterEmulator

log = logging.getLogger(__name__)

TITLE = "SIGKILL at random moments during payments, printing and draining"
PROFILE = "POS-5890"


def run(ctx: Context, result: FamilyResult) -> None:
    during_payments(ctx, result)
    during_printing(ctx, result)
    during_draining(ctx, result)


# --- payments -----------------------------------------------------------------


def _pay_until_killed(config_path: Path, fd: int) -> None:
    """The forked payer: pay as fast as it can, saying each receipt it got."""
    ledger = Ledger(load_config(config_path), check=False)
    actor = ledger.authenticate("c1", PIN)
    os.write(fd, b"ready\n")
    n = 0
    while True:
        n += 1
        done = ledger.collect(actor, contract(n), 1000 + n % 7)
        os.write(fd, f"{done['receipt']}\n".encode())


def _fork(target: object, *args: object) -> tuple[int, int]:
    """Fork a child running ``target(*args, fd)``; its pid and the read end."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            target(*args, write_end)  # type: ignore[operator]
        except BaseException:
            log.exception("forked child failed")
        finally:
            os._exit(1)
    os.close(write_end)
    return pid, read_end


def _read_all(fd: int) -> list[str]:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode().split()


def _wait_ready(fd: int, timeout: float = 10.0) -> bool:
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 6) == b"ready\n"


def during_payments(ctx: Context, result: FamilyResult) -> None:
    """Kill a forked payer again and again; every receipt it was given stays."""
    folder = ctx.folder("kills-payments")
    config_path = write_config(folder)
    config = prepare(config_path)
    acknowledged: set[str] = set()
    for _ in range(ctx.scale(15, 380)):
        pid, fd = _fork(_pay_until_killed, config_path)
        if not _wait_ready(fd):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            result.fail(LOST, "a forked payer did not start")
            continue
        time.sleep(ctx.rng.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        result.inject("SIGKILL during payments")
        acknowledged.update(_read_all(fd))
        result.record(device_checks(config, acknowledged))
    result.notes.append(
        f"payments: {count_payments(config)} recorded across the kills, "
        f"{len(acknowledged)} of them acknowledged to the payer before a kill"
    )


# --- printing -----------------------------------------------------------------


def _printing_jobs(config: Config) -> int:
    db = sqlite3.connect(
        f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        return int(
            db.execute(
                "SELECT count(*) FROM printjob WHERE status='printing'"
            ).fetchone()[0]
        )
    finally:
        db.close()


def _printed_receipts(emulator: PrinterEmulator) -> Counter[str]:
    """Receipts that reached the emulator whole (the QR code closes a receipt)."""
    seen: Counter[str] = Counter()
    for job in emulator.jobs:
        lines = decode(job, PROFILE).lines(32)
        number = [line.split()[-1] for line in lines if line.startswith("No. ")]
        if number and any("[QR]" in line for line in lines):
            seen[number[0]] += 1
    return seen


def during_printing(ctx: Context, result: FamilyResult) -> None:
    """Kill the agent while a slow printer takes its receipts; each still prints."""
    folder = ctx.folder("kills-printing")
    with PrinterEmulator() as emulator:
        # About a fifth of a second a receipt: kills land mid-job.
        emulator.read_delay = 0.02
        config_path = write_config(
            folder,
            printer={"connection": emulator.spec, "profile": PROFILE, "timeout_s": 2},
        )
        config = prepare(config_path)
        data = config.device.data_dir
        acknowledged: set[str] = set()
        interrupted = 0
        for _ in range(ctx.scale(8, 60)):
            agent = start_agent(config_path, data, log=folder / "agent.log")
            if not wait_for_service(data):
                stop(agent)
                result.fail(LOST, "the agent did not answer on its socket")
                continue
            try:
                with ControlClient(data / "kiosk.sock", timeout=10) as client:
                    for n in range(ctx.rng.randint(1, 4)):
                        done = client.call(
                            "collect",
                            {"contract": contract(n), "amount": 5000 + n},
                            AUTH,
                        )
                        acknowledged.add(done["receipt"])
            except KioskError as exc:
                result.fail(LOST, f"a payment to the agent failed: {exc}")
            time.sleep(ctx.rng.uniform(0.0, 0.5))
            agent.kill()
            agent.wait()
            result.inject("SIGKILL of the agent while printing")
            interrupted += _printing_jobs(config)
            result.record(device_checks(config, acknowledged))

        # The printer at full speed and one clean start: everything prints.
        emulator.read_delay = 0.0
        agent = start_agent(config_path, data, log=folder / "agent.log")
        try:
            wait_for_service(data)
            wait_until(lambda: printed_checks(config)[0].held, 60, 0.2)
        finally:
            stop(agent)
        result.record(printed_checks(config))
        result.record(device_checks(config, acknowledged))
        result.record([_duplicates_flagged(config, _printed_receipts(emulator))])
    result.notes.append(
        f"printing: {len(acknowledged)} receipts, {interrupted} caught mid-print"
    )


def _duplicates_flagged(config: Config, printed: Counter[str]) -> Check:
    db = sqlite3.connect(
        f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        flagged = {
            ref
            for (ref,) in db.execute(
                "SELECT ref FROM printjob WHERE kind='receipt' AND possible_duplicate=1"
            )
        }
    finally:
        db.close()
    twice = sorted(r for r, n in printed.items() if n > 1 and r not in flagged)
    return Check(
        "a receipt printed twice only when marked as a possible duplicate",
        not twice,
        f"printed twice without the mark: {twice[:5]}",
    )


# --- draining -----------------------------------------------------------------


def _drain_until_killed(config_path: Path, fd: int) -> None:
    """The forked device: the broker link alone, draining the outbox."""
    from kiosk.sync.link import Link

    ledger = Ledger(load_config(config_path), check=False)
    link = Link(ledger, backoff_s=(0.05, 0.3))
    link.start()
    os.write(fd, b"ready\n")
    while True:
        time.sleep(1)


def _unsent(config: Config) -> int:
    db = sqlite3.connect(
        f"file:{config.device.data_dir / 'kiosk.db'}?mode=ro", uri=True
    )
    try:
        return int(
            db.execute(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND lane='money'"
            ).fetchone()[0]
        )
    finally:
        db.close()


def _hq_money(hq_db: Path, device: str) -> int:
    try:
        db = sqlite3.connect(f"file:{hq_db}?mode=ro", uri=True, timeout=1)
        try:
            return int(
                db.execute(
                    "SELECT count(*) FROM hq_event WHERE device=? AND lane='money'",
                    (device,),
                ).fetchone()[0]
            )
        finally:
            db.close()
    except sqlite3.Error:
        return -1


def start_hq(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``kiosk hq serve`` in a process of its own."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk",
            "hq",
            "serve",
            "--config",
            str(config_path),
            "-v",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "ab"),
    )


def during_draining(ctx: Context, result: FamilyResult) -> None:
    """Kill a forked link mid-drain, over and over; HQ ends with each event once."""
    folder = ctx.folder("kills-draining")
    broker = Broker(folder / "broker")
    broker.start()
    hq = None
    try:
        config_path = write_config(folder, broker={"url": broker.url, "inflight": 2})
        config = prepare(config_path)
        hq = start_hq(config_path, folder / "hq.log")
        hq_db = folder / "hq.db"
        wait_until(lambda: hq_db.exists(), 20)
        with_backlog = 0
        for _ in range(ctx.scale(8, 60)):
            _pay(config, ctx.rng.randint(20, 120))
            pid, fd = _fork(_drain_until_killed, config_path)
            if not _wait_ready(fd):
                result.fail(LOST, "a forked link did not start")
            time.sleep(ctx.rng.uniform(0.1, 0.5))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
            result.inject("SIGKILL of the device while draining")
            with_backlog += _unsent(config) > 0
            result.record(device_checks(config))

        # One last start drains what is left.
        pid, fd = _fork(_drain_until_killed, config_path)
        try:
            _wait_ready(fd)
            total = int(_last_seq(config))
            wait_until(
                lambda: (
                    _unsent(config) == 0 and _hq_money(hq_db, config.device.id) >= total
                ),
                90,
                0.2,
            )
            time.sleep(1.0)  # HQ checks its chain on a tick
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
        stop(hq)
        hq = None
        result.record(hq_checks(hq_db, config))
        result.notes.append(
            f"draining: {total} money events; {with_backlog} kills left a backlog"
        )
    finally:
        if hq is not None:
            stop(hq)
        broker.stop()


def _pay(config: Config, count: int) -> None:
    ledger = Ledger(config, check=False)
    try:
        actor = ledger.authenticate("c1", PIN)
        for n in range(count):
            ledger.collect(actor, contract(n), 1000 + n % 11)
    finally:
        ledger.close()


def _last_seq(config: Config) -> int:
    ledger = Ledger(config, check=False)
    try:
        return int(ledger.status()["journal"]["seq"])
    finally:
        ledger.close()
