"""The kiosk's screens driven through Pilot at 80x24, checked on screen and in
the ledger: every flow a collector or supervisor goes through."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from kiosk.clock import Clock
from kiosk.service import Service
from kiosk.ui import lang_en, lang_id
from kiosk.ui.app import KioskApp
from kiosk.ui.screens.collect import CollectScreen, ReceiptScreen
from kiosk.ui.screens.customer import CustomerScreen
from kiosk.ui.screens.dialogs import ConfirmScreen, OverrideScreen
from kiosk.ui.screens.forms import DepositScreen, VisitScreen, VoidScreen
from kiosk.ui.screens.report import CloseDayScreen, ReportScreen
from kiosk.ui.screens.signin import SignInScreen
from kiosk.ui.screens.small import TooSmallScreen
from kiosk.ui.screens.today import TodayScreen
from kiosk.ui.widgets import AmountInput, Plain, normalise_amount
from tests.factories import PIN, SUPERVISOR_PIN, make_config, make_document

SNAPSHOTS = Path(__file__).parent / "snapshots"
# 10:00 in Jakarta on a fixed day, so dates, arrears and the clock never move.
FIXED = datetime(2026, 11, 16, 3, 0, tzinfo=UTC)
DAY = "2026-11-16"
HERE = "fixed:-6.9147,107.6098"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build_service(tmp_path: Path, customers: int = 6, **sections: Any) -> Service:
    """A service over a fresh store with a fixed clock, a fixed place and a round
    in which contract K-0002 has an installment due today."""
    sections.setdefault("gps", {"source": HERE})
    sections.setdefault("device", {}).setdefault("language", "en")
    config = make_config(tmp_path, **sections)
    service = Service(config)
    service.ledger.clock = Clock(config.time.trust, wall=FIXED.timestamp)
    doc = make_document(customers, date=DAY)
    if customers > 1:
        doc["contracts"][1]["installments"][2]["due"] = DAY
    service.ledger.import_document(doc)
    return service


Flow = Callable[[Pilot[Any], KioskApp], Awaitable[None]]


def drive(service: Service, flow: Flow, **options: Any) -> None:
    """Run the app over the service at 80x24 and play the flow on it."""
    options.setdefault("cursor_blink", False)
    options.setdefault("ascii_only", False)

    async def main() -> None:
        app = KioskApp(service, **options)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await flow(pilot, app)

    asyncio.run(main())


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until every ledger call has answered and the screen has redrawn."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def type_text(pilot: Pilot[Any], value: str) -> None:
    await pilot.press(*value)


async def sign_in(pilot: Pilot[Any], who: str = "c1", pin: str = PIN) -> None:
    await type_text(pilot, who)
    await pilot.press("enter")
    await type_text(pilot, pin)
    await pilot.press("enter")
    await settle(pilot)


def screen_text(app: KioskApp) -> str:
    """The screen as plain text, as a person reads it."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def check_snapshot(app: KioskApp, name: str) -> None:
    """Compare with tests/snapshots/NAME.txt; UPDATE_SNAPSHOTS=1 rewrites it."""
    got = screen_text(app)
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(got + "\n", encoding="utf-8")
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(f"new snapshot {path.name} written; check it and run again")
    assert got + "\n" == path.read_text(encoding="utf-8")


def rows(service: Service, sql: str, **params: Any) -> list[Any]:
    with service.ledger.store.read() as conn:
        return list(conn.execute(text(sql), params).all())


def table_names(app: KioskApp) -> list[str]:
    table = app.screen.query_one("#list", DataTable)
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


# --- catalogues and the amount field -------------------------------------------


def test_catalogues_have_the_same_keys_and_fields() -> None:
    """Indonesian and English name the same texts with the same fields."""
    assert set(lang_en.WORDS) == set(lang_id.WORDS)
    for key, english in lang_en.WORDS.items():
        fields_en = sorted(part.split("}")[0] for part in english.split("{")[1:])
        fields_id = sorted(
            part.split("}")[0] for part in lang_id.WORDS[key].split("{")[1:]
        )
        assert fields_en == fields_id, key


