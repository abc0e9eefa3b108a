"""Today's round: the assignments, sorted and filtered as the collector types."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Input, Static

from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.widgets import KeyBar, KioskHeader, Plain

log = logging.getLogger(__name__)

SORTS = ("priority", "arrears", "distance")
# A table redraw costs time per row; nobody scrolls past a hundred rows on a
# 24-line screen, so a longer round is narrowed by typing instead.
MAX_SHOWN = 100


def sort_rows(rows: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """Priority first-to-last, arrears largest first, distance nearest first."""
    if order == "arrears":
        return sorted(rows, key=lambda r: (-r["arrears"], r["priority"]))
    if order == "distance":
        far = float("inf")
        return sorted(
            rows,
            key=lambda r: (
                far if r["distance_m"] is None else r["distance_m"],
                r["priority"],
            ),
        )
    return sorted(rows, key=lambda r: (r["priority"], r["assignment"]))


def search_key(row: dict[str, Any]) -> str:
    return " ".join(
        str(row.get(k) or "") for k in ("name", "contract", "address", "customer")
    ).casefold()


def filter_rows(rows: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Rows whose name, contract or address hold every typed word."""
    words = text.casefold().split()
    if not words:
        return rows
    return [r for r in rows if all(w in r["_key"] for w in words)]


def marks(row: dict[str, Any]) -> str:
    """Letters, not colour: ``!`` overdue, ``*`` due today, ``P`` promise today."""
    out = ""
    if row["arrears"] > 0:
        out += "!"
    if row["due_today"] > 0:
        out += "*"
    if row.get("promise_due"):
        out += "P"
    return out


def distance_text(metres: int | None) -> str:
    if metres is None:
        return "-"
    if metres < 1000:
        return f"{metres} m"
    return f"{metres / 1000:.1f} km"


