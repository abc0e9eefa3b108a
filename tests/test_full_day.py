"""A full day on real parts, as a collector and HQ live it.

A real Mosquitto on loopback, a real gpsd fed by gpsfake with a real capture
from the shared corpus (the customers placed where that receiver stood, one of
them kilometres away), the TCP printer emulator, the HQ service, and the
collector's UI driven through Pilot:

1. HQ sends the day's assignments and a cash policy with `kiosk hq send`.
2. The collector signs in and opens the day with a float.
3. A full payment, a partial one, one refused at the cash limit, a deposit, the
   same payment accepted, one far from the customer with a reason, a promise to
   pay, and a void by a supervisor; the broker is down for part of it.
4. The day is closed with counted cash and a variance.

Then every receipt decoded from the printer is right line by line, HQ holds
every event once and in order, its cash view matches the device to the unit, its
journal check passes, and the track reached it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from textual.pilot import Pilot

from kiosk.config import load_config
from kiosk.geo import distance_m
from kiosk.hardware.gps.nmea import NmeaDecoder
from kiosk.hardware.printer.render import code_page_for, printable
from kiosk.pins import hash_pin
from kiosk.receipt import ReceiptSettings, render_lines, render_text
from kiosk.service import Service
from kiosk.sync.hq.ingest import Ingest
from kiosk.sync.hq.store import HqStore, events
from kiosk.ui.app import KioskApp
from kiosk.ui.screens.collect import ReceiptScreen
from kiosk.ui.screens.dialogs import ConfirmScreen, OverrideScreen
from kiosk.ui.screens.today import TodayScreen
from tests.brokers import Broker
from tests.cli_helpers import kiosk
from tests.conftest import free_port
from tests.escpos_decode import decode
from tests.gpsd import FakeGpsd
from tests.printer_emulator import PrinterEmulator

DEVICE = "DAY-1"
PIN, SUPERVISOR_PIN = "1234", "9876"
CAPTURE = "nmea/mt3339.log"


def track_of(capture: Path) -> list[tuple[float, float]]:
    decoder = NmeaDecoder()
    points = []
    for line in capture.read_text(errors="replace").splitlines():
        fix = decoder.feed(line)
        if fix is not None and fix.has_position:
            points.append((fix.lat, fix.lon))
    return points


def day_document(track: list[tuple[float, float]], today: str) -> dict[str, Any]:
    """Four customers along the receiver's track, one 5 km away from it."""
    first, last = track[0], track[-1]
    places = [first, last, first, last, (first[0] + 0.045, first[1])]
    names = [
        "Siti Rahayu",
        "Budi Santoso",
        "Dewi Lestari",
        "Agus Wijaya",
        "Rina Kusuma",
    ]
    doc: dict[str, Any] = {
        "mode": "replace",
        "as_of": 0,
        "collectors": [
            {
                "id": "c1",
                "name": "Budi",
                "role": "collector",
                "pin_hash": hash_pin(PIN, ln=4),
            },
            {
                "id": "s1",
                "name": "Sari",
                "role": "supervisor",
                "pin_hash": hash_pin(SUPERVISOR_PIN, ln=4),
            },
        ],
        "customers": [],
        "contracts": [],
        "assignments": [],
    }
    for n, ((lat, lon), name) in enumerate(zip(places, names, strict=True), start=1):
        doc["customers"].append(
            {
                "id": f"CU-{n}",
                "name": name,
                "phone": f"+62 812 000{n}",
                "address": f"Jl. Merdeka No. {n}",
                "lat": lat,
                "lon": lon,
                "radius_m": 100,
            }
        )
        doc["contracts"].append(
            {
                "id": f"K-{n}",
                "customer": f"CU-{n}",
                "currency": "IDR",
                "installments": [
                    {
                        "no": i,
                        "due": f"2026-{8 + i:02d}-01",
                        "amount": 500_000,
                        "paid": 0,
                    }
                    for i in range(1, 5)
                ],
            }
        )
        doc["assignments"].append(
            {
                "id": f"A-{n}",
                "contract": f"K-{n}",
                "collector": "c1",
                "date": today,
                "priority": n,
            }
        )
    return doc


POLICY = {
    "version": 2,
    "cash": {
        "max_in_hand": 1_500_000,
        "max_payment": 1_000_000,
        "daily_cap": 0,
        "warn_per_mille": 800,
        "allow_overpayment": False,
    },
    "location": {
        "radius_m": 100,
        "max_fix_age_s": 60,
        "max_accuracy_m": 100,
        "outside": "require_reason",
        "no_fix": "warn",
    },
}


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def keys(pilot: Pilot[Any], *values: str) -> None:
    """Type each value and press Enter after it."""
    for value in values:
        await pilot.press(*value)
        await pilot.press("enter")
    await settle(pilot)


