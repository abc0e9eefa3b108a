"""Where fixes come from: a serial receiver, gpsd, a recorded capture or a fixed place.

Each source is chosen by a connection string (see `open_source`) and has the same
small interface: `GpsSource.open`, `GpsSource.read` (the next fix, or None when
none came in time), `GpsSource.close` (safe to call twice) and use as a context
manager. A source that fails while open raises `kiosk.errors.GpsError`; the
`GpsWorker` reopens it.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import parse_qs

from kiosk.errors import BadInput, GpsError
from kiosk.fix import Fix, FixMode
from kiosk.hardware.gps.nmea import NmeaDecoder, parse_time_of_day

log = logging.getLogger(__name__)

GPSD_PORT = 2947
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800)

# gpsd's epx/epy are 95% figures; dividing by 1.96 gives about one standard
# deviation, the same kind of accuracy the NMEA decoder reports.
GPSD_95_TO_SIGMA = 1.96


class GpsSpecError(BadInput):
    """A GPS connection string that cannot be understood."""

    code = "bad_gps_source"


class GpsSource(ABC):
    """A place fixes come from.

    Attributes:
        spec: the connection string it was made from.
        status: a short text for the screen ("closed", "no fix", "3D fix, 8 sats").
        mode: the mode of the last fix read.
        finished: True once a recording has been read to its end.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.status = "closed"
        self.mode = FixMode.UNKNOWN
        self.finished = False

    @abstractmethod
    def open(self) -> None:
        """Open the device; raises GpsError naming it when it cannot."""

    @abstractmethod
    def _read(self, timeout: float) -> Fix | None: ...

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call more than once."""

    def read(self, timeout: float) -> Fix | None:
        """The next fix within ``timeout`` seconds, or None.

        Raises:
            GpsError: the device went away; close and open again to retry.
        """
        fix = self._read(timeout)
        if fix is not None:
            self.mode = fix.mode
            self.status = describe(fix)
        return fix

    def __enter__(self) -> GpsSource:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r} {self.status}>"


def describe(fix: Fix) -> str:
    """A status text for a fix: "no fix", "2D fix", "3D fix, 7 sats"."""
    if not fix.has_position:
        return "no fix"
    text = f"{fix.mode.value}D fix"
    return f"{text}, {fix.sats} sats" if fix.sats else text


class _LineSource(GpsSource):
    """A source that reads NMEA lines and decodes them."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.decoder = NmeaDecoder()


class SerialSource(_LineSource):
    """A receiver on a serial port (a UART, a USB adapter, a pseudo-terminal)."""

    def __init__(self, spec: str, path: str, baud: int) -> None:
        super().__init__(spec)
        self.path = path
        self.baud = baud
        self._port: object | None = None
        self._pending = b""

    def open(self) -> None:
        import serial  # pyserial; imported here so the module loads without it

        self.close()
        try:
            self._port = serial.Serial(self.path, self.baud, timeout=0.5)
        except (serial.SerialException, OSError, ValueError) as error:
            raise GpsError(
                f"GPS receiver at {self.path} cannot be opened ({error}); "
                "check the cable and the [gps] source setting"
            ) from error
        self.decoder = NmeaDecoder()
        self._pending = b""
        self.status = "no fix"

    def _read(self, timeout: float) -> Fix | None:
        import serial

        port = self._port
        if not isinstance(port, serial.Serial):
            raise GpsError(f"GPS receiver at {self.path} is not open")

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                port.timeout = min(remaining, 0.5)
                chunk = port.readline()
            except (serial.SerialException, OSError) as error:
                raise GpsError(
                    f"GPS receiver at {self.path} stopped answering ({error})"
                ) from error

            # readline() can return part of a line at its timeout; keep it for
            # the next call instead of decoding half a sentence.
            self._pending += chunk
            if not self._pending.endswith(b"\n"):
                if len(self._pending) > 4096:
                    self._pending = b""
                continue
            line, self._pending = self._pending, b""
            fix = self.decoder.feed(line)
            if fix is not None:
                return fix

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()  # type: ignore[attr-defined]
            except OSError:
                log.debug("closing %s failed", self.path, exc_info=True)
        self.status = "closed"


