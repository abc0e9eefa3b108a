"""GPS sources on real parts: socat pseudo-terminals, gpsd fed by gpsfake,
recordings and a fixed place; and the worker that reopens them."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.errors import BadInput, GpsError
from kiosk.fix import Fix
from kiosk.hardware.gps.cli import run_gps
from kiosk.hardware.gps.nmea import NmeaDecoder, nmea_checksum
from kiosk.hardware.gps.sources import (
    FixedSource,
    GpsdSource,
    GpsSpecError,
    ReplaySource,
    SerialSource,
    open_source,
)
from kiosk.hardware.gps.worker import NO_GPS, GpsWorker
from tests.conftest import free_port, missing, need_tool
from tests.gpsd import FakeGpsd

pytestmark = pytest.mark.integration


def wait_for(condition: object, seconds: float = 10.0) -> bool:
    """Poll a condition until it holds; False if it never did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def positions(fixes: list[Fix]) -> list[tuple[float, float]]:
    return [(round(f.lat, 7), round(f.lon, 7)) for f in fixes if f.has_position]


def decode_file(path: Path) -> list[Fix]:
    decoder = NmeaDecoder()
    out = [decoder.feed(line) for line in path.read_bytes().splitlines(keepends=True)]
    out.append(decoder.flush())
    return [f for f in out if f is not None]


# --- connection strings -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "attrs"),
    [
        (
            "serial:/dev/serial0?baud=9600",
            SerialSource,
            {"path": "/dev/serial0", "baud": 9600},
        ),
        ("serial:/dev/ttyUSB0", SerialSource, {"baud": 9600}),
        ("gpsd:127.0.0.1", GpsdSource, {"host": "127.0.0.1", "port": 2947}),
        ("gpsd:localhost:3000", GpsdSource, {"host": "localhost", "port": 3000}),
        ("gpsd:[::1]:2950", GpsdSource, {"host": "::1", "port": 2950}),
        ("gpsd:[::1]", GpsdSource, {"host": "::1", "port": 2947}),
        ("replay:/tmp/x.log?speed=10", ReplaySource, {"speed": 10.0}),
        ("fixed:-6.2,106.8", FixedSource, {"lat": -6.2, "lon": 106.8}),
    ],
)
def test_gps_spec_parsed(spec: str, kind: type, attrs: dict[str, object]) -> None:
    """Each kind of connection string makes its source."""
    source = open_source(spec)
    assert isinstance(source, kind)
    for name, value in attrs.items():
        assert getattr(source, name) == value


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "not a connection string"),
        ("usb:1:2", "unknown kind"),
        ("serial:/dev/x?baud=9601", "not a serial speed"),
        ("serial:/dev/x?speed=9600", "unknown option"),
        ("serial:?baud=9600", "names no device"),
        ("gpsd:::1", "brackets"),
        ("gpsd:[::1", "unclosed"),
        ("gpsd:host:99999", "not 1-65535"),
        ("replay:/x?speed=0", "above 0"),
        ("replay:/x?speed=fast", "not a number"),
        ("fixed:91,0", "latitude"),
        ("fixed:0,181", "longitude"),
        ("fixed:abc", "expected fixed:LAT,LON"),
    ],
)
def test_gps_spec_rejected(spec: str, says: str) -> None:
    """A bad string is refused as bad input, naming what was wrong."""
    with pytest.raises(GpsSpecError, match=says) as caught:
        open_source(spec)
    assert isinstance(caught.value, BadInput)


def test_gps_open_failures_name_the_device(tmp_path: Path) -> None:
    """A source that cannot be opened says which device or file."""
    with pytest.raises(GpsError, match="/dev/ttyNOSUCH"):
        open_source("serial:/dev/ttyNOSUCH").open()
    with pytest.raises(GpsError, match=r"missing\.log"):
        open_source(f"replay:{tmp_path}/missing.log").open()
    port = free_port()
    with pytest.raises(GpsError, match=f"127.0.0.1:{port}"):
        open_source(f"gpsd:127.0.0.1:{port}").open()


# --- replay and fixed -----------------------------------------------------------


