"""`kiosk doctor` against a good setup, then against each broken part in turn."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from kiosk.nmea_out import drive
from tests.brokers import Broker
from tests.cli_helpers import kiosk, kiosk_json
from tests.conftest import free_port
from tests.factories import PIN, make_document
from tests.printer_emulator import PrinterEmulator


@pytest.fixture
def good(tmp_path: Path, broker: Broker):
    capture = tmp_path / "fix.nmea"
    start = dt.datetime(2026, 12, 4, 3, 0, tzinfo=dt.UTC)
    capture.write_text("\n".join(drive([(-6.9, 107.6, 30)], start)) + "\n")
    emulator = PrinterEmulator().start()
    values = {
        "broker": f"url = '{broker.url}'",
        "gps": f"source = 'replay:{capture}?speed=50'",
        "printer": f"connection = '{emulator.spec}'",
    }

    def write(**overrides: str) -> Path:
        merged = {**values, **overrides}
        path = tmp_path / "kiosk.toml"
        path.write_text(
            f"[device]\nid = 'VAN-9'\ndata_dir = '{tmp_path / 'data'}'\n"
            + "".join(f"[{section}]\n{body}\n" for section, body in merged.items())
        )
        return path

    config = write()
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(make_document(1)))
    assert kiosk("import", str(doc), config=config).returncode == 0
    yield write, tmp_path
    emulator.stop()


def checks(config: Path) -> tuple[int, dict[str, dict]]:
    code, report = kiosk_json("doctor", config=config)
    return code, {c["name"]: c for c in report["checks"]}


def test_all_well(good) -> None:
    write, _ = good
    code, found = checks(write())
    assert code == 0, found
    assert all(c["ok"] for c in found.values())
    assert "round trip" in found["broker"]["detail"]
    assert "fix -6.9" in found["gps"]["detail"]
    assert "journal of" in found["database"]["detail"]


def test_each_broken_part_is_named(good) -> None:
    write, root = good
    dead = f"mqtt://127.0.0.1:{free_port()}"
    code, found = checks(write(broker=f"url = '{dead}'"))
    assert code == 3 and not found["broker"]["ok"] and found["broker"]["fix"]

    code, found = checks(write(gps=f"source = 'replay:{root / 'missing.nmea'}'"))
    assert code == 3 and not found["gps"]["ok"]
    assert "missing.nmea" in found["gps"]["detail"]

    code, found = checks(write(printer=f"connection = 'tcp:127.0.0.1:{free_port()}'"))
    assert code == 3 and not found["printer"]["ok"]

    opened = kiosk(
        "day",
        "open",
        "--float",
        "5000",
        "--collector",
        "c1",
        config=write(),
        env={"KIOSK_PIN": PIN},
    )
    assert opened.returncode == 0, opened.stderr
    raw = sqlite3.connect(root / "data" / "kiosk.db")
    with raw:
        raw.execute("UPDATE journal SET data = replace(data, '5000', '9000')")
    raw.close()
    code, found = checks(write())
    assert code == 3 and not found["database"]["ok"]
