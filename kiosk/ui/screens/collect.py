"""Taking a payment: amount, allocation preview, limits, location, receipt."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Label

from kiosk.errors import KioskError
from kiosk.ledger import Override
from kiosk.location import LocationCheck
from kiosk.printjobs import LedgerPrintJobs
from kiosk.receipt import ReceiptSettings, render_lines, render_text
from kiosk.ui.screens.base import ENTER, KioskScreen
from kiosk.ui.screens.dialogs import ConfirmScreen, OverrideScreen
from kiosk.ui.widgets import AmountInput, KeyBar, KioskHeader, Plain, meter_bar

log = logging.getLogger(__name__)

# Refusals a supervisor may lift for one payment.
OVERRIDABLE = ("cash_limit", "offline_limit")


class CollectScreen(KioskScreen):
    """The amount is typed in the locale's grouping; Enter confirms."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ENTER,
        Binding("escape", "back", "key.back"),
        Binding("f6", "fill('due')", "key.fill_due"),
        Binding("f7", "fill('arrears')", "key.fill_arrears"),
    ]

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row
        self.location: LocationCheck | None = None
        self.override: Override | None = None

    def compose(self) -> ComposeResult:
        t, app, row = self.t, self.kiosk, self.row
        yield KioskHeader()
        with Vertical(id="collect", classes="panel"):
            yield Plain(f"{row['name']}  {row['contract']}", classes="title")
            yield Plain(
                f"{t('col.arrears')} {app.amount(row['arrears'])}   "
                f"{t('col.due_today')} {app.amount(row['due_today'])}   "
                f"{t('customer.balance')} {app.amount(row['balance'])}"
            )
            yield Label(t("collect.amount", currency=app.ledger.currency))
            yield AmountInput(
                id="amount",
                exponent=app.ledger.exponent,
                locale=app.ledger.device.locale,
            )
            yield Plain(id="hint", classes="hint")
            yield Plain(id="allocation")
            yield Plain(id="meter")
            yield Plain(t("collect.location_wait"), id="location")
            yield Label(t("collect.reason"), id="reason-label")
            yield Input(id="reason", max_length=200)
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self._show_reason(False)
        self.query_one("#amount", AmountInput).focus()
        self._meter(0)
        self.ledger_call(
            self.kiosk.ledger.check_location, self.row["contract"], done=self._located
        )

    def _show_reason(self, shown: bool) -> None:
        self.query_one("#reason-label").display = shown
        self.query_one("#reason").display = shown

    def _located(self, check: LocationCheck) -> None:
        self.location = check
        t = self.t
        text = t(f"location.{check.result}", distance=check.distance_m or 0)
        if check.message and check.result != "outside":
            text = f"{text} ({check.message})"
        text += "  " + t(f"location_action.{check.action}")
        self.query_one("#location", Plain).update(text)
        self._show_reason(check.action == "require_reason")

    # --- typing ---------------------------------------------------------------

    def on_amount_input_refused(self, event: AmountInput.Refused) -> None:
        self.query_one("#hint", Plain).update(self.t(event.reason))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "amount":
            return
        field = self.query_one("#amount", AmountInput)
        hint = self.t("amount.foreign_digits") if field.foreign_digits else ""
        self.query_one("#hint", Plain).update(hint)
        self.clear_problem()
        amount = field.minor_or_none()
        self._meter(amount or 0)
        if amount is None:
            self.query_one("#allocation", Plain).update("")
            return
        self.ledger_call(
            self.kiosk.ledger.preview_allocation,
            self.row["contract"],
            amount,
            done=self._preview,
            group="preview",
            exclusive=True,
        )

    def _preview(self, split: dict[str, Any]) -> None:
        t, app = self.t, self.kiosk
        parts = [
            t("collect.part", no=p["no"], amount=app.amount(p["amount"]))
            for p in split["parts"]
        ]
        text = t("collect.allocation") + " " + ", ".join(parts)
        if split["leftover"]:
            text += "  " + t("collect.leftover", amount=app.amount(split["leftover"]))
        self.query_one("#allocation", Plain).update(text)

    def _meter(self, amount: int) -> None:
        app = self.kiosk
        limit = app.ledger.policy.cash.max_in_hand
        after = app.held + amount
        state = ""
        if limit and after > limit:
            state = self.t("meter.over")
        elif limit and after * 1000 >= limit * app.ledger.policy.cash.warn_per_mille:
            state = self.t("meter.near")
        self.query_one("#meter", Plain).update(
            self.t(
                "meter.text",
                bar=meter_bar(after, limit),
                held=app.amount(after),
                limit=app.amount(limit) if limit else "-",
                state=state,
            )
        )

    def action_fill(self, which: str) -> None:
        amount = self.row["due_today"] if which == "due" else self.row["arrears"]
        if amount <= 0:
            self.query_one("#hint", Plain).update(self.t(f"collect.nothing_{which}"))
            return
        field = self.query_one("#amount", AmountInput)
        field.set_minor(amount)
        field.focus()

    # --- confirming -------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        field = self.query_one("#amount", AmountInput)
        try:
            amount = field.minor
        except KioskError as exc:
            field.focus()
            self.show_problem(exc)
            return
        reason = self.query_one("#reason", Input)
        if self.location and self.location.action == "block":
            self.show_problem(
                self.t("collect.blocked", message=self.location.message or "")
            )
            return
        if (
            self.location
            and self.location.action == "require_reason"
            and not reason.value.strip()
        ):
            reason.focus()
            self.show_problem(self.t("collect.reason_needed"))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._collect(amount)

        text = self.t(
            "collect.confirm",
            amount=self.kiosk.money(amount),
            name=self.row["name"],
            contract=self.row["contract"],
        )
        self.app.push_screen(ConfirmScreen(text), answered)

    def _collect(self, amount: int) -> None:
        app = self.kiosk
        assert app.actor is not None
        reason = self.query_one("#reason", Input).value.strip() or None
        self.ledger_call(
            app.ledger.collect,
            app.actor,
            self.row["contract"],
            amount,
            reason=reason,
            override=self.override,
            done=self._collected,
            failed=lambda exc: self._refused(exc, amount),
        )

    def _refused(self, exc: KioskError, amount: int) -> None:
        self.show_problem(exc)
        if exc.code == "reason_required":
            self._show_reason(True)
            self.query_one("#reason", Input).focus()
        elif exc.code in OVERRIDABLE and self.override is None:

            def granted(override: Override | None) -> None:
                if override is not None:
                    self.override = override
                    self._collect(amount)

            self.app.push_screen(OverrideScreen(self.explain(exc)), granted)

    def _collected(self, result: dict[str, Any]) -> None:
        app = self.kiosk
        app.refresh_state()
        for warning in result.get("warnings", []):
            app.notify(warning, severity="warning", timeout=8)

        # The preview is the stored print job itself, so it shows exactly what
        # the paper shows, an override block included.
        def show(payload: dict[str, Any]) -> None:
            app.switch_screen(
                ReceiptScreen({**payload, "print_job": result["print_job"]})
            )

        self.ledger_call(app.ledger.receipt_payload, result["receipt"], done=show)

    def action_back(self) -> None:
        self.dismiss()