def test_gps_replay_fast_reads_whole_capture(corpus: Path) -> None:
    """A fast replay gives the same fixes as decoding the file, then finishes."""
    path = corpus / "nmea/mt3339.log"
    got: list[Fix] = []
    with open_source(f"replay:{path}?speed=1000") as source:
        while not source.finished:
            fix = source.read(1.0)
            if fix is not None:
                got.append(fix)
    assert positions(got) == positions(decode_file(path))
    assert source.status == "closed" or source.finished


def test_gps_replay_paced(tmp_path: Path) -> None:
    """At a recorded pace a replay holds each second back until it is due."""
    bodies = [
        f"GPRMC,12000{second}.00,A,4807.038,N,01131.000,E,0.0,0.0,230394,,,A"
        for second in range(3)
    ]
    path = tmp_path / "paced.log"
    text = "".join(f"${body}*{nmea_checksum(body):02X}\n" for body in bodies)
    path.write_text("# a comment\n" + text)

    with open_source(f"replay:{path}?speed=4") as source:
        # The second line is due a quarter of a second after the first.
        assert source.read(0.01) is None
        assert not source.finished
        got = [source.read(2.0) for _ in range(3)]
        assert source.finished
    assert [f.time.second for f in got if f is not None and f.time] == [0, 1, 2]


def test_gps_fixed_source() -> None:
    """A fixed place reports itself, at most once a second."""
    with open_source("fixed:-6.2,106.8") as source:
        first = source.read(0.1)
        second = source.read(0.1)
    assert first is not None and first.has_position
    assert (first.lat, first.lon, first.quality) == (-6.2, 106.8, "manual")
    assert second is None
    source.close()  # twice is fine


def test_gps_cli_json_replay(corpus: Path) -> None:
    """`kiosk gps --json` prints one object a line and ends with the recording."""
    out = io.StringIO()
    code = run_gps(f"replay:{corpus}/nmea/ublox-8.log?speed=1000", True, out)
    assert code == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows and set(rows[0]) >= {"lat", "lon", "time", "mode", "sats", "acc"}
    assert rows[-1]["lat"] == pytest.approx(44.069, abs=0.01)


def test_gps_cli_cannot_open() -> None:
    """A source that cannot be opened gives exit 3 and one line saying so."""
    out = io.StringIO()
    assert run_gps("serial:/dev/ttyNOSUCH", False, out) == 3
    assert out.getvalue().count("\n") == 1 and "/dev/ttyNOSUCH" in out.getvalue()
    out = io.StringIO()
    assert run_gps("bogus", True, out) == 2
    assert json.loads(out.getvalue())["error"]["code"] == "bad_gps_source"


# --- serial through socat -------------------------------------------------------


class PtyPair:
    """Two linked pseudo-terminals made by socat: write to `a`, read `b`."""

    def __init__(self, folder: Path) -> None:
        self.socat = need_tool("socat")
        self.a = folder / "A"
        self.b = folder / "B"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.socat,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={self.a}",
                f"pty,raw,echo=0,link={self.b}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for(lambda: self.a.exists() and self.b.exists(), 5):
            self.stop()
            missing("socat did not make its pseudo-terminals")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


class Feeder(threading.Thread):
    """Writes a capture into the A end, over and over, until stopped."""

    def __init__(self, pair: PtyPair, lines: list[bytes], pause: float) -> None:
        super().__init__(daemon=True)
        self.pair, self.lines, self.pause = pair, lines, pause
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                fd = os.open(self.pair.a, os.O_WRONLY | os.O_NOCTTY)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                for line in self.lines:
                    if self.halt.is_set():
                        break
                    os.write(fd, line)
                    time.sleep(self.pause)
            except OSError:
                pass  # the pty went away; wait for it to come back
            finally:
                os.close(fd)


