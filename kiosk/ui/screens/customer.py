"""One customer and contract: contact, place, schedule, payments, visit notes."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.widgets import KeyBar, KioskHeader, Plain

log = logging.getLogger(__name__)


class CustomerScreen(KioskScreen):
    """Read-only detail of the assignment's contract."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back"),
        Binding("f2", "collect", "key.collect"),
        Binding("f3", "visit", "key.visit"),
        Binding("up", "scroll(-1)", show=False),
        Binding("down", "scroll(1)", show=False),
    ]

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row
        self.detail: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield KioskHeader()
        with VerticalScroll(id="detail", classes="panel"):
            yield Plain(self.row["name"], id="cust-name", classes="title")
            yield Plain(id="cust-body")
        yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#detail").focus()
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    def load(self) -> None:
        self.ledger_call(
            self.kiosk.ledger.contract_detail, self.row["contract"], done=self._show
        )

    def _show(self, detail: dict[str, Any]) -> None:
        self.detail = detail
        self.query_one("#cust-body", Static).update(self.render_detail(detail))

    def render_detail(self, d: dict[str, Any]) -> str:
        t, app = self.t, self.kiosk
        c = d["customer"]
        place = (
            f"{c['lat']:.5f}, {c['lon']:.5f} (r {c['radius_m'] or '-'} m)"
            if c["lat"] is not None
            else t("customer.no_place")
        )
        lines = [
            f"{t('customer.contract')}: {d['contract']}   {t('customer.id')}: {c['id']}",
            f"{t('customer.phone')}: {c['phone'] or '-'}",
            f"{t('customer.address')}: {c['address'] or '-'}",
            f"{t('customer.place')}: {place}",
            f"{t('col.arrears')}: {app.money(d['arrears'])}   "
            f"{t('customer.balance')}: {app.money(d['balance'])}",
            "",
            t("customer.schedule"),
        ]
        for i in d["schedule"]:
            mark = {"overdue": "!", "paid": " ", "partly paid": "~"}.get(
                i["state"], " "
            )
            lines.append(
                f" {mark} {i['no']:>2}  {i['due']}  {app.amount(i['amount']):>12}  "
                f"{app.amount(i['paid']):>12}  {t('state.' + i['state'])}"
            )
        lines += ["", t("customer.payments")]
        if not d["payments"]:
            lines.append("  " + t("customer.none"))
        for p in d["payments"]:
            void = f"  {t('customer.voided')}" if p["voided"] else ""
            lines.append(
                f"  {p['receipt']}  {p['time'][:16].replace('T', ' ')}  "
                f"{app.amount(p['amount']):>12}{void}"
            )
        lines += ["", t("customer.visits")]
        if not d["visits"]:
            lines.append("  " + t("customer.none"))
        for v in d["visits"]:
            promise = ""
            if v["promise_date"]:
                promise = (
                    f"  {v['promise_date']} {app.amount(v['promise_amount'] or 0)}"
                )
            lines.append(
                f"  {v['time'][:16].replace('T', ' ')}  "
                f"{t('outcome.' + v['outcome'])}{promise}"
            )
            if v["note"]:
                lines.append(f"    {v['note']}")
        return "\n".join(lines)

    def action_scroll(self, step: int) -> None:
        self.query_one("#detail", VerticalScroll).scroll_relative(y=step)

    def action_back(self) -> None:
        self.dismiss()

    def action_collect(self) -> None:
        from kiosk.ui.screens.collect import CollectScreen

        self.app.push_screen(CollectScreen(self.row))

    def action_visit(self) -> None:
        from kiosk.ui.screens.forms import VisitScreen

        self.app.push_screen(VisitScreen(self.row))
