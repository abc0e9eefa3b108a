"""``kiosk demo``: the whole product on a throw-away data directory, no hardware.

It sets up, in a temporary folder (kept with ``--keep``):

- a configuration for device ``DEMO-01`` (IDR, Indonesian number format);
- the shipped assignment document: 40 fictional customers around Bandung,
  dated today, with three collectors (PINs shown on screen);
- a replay of the shipped GPS drive past those customers, five times faster;
- a ``dir:`` printer: each receipt is a ``.bin`` (ESC/POS) and a ``.txt`` file;
- when Mosquitto is installed, its own broker on a free loopback port and an
  HQ service beside it, so events can be seen arriving at HQ; otherwise the
  device runs offline and its outbox grows.

It then makes a few scripted payments and a visit, so receipts print and
events flow before anyone types, and puts the collector UI on top.
``--headless`` runs only the script and prints a summary. Nothing is written
outside the temporary folder: never ``/etc`` or ``/var``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.config import Config, load_config
from kiosk.errors import KioskError
from kiosk.money import format_amount

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_PINS = {"c1": "1234", "c2": "2345", "s1": "9999"}
SCRIPT = [
    ("collect", "c1", "K-002", None),
    ("collect", "c1", "K-005", None),
    ("visit", "c1", "K-008", "not_home"),
    ("collect", "c2", "K-001", None),
]


@dataclass
class DemoSetup:
    root: Path
    config_path: Path
    broker: subprocess.Popen[bytes] | None = None
    broker_port: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def receipts(self) -> Path:
        return self.root / "receipts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def _start_broker(root: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = _mosquitto()
    if binary is None:
        return None
    port = _free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {root / 'mosquitto.log'}\nuser {os.environ.get('USER', 'root')}\n"
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                return None
            time.sleep(0.05)
    proc.kill()
    return None


def prepare(root: Path, *, with_broker: bool = True) -> DemoSetup:
    """Lay out the demo's configuration, key, assignments and drive in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    setup = DemoSetup(root, root / "kiosk.toml")
    (root / "device.key").write_text(os.urandom(32).hex() + "\n")
    (root / "hq-keys").mkdir(exist_ok=True)
    shutil.copy(root / "device.key", root / "hq-keys" / "DEMO-01.key")

    broker_url = ""
    if with_broker:
        started = _start_broker(root)
        if started is not None:
            setup.broker, setup.broker_port = started
            broker_url = f"mqtt://127.0.0.1:{setup.broker_port}"
        else:
            setup.notes.append(
                "Mosquitto is not installed, so the demo runs offline and the outbox "
                "grows; install it (apt-get install mosquitto) to see events reach HQ."
            )
    setup.config_path.write_text(
        "# Made by `kiosk demo`.\n"
        "[device]\nid = 'DEMO-01'\nname = 'Demo van 1'\nbranch = 'Bandung Timur'\n"
        "currency = 'IDR'\nlocale = 'id'\nlanguage = 'en'\ntimezone = 'Asia/Jakarta'\n"
        "data_dir = 'data'\n"
        "[cash]\nmax_in_hand = 15000000\nmax_payment = 7500000\n"
        "[location]\noutside = 'require_reason'\nno_fix = 'warn'\nmax_fix_age_s = 120\n"
        f"[gps]\nsource = 'replay:{DATA / 'drive.nmea'}?speed=5'\n"
        "[printer]\nconnection = 'dir:receipts'\ncolumns = 42\n"
        "[receipt]\nheader = ['PT Contoh Finance', 'Bandung']\n"
        "footer = ['Thank you / Terima kasih']\n"
        f"[broker]\nurl = '{broker_url}'\nusername = 'DEMO-01'\n"
        "[security]\nkey_file = 'device.key'\n"
        f"[hq]\ndb_url = 'sqlite:///{root / 'hq.db'}'\nkeys_dir = 'hq-keys'\n"
    )
    return setup


def assignment_document(today: dt.date) -> dict[str, Any]:
    """The shipped document with its dates moved so the round is today's."""
    doc = json.loads((DATA / "assignments.json").read_text(encoding="utf-8"))
    base = dt.date.fromisoformat(doc["assignments"][0]["date"])
    shift = today - base
    for contract in doc["contracts"]:
        for item in contract["installments"]:
            item["due"] = (dt.date.fromisoformat(item["due"]) + shift).isoformat()
    for assignment in doc["assignments"]:
        assignment["date"] = today.isoformat()
    return doc


