"""The service end to end: a payment made with `kiosk collect` while the service
runs gets the live fix, prints on a TCP printer and lands in the track and outbox."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from kiosk.nmea_out import drive
from kiosk.receipt_code import verify_code
from tests.cli_helpers import kiosk, kiosk_json, start_agent, stop
from tests.escpos_decode import decode
from tests.factories import PIN, SUPERVISOR_PIN, make_document
from tests.printer_emulator import PrinterEmulator

ENV = {"KIOSK_PIN": PIN, "KIOSK_SUPERVISOR_PIN": SUPERVISOR_PIN}
HOME = (-6.9147, 107.6098)  # customer CU-0001's registered place in the factory


@pytest.fixture
def rig(tmp_path: Path):
    key = os.urandom(32)
    (tmp_path / "device.key").write_text(key.hex())
    capture = tmp_path / "parked.nmea"
    start = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
    capture.write_text(
        "# parked at the customer's gate\n"
        + "\n".join(drive([(HOME[0], HOME[1], 900)], start))
        + "\n"
    )
    emulator = PrinterEmulator().start()
    data = tmp_path / "data"
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f"[device]\nid = 'VAN-3'\nname = 'Unit 3'\ndata_dir = '{data}'\nlanguage = 'en'\n"
        f"[security]\nkey_file = '{tmp_path / 'device.key'}'\n"
        f"[gps]\nsource = 'replay:{capture}'\ntrack_interval_s = 1\nparked_interval_s = 2\n"
        f"[printer]\nconnection = '{emulator.spec}'\ncolumns = 42\n"
        "[location]\noutside = 'block'\n"
    )
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(make_document(3)))
    assert kiosk("import", str(doc), config=config).returncode == 0
    agent = start_agent(config, data)
    yield config, data, emulator, key
    stop(agent)
    emulator.stop()


def _wait_fix(config: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, check = kiosk_json("status", config=config)
        if check["cash_held"] is not None:
            break
    # The first fix arrives within a second or two of the replay starting.
    time.sleep(2)


def test_collect_through_service_prints_a_verified_receipt(rig) -> None:
    config, data, emulator, key = rig
    _wait_fix(config)

    code, paid = kiosk_json(
        "collect",
        "--contract",
        "K-0001",
        "--amount",
        "650000",
        "--collector",
        "c1",
        config=config,
        env=ENV,
    )
    assert code == 0, paid
    # The service's live fix was used: inside the radius, not "no fix".
    assert paid["location"]["result"] == "inside"
    assert paid["location"]["distance_m"] < 20

    assert emulator.wait_for(lambda e: len(e.jobs) >= 1, 20)
    printed = decode(emulator.jobs[0], "POS-5890")
    lines = printed.lines(42)
    text = "\n".join(lines)
    assert "VAN-3-000001" in text
    assert "Siti Nurhaliza" in text
    assert "650,000" in text or "650.000" in text
    assert "COPY" not in text
    assert printed.cuts or lines
    parsed = verify_code(key, printed.qr_codes[0])
    assert (parsed.receipt, parsed.amount, parsed.currency) == (
        "VAN-3-000001",
        650_000,
        "IDR",
    )

    code, copy = kiosk_json("reprint", "VAN-3-000001", config=config)
    assert code == 0 and copy["copy"] == 1
    assert emulator.wait_for(lambda e: len(e.jobs) >= 2, 20)
    assert "COPY" in decode(emulator.jobs[1], "POS-5890").text

    # Printed and reprinted are journal entries of their own.
    deadline = time.monotonic() + 10
    types: list[str] = []
    while time.monotonic() < deadline and "receipt_reprinted" not in types:
        raw = sqlite3.connect(data / "kiosk.db")
        types = [r[0] for r in raw.execute("SELECT type FROM journal ORDER BY seq")]
        loc = raw.execute(
            "SELECT payload FROM outbox WHERE lane='loc' ORDER BY seq"
        ).fetchall()
        raw.close()
        time.sleep(0.2)
    assert types[:2] == ["day_open", "payment"]
    assert {"receipt_printed", "receipt_reprinted"} <= set(types)

    # The live track reached the outbox in OwnTracks form.
    assert loc, "no track point was queued"
    point = json.loads(loc[0][0])
    assert point["_type"] == "location" and point["historical"] is False
    assert abs(point["lat"] - HOME[0]) < 1e-4 and point["tid"] == "-3"
    assert isinstance(point["tst"], int) and point["seq"] == 1


def test_a_far_payment_is_blocked_by_policy(rig) -> None:
    config, _, _, _ = rig
    _wait_fix(config)
    # K-0003's customer is 222 m north of where the replay is parked.
    done = kiosk(
        "collect",
        "--contract",
        "K-0003",
        "--amount",
        "1000",
        "--collector",
        "c1",
        config=config,
        env=ENV,
    )
    assert done.returncode == 1
    assert "blocks collecting here" in done.stderr