class ReceiptScreen(KioskScreen):
    """The receipt as printed, whether it reached paper, and a reprint key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "done", "key.done"),
        Binding("enter", "done", "key.done", show=False),
        Binding("f8", "reprint", "key.reprint"),
        Binding("up", "scroll(-1)", show=False),
        Binding("down", "scroll(1)", show=False),
    ]

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__()
        self.payload = payload
        self.jobs = [int(payload["print_job"])]

    def compose(self) -> ComposeResult:
        settings = ReceiptSettings.from_config(self.kiosk.config)
        text = render_text(render_lines(self.payload, settings), settings.columns)
        yield KioskHeader()
        yield Plain(
            self.t("receipt.title", receipt=self.payload["receipt"]), classes="title"
        )
        with VerticalScroll(id="receipt-box", classes="panel"):
            yield Plain(text, id="receipt-text")
        yield Plain(self.t("receipt.queued"), id="print-state")
        yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#receipt-box").focus()
        self.check_print()
        self.set_interval(2.0, self.check_print)

    def check_print(self) -> None:
        self.ledger_call(
            LedgerPrintJobs(self.kiosk.ledger).waiting,
            done=self._print_state,
            group="print",
            exclusive=True,
        )

    def _print_state(self, waiting: list[dict[str, Any]]) -> None:
        job = next((j for j in waiting if j["id"] == self.jobs[-1]), None)
        if job is None:
            text = self.t("receipt.printed")
        elif job["status"] == "failed":
            text = self.t("receipt.failed", error=job["last_error"] or "-")
        else:
            text = self.t("receipt.queued")
        self.query_one("#print-state", Plain).update(text)

    def action_reprint(self) -> None:
        def queued(result: dict[str, Any]) -> None:
            self.jobs.append(int(result["print_job"]))
            self.kiosk.notify(self.t("receipt.reprint_queued", copy=result["copy"]))
            self.check_print()

        self.ledger_call(
            self.kiosk.ledger.reprint, self.payload["receipt"], done=queued
        )

    def action_scroll(self, step: int) -> None:
        self.query_one("#receipt-box", VerticalScroll).scroll_relative(y=step)

    def action_done(self) -> None:
        self.dismiss()