@pytest.mark.parametrize(
    ("typed", "locale", "exponent", "shown", "problem"),
    [
        ("1500000", "id", 0, "1.500.000", ""),
        ("1.500.000", "id", 0, "1.500.000", ""),
        ("1,500,000", "en", 0, "1,500,000", ""),
        ("1e5", "id", 0, "", "amount.only_digits"),
        ("e", "id", 0, "", "amount.only_digits"),
        ("-500", "id", 0, "", "amount.only_digits"),
        ("+500", "id", 0, "", "amount.only_digits"),
        ("500,5", "id", 0, "", "amount.no_decimals"),
        ("12.50", "en", 2, "12.50", ""),
        ("12.505", "en", 2, "", "amount.too_many_decimals"),
        ("1.2.3", "en", 2, "", "amount.one_decimal"),
        ("١٥٠٠٠٠٠", "id", 0, "1.500.000", ""),
        ("１５００", "id", 0, "1.500", ""),
        ("5 000", "id", 0, "", "amount.only_digits"),
        ("0001500", "id", 0, "1.500", ""),
    ],
)
def test_amount_field_groups_and_refuses(
    typed: str, locale: str, exponent: int, shown: str, problem: str
) -> None:
    """Amounts are regrouped as typed; exponents, signs and stray separators are
    refused; digits of other scripts are read as 0-9."""
    result = normalise_amount(typed, exponent, locale)
    assert result.problem == problem
    assert result.text == shown


# --- sign-in ------------------------------------------------------------------


def test_sign_in_shows_the_round_and_wrong_pins_lock_out(tmp_path: Path) -> None:
    """A wrong PIN says so and clears the field; five lock the collector out;
    the right PIN opens today's round."""
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        assert isinstance(app.screen, SignInScreen)
        await sign_in(pilot, "c1", "0000")
        assert isinstance(app.screen, SignInScreen)
        problem = str(app.screen.query_one("#problem", Plain).render())
        assert "PIN" in problem
        assert app.screen.query_one("#pin", Input).value == ""
        for _ in range(5):
            await type_text(pilot, "0000")
            await pilot.press("enter")
            await settle(pilot)
        problem = str(app.screen.query_one("#problem", Plain).render())
        assert "Wait, or ask a supervisor" in problem

        # Locked out even with the right PIN.
        await type_text(pilot, PIN)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        assert app.actor is None

    drive(service, flow)


def test_sign_in_opens_today_and_idle_signs_out(tmp_path: Path) -> None:
    """After the idle timeout without a key the kiosk returns to sign-in."""
    service = build_service(tmp_path, ui={"idle_timeout_s": 60})
    clock = FakeMonotonic()

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert app.actor is not None and app.actor.id == "c1"
        assert len(table_names(app)) == 6

        clock.now += 30
        assert not app.sign_out_if_idle()
        clock.now += 31
        assert app.sign_out_if_idle()
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        assert app.actor is None
        problem = str(app.screen.query_one("#problem", Plain).render())
        assert "without use" in problem

    drive(service, flow, monotonic=clock)


def test_sign_in_says_hq_lock_and_untrusted_clock(tmp_path: Path) -> None:
    """Before anyone signs in, the screen says HQ locked the device and why, and
    that the clock cannot be trusted."""
    service = build_service(tmp_path, time={"trust": "network_or_gps"})
    service.ledger.clock = Clock(
        "network_or_gps", wall=FIXED.timestamp, synchronised=lambda: False
    )
    service.ledger.set_lock("audit of branch cash")

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        notices = str(app.screen.query_one("#notices", Plain).render())
        assert "HQ has locked this device: audit of branch cash" in notices
        assert "Collecting is paused" in notices

    drive(service, flow)


# --- today ----------------------------------------------------------------------


def test_today_filters_as_typed_and_sorts(tmp_path: Path) -> None:
    """Typing filters by name, contract or address; F5 cycles the order."""
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        await type_text(pilot, "budi")
        assert table_names(app) == ["Budi Santoso"]
        await pilot.press("escape")
        await type_text(pilot, "K-0004")
        assert table_names(app) == ["Ñoño Pérez"]
        await pilot.press("escape")
        await type_text(pilot, "merdeka no. 3")
        assert table_names(app) == ["José Müller"]
        await pilot.press("escape")
        assert len(table_names(app)) == 6

        screen = app.screen
        assert isinstance(screen, TodayScreen)
        await pilot.press("f5")
        assert screen.order == "arrears"
        await pilot.press("f5")
        assert screen.order == "distance"
        # The first customer is registered where the device stands.
        assert table_names(app)[0] == "Siti Nurhaliza"
        marks = [
            str(m) for m in screen.query_one("#list", DataTable).get_column("mark")
        ]
        assert "!*" in marks

    drive(service, flow)


def test_today_snapshot(tmp_path: Path) -> None:
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        check_snapshot(app, "today_en")

    drive(service, flow)


def test_sign_in_snapshot_in_indonesian(tmp_path: Path) -> None:
    service = build_service(tmp_path, device={"language": "id"})

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        check_snapshot(app, "signin_id")

    drive(service, flow)


# --- collecting -------------------------------------------------------------------


