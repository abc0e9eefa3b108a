"""What every kiosk screen shares: header, footer, refusals, ledger calls."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static
from textual.worker import Worker

from kiosk.errors import KioskError
from kiosk.ui.widgets import KeyBar

if TYPE_CHECKING:
    from kiosk.ui.app import KioskApp

log = logging.getLogger(__name__)

T = TypeVar("T")

# What to do next after a refusal, by its code; the ledger's own message says
# what happened.
NEXT_STEP = {
    "cash_limit": "next.cash_limit",
    "reason_required": "next.reason_required",
    "location": "next.location",
    "locked_out": "next.locked_out",
    "wrong_pin": "next.wrong_pin",
    "day_closed": "next.day_closed",
    "device_locked": "next.device_locked",
    "clock_untrusted": "next.clock_untrusted",
    "overpayment": "next.overpayment",
    "bad_amount": "next.bad_amount",
    "offline_limit": "next.offline_limit",
    "not_allowed": "next.not_allowed",
}


def translate_bindings(node: Screen[Any], t: Callable[[str], str]) -> None:
    """Put the footer's words in the device's language.

    Bindings name a catalogue key (``key.back``) as their description.
    """
    for key, bindings in node._bindings.key_to_bindings.items():
        node._bindings.key_to_bindings[key] = [
            dataclasses.replace(b, description=t(b.description))
            if b.description.startswith("key.")
            else b
            for b in bindings
        ]
    node.refresh_bindings()
    for bar in node.query(KeyBar):
        bar.refresh(layout=True)


# Shown in the key bar of every form; a focused field answers Enter itself.
ENTER = Binding("enter", "submit_focused", "key.confirm")


class LedgerCalls:
    """Runs blocking ledger calls in a thread and reports back on the loop.

    The worker belongs to the screen, so leaving the screen drops the answer
    rather than writing into widgets that are gone.
    """

    kiosk: KioskApp

    def ledger_call(
        self,
        fn: Callable[..., T],
        *args: Any,
        done: Callable[[T], None] | None = None,
        failed: Callable[[KioskError], None] | None = None,
        group: str = "ledger",
        exclusive: bool = False,
        **kwargs: Any,
    ) -> Worker[None]:
        async def job() -> None:
            try:
                result = await self.kiosk.in_thread(fn, *args, **kwargs)
            except KioskError as exc:
                log.info("refused: %s (%s)", exc.message, exc.code)
                (failed or self.show_problem)(exc)
                return
            except Exception as exc:
                log.exception("%s failed", getattr(fn, "__name__", fn))
                self.kiosk.notify(
                    self.kiosk.t("error.unexpected", error=str(exc)),
                    severity="error",
                )
                return
            if done is not None:
                done(result)

        return self.run_worker(  # type: ignore[attr-defined,no-any-return]
            job(), group=group, exclusive=exclusive, exit_on_error=False
        )

    def explain(self, exc: KioskError) -> str:
        """The refusal as two sentences: what happened, and what to do."""
        t = self.kiosk.t
        step = NEXT_STEP.get(exc.code)
        message = exc.message.rstrip(".")
        return f"{message}. {t(step)}" if step else f"{message}."

    def show_problem(self, exc: KioskError | str) -> None:
        text = self.explain(exc) if isinstance(exc, KioskError) else exc
        try:
            problem = self.query_one("#problem", Static)  # type: ignore[attr-defined]
        except Exception:
            self.kiosk.notify(text, severity="error", timeout=8)
            return
        problem.update(text)
        problem.display = bool(text)

    def clear_problem(self) -> None:
        self.show_problem("")

    async def action_submit_focused(self) -> None:
        focused = self.focused  # type: ignore[attr-defined]
        if isinstance(focused, Input):
            await focused.action_submit()


class KioskParts(LedgerCalls):
    """What every screen and dialog shares: the app, the words, the keys."""

    @property
    def kiosk(self) -> KioskApp:  # type: ignore[override]
        return self.app  # type: ignore[attr-defined, no-any-return]

    def t(self, key: str, **fields: Any) -> str:
        return self.kiosk.t(key, **fields)

    def on_mount(self) -> None:
        translate_bindings(self, self.kiosk.t)  # type: ignore[arg-type]
        for field in self.query(Input):  # type: ignore[attr-defined]
            field.cursor_blink = self.kiosk.cursor_blink


class KioskScreen(KioskParts, Screen[None]):
    """A full screen with the kiosk header and footer."""

    def on_screen_resume(self) -> None:
        self.kiosk.refresh_header()


class KioskModal(KioskParts, ModalScreen[T]):
    """A dialog over the current screen; Escape answers None."""