class TodayScreen(KioskScreen):
    """The assignment list; Enter opens the customer, F-keys do the rest."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit_focused", "key.open"),
        Binding("escape", "back", "key.sign_out"),
        Binding("f2", "collect", "key.collect"),
        Binding("f3", "visit", "key.visit"),
        Binding("f4", "deposit", "key.deposit"),
        Binding("f5", "sort", "key.sort"),
        Binding("f6", "report", "key.report"),
        Binding("f7", "messages", "key.messages"),
        Binding("f8", "status", "key.status"),
        Binding("f9", "void", "key.void"),
        Binding("f10", "open_day", "key.open_day"),
        Binding("plus", "menu", "key.menu", priority=True),
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
        Binding("pageup", "move(-10)", show=False),
        Binding("pagedown", "move(10)", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.shown: list[dict[str, Any]] = []
        self.order = "priority"
        self.matching = 0

    def compose(self) -> ComposeResult:
        yield KioskHeader()
        yield Plain(id="banner", classes="banner")
        yield Input(id="filter", placeholder=self.t("today.filter"))
        yield DataTable(id="list", cursor_type="row", zebra_stripes=False)
        yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        t = self.t
        table = self.query_one("#list", DataTable)
        table.can_focus = False
        table.add_column(" ", key="mark", width=3)
        table.add_column(t("col.customer"), key="name", width=20)
        table.add_column(t("col.arrears"), key="arrears", width=11)
        table.add_column(t("col.due_today"), key="due", width=10)
        table.add_column(t("col.distance"), key="distance", width=7)
        table.add_column(t("col.outcome"), key="outcome", width=10)
        self.query_one("#problem").display = False
        self.query_one("#filter", Input).focus()
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    def ledger_changed(self) -> None:
        self.load()

    def load(self) -> None:
        actor = self.kiosk.actor
        if actor is None:
            return
        self.ledger_call(
            self.kiosk.ledger.today,
            None if actor.is_supervisor else actor.id,
            done=self._loaded,
            group="today",
            exclusive=True,
        )

    def _loaded(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            row["_key"] = search_key(row)
        self.rows = rows
        self.show()

    def show(self) -> None:
        """Redraw the table from the rows, the order and the filter text."""
        table = self.query_one("#list", DataTable)
        selected = self.selected()
        text = self.query_one("#filter", Input).value
        matching = sort_rows(filter_rows(self.rows, text), self.order)
        self.matching = len(matching)
        self.shown = matching[:MAX_SHOWN]
        app = self.kiosk
        t = self.t
        table.clear()
        table.add_rows(
            (
                marks(r),
                r["name"],
                app.amount(r["arrears"]),
                app.amount(r["due_today"]) if r["due_today"] else "-",
                distance_text(r["distance_m"]),
                t(f"outcome.{r['outcome']}") if r["outcome"] else "-",
            )
            for r in self.shown
        )
        if selected is not None:
            for index, row in enumerate(self.shown):
                if row["assignment"] == selected["assignment"]:
                    table.move_cursor(row=index)
                    break
        self._banner()

    def _banner(self) -> None:
        t = self.t
        promises = sum(1 for r in self.rows if r.get("promise_due"))
        parts = [
            t("today.count", shown=self.matching, total=len(self.rows)),
            t("today.sorted", order=t(f"sort.{self.order}")),
            t("today.legend"),
        ]
        if promises:
            parts.insert(1, t("today.promises", n=promises))
        if self.matching > len(self.shown):
            parts.insert(1, t("today.narrow", n=len(self.shown)))
        clock = self.kiosk.state.get("time", {})
        if clock and not clock.get("trusted", True):
            parts.insert(0, t("today.clock"))
        self.query_one("#banner", Static).update("  ".join(parts))

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#list", DataTable)
        if not self.shown or table.cursor_row < 0:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        row = self.selected()
        if row is not None:
            from kiosk.ui.screens.customer import CustomerScreen

            self.app.push_screen(CustomerScreen(row))

    def action_move(self, step: int) -> None:
        table = self.query_one("#list", DataTable)
        if self.shown:
            row = max(0, min(len(self.shown) - 1, table.cursor_row + step))
            table.move_cursor(row=row)

    def action_sort(self) -> None:
        self.order = SORTS[(SORTS.index(self.order) + 1) % len(SORTS)]
        self.show()

    def action_back(self) -> None:
        field = self.query_one("#filter", Input)
        if field.value:
            field.value = ""
            return
        self.kiosk.sign_out()

    def action_collect(self) -> None:
        from kiosk.ui.screens.collect import CollectScreen

        row = self.selected()
        if row is not None:
            self.app.push_screen(CollectScreen(row))

    def action_visit(self) -> None:
        from kiosk.ui.screens.forms import VisitScreen

        row = self.selected()
        if row is not None:
            self.app.push_screen(VisitScreen(row))

    def action_deposit(self) -> None:
        from kiosk.ui.screens.forms import DepositScreen

        self.app.push_screen(DepositScreen())

    def action_open_day(self) -> None:
        from kiosk.ui.screens.forms import OpenDayScreen

        self.app.push_screen(OpenDayScreen())

    def action_report(self) -> None:
        from kiosk.ui.screens.report import ReportScreen

        self.app.push_screen(ReportScreen())

    def action_messages(self) -> None:
        from kiosk.ui.screens.info import MessagesScreen

        self.app.push_screen(MessagesScreen())

    def action_status(self) -> None:
        from kiosk.ui.screens.info import StatusScreen

        self.app.push_screen(StatusScreen())

    def action_void(self) -> None:
        from kiosk.ui.screens.forms import VoidScreen

        self.app.push_screen(VoidScreen())

    def action_menu(self) -> None:
        from kiosk.ui.screens.dialogs import MenuScreen

        def chosen(action: str | None) -> None:
            if action:
                getattr(self, f"action_{action}")()

        self.app.push_screen(MenuScreen(self._menu()), chosen)

    def _menu(self) -> list[tuple[str, str]]:
        t = self.t
        return [
            ("collect", t("key.collect")),
            ("visit", t("key.visit")),
            ("deposit", t("key.deposit")),
            ("sort", t("key.sort")),
            ("report", t("key.report")),
            ("messages", t("key.messages")),
            ("status", t("key.status")),
            ("void", t("key.void")),
            ("open_day", t("key.open_day")),
            ("back", t("key.sign_out")),
        ]