class ReplaySource(_LineSource):
    """A recorded capture played back at its own pace or ``speed`` times faster.

    The pace comes from the times in the sentences: a line is given out when as
    much time has passed since the first timed line as the capture says. Lines
    that are not NMEA (``#`` comments, JSON) are skipped by the decoder. At the
    end of the file the last epoch is returned and `finished` turns True.
    """

    def __init__(self, spec: str, path: Path, speed: float) -> None:
        super().__init__(spec)
        self.path = path
        self.speed = speed
        self._file: IO[bytes] | None = None
        self._start: tuple[float, float] | None = None  # (monotonic, time of day)
        self._held: bytes | None = None

    def open(self) -> None:
        self.close()
        try:
            self._file = self.path.open("rb")
        except OSError as error:
            raise GpsError(
                f"GPS recording {self.path} cannot be read ({error.strerror})"
            ) from error
        self.decoder = NmeaDecoder()
        self._start = None
        self._held = None
        self.finished = False
        self.status = "no fix"

    def _read(self, timeout: float) -> Fix | None:
        if self._file is None:
            if self.finished:
                return None
            raise GpsError(f"GPS recording {self.path} is not open")

        deadline = time.monotonic() + timeout
        while True:
            line = self._held or self._file.readline()
            self._held = None
            if not line:
                self.finished = True
                self.status = "end of recording"
                self._file.close()
                self._file = None
                return self.decoder.flush()

            # A line that is not due before the deadline waits for the next read.
            due = self._due(line)
            if due is not None and due > time.monotonic():
                if due > deadline:
                    self._held = line
                    time.sleep(max(0.0, deadline - time.monotonic()))
                    return None
                time.sleep(due - time.monotonic() if due > time.monotonic() else 0.0)

            fix = self.decoder.feed(line)
            if fix is not None:
                return fix
            if time.monotonic() >= deadline:
                return None

    def _due(self, line: bytes) -> float | None:
        """The monotonic time at which a timed line should be given out."""
        text = line.decode("ascii", "replace")
        fields = text.split("*", 1)[0].split(",")
        if len(fields) < 2 or not fields[0].startswith("$"):
            return None
        kind = fields[0][3:]
        index = 5 if kind == "GLL" else 1
        if kind not in ("RMC", "GGA", "GNS", "GLL", "ZDA") or len(fields) <= index:
            return None
        tod = parse_time_of_day(fields[index])
        if tod is None:
            return None

        if self._start is None:
            self._start = (time.monotonic(), tod)
            return None
        started, first = self._start
        elapsed = (tod - first) % 86400  # a capture that crosses midnight
        if elapsed > 3600:
            # A jump of more than an hour is a receiver reset, not a pause.
            self._start = (time.monotonic(), tod)
            return None
        return started + elapsed / self.speed

    def close(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()
        if not self.finished:
            self.status = "closed"


class FixedSource(GpsSource):
    """A place that does not move: a branch counter. One fix a second."""

    def __init__(self, spec: str, lat: float, lon: float) -> None:
        super().__init__(spec)
        self.lat = lat
        self.lon = lon
        self._open = False
        self._next = 0.0

    def open(self) -> None:
        self._open = True
        self._next = 0.0
        self.status = "fixed place"

    def _read(self, timeout: float) -> Fix | None:
        if not self._open:
            raise GpsError(f"fixed place {self.lat},{self.lon} is not open")
        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(max(0.0, timeout))
            return None
        if wait > 0:
            time.sleep(wait)
        self._next = time.monotonic() + 1.0
        return Fix(
            lat=self.lat,
            lon=self.lon,
            mode=FixMode.TWO_D,
            time=None,
            accuracy_m=0.0,
            quality="manual",
        )

    def close(self) -> None:
        self._open = False
        self.status = "closed"


# gpsd-py3 keeps one connection in module globals, so one process can talk to
# one gpsd at a time; this lock makes a second source wait its turn.
_GPSD_LOCK = threading.Lock()


class GpsdSource(GpsSource):
    """Fixes polled from a gpsd daemon through gpsd-py3.

    gpsd-py3 is wrapped against its faults: its connection is global, the first
    poll after connecting raises ``UserWarning`` until gpsd sees a receiver, its
    position calls raise ``NoFixError`` below 2D, a poll before any report
    raises ``IndexError``/``KeyError``, and a gpsd that dies gives
    ``JSONDecodeError`` and then ``BrokenPipeError``. Every one of these becomes
    "no fix" or a `GpsError`; reopening connects again.
    """

    POLL_INTERVAL = 0.2

    def __init__(self, spec: str, host: str, port: int) -> None:
        super().__init__(spec)
        self.host = host
        self.port = port
        self._connected = False
        self._last_time: str | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"gpsd at {host}:{self.port}"

    def open(self) -> None:
        import gpsd

        self.close()
        if not _GPSD_LOCK.acquire(timeout=5.0):
            raise GpsError(f"{self.address}: another gpsd connection is in use")
        try:
            # Connected here rather than by gpsd.connect(), which knows only IPv4
            # and has no timeout; the handshake is the one gpsd-py3 does.
            sock = socket.create_connection((self.host, self.port), timeout=5.0)
            stream = sock.makefile(mode="rw")
            welcome = json.loads(stream.readline())
            if welcome.get("class") != "VERSION":
                raise GpsError(f"{self.address} is not a gpsd server")
            stream.write('?WATCH={"enable":true}\n')
            stream.flush()
            for _ in range(2):
                gpsd._parse_state_packet(json.loads(stream.readline()))
        except (OSError, ValueError, KeyError) as error:
            _GPSD_LOCK.release()
            raise GpsError(
                f"{self.address} cannot be reached ({error}); "
                "is gpsd running? (systemctl status gpsd)"
            ) from error
        except GpsError:
            _GPSD_LOCK.release()
            raise

        gpsd.gpsd_socket, gpsd.gpsd_stream = sock, stream
        self._connected = True
        self._last_time = None
        self.status = "no fix"

    def _read(self, timeout: float) -> Fix | None:
        if not self._connected:
            raise GpsError(f"{self.address} is not connected")

        deadline = time.monotonic() + timeout
        while True:
            fix = self._poll()
            if fix is not None:
                return fix
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(self.POLL_INTERVAL, remaining))

    def _poll(self) -> Fix | None:
        import gpsd

        try:
            answer = gpsd.get_current()
        except UserWarning:
            self.status = "no fix (gpsd sees no receiver)"
            return None
        except (IndexError, KeyError):
            return None  # no report from the receiver yet
        except (OSError, ValueError) as error:
            # ValueError covers JSONDecodeError: gpsd closed the connection.
            raise GpsError(f"{self.address} stopped answering ({error})") from error
        except Exception as error:
            # gpsd-py3 raises bare Exception for an unexpected message.
            raise GpsError(
                f"{self.address} sent something unexpected ({error})"
            ) from error

        stamp = getattr(answer, "time", "") or None
        mode = FixMode(answer.mode) if answer.mode in (0, 1, 2, 3) else FixMode.UNKNOWN
        if stamp is not None and stamp == self._last_time:
            return None
        self._last_time = stamp
        return self._to_fix(answer, mode, stamp)

    @staticmethod
    def _to_fix(answer: object, mode: FixMode, stamp: str | None) -> Fix:
        lat = float(getattr(answer, "lat", 0.0) or 0.0)
        lon = float(getattr(answer, "lon", 0.0) or 0.0)

        # gpsd-py3 fills a missing lat/lon with 0.0: a fix there is not believed.
        if mode < FixMode.TWO_D or (lat == 0.0 and lon == 0.0):
            return Fix(lat=math.nan, lon=math.nan, mode=FixMode.NO_FIX)

        when = None
        if stamp:
            try:
                when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                when = None
        error: dict[str, float] = getattr(answer, "error", {}) or {}
        spread = math.hypot(error.get("x", 0.0) or 0.0, error.get("y", 0.0) or 0.0)
        sats = int(getattr(answer, "sats_valid", 0) or 0)
        return Fix(
            lat=lat,
            lon=lon,
            mode=mode,
            time=when,
            alt=getattr(answer, "alt", None) if mode == FixMode.THREE_D else None,
            speed=getattr(answer, "hspeed", None),
            course=getattr(answer, "track", None),
            sats=sats or None,
            accuracy_m=spread / GPSD_95_TO_SIGMA if spread else None,
        )

    def close(self) -> None:
        if self._connected:
            import gpsd

            self._connected = False
            for closing in (gpsd.gpsd_stream, gpsd.gpsd_socket):
                try:
                    if closing is not None:
                        closing.close()
                except OSError:
                    pass
            gpsd.gpsd_stream = gpsd.gpsd_socket = None
            _GPSD_LOCK.release()
        self.status = "closed"