def test_collect_with_preview_receipt_and_ledger(tmp_path: Path) -> None:
    """The amount groups as typed, the preview shows the oldest installment
    first, Enter and a confirmation take it, and the receipt shows."""
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, CollectScreen)
        await type_text(pilot, "750000")
        await settle(pilot)
        field = app.screen.query_one("#amount", AmountInput)
        assert field.value == "750.000"
        preview = str(app.screen.query_one("#allocation", Plain).render())
        assert "#1 500.000" in preview and "#2 250.000" in preview
        meter = str(app.screen.query_one("#meter", Plain).render())
        assert "750.000 / 10.000.000" in meter
        location = str(app.screen.query_one("#location", Plain).render())
        assert "at the customer" in location
        check_snapshot(app, "collect_en")

        # A refused keystroke says why and changes nothing.
        await type_text(pilot, "e")
        assert field.value == "750.000"
        assert "exponents" in str(app.screen.query_one("#hint", Plain).render())

        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReceiptScreen)
        receipt = str(app.screen.query_one("#receipt-text", Plain).render())
        assert "KIOSK-01-000001" in receipt
        assert "750.000" in receipt
        state = str(app.screen.query_one("#print-state", Plain).render())
        assert "waiting for the printer" in state
        assert app.held == 750_000

        await pilot.press("f8")
        await settle(pilot)
        assert rows(service, "SELECT kind FROM printjob ORDER BY id") == [
            ("receipt",),
            ("reprint",),
        ]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)

        payment = rows(service, "SELECT contract_id, amount, collector_id FROM payment")
        assert payment == [("K-0001", 750_000, "c1")]
        paid = rows(
            service,
            "SELECT no, paid FROM installment WHERE contract_id='K-0001' ORDER BY no",
        )
        assert paid[:2] == [(1, 500_000), (2, 250_000)]

    drive(service, flow)


def test_collect_shortcuts_fill_due_today_and_arrears(tmp_path: Path) -> None:
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        await pilot.press("down", "f2")
        await settle(pilot)
        field = app.screen.query_one("#amount", AmountInput)
        await pilot.press("f6")
        assert field.value == "500.000"
        await pilot.press("f7")
        assert field.value == "1.000.000"

    drive(service, flow)


def test_collect_over_the_limit_needs_a_supervisor(tmp_path: Path) -> None:
    """A limit refusal offers the override; the supervisor's sign-off is stored."""
    service = build_service(
        tmp_path, cash={"max_in_hand": 1_000_000, "max_payment": 1_000_000}
    )

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        await pilot.press("f2")
        await settle(pilot)
        await type_text(pilot, "1200000")
        await settle(pilot)
        assert "OVER LIMIT" in str(app.screen.query_one("#meter", Plain).render())
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OverrideScreen)
        await type_text(pilot, "s1")
        await pilot.press("enter")
        await type_text(pilot, SUPERVISOR_PIN)
        await pilot.press("enter")
        await type_text(pilot, "customer paying off the year")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReceiptScreen)
        assert rows(
            service, "SELECT amount, override_by, override_reason FROM payment"
        ) == [(1_200_000, "s1", "customer paying off the year")]

    drive(service, flow)


def test_collect_away_from_the_customer_asks_a_reason(tmp_path: Path) -> None:
    """Outside the radius the policy wants a reason before Enter takes it."""
    service = build_service(tmp_path, gps={"source": "fixed:-6.95,107.65"})

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        await pilot.press("f2")
        await settle(pilot)
        location = str(app.screen.query_one("#location", Plain).render())
        assert "from the customer's place" in location
        assert app.screen.query_one("#reason", Input).display
        await type_text(pilot, "500000")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one("#reason", Input).has_focus
        assert "needs a reason" in str(app.screen.query_one("#problem", Plain).render())
        await type_text(pilot, "met at the market")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReceiptScreen)
        assert rows(service, "SELECT location_reason FROM payment") == [
            ("met at the market",)
        ]

    drive(service, flow)


# --- visits, deposits, voids, the day -------------------------------------------------


def test_promise_to_pay_is_recorded(tmp_path: Path) -> None:
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, VisitScreen)
        await pilot.press("1")
        date = app.screen.query_one("#promise-date", Input)
        assert date.has_focus
        date.value = ""
        await type_text(pilot, "2026-11-20")
        await pilot.press("enter")
        amount = app.screen.query_one("#promise-amount", AmountInput)
        assert amount.has_focus
        amount.value = ""
        await type_text(pilot, "250000")
        await pilot.press("enter")
        await type_text(pilot, "pays after harvest")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert rows(
            service,
            "SELECT contract_id, outcome, promise_date, promise_amount, note FROM visit",
        ) == [("K-0001", "promise", "2026-11-20", 250_000, "pays after harvest")]
        outcome = app.screen.query_one("#list", DataTable).get_row_at(0)[5]
        assert str(outcome) == "promise to pay"

    drive(service, flow)