def run_script(service: Any) -> list[str]:
    """The scripted start of the day; returns what it did, one line each."""
    ledger = service.ledger
    done = []

    # The replayed drive starts at once; wait briefly for its first fix so the
    # scripted receipts carry a position, as a collector's would.
    deadline = time.monotonic() + 5
    while service.current_fix() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    today = ledger.clock.now().astimezone(ledger.device.tz).date()
    summary = ledger.import_document(assignment_document(today))
    done.append(f"imported {summary['assignments']} assignments for {today}")
    for op, collector, contract, outcome in SCRIPT:
        actor = ledger.authenticate(collector, DEMO_PINS[collector])
        try:
            if op == "collect":
                due = ledger.contract_detail(contract)["arrears"] or 100_000
                result = ledger.collect(actor, contract, due, reason="demo")
                done.append(
                    f"{collector} collected {ledger.money(result['amount'])} on "
                    f"{contract}: receipt {result['receipt']}"
                )
            else:
                ledger.visit(actor, contract, outcome or "not_home", note="demo")
                done.append(f"{collector} visited {contract}: {outcome}")
        except KioskError as exc:
            done.append(f"{collector} on {contract}: refused: {exc.message}")
        service.emit("changed", op)
    return done


class DemoHq:
    """HQ's ingest beside the device, on the demo's own broker and database."""

    def __init__(self, config: Config) -> None:
        from kiosk.sync.hq.commands import KeyRing
        from kiosk.sync.hq.ingest import Ingest
        from kiosk.sync.hq.store import HqStore

        self.store = HqStore(config.hq.db_url)
        self.keys = KeyRing(config.hq.keys_dir)
        self.ingest = Ingest(config, self.store, client_id="demo-hq", keys=self.keys)

    def start(self) -> None:
        self.ingest.start()
        self.ingest.wait_ready(10)

    def stop(self) -> None:
        self.ingest.stop()

    def summary(self) -> list[str]:
        from kiosk.sync.hq.views import list_devices, list_events

        events = list_events(self.store, limit=100_000)["events"]
        kinds: dict[str, int] = {}
        for event in events:
            kinds[event["type"]] = kinds.get(event["type"], 0) + 1
        lines = [
            f"HQ has received {len(events)} events: "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        ]
        for device in list_devices(self.store, self.keys)["devices"]:
            lines.append(
                f"HQ's view of {device['device']}: "
                f"{'online' if device['online'] else 'offline'}, journal verified to "
                f"entry {device.get('verified_seq')}, cash held "
                + ", ".join(
                    f"{c} {format_amount(v, 0, 'id')}"
                    for c, v in (device.get("cash_held") or {}).items()
                )
            )
        return lines


def _start_hq(config: Config, setup: DemoSetup) -> DemoHq | None:
    if not config.broker.url:
        return None
    try:
        hq = DemoHq(config)
        hq.start()
    except Exception as exc:  # the demo goes on without HQ, and says so
        log.warning("demo HQ did not start: %s", exc)
        setup.notes.append(
            f"HQ did not start ({exc}); the device still syncs to the broker"
        )
        return None
    return hq


async def _headless(config: Config, setup: DemoSetup) -> int:
    from kiosk.service import Service

    hq = await asyncio.to_thread(_start_hq, config, setup)
    service = Service(config)
    await service.start()
    try:
        lines = await asyncio.to_thread(run_script, service)
        for line in lines:
            print(f"  {line}")

        # Give the printer and the link a moment to do their part.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            printed = (
                sorted(setup.receipts.glob("*.txt")) if setup.receipts.exists() else []
            )
            outbox = service.ledger.outbox_summary()
            if len(printed) >= 3 and (not config.broker.url or outbox["depth"] == 0):
                break
            await asyncio.sleep(0.25)
        printed = (
            sorted(setup.receipts.glob("*.txt")) if setup.receipts.exists() else []
        )
        outbox = service.ledger.outbox_summary()
        verified = service.ledger.verify()
    finally:
        await service.stop()
        if hq is not None:
            await asyncio.sleep(1)
            hq_lines = await asyncio.to_thread(hq.summary)
            await asyncio.to_thread(hq.stop)

    print(f"\nReceipts printed: {len(printed)} (in {setup.receipts})")
    for path in printed:
        print(f"  {path.name}")
    if printed:
        print(f"\nThe first receipt, as printed:\n\n{printed[0].read_text()}")
    print(
        f"Journal: {verified['entries']} entries, chain {'verified' if verified['ok'] else 'BROKEN'}"
    )
    print(f"Outbox: {outbox['depth']} events waiting for HQ")
    if hq is not None:
        for line in hq_lines:
            print(line)
    for note in setup.notes:
        print(f"Note: {note}")
    return 0 if verified["ok"] and printed else 1


def run_demo(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
    setup = prepare(root)
    print(f"Demo data directory: {root}")
    print("Demo PINs: c1 = 1234, c2 = 2345 (collectors), s1 = 9999 (supervisor)")
    try:
        config = load_config(setup.config_path)
        if args.headless or not sys.stdout.isatty():
            return asyncio.run(_headless(config, setup))

        from kiosk.ui.app import run_ui

        hq = _start_hq(config, setup)
        try:
            return int(run_ui(config, on_ready=run_script) or 0)
        finally:
            if hq is not None:
                for line in hq.summary():
                    print(line)
                hq.stop()
    finally:
        if setup.broker is not None:
            setup.broker.terminate()
            setup.broker.wait(5)
        if args.keep:
            print(f"Kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            print(f"Removed {root} (run with --keep to look at it afterwards)")
