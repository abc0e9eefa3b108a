"""A background thread that keeps a GPS source open and reports its fixes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kiosk.errors import GpsError
from kiosk.fix import Fix
from kiosk.hardware.gps.sources import GpsSource, describe, open_source

log = logging.getLogger(__name__)

NO_GPS = "no GPS"


class GpsWorker:
    """Owns one GPS source in a thread, and reopens it when it goes away.

    An unplugged receiver, a gpsd that restarts or a port that stays silent for
    ``silence_s`` seconds sets the status to "no GPS" and the source is opened
    again, first after ``backoff_s[0]`` seconds, then twice as long each time up
    to ``backoff_s[1]``. The kiosk keeps running meanwhile.

    `latest` is the last fix with a position. It is never refreshed by a fix
    without one, so after the fix is lost its `Fix.age` grows until the
    location policy treats it as stale.

    Args:
        source: a connection string or a source not yet opened.
        on_fix: called in the worker's thread with each fix that has a position.
        on_status: called in the worker's thread when the status text changes
            ("no GPS", "no fix", "3D fix, 8 sats", "end of recording").
        silence_s: seconds without a decoded epoch before the source is reopened.
        backoff_s: first and longest wait between attempts to open.

    Example:
        >>> worker = GpsWorker("serial:/dev/serial0?baud=9600", on_fix=print)
        >>> worker.start()
        >>> ...
        >>> worker.stop()
    """

    def __init__(
        self,
        source: str | GpsSource,
        on_fix: Callable[[Fix], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        *,
        silence_s: float = 5.0,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        read_timeout_s: float = 0.5,
    ) -> None:
        self.source = open_source(source) if isinstance(source, str) else source
        self._on_fix = on_fix
        self._on_status = on_status
        self._silence_s = silence_s
        self._backoff_s = backoff_s
        self._read_timeout_s = read_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._latest: Fix | None = None
        self._status = "starting"

    @property
    def status(self) -> str:
        """What the GPS is doing, in a few words for the screen."""
        return self._status

    def latest(self) -> Fix | None:
        """The last fix with a position, or None before the first one."""
        with self._lock:
            return self._latest

    def start(self) -> None:
        """Start the thread; it runs until `stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"gps {self.source.spec}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, wait for it, and close the source."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.source.close()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end by itself (a recording read to its end)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> GpsWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        delay = self._backoff_s[0]
        failures = 0
        opened_before = False

        while not self._stop.is_set():
            try:
                self.source.open()
            except GpsError as error:
                # Said once per outage; the retries that follow are quiet.
                (log.warning if failures == 0 else log.debug)("%s", error)
                failures += 1
                self._set_status(NO_GPS)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_s[1])
                continue

            if opened_before:
                log.info(
                    "GPS %s reconnected after %d tries", self.source.spec, failures
                )
            else:
                log.info("GPS %s open", self.source.spec)
            opened_before, failures, delay = True, 0, self._backoff_s[0]

            ended = self._pump()
            self.source.close()
            if ended:
                self._set_status(self.source.status)
                return
            self._set_status(NO_GPS)

    def _pump(self) -> bool:
        """Read until the source fails or falls silent; True at the end of a file."""
        heard = time.monotonic()
        while not self._stop.is_set():
            try:
                fix = self.source.read(self._read_timeout_s)
            except GpsError as error:
                log.warning("%s", error)
                return False

            if fix is None:
                if self.source.finished:
                    return True
                if time.monotonic() - heard > self._silence_s:
                    log.warning(
                        "GPS %s silent for %.0f s; reopening",
                        self.source.spec,
                        self._silence_s,
                    )
                    return False
                continue

            heard = time.monotonic()
            if fix.has_position:
                with self._lock:
                    self._latest = fix
                self._call(self._on_fix, fix)
            self._set_status(describe(fix))
            if self.source.finished:
                return True
        return False

    def _set_status(self, text: str) -> None:
        if text == self._status:
            return
        self._status = text
        self._call(self._on_status, text)

    @staticmethod
    def _call(callback: Callable[..., None] | None, value: object) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:
            # A broken listener must not stop the GPS for everyone else.
            log.exception("GPS listener %r failed", callback)
