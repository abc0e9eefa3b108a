"""The device service: the one process that owns the ports, the printer, the pins
and the broker link.

One asyncio loop hosts the control socket and feeds systemd's watchdog; the
hardware and link workers run in their own threads and report back through
callbacks, so a slow printer or a dead broker never stalls the loop, the UI or a
payment. Blocking ledger calls run in a worker thread of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from kiosk import __version__, commands
from kiosk.config import Config
from kiosk.control import ControlServer, socket_path
from kiosk.fix import Fix
from kiosk.ledger import Ledger, parse_fixed
from kiosk.location import FixHistory

log = logging.getLogger(__name__)


class Worker(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _Notifier:
    """sd_notify when run by systemd; silent otherwise."""

    def __init__(self) -> None:
        self._notify: Any = None
        try:
            import sdnotify

            self._notify = sdnotify.SystemdNotifier()
        except ImportError:  # pragma: no cover - a declared dependency
            log.warning("sdnotify missing: systemd will not hear from the service")

    def send(self, state: str) -> None:
        if self._notify is not None:
            self._notify.notify(state)


class Service:
    """Everything the device runs, started and stopped as one."""

    def __init__(self, config: Config, *, ledger: Ledger | None = None) -> None:
        self.config = config
        self.history = FixHistory()
        self._fix: Fix | None = (
            parse_fixed(config.gps.source) if config.gps.source else None
        )
        self._fix_lock = threading.Lock()
        self.ledger = ledger or Ledger(
            config, fix_source=self.current_fix, history=self.history
        )
        self.status: dict[str, str] = {"gps": "off", "printer": "off", "link": "off"}
        self.workers: list[Worker] = []
        self.listeners: list[Callable[[str, Any], None]] = []
        self.control = ControlServer(socket_path(config.data_dir), self._dispatch)
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._notifier = _Notifier()
        self._ledger_lock = threading.Lock()

    # --- what workers report ---------------------------------------------

    def current_fix(self) -> Fix | None:
        with self._fix_lock:
            return self._fix

    def on_fix(self, fix: Fix) -> None:
        with self._fix_lock:
            self._fix = fix
        self.history.add(fix)
        self.emit("fix", fix)

    def on_status(self, part: str, text: str) -> None:
        """A worker's state changed; logged once per change and shown on screen."""
        if self.status.get(part) == text:
            return
        self.status[part] = text
        log.info("%s: %s", part, text)
        self.emit("status", (part, text))

    def emit(self, kind: str, value: Any) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, value)
            except Exception:
                log.exception("status listener failed")

    # --- requests ---------------------------------------------------------

    def call(self, op: str, args: dict[str, Any], auth: dict[str, Any]) -> Any:
        """Run an operation on the ledger (blocking; for threads and the UI)."""
        if op == "service_status":
            return self.describe()
        return commands.run(self.ledger, op, args, auth)

    def describe(self) -> dict[str, Any]:
        """The workers' state and the live fix, for doctor and ``kiosk gps``."""
        fix = self.current_fix()
        live = None
        if fix is not None and fix.has_position:
            live = {
                "lat": round(fix.lat, 7),
                "lon": round(fix.lon, 7),
                "time": fix.time.isoformat() if fix.time else None,
                "mode": int(fix.mode),
                "sats": fix.sats,
                "acc": fix.accuracy_m,
                "age_s": round(min(fix.age(), 1e9), 1),
            }
        return {**self.status, "fix": live, "gps_source": self.config.gps.source}

    async def _dispatch(
        self, op: str, args: dict[str, Any], auth: dict[str, Any]
    ) -> Any:
        result = await asyncio.to_thread(self.call, op, args, auth)
        self.emit("changed", op)
        return result

    # --- life cycle ---------------------------------------------------------

    def _build_workers(self) -> list[Worker]:
        from kiosk.workers import build_workers

        return build_workers(self)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self.control.start()
        self.workers = self._build_workers()
        for worker in self.workers:
            try:
                worker.start()
                log.info("worker %s started", worker.name)
            except Exception:
                log.exception("worker %s failed to start", worker.name)
        with contextlib.suppress(Exception):
            self.ledger.purge_customers()
        self._notifier.send(f"READY=1\nSTATUS=kiosk {__version__} running")
        log.info("service %s started (device %s)", __version__, self.config.device.id)

    async def stop(self) -> None:
        self._notifier.send("STOPPING=1")
        for worker in reversed(self.workers):
            try:
                await asyncio.to_thread(worker.stop)
                log.info("worker %s stopped", worker.name)
            except Exception:
                log.exception("worker %s failed to stop", worker.name)
        await self.control.stop()
        self.ledger.close()
        log.info("service stopped")

    def request_stop(self) -> None:
        if self._stopping is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def _watchdog(self) -> None:
        # Fed from the loop itself: if the loop stalls, systemd restarts us.
        while True:
            self._notifier.send("WATCHDOG=1")
            await asyncio.sleep(5)

    async def run_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        dog = asyncio.create_task(self._watchdog())
        try:
            assert self._stopping is not None
            await self._stopping.wait()
        finally:
            dog.cancel()
            await self.stop()


def run_agent(config: Config) -> int:
    """``kiosk agent``: the service without a screen, until SIGTERM."""
    service = Service(config)
    started = time.monotonic()
    asyncio.run(service.run_forever())
    log.info("agent ran %.0f s", time.monotonic() - started)
    return 0
