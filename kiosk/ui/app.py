"""The kiosk's Textual application: screens over the service's ledger.

``run_ui(config)`` is what ``kiosk run`` calls: it builds the service, runs
the app, and the app starts the service when it mounts and stops it when it
exits. Every ledger call runs off the event loop (see ``KioskScreen``), so the
clock, the badges and the keys never wait for the disk, the printer or a lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import events
from textual.app import App
from textual.binding import BindingType
from textual.theme import Theme

from kiosk import __version__
from kiosk.config import Config
from kiosk.directory import Actor
from kiosk.errors import KioskError
from kiosk.money import format_amount
from kiosk.service import Service
from kiosk.ui.i18n import Words
from kiosk.ui.widgets import KioskHeader

log = logging.getLogger(__name__)

MIN_WIDTH = 60
MIN_HEIGHT = 18

HIGH_CONTRAST = Theme(
    name="kiosk-high-contrast",
    primary="#ffff00",
    secondary="#00ffff",
    accent="#ffff00",
    warning="#ffff00",
    error="#ff6060",
    success="#00ff00",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#202020",
    dark=True,
)


# Worker states said in a word or two, so every badge fits on an 80-column line.
SHORT_STATES = {"ready": "ok", "online": "ok", "connected": "ok", "no printer": "none"}


def short_state(text: str) -> str:
    """``offline: broker refused`` -> ``offline``; the badge's word for a state."""
    text = text.strip()
    if text in SHORT_STATES:
        return SHORT_STATES[text]
    for mark in (":", "("):
        text = text.split(mark, 1)[0].strip()
    return SHORT_STATES.get(text, text[:10])