async def wait_until(pilot: Pilot[Any], check: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.2)


async def collect(
    pilot: Pilot[Any], contract: str, amount: str, *, reason: str | None = None
) -> Any:
    """Filter to the contract, take the amount; return the screen it ends on."""
    await pilot.press(*contract)
    await pilot.press("f2")
    await settle(pilot)
    await pilot.press(*amount)
    await pilot.press("enter")
    await settle(pilot)
    if reason is not None:
        await keys(pilot, reason)
    if isinstance(pilot.app.screen, ConfirmScreen):
        await pilot.press("enter")
        await settle(pilot)
    return pilot.app.screen


async def back_to_today(pilot: Pilot[Any]) -> None:
    while not isinstance(pilot.app.screen, TodayScreen):
        await pilot.press("escape")
        await settle(pilot)
    await pilot.press("escape")  # clear the filter
    await settle(pilot)


@pytest.mark.slow
def test_a_full_day_on_real_parts(tmp_path: Path, corpus: Path, broker: Broker) -> None:
    capture = corpus / CAPTURE
    track = track_of(capture)
    assert track, "the capture has positions"

    gpsd = FakeGpsd(capture, free_port(), tmp_path)
    gpsd.start()
    emulator = PrinterEmulator().start()
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / f"{DEVICE}.key").write_text("5a" * 32)
    data = tmp_path / "data"
    config_path = tmp_path / "kiosk.toml"
    config_path.write_text(
        f"[device]\nid = '{DEVICE}'\nname = 'Van 1'\ndata_dir = '{data}'\n"
        "language = 'en'\nlocale = 'id'\ntimezone = 'America/Los_Angeles'\n"
        f"[gps]\nsource = 'gpsd:127.0.0.1:{gpsd.port}'\n"
        "track_interval_s = 1\ntrack_distance_m = 1\nparked_interval_s = 2\n"
        f"[printer]\nconnection = '{emulator.spec}'\ncolumns = 32\n"
        f"[broker]\nurl = '{broker.url}'\n"
        f"[security]\nkey_file = '{keys_dir / (DEVICE + '.key')}'\n"
        f"[hq]\ndb_url = 'sqlite:///{tmp_path / 'hq.db'}'\nkeys_dir = '{keys_dir}'\n"
    )
    config = load_config(config_path)
    hq_store = HqStore(config.hq.db_url)
    hq = Ingest(config, hq_store, client_id="hq-test")
    hq.start()
    assert hq.wait_ready(10)

    service = Service(config)
    today = service.ledger.clock.now().astimezone(config.device.tz).date().isoformat()
    (tmp_path / "assignments.json").write_text(json.dumps(day_document(track, today)))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))

    def hq_send(name: str, body: Path) -> dict[str, Any]:
        done = kiosk(
            "hq",
            "send",
            DEVICE,
            name,
            "--body",
            str(body),
            "--json",
            config=config_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return dict(json.loads(done.stdout))

    async def day(pilot: Pilot[Any], app: KioskApp) -> None:
        await settle(pilot)
        await wait_until(pilot, lambda: service.status.get("link") == "online")

        # 1. HQ sends the day's assignments and a cash policy; the device acks.
        sent = await asyncio.to_thread(
            hq_send, "assignments", tmp_path / "assignments.json"
        )
        assert sent["ok"] is True
        sent = await asyncio.to_thread(hq_send, "policy", tmp_path / "policy.json")
        assert sent["ok"] is True
        assert service.ledger.policy.cash.max_in_hand == 1_500_000
        await wait_until(pilot, lambda: service.current_fix() is not None)

        # 2. Sign in and open the day with a float.
        await keys(pilot, "c1", PIN)
        assert isinstance(app.screen, TodayScreen)
        await pilot.press("f10")
        await settle(pilot)
        await keys(pilot, "100000")
        await pilot.press("enter")  # confirm
        await settle(pilot)
        assert app.held == 100_000

        # 3. A full payment and a partial one.
        assert isinstance(await collect(pilot, "K-1", "500000"), ReceiptScreen)
        await back_to_today(pilot)
        assert isinstance(await collect(pilot, "K-2", "250000"), ReceiptScreen)
        await back_to_today(pilot)
        assert app.held == 850_000

        # Refused at the cash limit: 850.000 + 700.000 is over 1.500.000.
        assert isinstance(await collect(pilot, "K-3", "700000"), OverrideScreen)
        await back_to_today(pilot)

        # The broker goes down for part of the day.
        broker.stop()
        await pilot.press("f4")
        await settle(pilot)
        await pilot.press(*"600000")
        await pilot.press("tab")
        await keys(pilot, "BANK-0042")
        await pilot.press("enter")
        await settle(pilot)
        assert app.held == 250_000

        # The same payment now fits.
        assert isinstance(await collect(pilot, "K-3", "700000"), ReceiptScreen)
        await back_to_today(pilot)

        # Far from the customer: the policy asks for a reason.
        screen = await collect(pilot, "K-5", "300000", reason="met at the market")
        assert isinstance(screen, ReceiptScreen)
        await back_to_today(pilot)

        # A promise to pay.
        await pilot.press(*"K-4")
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("1")
        date = app.screen.query_one("#promise-date")
        date.value = ""  # type: ignore[attr-defined]
        await keys(pilot, "2099-01-15", "500000", "after payday")
        await back_to_today(pilot)
        broker.start()

        # A void by a supervisor: the partial payment was on the wrong contract.
        await pilot.press("f9")
        await settle(pilot)
        await keys(pilot, f"{DEVICE}-000002", "wrong contract", "s1", SUPERVISOR_PIN)
        await pilot.press("enter")
        await settle(pilot)
        assert app.held == 1_000_000

        # 4. Close the day: 990.000 counted against 1.000.000 expected.
        await pilot.press("f6")
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        await pilot.press(*"990000")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)

        # Let the printer and the link finish before the app stops the service.
        await wait_until(
            pilot,
            lambda: (
                service.ledger.outbox_summary()["lanes"].get("money", 0) == 0
                and len(emulator.jobs) >= 7
            ),
            60,
        )

    async def main() -> None:
        app = KioskApp(service, cursor_blink=False, ascii_only=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await day(pilot, app)

    try:
        asyncio.run(main())
        _check_the_day(service, config, emulator, hq_store, track)
    finally:
        hq.stop()
        emulator.stop()
        gpsd.stop()


def _check_the_day(
    service: Service,
    config: Any,
    emulator: PrinterEmulator,
    store: HqStore,
    where: list[tuple[float, float]],
) -> None:
    ledger = service.ledger
    status = ledger.status()
    assert status["cash_held"] == {"c1": 990_000}
    assert ledger.verify()["ok"]

    # Every receipt, slip and report, line by line as the text rendering says.
    settings = ReceiptSettings.from_config(config)
    codec = code_page_for(config.printer.profile).codec
    jobs = ledger.store.engine.raw_connection()
    try:
        stored = jobs.execute(
            "SELECT kind, payload, possible_duplicate FROM printjob ORDER BY id"
        ).fetchall()
    finally:
        jobs.close()
    assert [k for k, _, _ in stored] == [
        "receipt",
        "receipt",
        "deposit",
        "receipt",
        "receipt",
        "void",
        "z_report",
    ]
    printed = emulator.jobs
    assert len(printed) == len(stored)
    for (kind, payload, duplicate), data in zip(stored, printed, strict=True):
        lines = render_lines(
            json.loads(payload), settings, possible_duplicate=bool(duplicate)
        )
        expected = [printable(t, codec) for t in render_text(lines, 32).splitlines()]
        assert decode(data, config.printer.profile).lines(32) == expected, kind
    far = decode(printed[4], config.printer.profile).text
    assert "Rina Kusuma" in far and "300.000" in far

    # HQ: every money event once, in order; the chain verified; cash to the unit.
    last_seq = status["journal"]["seq"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with store.begin() as conn:
            chain = store.chain(conn, DEVICE) or {}
            view = store.cash_view(conn, DEVICE)
        if chain.get("verified_seq") == last_seq and view == status["cash_held"]:
            break
        time.sleep(0.5)
    with store.begin() as conn:
        money = conn.execute(
            select(events.c.seq, events.c.type)
            .where(events.c.device == DEVICE, events.c.lane == "money")
            .order_by(events.c.seq)
        ).all()
        track = (
            conn.execute(
                select(events.c.data).where(
                    events.c.device == DEVICE, events.c.lane == "loc"
                )
            )
            .scalars()
            .all()
        )
        chain = store.chain(conn, DEVICE) or {}
        view = store.cash_view(conn, DEVICE)
    assert [seq for seq, _ in money] == list(range(1, last_seq + 1))
    types = [t for _, t in money]
    assert types.count("payment") == 4 and types.count("void") == 1
    assert {"day_open", "deposit", "visit", "day_close", "receipt_printed"} <= set(
        types
    )
    assert chain["verified_seq"] == last_seq and not chain["problem"]
    assert view == {"c1": 990_000}
    assert track, "no track point reached HQ"
    point = json.loads(track[0])
    # The stored point is where the receiver of the capture stood.
    nearest = min(
        distance_m(point["lat"], point["lon"], lat, lon) for lat, lon in where
    )
    assert nearest < 25, point
