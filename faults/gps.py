"""Family 4: GPS faults under the running agent.

A serial receiver is a socat pseudo-terminal pair fed from here: it vanishes
(socat killed and started again), sends garbage, and jumps its clock by years.
A gpsd receiver is a real gpsd fed by gpsfake, restarted under the agent. After
each fault the agent must still be running, payments must still work, and
fixes must resume once the receiver is sound again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from faults import Check, Context, FamilyResult
from faults.invariants import device_checks
from faults.parts import (
    AUTH,
    contract,
    prepare,
    wait_for_service,
    wait_until,
    write_config,
)
from kiosk.control import ControlClient
from kiosk.hardware.gps.nmea import nmea_checksum
from tests.cli_helpers import start_agent, stop
from tests.conftest import CORPUS, free_port
from tests.gpsd import FakeGpsd
from tests.test_gps_sources import PtyPair

log = logging.getLogger(__name__)

TITLE = "GPS pty vanishing, gpsd restarting, garbage bytes, a clock jump"
RUNNING = "the service keeps running and answers"
PAYS = "payments still work"
RESUME = "fixes resume once the receiver is sound"


def sentence(body: str) -> bytes:
    return f"${body}*{nmea_checksum(body):02X}\r\n".encode()


class Receiver(threading.Thread):
    """Writes RMC and GGA sentences into the pty's far end, once a tick.

    Attributes:
        clock: The receiver's idea of the time (epoch seconds), advanced by a
            second each tick; set it to jump.
        garbage: Bytes to send once instead of the next sentences.
    """

    def __init__(self, pair: PtyPair) -> None:
        super().__init__(daemon=True)
        self.pair = pair
        self.clock = time.time()
        self.garbage = b""
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                fd = os.open(self.pair.a, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                while not self.halt.is_set():
                    os.write(fd, self._next())
                    time.sleep(0.1)
            except OSError:
                time.sleep(0.05)  # the pty went away; wait for it to return
            finally:
                os.close(fd)

    def _next(self) -> bytes:
        if self.garbage:
            out, self.garbage = self.garbage, b""
            return out
        self.clock += 1
        t = time.gmtime(self.clock)
        hms = time.strftime("%H%M%S", t) + ".00"
        dmy = time.strftime("%d%m%y", t)
        return sentence(
            f"GPRMC,{hms},A,0654.882,S,10736.588,E,0.0,0.0,{dmy},,,A"
        ) + sentence(f"GPGGA,{hms},0654.882,S,10736.588,E,1,08,0.9,700.0,M,0.0,M,,")


def _status(data: Path) -> dict[str, Any]:
    with ControlClient(data / "kiosk.sock", timeout=10) as client:
        return dict(client.call("service_status", {}))


def _fresh_fix(data: Path) -> bool:
    try:
        fix = _status(data).get("fix")
    except Exception:
        return False
    return fix is not None and float(fix["age_s"]) < 3


def _after(
    result: FamilyResult, agent: Any, data: Path, n: int, acked: set[str]
) -> None:
    """The checks after one fault: running, paying, fixes back."""
    resumed = wait_until(lambda: _fresh_fix(data), 15, 0.1)
    running = agent.poll() is None
    try:
        with ControlClient(data / "kiosk.sock", timeout=10) as client:
            done = client.call(
                "collect", {"contract": contract(n), "amount": 4000 + n}, AUTH
            )
        acked.add(done["receipt"])
        paid, why = True, done["receipt"]
    except Exception as exc:
        paid, why = False, f"{type(exc).__name__}: {exc}"
    result.record(
        [
            Check(RUNNING, running, f"agent exit code {agent.poll()}"),
            Check(PAYS, paid, why),
            Check(RESUME, resumed, f"status {_safe_status(data)}"),
        ]
    )


def _safe_status(data: Path) -> object:
    try:
        return _status(data)
    except Exception as exc:
        return str(exc)


def run(ctx: Context, result: FamilyResult) -> None:
    serial(ctx, result)
    gpsd(ctx, result)


def serial(ctx: Context, result: FamilyResult) -> None:
    folder = ctx.folder("gps-serial")
    pair = PtyPair(folder)
    pair.start()
    receiver = Receiver(pair)
    receiver.start()
    config_path = write_config(folder, gps={"source": f"serial:{pair.b}?baud=9600"})
    config = prepare(config_path)
    data = config.device.data_dir
    acked: set[str] = set()
    agent = start_agent(config_path, data, log=folder / "agent.log")
    try:
        wait_for_service(data)
        for n in range(ctx.scale(2, 10)):
            pair.stop()
            time.sleep(ctx.rng.uniform(0.2, 1.0))
            pair.start()
            result.inject("GPS pseudo-terminal vanished and came back")
            _after(result, agent, data, n, acked)

            receiver.garbage = os.urandom(ctx.rng.randint(64, 4096))
            result.inject("garbage bytes from the receiver")
            _after(result, agent, data, n, acked)

            receiver.clock += ctx.rng.choice([-1, 1]) * ctx.rng.randint(
                3600, 5 * 365 * 86400
            )
            result.inject("receiver clock jumped")
            _after(result, agent, data, n, acked)
    finally:
        stop(agent)
        receiver.halt.set()
        pair.stop()
    result.record(device_checks(config, acked))


def gpsd(ctx: Context, result: FamilyResult) -> None:
    folder = ctx.folder("gps-gpsd")
    port = free_port()
    fake = FakeGpsd(CORPUS / "nmea" / "ublox-8.log", port, folder)
    fake.start()
    config_path = write_config(folder, gps={"source": f"gpsd:127.0.0.1:{port}"})
    config = prepare(config_path)
    data = config.device.data_dir
    acked: set[str] = set()
    agent = start_agent(config_path, data, log=folder / "agent.log")
    try:
        wait_for_service(data)
        for n in range(ctx.scale(2, 10)):
            fake.stop()
            time.sleep(ctx.rng.uniform(0.2, 1.0))
            fake.start()
            result.inject("gpsd restarted under the agent")
            _after(result, agent, data, n, acked)
    finally:
        stop(agent)
        fake.stop()
    result.record(device_checks(config, acked))
