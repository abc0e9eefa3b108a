"""Sign-in: collector id and PIN, with lockout, HQ lock and clock warnings."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from kiosk.directory import Actor
from kiosk.errors import KioskError
from kiosk.ui.screens.base import ENTER, KioskScreen
from kiosk.ui.widgets import KeyBar, KioskHeader, Plain

log = logging.getLogger(__name__)


class SignInScreen(KioskScreen):
    """The first screen, and where an idle or signed-out kiosk returns."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "clear", "key.clear"),
        Binding("f12", "app.shut_down", "key.shut_down"),
    ]

    def compose(self) -> ComposeResult:
        t = self.t
        yield KioskHeader()
        with Vertical(id="signin", classes="panel"):
            yield Plain(t("signin.title"), classes="title")
            yield Plain(self.kiosk.ledger.device.name, classes="subtitle")
            yield Plain(id="notices", classes="notice")
            yield Label(t("signin.who"))
            yield Input(id="who", placeholder=t("signin.who_hint"), max_length=64)
            yield Label(t("signin.pin"))
            yield Input(
                id="pin",
                password=True,
                restrict=r"\d*",
                max_length=12,
                placeholder=t("signin.pin_hint"),
            )
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#who", Input).focus()
        self.check_device()

    def on_screen_resume(self) -> None:
        self.check_device()

    def check_device(self) -> None:
        """Say before anyone signs in that HQ locked the device or the clock is
        not trusted, so nobody learns it in front of a customer."""
        self.ledger_call(self.kiosk.ledger.status, done=self._show_notices)

    def _show_notices(self, state: dict[str, Any]) -> None:
        self.kiosk.state = state
        notices = []
        if state.get("locked"):
            notices.append(
                self.t("signin.locked", reason=state["locked"].get("reason", ""))
            )
        clock = state.get("time", {})
        if not clock.get("trusted", True):
            notices.append(self.t("signin.clock", reason=clock.get("reason", "")))
        box = self.query_one("#notices", Static)
        box.update("\n".join(notices))
        box.display = bool(notices)

    def reset(self, notice: str = "") -> None:
        self.query_one("#who", Input).value = ""
        self.query_one("#pin", Input).value = ""
        self.query_one("#who", Input).focus()
        self.show_problem(notice)
        self.check_device()

    def action_clear(self) -> None:
        self.reset()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        who = self.query_one("#who", Input)
        pin = self.query_one("#pin", Input)
        if event.input is who:
            if who.value.strip():
                pin.focus()
            return
        if not who.value.strip():
            who.focus()
            return
        if not pin.value:
            return
        self.ledger_call(
            self.kiosk.ledger.authenticate,
            who.value.strip(),
            pin.value,
            done=self._signed_in,
            failed=self._refused,
        )

    def _signed_in(self, actor: Actor) -> None:
        self.clear_problem()
        self.query_one("#pin", Input).value = ""
        self.query_one("#who", Input).value = ""
        self.kiosk.sign_in(actor)

    def _refused(self, exc: KioskError) -> None:
        pin = self.query_one("#pin", Input)
        pin.value = ""
        pin.focus()
        self.show_problem(exc)