class KioskApp(App[int], inherit_bindings=False):
    """The collector's and the branch counter's screens.

    Args:
        service: The device service; its ledger is the only way to the data.
        start_service: Start and stop the service with the app (off in tests
            that drive a service of their own).
        monotonic: The clock for the idle sign-out, replaceable in tests.
        cursor_blink: Blink the text cursor (off for reproducible snapshots).
        ascii_only: Draw with ASCII only; by default when ``TERM`` is
            ``linux`` (the Pi's own console, whose font lacks box drawing).
        on_ready: A blocking call run once the service has started (the demo's
            script); the lines it returns are shown as notices.
    """

    CSS_PATH = "kiosk.tcss"
    ENABLE_COMMAND_PALETTE = False
    TITLE = "kiosk"
    # Nothing on Ctrl+S / Ctrl+Q: terminals use them for flow control, and a
    # collector must not be able to leave the app by a stray chord.
    BINDINGS: ClassVar[list[BindingType]] = []

    def __init__(
        self,
        service: Service,
        *,
        start_service: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        cursor_blink: bool = True,
        ascii_only: bool | None = None,
        on_ready: Callable[[Service], list[str] | None] | None = None,
    ) -> None:
        super().__init__()
        self.on_ready = on_ready
        self.service = service
        self.ledger = service.ledger
        self.config = service.config
        self.words = Words(self.ledger.device.language)
        self.start_service = start_service
        self.monotonic = monotonic
        self.cursor_blink = cursor_blink
        self.ascii_only = (
            os.environ.get("TERM") == "linux" if ascii_only is None else ascii_only
        )
        self.actor: Actor | None = None
        self.held = 0
        self.state: dict[str, Any] = {}
        self.last_activity = monotonic()
        self._kiosk_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._service_started = False
        # Ledger calls run here rather than in asyncio's shared pool, so that
        # on exit the app can wait for the calls in flight before the service
        # closes the store under them.
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kiosk-ui")
        self.register_theme(HIGH_CONTRAST)
        self.theme = (
            HIGH_CONTRAST.name
            if self.config.ui.theme == "high_contrast"
            else "textual-dark"
        )

    # --- words and numbers ---------------------------------------------------

    def t(self, key: str, **fields: Any) -> str:
        return self.words(key, **fields)

    def money(self, amount: int) -> str:
        return self.ledger.money(amount)

    def amount(self, amount: int) -> str:
        """An amount without its currency, for tables and meters."""
        return format_amount(amount, self.ledger.exponent, self.ledger.device.locale)

    def now(self) -> datetime:
        return self.ledger.clock.now().astimezone(self.ledger.device.tz)

    # --- life cycle ---------------------------------------------------------

    async def on_mount(self) -> None:
        from kiosk.ui.screens.signin import SignInScreen

        self._kiosk_loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.start_service:
            await self.service.start()
            self._service_started = True
        self.service.listeners.append(self._service_event)
        if self.ascii_only:
            self.add_class("ascii")
        await self.push_screen(SignInScreen())
        self.set_interval(1.0, self._tick)
        self.refresh_state()
        self._check_size()
        if self.on_ready is not None:
            self.run_worker(self._run_on_ready(), group="ready", exit_on_error=False)

    async def _run_on_ready(self) -> None:
        assert self.on_ready is not None
        try:
            lines = await self.in_thread(self.on_ready, self.service)
        except KioskError as exc:
            self.notify(exc.message, severity="error", timeout=10)
            return
        for line in lines or []:
            self.notify(line, timeout=10)
        self.refresh_state()
        handler = getattr(self.screen, "ledger_changed", None)
        if handler is not None:
            handler()

    async def in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking ledger call in the app's pool and wait for it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(fn, *args, **kwargs))

    async def on_unmount(self) -> None:
        if self._service_event in self.service.listeners:
            self.service.listeners.remove(self._service_event)
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)
        if self._service_started:
            self._service_started = False
            await self.service.stop()

    def action_shut_down(self) -> None:
        self.exit(0)

    # --- what the service reports --------------------------------------------

    def _service_event(self, kind: str, value: Any) -> None:
        # Called from worker threads; hop onto the loop without waiting, so a
        # worker is never held up by the screen.
        loop = self._kiosk_loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._on_service_event(kind, value)
        else:
            loop.call_soon_threadsafe(self._on_service_event, kind, value)

    def _on_service_event(self, kind: str, value: Any) -> None:
        if not self.is_running:
            return
        if kind == "status":
            self.refresh_header()
        elif kind == "changed":
            self.refresh_state()
            handler = getattr(self.screen, "ledger_changed", None)
            if handler is not None:
                handler()

    def refresh_state(self) -> None:
        """Reread the ledger's status and the collector's cash, off the loop."""
        actor = self.actor

        def read() -> tuple[dict[str, Any], int]:
            state = self.ledger.status()
            held = self.ledger.held_by(actor.id) if actor else 0
            return state, held

        async def job() -> None:
            try:
                state, held = await self.in_thread(read)
            except KioskError as exc:
                log.warning("status not read: %s", exc.message)
                return
            self.state, self.held = state, held
            self.refresh_header()

        self.run_worker(job(), group="state", exclusive=True, exit_on_error=False)

    # --- header ---------------------------------------------------------------

    def badges(self) -> list[str]:
        """Short words, never colour alone: GPS, link, printer, cash held."""
        t = self.t
        fix = self.service.current_fix()
        max_age = self.ledger.policy.location.max_fix_age_s
        if self.ledger.device.mode == "branch":
            gps = t("badge.gps_branch")
        elif fix is not None and fix.has_position and fix.age() <= max_age:
            gps = (
                t("badge.gps_sats", sats=fix.sats)
                if fix.sats is not None
                else t("badge.gps_fix")
            )
        elif fix is not None and fix.has_position:
            gps = t("badge.gps_old")
        else:
            gps = t("badge.gps_none")
        link = t(
            "badge.link", state=short_state(self.service.status.get("link", "off"))
        )
        queue = sum(self.state.get("print_queue", {}).values())
        printer = short_state(self.service.status.get("printer", "off"))
        prn = (
            t("badge.printer_queue", state=printer, n=queue)
            if queue
            else t("badge.printer", state=printer)
        )
        badges = [gps, link, prn]
        if self.actor is not None:
            limit = self.ledger.policy.cash.max_in_hand
            badges.append(
                t("badge.cash", held=self.amount(self.held), limit=self.amount(limit))
            )
        return badges

    def header_text(self, width: int) -> str:
        who = self.actor.name if self.actor else "-"
        left = f"{self.ledger.device.id} {who} {self.now():%H:%M}"
        right = " ".join(f"[{b}]" for b in self.badges())
        room = width - len(right) - 1
        if room < len(left):
            left = left[: max(0, room)]
        return left + " " * max(1, width - len(left) - len(right)) + right

    def refresh_header(self) -> None:
        if not self.is_running:
            return
        for header in self.screen.query(KioskHeader):
            header.refresh_text()

    # --- idle sign-out, size ----------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):
            self.last_activity = self.monotonic()
        await super().on_event(event)

    def _tick(self) -> None:
        self.refresh_header()
        self.sign_out_if_idle()

    def sign_out_if_idle(self) -> bool:
        """Sign out a collector who left the kiosk; True when it did."""
        idle = self.monotonic() - self.last_activity
        if self.actor is None or idle < self.config.ui.idle_timeout_s:
            return False
        log.info("signed out %s after %.0f s idle", self.actor.id, idle)
        self.sign_out(self.t("signin.idle"))
        return True

    def sign_in(self, actor: Actor) -> None:
        from kiosk.ui.screens.today import TodayScreen

        self.actor = actor
        self.last_activity = self.monotonic()
        self.refresh_state()
        self.push_screen(TodayScreen())

    def sign_out(self, notice: str = "") -> None:
        from kiosk.ui.screens.signin import SignInScreen

        self.actor = None
        self.held = 0
        while len(self.screen_stack) > 1 and not isinstance(self.screen, SignInScreen):
            self.pop_screen()
        if isinstance(self.screen, SignInScreen):
            self.screen.reset(notice)
        self.refresh_header()

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int | None = None, height: int | None = None) -> None:
        from kiosk.ui.screens.small import TooSmallScreen

        if not self.screen_stack:
            return
        width = self.size.width if width is None else width
        height = self.size.height if height is None else height
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif showing:
            if small:
                self.screen.refresh_text()  # type: ignore[attr-defined]
            else:
                self.pop_screen()


def _log_to_file(data_dir: Path) -> list[logging.Handler]:
    """Send log lines to a file while the screen is in use; return what was moved.

    A handler writing to the terminal would scribble over the screen.
    """
    root = logging.getLogger()
    moved: list[logging.Handler] = [
        h
        for h in root.handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
    ]
    for handler in moved:
        root.removeHandler(handler)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(data_dir / "ui.log", encoding="utf-8")
    except OSError:
        return moved
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    return moved


def run_ui(
    config: Config,
    *,
    on_ready: Callable[[Service], list[str] | None] | None = None,
) -> int:
    """``kiosk run`` and ``kiosk demo``: the service with the screen on top,
    until the app exits.

    Args:
        config: The device configuration.
        on_ready: Run in a thread once the service is up (the demo's script);
            the lines it returns are shown as notices.
    """
    moved = _log_to_file(config.data_dir)
    try:
        service = Service(config)
        app = KioskApp(service, on_ready=on_ready)
        log.info("screen %s starting (device %s)", __version__, config.device.id)
        result = app.run()
    finally:
        root = logging.getLogger()
        for handler in moved:
            root.addHandler(handler)
    return int(result or 0)
