"""``kiosk doctor``: the installer's checks, one line each, with what to do.

Each check opens a device only when the running service is not using it: the
GPS and printer are asked through the service's socket when it runs, and the
broker is checked under a client id of the doctor's own, never the device's,
so the service's connection is not dropped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from kiosk.config import Config
from kiosk.control import ControlClient
from kiosk.errors import KioskError

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 200 * 1024 * 1024


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _config(config: Config) -> Check:
    where = config.source or "defaults"
    return Check("config", True, f"{where} is valid (device {config.device.id})")


def _database(config: Config) -> Check:
    from kiosk.ledger import Ledger

    try:
        ledger = Ledger(config, check=True)
    except KioskError as exc:
        return Check(
            "database", False, exc.message, "restore the database from a backup"
        )
    try:
        verified = ledger.verify()
        version = ledger.store.schema_version()
    finally:
        ledger.close()
    if not verified["ok"]:
        return Check(
            "database",
            False,
            "; ".join(verified["problems"]),
            "the journal was altered: keep the file for audit and call HQ",
        )
    return Check(
        "database",
        True,
        f"quick check ok, schema {version}, journal of {verified['entries']} entries "
        "verified",
    )


def _disk(config: Config) -> Check:
    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(data)
    db = data / "kiosk.db"
    size = db.stat().st_size if db.exists() else 0
    wal = data / "kiosk.db-wal"
    size += wal.stat().st_size if wal.exists() else 0
    age_days = (
        max(1.0, (time.time() - db.stat().st_ctime) / 86400) if db.exists() else 1.0
    )
    per_day = size / age_days
    days = "many" if per_day < 1 else f"{usage.free / per_day:,.0f}"
    ok = usage.free > MIN_FREE_BYTES
    return Check(
        "disk",
        ok,
        f"{usage.free / 1e9:.1f} GB free on {data}; database {size / 1e6:.1f} MB, "
        f"room for about {days} days at today's rate",
        "" if ok else "free space on the data partition before collecting",
    )


def _time(config: Config) -> Check:
    from kiosk.clock import Clock

    trust = Clock(config.time.trust).state()
    if trust.trusted:
        return Check("time", True, f"trusted ({trust.source})")
    return Check(
        "time",
        False,
        trust.reason,
        "enable chrony or systemd-timesyncd, or give the GPS a view of the sky",
    )


def _gps(config: Config, service: dict[str, Any] | None) -> Check:
    if not config.gps.source:
        return Check("gps", True, "no GPS configured (gps.source is empty)")
    if service is not None:
        return Check("gps", True, f"through the running service: {service.get('gps')}")
    from kiosk.hardware.gps import open_source

    try:
        source = open_source(config.gps.source)
        with source:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                fix = source.read(1.0)
                if fix is not None and fix.has_position:
                    return Check(
                        "gps",
                        True,
                        f"{config.gps.source}: fix {fix.lat:.5f},{fix.lon:.5f}, "
                        f"{fix.sats} sats",
                    )
        return Check(
            "gps",
            False,
            f"{config.gps.source}: sentences but no fix in 10 s",
            "give the antenna a view of the sky",
        )
    except KioskError as exc:
        return Check("gps", False, exc.message, "check the cable and gps.source")


def _printer(config: Config, service: dict[str, Any] | None) -> Check:
    if not config.printer.connection:
        return Check("printer", True, "no printer configured: receipts stay queued")
    if service is not None:
        return Check(
            "printer", True, f"through the running service: {service.get('printer')}"
        )
    from kiosk.hardware.printer import printer_from_config

    try:
        printer = printer_from_config(config.printer)
        assert printer is not None
        try:
            status = printer.status()
        finally:
            printer.close()
    except KioskError as exc:
        return Check(
            "printer", False, exc.message, "check the cable, power and udev rule"
        )
    qr = "native QR on" if config.printer.native_qr else "image QR"
    if status.known and not status.ready:
        return Check(
            "printer", False, status.describe(), "load paper or close the cover"
        )
    return Check(
        "printer", True, f"{config.printer.connection}: {status.describe()}; {qr}"
    )


def _broker(config: Config) -> Check:
    if not config.broker.url:
        return Check("broker", True, "no broker configured: the device stays offline")
    from kiosk.sync.link import broker_round_trip

    try:
        seconds = broker_round_trip(config, f"{config.device.id}-doctor", timeout=10)
    except KioskError as exc:
        return Check(
            "broker", False, exc.message, "check broker.url, the login and the network"
        )
    return Check(
        "broker", True, f"{config.broker.url}: round trip {seconds * 1000:.0f} ms"
    )


def _gpio(config: Config) -> Check:
    if not config.gpio.enabled:
        return Check("gpio", True, "off (gpio.enabled is false)")
    from kiosk.hardware.gpio import KioskPins

    pins = KioskPins(config.gpio)
    try:
        if pins.active:
            return Check("gpio", True, "pins open")
        return Check(
            "gpio", False, "the pins cannot be used here", "run on the Pi as kiosk user"
        )
    finally:
        pins.close()


def run_checks(config: Config) -> list[Check]:
    service = None
    client = ControlClient.connect_if_running(config.data_dir)
    if client is not None:
        with client:
            try:
                service = client.call("service_status", {}, {})
            except KioskError:
                service = None

    checks: list[Callable[[], Check]] = [
        lambda: _config(config),
        lambda: _database(config),
        lambda: _disk(config),
        lambda: _time(config),
        lambda: _gps(config, service),
        lambda: _printer(config, service),
        lambda: _broker(config),
        lambda: _gpio(config),
    ]
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:
            log.exception("doctor check failed")
            results.append(Check("check", False, f"could not run: {exc}"))
    return results


def run_doctor(config: Config, *, as_json: bool = False) -> int:
    results = run_checks(config)
    ok = all(check.ok for check in results)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in results]}))
    else:
        for check in results:
            mark = "ok  " if check.ok else "FAIL"
            line = f"{mark} {check.name:<9} {check.detail}"
            if not check.ok and check.fix:
                line += f" -> {check.fix}"
            print(line)
    return 0 if ok else 3
