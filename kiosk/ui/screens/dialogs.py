"""Dialogs: confirm, supervisor override, the keypad menu."""

from __future__ import annotations

import logging
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from kiosk.errors import KioskError
from kiosk.ledger import Override
from kiosk.ui.screens.base import ENTER, KioskModal
from kiosk.ui.widgets import KeyBar, Plain

log = logging.getLogger(__name__)


class ConfirmScreen(KioskModal[bool]):
    """Enter to go ahead, Escape to go back: the last look before money moves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "answer(True)", "key.confirm"),
        Binding("escape", "answer(False)", "key.back"),
    ]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Plain(self.t("confirm.title"), classes="title")
            yield Plain(self.text, id="confirm-text")
            yield Plain(self.t("confirm.keys"), classes="hint")
        yield KeyBar()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class OverrideScreen(KioskModal[Override | None]):
    """A supervisor signs for one payment past a limit, with a reason."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "cancel", "key.back"),
    ]

    def __init__(self, refusal: str) -> None:
        super().__init__()
        self.refusal = refusal

    def compose(self) -> ComposeResult:
        t = self.t
        with Vertical(classes="dialog"):
            yield Plain(t("override.title"), classes="title")
            yield Plain(self.refusal, classes="notice")
            yield Label(t("override.who"))
            yield Input(id="sup-id", max_length=64)
            yield Label(t("override.pin"))
            yield Input(id="sup-pin", password=True, restrict=r"\d*", max_length=12)
            yield Label(t("override.reason"))
            yield Input(id="sup-reason", max_length=200)
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#sup-id", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        fields = [self.query_one(f"#{n}", Input) for n in ("sup-id", "sup-pin")]
        reason = self.query_one("#sup-reason", Input)
        for field in [*fields, reason]:
            if not field.value.strip():
                field.focus()
                return
        self.ledger_call(
            self.kiosk.ledger.supervisor_override,
            fields[0].value.strip(),
            fields[1].value,
            reason.value,
            done=self._granted,
            failed=self._refused,
        )

    def _granted(self, override: Override) -> None:
        self.dismiss(override)

    def _refused(self, exc: KioskError) -> None:
        pin = self.query_one("#sup-pin", Input)
        pin.value = ""
        pin.focus()
        self.show_problem(exc)


class MenuScreen(KioskModal[str | None]):
    """Every action of a screen in a list, for a numeric keypad: a digit or
    the arrows and Enter choose, Escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "key.back"),
        *[Binding(str(n), f"pick({n})", show=False) for n in range(1, 10)],
    ]

    def __init__(self, actions: list[tuple[str, str]]) -> None:
        super().__init__()
        self.actions = actions

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Plain(self.t("menu.title"), classes="title")
            yield OptionList(
                *[
                    Option(f"{n}  {label}", id=action)
                    for n, (action, label) in enumerate(self.actions, 1)
                ],
                id="menu",
            )
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#menu", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_pick(self, number: int) -> None:
        if 1 <= number <= len(self.actions):
            self.dismiss(self.actions[number - 1][0])

    def action_cancel(self) -> None:
        self.dismiss(None)