def test_deposit_void_and_close_the_day(tmp_path: Path) -> None:
    """Collect twice, deposit part, void one with a supervisor, close the day
    with a count: the variance is shown before it is confirmed and stored."""
    service = build_service(tmp_path)
    ledger = service.ledger
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 500_000)
    ledger.collect(budi, "K-0002", 300_000)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot)
        assert app.held == 800_000

        await pilot.press("f4")
        await settle(pilot)
        assert isinstance(app.screen, DepositScreen)
        await type_text(pilot, "400000")
        await pilot.press("tab")
        await type_text(pilot, "SLIP-7")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert app.held == 400_000

        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, VoidScreen)
        for value in ("KIOSK-01-000002", "wrong contract", "s1", SUPERVISOR_PIN):
            await type_text(pilot, value)
            await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert app.held == 100_000

        await pilot.press("f6")
        await settle(pilot)
        assert isinstance(app.screen, ReportScreen)
        figures = str(app.screen.query_one("#figures", Plain).render())
        assert "800.000" in figures and "400.000" in figures
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, CloseDayScreen)
        await type_text(pilot, "90000")
        variance = str(app.screen.query_one("#variance", Plain).render())
        assert "IDR 10.000 SHORT" in variance
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)

    drive(service, flow)
    assert rows(
        service, "SELECT ref, amount FROM cashmovement WHERE kind='deposit'"
    ) == [("SLIP-7", -400_000)]
    assert rows(
        service, "SELECT void_by, void_reason FROM payment WHERE receipt_no=2"
    ) == [("s1", "wrong contract")]
    assert rows(service, "SELECT counted, variance FROM businessday") == [
        (90_000, -10_000)
    ]


def test_indonesian_screens_and_refusal(tmp_path: Path) -> None:
    """In Indonesian the words come from the Indonesian catalogue, and a refusal
    still says what to do next."""
    service = build_service(tmp_path, device={"language": "id"})

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await sign_in(pilot, "c1", "0000")
        problem = str(app.screen.query_one("#problem", Plain).render())
        assert "Ketik PIN lagi." in problem
        await type_text(pilot, PIN)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert "urut prioritas" in str(app.screen.query_one("#banner", Plain).render())
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CustomerScreen)
        body = str(app.screen.query_one("#cust-body", Plain).render())
        assert "TERLAMBAT" in body and "Telepon" in body
        check_snapshot(app, "customer_id")

    drive(service, flow)


# --- the terminal ---------------------------------------------------------------------


def test_too_small_terminal_says_so_and_recovers(tmp_path: Path) -> None:
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        await pilot.resize_terminal(40, 12)
        await settle(pilot)
        assert isinstance(app.screen, TooSmallScreen)
        assert "too small (40x12)" in screen_text(app)
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)

    drive(service, flow)


def test_no_ctrl_s_or_ctrl_q_and_high_contrast(tmp_path: Path) -> None:
    """Ctrl+Q and Ctrl+S do nothing; the high-contrast theme is chosen by config
    and ASCII mode keeps the focused field boxed with ASCII characters."""
    service = build_service(tmp_path, ui={"theme": "high_contrast"})

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        assert app.theme == "kiosk-high-contrast"
        await pilot.press("ctrl+q", "ctrl+s")
        await settle(pilot)
        assert app.is_running and isinstance(app.screen, SignInScreen)
        shown = screen_text(app)
        assert "+----" in shown
        assert all(ord(ch) < 128 for line in shown.splitlines()[1:10] for ch in line)

    drive(service, flow, ascii_only=True)


def test_open_the_day_with_a_float(tmp_path: Path) -> None:
    """F10 opens the day with the float handed over; the cash held shows it and
    the ledger journals the opening."""
    service = build_service(tmp_path)

    async def flow(pilot: Pilot[Any], app: KioskApp) -> None:
        from kiosk.ui.screens.forms import OpenDayScreen

        await sign_in(pilot)
        await pilot.press("f10")
        await settle(pilot)
        assert isinstance(app.screen, OpenDayScreen)
        await type_text(pilot, "200000")
        assert app.screen.query_one("#amount", AmountInput).value == "200.000"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TodayScreen)
        assert app.held == 200_000
        opened = rows(service, "SELECT opening FROM businessday")
        assert opened == [(200_000,)]
        assert rows(service, "SELECT type FROM journal") == [("day_open",)]

        # A second opening is refused with what to do.
        await pilot.press("f10")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        problem = str(app.screen.query_one("#problem", Plain).render())
        assert "already has an open day" in problem

    drive(service, flow)