def open_source(spec: str) -> GpsSource:
    """Make the source a connection string names (not yet opened).

    Args:
        spec: ``serial:/dev/serial0?baud=9600``, ``gpsd:HOST[:PORT]`` (IPv6 in
            brackets, port 2947 when left out), ``replay:FILE[?speed=N]`` or
            ``fixed:LAT,LON``.

    Raises:
        GpsSpecError: the string is malformed; the message says which part.
    """
    scheme, colon, rest = spec.strip().partition(":")
    if not colon or not rest:
        raise GpsSpecError(
            f"GPS source {spec!r} is not a connection string; expected serial:PATH, "
            "gpsd:HOST[:PORT], replay:FILE or fixed:LAT,LON"
        )
    if scheme == "serial":
        path, query = _split_query(spec, rest, allowed={"baud"})
        baud = _query_number(spec, query, "baud", 9600.0)
        if int(baud) != baud or int(baud) not in STANDARD_BAUDS:
            raise GpsSpecError(
                f"GPS source {spec!r}: baud {baud:g} is not a serial speed "
                f"({', '.join(map(str, STANDARD_BAUDS))})"
            )
        return SerialSource(spec, path, int(baud))
    if scheme == "gpsd":
        host, port = _host_port(spec, rest)
        return GpsdSource(spec, host, port)
    if scheme == "replay":
        path, query = _split_query(spec, rest, allowed={"speed"})
        speed = _query_number(spec, query, "speed", 1.0)
        if not speed > 0 or math.isinf(speed):
            raise GpsSpecError(f"GPS source {spec!r}: speed must be above 0")
        return ReplaySource(spec, Path(path), speed)
    if scheme == "fixed":
        lat, lon = _lat_lon(spec, rest)
        return FixedSource(spec, lat, lon)
    raise GpsSpecError(
        f"GPS source {spec!r}: unknown kind {scheme!r}; "
        "expected serial, gpsd, replay or fixed"
    )


