"""Visit outcome, deposit and void: short forms, Enter confirms."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from kiosk.directory import Actor
from kiosk.errors import KioskError
from kiosk.ledger import OUTCOMES
from kiosk.ui.screens.base import ENTER, KioskScreen
from kiosk.ui.screens.dialogs import ConfirmScreen
from kiosk.ui.widgets import AmountInput, KeyBar, KioskHeader, Plain

log = logging.getLogger(__name__)


class VisitScreen(KioskScreen):
    """A visit without payment: promise (date and amount), not home, refused,
    address not found, with a note."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "back", "key.back"),
        *[Binding(str(n), f"pick({n})", show=False) for n in range(1, 5)],
    ]

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        t, app = self.t, self.kiosk
        yield KioskHeader()
        with Vertical(id="visit", classes="panel"):
            yield Plain(
                t("visit.title", name=self.row["name"], contract=self.row["contract"]),
                classes="title",
            )
            yield OptionList(
                *[
                    Option(f"{n}  {t('outcome.' + o)}", id=o)
                    for n, o in enumerate(OUTCOMES, 1)
                ],
                id="outcome",
            )
            yield Label(t("visit.promise_date"), id="date-label")
            yield Input(id="promise-date", max_length=10, restrict=r"[0-9-]*")
            yield Label(
                t("visit.promise_amount", currency=app.ledger.currency),
                id="amount-label",
            )
            yield AmountInput(
                id="promise-amount",
                exponent=app.ledger.exponent,
                locale=app.ledger.device.locale,
            )
            yield Label(t("visit.note"))
            yield Input(id="note", max_length=1000)
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        week = (self.kiosk.now() + timedelta(days=7)).date().isoformat()
        self.query_one("#promise-date", Input).value = week
        expected = self.row["due_today"] or self.row["arrears"]
        if expected:
            self.query_one("#promise-amount", AmountInput).set_minor(expected)
        options = self.query_one("#outcome", OptionList)
        options.highlighted = 0
        options.focus()
        self._promise_fields()

    @property
    def outcome(self) -> str:
        options = self.query_one("#outcome", OptionList)
        return OUTCOMES[options.highlighted or 0]

    def _promise_fields(self) -> None:
        shown = self.outcome == "promise"
        for name in ("date-label", "promise-date", "amount-label", "promise-amount"):
            self.query_one(f"#{name}").display = shown

    def on_option_list_option_highlighted(
        self, _: OptionList.OptionHighlighted
    ) -> None:
        self._promise_fields()

    def on_option_list_option_selected(self, _: OptionList.OptionSelected) -> None:
        self._promise_fields()
        target = "#promise-date" if self.outcome == "promise" else "#note"
        self.query_one(target).focus()

    def action_pick(self, number: int) -> None:
        options = self.query_one("#outcome", OptionList)
        if options.has_focus:
            options.highlighted = number - 1
            options.action_select()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "promise-date":
            self.query_one("#promise-amount").focus()
            return
        if event.input.id == "promise-amount":
            self.query_one("#note").focus()
            return
        self.save()

    def save(self) -> None:
        app = self.kiosk
        assert app.actor is not None
        outcome = self.outcome
        kwargs: dict[str, Any] = {"note": self.query_one("#note", Input).value}
        if outcome == "promise":
            field = self.query_one("#promise-amount", AmountInput)
            try:
                kwargs["promise_amount"] = field.minor
            except KioskError as exc:
                field.focus()
                self.show_problem(exc)
                return
            kwargs["promise_date"] = self.query_one("#promise-date", Input).value
        self.ledger_call(
            app.ledger.visit,
            app.actor,
            self.row["contract"],
            outcome,
            done=self._saved,
            **kwargs,
        )

    def _saved(self, result: dict[str, Any]) -> None:
        self.kiosk.notify(
            self.t("visit.saved", outcome=self.t(f"outcome.{result['outcome']}"))
        )
        self.dismiss()

    def action_back(self) -> None:
        self.dismiss()


class AmountForm(KioskScreen):
    """A form around one amount field: the hint, the problem line, Escape."""

    def amount_field(self, *, allow_zero: bool = False) -> AmountInput:
        ledger = self.kiosk.ledger
        return AmountInput(
            id="amount",
            exponent=ledger.exponent,
            locale=ledger.device.locale,
            allow_zero=allow_zero,
        )

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#amount").focus()

    def on_amount_input_refused(self, event: AmountInput.Refused) -> None:
        self.query_one("#hint", Plain).update(self.t(event.reason))

    def action_back(self) -> None:
        self.dismiss()


