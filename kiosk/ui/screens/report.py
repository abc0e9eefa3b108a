"""The day's cash: X report at any time, and closing the day with a count."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Label

from kiosk.errors import KioskError
from kiosk.ui.screens.base import ENTER, KioskScreen
from kiosk.ui.screens.dialogs import ConfirmScreen
from kiosk.ui.widgets import AmountInput, KeyBar, KioskHeader, Plain

log = logging.getLogger(__name__)

FIGURES = (
    "carried",
    "float",
    "collected",
    "voided",
    "deposited",
    "expected",
    "held",
)


def figures_text(app: Any, figures: dict[str, Any]) -> str:
    t = app.t
    width = max(len(t(f"report.{k}")) for k in FIGURES) + 2
    lines = [
        t("report.day", date=figures["date"], collector=figures["collector"]),
        "",
    ]
    counts = {"collected": "payments", "voided": "voids", "deposited": "deposits"}
    for key in FIGURES:
        if key not in figures:
            continue
        count = f"  ({figures[counts[key]]})" if key in counts else ""
        lines.append(
            f"{t(f'report.{key}'):<{width}}{app.amount(figures[key]):>15}{count}"
        )
    if "counted" in figures:
        lines.append(
            f"{t('report.counted'):<{width}}{app.amount(figures['counted']):>15}"
        )
        lines.append(
            f"{t('report.variance'):<{width}}{app.amount(figures['variance']):>15}"
        )
    return "\n".join(lines)


class ReportScreen(KioskScreen):
    """The open day's figures; print them, or go on to close the day."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back"),
        Binding("f8", "print", "key.print"),
        Binding("f9", "close_day", "key.close_day"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield KioskHeader()
        with Vertical(id="report", classes="panel"):
            yield Plain(self.t("report.x_title"), classes="title")
            yield Plain(self.t("report.loading"), id="figures")
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    def load(self, print_it: bool = False) -> None:
        app = self.kiosk
        assert app.actor is not None
        self.ledger_call(
            app.ledger.report, app.actor, print_it=print_it, done=self._show
        )

    def _show(self, figures: dict[str, Any]) -> None:
        self.figures = figures
        self.query_one("#figures", Plain).update(figures_text(self.kiosk, figures))
        if "print_job" in figures:
            self.kiosk.notify(self.t("report.print_queued"))

    def action_print(self) -> None:
        self.load(print_it=True)

    def action_close_day(self) -> None:
        if self.figures is None:
            return
        self.app.push_screen(CloseDayScreen(self.figures))

    def action_back(self) -> None:
        self.dismiss()


class CloseDayScreen(KioskScreen):
    """Counted cash in; the variance shows as it is typed, before confirming."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "back", "key.back"),
    ]

    def __init__(self, figures: dict[str, Any]) -> None:
        super().__init__()
        self.figures = figures

    def compose(self) -> ComposeResult:
        t, app = self.t, self.kiosk
        yield KioskHeader()
        with Vertical(id="close", classes="panel"):
            yield Plain(t("report.z_title"), classes="title")
            yield Plain(t("close.expected", amount=app.money(self.figures["expected"])))
            yield Label(t("close.counted", currency=app.ledger.currency))
            yield AmountInput(
                id="counted",
                exponent=app.ledger.exponent,
                locale=app.ledger.device.locale,
                allow_zero=True,
            )
            yield Plain(id="variance")
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#counted").focus()

    def variance(self) -> int | None:
        counted = self.query_one("#counted", AmountInput).minor_or_none()
        return None if counted is None else counted - self.figures["expected"]

    def on_input_changed(self, _: Input.Changed) -> None:
        self.query_one("#variance", Plain).update(self.variance_text())

    def variance_text(self) -> str:
        variance = self.variance()
        if variance is None:
            return ""
        app = self.kiosk
        key = (
            "close.even"
            if not variance
            else ("close.over" if variance > 0 else "close.short")
        )
        return self.t(key, amount=app.money(abs(variance)))

    def on_input_submitted(self, _: Input.Submitted) -> None:
        field = self.query_one("#counted", AmountInput)
        try:
            counted = field.minor
        except KioskError as exc:
            self.show_problem(exc)
            return
        app = self.kiosk
        assert app.actor is not None
        actor = app.actor

        def answered(yes: bool | None) -> None:
            if yes:
                self.ledger_call(
                    app.ledger.report,
                    actor,
                    close=True,
                    counted=counted,
                    done=self._day_closed,
                )

        text = self.t(
            "close.confirm",
            counted=app.money(counted),
            variance=self.variance_text(),
        )
        self.app.push_screen(ConfirmScreen(text), answered)

    def _day_closed(self, figures: dict[str, Any]) -> None:
        app = self.kiosk
        app.refresh_state()
        app.notify(self.t("close.saved", variance=app.money(figures["variance"])))
        # Back to the round: the X report of a closed day has nothing to show.
        app.pop_screen()
        app.pop_screen()

    def action_back(self) -> None:
        self.dismiss()