def test_gps_serial_reads_capture(ptys: PtyPair, corpus: Path) -> None:
    """The serial source reads a capture through a pty pair as the file decodes."""
    path = corpus / "nmea/neo-m8n.log"
    lines = path.read_bytes().splitlines(keepends=True)
    expected = positions(decode_file(path))[:10]
    feeder = Feeder(ptys, lines, 0.0)
    got: list[Fix] = []
    with open_source(f"serial:{ptys.b}?baud=9600") as source:
        feeder.start()
        while len(positions(got)) < 10:
            fix = source.read(5.0)
            assert fix is not None, "no fix from the serial port"
            got.append(fix)
    feeder.halt.set()
    feeder.join(5)
    assert positions(got)[:10] == expected


def test_gps_worker_serial_unplugged_and_back(ptys: PtyPair, corpus: Path) -> None:
    """The pty vanishing mid-stream gives "no GPS"; when it returns, fixes resume
    and the last position grows older meanwhile."""
    lines = (corpus / "nmea/mt3339.log").read_bytes().splitlines(keepends=True)
    feeder = Feeder(ptys, lines, 0.002)
    statuses: list[str] = []
    fixes: list[Fix] = []
    worker = GpsWorker(
        f"serial:{ptys.b}",
        on_fix=fixes.append,
        on_status=statuses.append,
        silence_s=1.0,
        backoff_s=(0.1, 0.2),
        read_timeout_s=0.2,
    )
    feeder.start()
    worker.start()
    try:
        assert wait_for(lambda: len(fixes) >= 3), statuses

        ptys.stop()
        assert wait_for(lambda: worker.status == NO_GPS), statuses
        stale = worker.latest()
        assert stale is not None
        age = stale.age()
        time.sleep(0.3)
        assert worker.latest() is stale and stale.age() > age

        count = len(fixes)
        ptys.start()
        assert wait_for(lambda: len(fixes) > count + 2), statuses
        assert worker.status != NO_GPS
        assert NO_GPS in statuses
    finally:
        feeder.halt.set()
        worker.stop()
        feeder.join(5)


# --- gpsd fed by gpsfake ----------------------------------------------------------


@pytest.fixture
def fake_gpsd(tmp_path: Path, corpus: Path) -> Iterator[FakeGpsd]:
    fake = FakeGpsd(corpus / "nmea/mt3339.log", free_port(), tmp_path)
    fake.start()
    yield fake
    fake.stop()


def first_position(source: GpsdSource, seconds: float) -> Fix | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            fix = source.read(0.5)
        except GpsError:
            return None
        if fix is not None and fix.has_position:
            return fix
    return None


def test_gps_gpsd_source(fake_gpsd: FakeGpsd) -> None:
    """Fixes come through a real gpsd and gpsd-py3, at the capture's place."""
    source = open_source(f"gpsd:127.0.0.1:{fake_gpsd.port}")
    assert isinstance(source, GpsdSource)
    if not wait_for(lambda: _try_open(source), 10):
        missing("gpsfake did not start gpsd")
    try:
        fix = first_position(source, 15)
        assert fix is not None
        # mt3339.log was recorded near 43.4N 79.4W (Toronto)
        reference = positions(decode_file(fake_gpsd.capture))
        assert any(
            abs(fix.lat - lat) < 1e-4 and abs(fix.lon - lon) < 1e-4
            for lat, lon in reference
        )
    finally:
        source.close()
        source.close()


def _try_open(source: GpsdSource) -> bool:
    try:
        source.open()
    except GpsError:
        return False
    return True


def test_gps_worker_gpsd_restart(fake_gpsd: FakeGpsd) -> None:
    """gpsd going away gives "no GPS"; when it is back the worker reconnects."""
    statuses: list[str] = []
    fixes: list[Fix] = []
    worker = GpsWorker(
        f"gpsd:127.0.0.1:{fake_gpsd.port}",
        on_fix=fixes.append,
        on_status=statuses.append,
        silence_s=3.0,
        backoff_s=(0.2, 0.5),
        read_timeout_s=0.3,
    )
    worker.start()
    try:
        if not wait_for(lambda: len(fixes) >= 2, 20):
            missing(f"no fix through gpsfake ({statuses})")
        fake_gpsd.stop()
        assert wait_for(lambda: worker.status == NO_GPS, 10), statuses
        count = len(fixes)
        fake_gpsd.start()
        assert wait_for(lambda: len(fixes) > count, 20), statuses
    finally:
        worker.stop()