class DepositScreen(AmountForm):
    """Cash handed in at the branch, with the slip's reference."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "back", "key.back"),
        Binding("f7", "fill", "key.fill_held"),
    ]

    def compose(self) -> ComposeResult:
        t, app = self.t, self.kiosk
        yield KioskHeader()
        with Vertical(id="deposit", classes="panel"):
            yield Plain(t("deposit.title"), classes="title")
            yield Plain(t("deposit.held", amount=app.money(app.held)), id="held")
            yield Label(t("deposit.amount", currency=app.ledger.currency))
            yield self.amount_field()
            yield Plain(id="hint", classes="hint")
            yield Label(t("deposit.ref"))
            yield Input(id="ref", max_length=64)
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def action_fill(self) -> None:
        self.query_one("#amount", AmountInput).set_minor(self.kiosk.held)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        field = self.query_one("#amount", AmountInput)
        ref = self.query_one("#ref", Input)
        try:
            amount = field.minor
        except KioskError as exc:
            field.focus()
            self.show_problem(exc)
            return
        if not ref.value.strip():
            ref.focus()
            return
        app = self.kiosk
        assert app.actor is not None
        actor = app.actor

        def answered(yes: bool | None) -> None:
            if yes:
                self.ledger_call(
                    app.ledger.deposit, actor, amount, ref.value, done=self._saved
                )

        text = self.t("deposit.confirm", amount=app.money(amount), ref=ref.value)
        self.app.push_screen(ConfirmScreen(text), answered)

    def _saved(self, result: dict[str, Any]) -> None:
        app = self.kiosk
        app.held = int(result["held_after"])
        app.refresh_state()
        app.notify(self.t("deposit.saved", amount=app.money(result["amount"])))
        self.dismiss()


class OpenDayScreen(AmountForm):
    """The collector opens the day, with the float handed over (0 for none)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "back", "key.back"),
    ]

    def compose(self) -> ComposeResult:
        t, app = self.t, self.kiosk
        yield KioskHeader()
        with Vertical(id="open-day", classes="panel"):
            yield Plain(t("day.title"), classes="title")
            yield Plain(t("day.carried", amount=app.money(app.held)), id="held")
            yield Label(t("day.float", currency=app.ledger.currency))
            yield self.amount_field(allow_zero=True)
            yield Plain(id="hint", classes="hint")
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        field = self.query_one("#amount", AmountInput)
        try:
            amount = field.minor if field.value.strip() else 0
        except KioskError as exc:
            field.focus()
            self.show_problem(exc)
            return
        app = self.kiosk
        assert app.actor is not None
        actor = app.actor

        def answered(yes: bool | None) -> None:
            if yes:
                self.ledger_call(app.ledger.open_day, actor, amount, done=self._opened)

        text = self.t("day.confirm", amount=app.money(amount))
        self.app.push_screen(ConfirmScreen(text), answered)

    def _opened(self, result: dict[str, Any]) -> None:
        app = self.kiosk
        app.held = int(result["opening"])
        app.refresh_state()
        app.notify(self.t("day.opened", amount=app.money(result["opening"])))
        self.dismiss()


class VoidScreen(KioskScreen):
    """A supervisor reverses a payment by its receipt number, with a reason."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "back", "key.back"),
    ]

    FIELDS = ("receipt", "reason", "sup-id", "sup-pin")

    def compose(self) -> ComposeResult:
        t = self.t
        yield KioskHeader()
        with Vertical(id="void", classes="panel"):
            yield Plain(t("void.title"), classes="title")
            yield Label(t("void.receipt"))
            yield Input(
                id="receipt",
                max_length=48,
                placeholder=self.kiosk.ledger.receipt_name(1),
            )
            yield Label(t("void.reason"))
            yield Input(id="reason", max_length=200)
            yield Label(t("override.who"))
            yield Input(id="sup-id", max_length=64)
            yield Label(t("override.pin"))
            yield Input(id="sup-pin", password=True, restrict=r"\d*", max_length=12)
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#receipt").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        fields = {n: self.query_one(f"#{n}", Input) for n in self.FIELDS}
        for name in self.FIELDS:
            if not fields[name].value.strip():
                fields[name].focus()
                return
        self.ledger_call(
            self.kiosk.ledger.authenticate,
            fields["sup-id"].value.strip(),
            fields["sup-pin"].value,
            done=self._supervisor,
            failed=self._refused,
        )

    def _refused(self, exc: KioskError) -> None:
        pin = self.query_one("#sup-pin", Input)
        pin.value = ""
        self.show_problem(exc)

    def _supervisor(self, supervisor: Actor) -> None:
        receipt = self.query_one("#receipt", Input).value.strip()
        reason = self.query_one("#reason", Input).value.strip()
        if not supervisor.is_supervisor:
            self.query_one("#sup-pin", Input).value = ""
            self.show_problem(self.t("void.not_supervisor", who=supervisor.id))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.ledger_call(
                    self.kiosk.ledger.void,
                    receipt,
                    reason,
                    supervisor,
                    done=self._voided,
                    failed=self._refused,
                )

        text = self.t("void.confirm", receipt=receipt, reason=reason)
        self.app.push_screen(ConfirmScreen(text), answered)

    def _voided(self, result: dict[str, Any]) -> None:
        app = self.kiosk
        app.refresh_state()
        app.notify(
            self.t(
                "void.saved",
                receipt=result["receipt"],
                amount=app.money(result["amount"]),
            )
        )
        self.dismiss()

    def action_back(self) -> None:
        self.dismiss()