def _split_query(spec: str, rest: str, allowed: set[str]) -> tuple[str, dict[str, str]]:
    path, _, query = rest.partition("?")
    if not path:
        raise GpsSpecError(f"GPS source {spec!r} names no device or file")
    values: dict[str, str] = {}
    for key, found in parse_qs(query, keep_blank_values=True).items():
        if key not in allowed:
            raise GpsSpecError(
                f"GPS source {spec!r}: unknown option {key!r} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        values[key] = found[-1]
    return path, values


def _query_number(spec: str, query: dict[str, str], key: str, default: float) -> float:
    if key not in query:
        return default
    try:
        value = float(query[key])
    except ValueError:
        raise GpsSpecError(
            f"GPS source {spec!r}: {key} {query[key]!r} is not a number"
        ) from None
    if math.isnan(value):
        raise GpsSpecError(f"GPS source {spec!r}: {key} is not a number")
    return value


def _host_port(spec: str, rest: str) -> tuple[str, int]:
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or not host:
            raise GpsSpecError(f"GPS source {spec!r}: unclosed [ around the host")
        if tail and not tail.startswith(":"):
            raise GpsSpecError(f"GPS source {spec!r}: expected :PORT after ]")
        port_text = tail[1:]
    else:
        if rest.count(":") > 1:
            raise GpsSpecError(
                f"GPS source {spec!r}: put an IPv6 address in brackets, "
                "as gpsd:[::1]:2947"
            )
        host, _, port_text = rest.partition(":")
    if not host:
        raise GpsSpecError(f"GPS source {spec!r} names no host")
    if not port_text:
        return host, GPSD_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise GpsSpecError(f"GPS source {spec!r}: port {port_text!r} is not 1-65535")
    return host, int(port_text)


def _lat_lon(spec: str, rest: str) -> tuple[float, float]:
    parts = rest.split(",")
    if len(parts) != 2:
        raise GpsSpecError(f"GPS source {spec!r}: expected fixed:LAT,LON")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise GpsSpecError(
            f"GPS source {spec!r}: latitude and longitude must be decimal degrees"
        ) from None
    if not -90.0 <= lat <= 90.0:
        raise GpsSpecError(f"GPS source {spec!r}: latitude {lat} is not within ±90")
    if not -180.0 <= lon <= 180.0:
        raise GpsSpecError(f"GPS source {spec!r}: longitude {lon} is not within ±180")
    return lat, lon
