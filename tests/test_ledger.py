"""The ledger's rules: limits, overrides, lockout, voids, deposits and days."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from kiosk.clock import Clock
from kiosk.errors import (
    AmountError,
    BadInput,
    ClockUntrusted,
    DayClosed,
    DeviceLocked,
    LimitRefused,
    LocationRefused,
    LockedOut,
    NotAllowed,
    OfflineTooLong,
    ReasonRequired,
    Refused,
    WrongPin,
)
from kiosk.fix import Fix
from kiosk.ledger import Ledger
from tests.factories import PIN, SUPERVISOR_PIN, make_config, make_document


class FakeWall:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> FakeWall:
    return FakeWall()


def ledger_for(tmp_path: Path, wall: FakeWall | None = None, **sections) -> Ledger:
    config = make_config(tmp_path, **sections)
    clock = Clock(config.time.trust, wall=wall or time.time)
    ledger = Ledger(config, clock=clock)
    ledger.import_document(
        make_document(
            5, date=clock.now().astimezone(config.device.tz).date().isoformat()
        )
    )
    return ledger


@pytest.fixture
def ledger(tmp_path: Path, wall: FakeWall) -> Ledger:
    return ledger_for(tmp_path, wall)


def test_payment_allocates_oldest_first_and_writes_everything_once(
    ledger: Ledger,
) -> None:
    budi = ledger.authenticate("c1", PIN)
    result = ledger.collect(budi, "K-0001", "750.000")

    assert result["receipt"] == "KIOSK-01-000001"
    assert [a["amount"] for a in result["allocations"]] == [500_000, 250_000]
    assert result["balance"] == 4 * 500_000 - 750_000
    assert result["held"] == 750_000
    with ledger.store.read() as conn:
        events = (
            conn.execute(text("SELECT type FROM journal ORDER BY seq")).scalars().all()
        )
        assert events == ["day_open", "payment"]
        assert (
            conn.execute(
                text("SELECT count(*) FROM outbox WHERE lane='money'")
            ).scalar()
            == 2
        )
        job = conn.execute(text("SELECT kind, payload FROM printjob")).one()
        assert job.kind == "receipt"
        assert json.loads(job.payload)["customer"]["name"] == "Siti Nurhaliza"
        assert (
            conn.execute(
                text("SELECT sum(paid) FROM installment WHERE contract_id='K-0001'")
            ).scalar()
            == 750_000
        )


def test_overpayment_refused_unless_policy_keeps_credit(tmp_path: Path) -> None:
    strict = ledger_for(tmp_path / "a")
    budi = strict.authenticate("c1", PIN)
    with pytest.raises(Refused, match="still open"):
        strict.collect(budi, "K-0001", 2_000_001)

    lenient = ledger_for(tmp_path / "b", cash={"allow_overpayment": True})
    budi = lenient.authenticate("c1", PIN)
    result = lenient.collect(budi, "K-0001", 2_100_000)
    assert result["credit"] == 100_000
    assert result["balance"] == 0


def test_cash_limit_refuses_and_says_deposit_then_supervisor_overrides(
    tmp_path: Path,
) -> None:
    ledger = ledger_for(
        tmp_path, cash={"max_in_hand": 1_000_000, "max_payment": 1_000_000}
    )
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 800_000)

    with pytest.raises(LimitRefused, match="deposit first") as refused:
        ledger.collect(budi, "K-0002", 300_000)
    assert "1.100.000" in str(refused.value)

    override = ledger.supervisor_override(
        "s1", SUPERVISOR_PIN, "customer travels tomorrow"
    )
    result = ledger.collect(budi, "K-0002", 300_000, override=override)
    assert result["held"] == 1_100_000
    with ledger.store.read() as conn:
        row = conn.execute(
            text("SELECT override_by, override_reason FROM payment WHERE receipt_no=2")
        ).one()
    assert tuple(row) == ("s1", "customer travels tomorrow")

    # The override let one payment through; the next is refused again.
    with pytest.raises(LimitRefused):
        ledger.collect(budi, "K-0003", 1)


def test_refused_payment_uses_no_receipt_number(tmp_path: Path) -> None:
    ledger = ledger_for(
        tmp_path, cash={"max_payment": 100_000, "max_in_hand": 10_000_000}
    )
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 100_000)
    with pytest.raises(LimitRefused, match="single-payment"):
        ledger.collect(budi, "K-0001", 100_001)
    assert ledger.collect(budi, "K-0001", 50_000)["receipt"] == "KIOSK-01-000002"


def test_daily_cap_and_warning_near_limit(tmp_path: Path) -> None:
    ledger = ledger_for(
        tmp_path,
        cash={"daily_cap": 600_000, "max_in_hand": 700_000, "max_payment": 700_000},
    )
    budi = ledger.authenticate("c1", PIN)
    result = ledger.collect(budi, "K-0001", 580_000)
    assert any("near the limit" in w for w in result["warnings"])
    with pytest.raises(LimitRefused, match="daily cap"):
        ledger.collect(budi, "K-0002", 30_000)


def test_non_supervisor_cannot_override(ledger: Ledger) -> None:
    with pytest.raises(NotAllowed):
        ledger.supervisor_override("c1", PIN, "because")


def test_five_wrong_pins_lock_for_five_minutes(ledger: Ledger) -> None:
    for left in ("4 tries", "3 tries", "2 tries", "1 try"):
        with pytest.raises(WrongPin, match=f"{left} left"):
            ledger.authenticate("c1", "0000")
    with pytest.raises(LockedOut, match="locked"):
        ledger.authenticate("c1", "0000")
    # The right PIN does not help while locked.
    with pytest.raises(LockedOut):
        ledger.authenticate("c1", PIN)
    with ledger.store.write() as conn:
        conn.execute(
            text("UPDATE collector SET locked_until=:t WHERE id='c1'"),
            {"t": time.time() - 1},
        )
    assert ledger.authenticate("c1", PIN).id == "c1"


def test_pin_never_stored_or_journaled(ledger: Ledger) -> None:
    ledger.add_collector("c9", "New", "collector", "482915")
    budi = ledger.authenticate("c9", "482915")
    ledger.open_day(budi, 0)
    with ledger.store.read() as conn:
        dump = "\n".join(
            str(r) for r in conn.execute(text("SELECT * FROM collector")).all()
        )
        dump += "\n".join(
            str(r) for r in conn.execute(text("SELECT * FROM journal")).all()
        )
        dump += "\n".join(
            str(r) for r in conn.execute(text("SELECT * FROM outbox")).all()
        )
    assert "482915" not in dump


def test_void_reverses_allocation_and_cash_and_keeps_number(ledger: Ledger) -> None:
    budi = ledger.authenticate("c1", PIN)
    first = ledger.collect(budi, "K-0001", 600_000)
    ledger.collect(budi, "K-0002", 100_000)
    sari = ledger.authenticate("s1", SUPERVISOR_PIN)

    result = ledger.void(first["receipt"], "wrong contract", sari)
    assert result["amount"] == 600_000
    assert ledger.held_by("c1") == 100_000
    detail = ledger.contract_detail("K-0001")
    assert detail["balance"] == 2_000_000
    assert detail["payments"][0]["voided"] is True

    with pytest.raises(Refused, match="already void"):
        ledger.void(first["receipt"], "again", sari)
    with pytest.raises(NotAllowed):
        ledger.void("KIOSK-01-000002", "x", budi)
    assert ledger.collect(budi, "K-0003", 1000)["receipt"] == "KIOSK-01-000003"


def test_deposit_reduces_cash_never_below_zero(ledger: Ledger) -> None:
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 900_000)
    with pytest.raises(Refused, match="more than that"):
        ledger.deposit(budi, 900_001, "BANK-1")
    result = ledger.deposit(budi, "400.000", "BANK-1")
    assert result["held_after"] == 500_000
    with pytest.raises(AmountError):
        ledger.deposit(budi, "-5", "BANK-2")


def test_days_are_per_collector_and_close_with_variance_and_carry_over(
    tmp_path: Path, wall: FakeWall
) -> None:
    ledger = ledger_for(tmp_path, wall)
    ledger.add_collector("c2", "Agus", "collector", "5555")
    budi = ledger.authenticate("c1", PIN)
    agus = ledger.authenticate("c2", "5555")

    ledger.open_day(budi, "50.000")
    ledger.collect(budi, "K-0001", 500_000)
    ledger.collect(agus, "K-0002", 200_000)
    ledger.deposit(budi, 300_000, "BANK-7")

    x = ledger.report(budi)
    assert (x["opening"], x["collected"], x["deposited"], x["expected"]) == (
        50_000,
        500_000,
        300_000,
        250_000,
    )
    assert ledger.report(agus)["expected"] == 200_000

    z = ledger.report(budi, close=True, counted="240.000")
    assert z["variance"] == -10_000
    assert ledger.held_by("c1") == 240_000
    # Agus's day is untouched by Budi's close.
    assert ledger.report(agus)["expected"] == 200_000

    # Nothing is collected on the closed day; a new day carries the counted cash.
    with pytest.raises(DayClosed, match="closed"):
        ledger.collect(budi, "K-0003", 1000)
    wall.now += 86_400
    ledger.import_document(
        make_document(
            5,
            date=ledger.clock.now().astimezone(ledger.device.tz).date().isoformat(),
            mode="upsert",
        )
    )
    ledger.collect(budi, "K-0003", 1000)
    assert ledger.report(budi)["opening"] == 240_000
    assert ledger.report(budi)["carried"] == 240_000


def test_day_left_open_too_long_must_close_first(
    tmp_path: Path, wall: FakeWall
) -> None:
    ledger = ledger_for(tmp_path, wall)
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 1000)
    wall.now += 25 * 3600
    with pytest.raises(DayClosed, match="close it first"):
        ledger.collect(budi, "K-0001", 1000)
    ledger.report(budi, close=True, counted=1000)
    ledger.collect(budi, "K-0001", 1000)


def test_clock_behind_the_journal_refuses(tmp_path: Path, wall: FakeWall) -> None:
    ledger = ledger_for(tmp_path, wall)
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 1000)
    wall.now -= 3600
    with pytest.raises(ClockUntrusted, match="earlier than the last journal entry"):
        ledger.collect(budi, "K-0001", 1000)


def test_untrusted_clock_refuses_until_gps_corrects_it(tmp_path: Path) -> None:
    config = make_config(tmp_path, time={"trust": "network_or_gps"})
    clock = Clock("network_or_gps", synchronised=lambda: False)
    ledger = Ledger(config, clock=clock)
    ledger.import_document(make_document(2))
    budi = ledger.authenticate("c1", PIN)
    with pytest.raises(ClockUntrusted, match="not synchronised"):
        ledger.collect(budi, "K-0001", 1000)

    from datetime import UTC, datetime

    from kiosk.fix import FixMode

    assert clock.correct_from_gps(
        Fix(lat=1, lon=1, mode=FixMode.THREE_D, time=datetime.now(UTC))
    )
    assert ledger.collect(budi, "K-0001", 1000)["receipt"].endswith("000001")


def test_locked_device_refuses_with_reason(ledger: Ledger) -> None:
    budi = ledger.authenticate("c1", PIN)
    ledger.set_lock("audit in progress")
    with pytest.raises(DeviceLocked, match="audit in progress"):
        ledger.collect(budi, "K-0001", 1000)
    ledger.set_lock(None)
    ledger.collect(budi, "K-0001", 1000)


def _far_fix() -> Fix:
    return Fix(lat=-6.80, lon=107.6098, accuracy_m=10.0, sats=9)


def test_location_outside_requires_reason_or_blocks(tmp_path: Path) -> None:
    config = make_config(tmp_path / "a", location={"outside": "require_reason"})
    ledger = Ledger(config, fix_source=_far_fix)
    ledger.import_document(make_document(2))
    budi = ledger.authenticate("c1", PIN)
    with pytest.raises(ReasonRequired, match="m from the customer"):
        ledger.collect(budi, "K-0001", 1000)
    result = ledger.collect(budi, "K-0001", 1000, reason="met at the market")
    assert result["location"]["result"] == "outside"
    assert result["location"]["distance_m"] > 10_000

    config = make_config(tmp_path / "b", location={"outside": "block"})
    blocked = Ledger(config, fix_source=_far_fix)
    blocked.import_document(make_document(2))
    with pytest.raises(LocationRefused, match="blocks"):
        blocked.collect(blocked.authenticate("c1", PIN), "K-0001", 1000, reason="x")


def test_branch_makes_no_distance_check(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        device={"mode": "branch"},
        gps={"source": "fixed:0.5,100"},
        location={"outside": "block", "no_fix": "block"},
    )
    ledger = Ledger(config)
    ledger.import_document(make_document(1))
    result = ledger.collect(ledger.authenticate("c1", PIN), "K-0001", 1000)
    assert result["location"]["result"] == "branch"
    assert result["location"]["lat"] == 0.5


def test_visit_promise_recorded_and_validated(ledger: Ledger) -> None:
    budi = ledger.authenticate("c1", PIN)
    with pytest.raises(AmountError):
        ledger.visit(
            budi, "K-0001", "promise", promise_date="2099-01-01", promise_amount="1e5"
        )
    result = ledger.visit(
        budi,
        "K-0001",
        "promise",
        promise_date="2099-01-01",
        promise_amount="250.000",
        note="payday",
    )
    assert result["promise_amount"] == 250_000
    result = ledger.visit(budi, "K-0002", "not_home")
    assert result["outcome"] == "not_home"
    outcomes = {a["contract"]: a["outcome"] for a in ledger.today()}
    assert outcomes["K-0001"] == "promise"
    assert outcomes["K-0002"] == "not_home"


def test_import_reapplies_payments_and_voids_after_as_of(ledger: Ledger) -> None:
    budi = ledger.authenticate("c1", PIN)
    sari = ledger.authenticate("s1", SUPERVISOR_PIN)
    seen = ledger.collect(budi, "K-0001", 300_000)  # HQ will have seen this one
    as_of = seen["seq"]
    ledger.collect(budi, "K-0001", 200_000)  # after as_of: must be re-applied
    ledger.void(seen["receipt"], "duplicate", sari)  # a void HQ has not seen
    gone = ledger.collect(budi, "K-0002", 100_000)  # paid and voided after as_of
    ledger.void(gone["receipt"], "wrong customer", sari)

    # HQ's document reflects the first payment only.
    doc = make_document(5, as_of=as_of)
    doc["contracts"][0]["installments"][0]["paid"] = 300_000
    ledger.import_document(doc)

    detail = ledger.contract_detail("K-0001")
    assert sum(i["paid"] for i in detail["schedule"]) == 200_000
    assert ledger.contract_detail("K-0002")["balance"] == 2_000_000


def test_reports_print_with_the_collectors_name(ledger: Ledger) -> None:
    """Regression: the day's figures named the collector by id only, and the
    Z report's print job could not be laid out."""
    from kiosk.receipt import ReceiptSettings, render_lines, render_text

    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 1000)
    for kind, result in (
        ("x_report", ledger.report(budi, print_it=True)),
        ("z_report", ledger.report(budi, close=True, counted=1000)),
    ):
        with ledger.store.read() as conn:
            payload = json.loads(
                conn.execute(
                    text("SELECT payload FROM printjob WHERE id=:i"),
                    {"i": result["print_job"]},
                ).scalar_one()
            )
        assert payload["kind"] == kind
        assert payload["collector"] == {"id": "c1", "name": "Budi"}
        paper = render_text(render_lines(payload, ReceiptSettings()), 32)
        assert "Budi" in paper


def test_a_deposit_slip_is_used_once(ledger: Ledger) -> None:
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 900_000)
    ledger.deposit(budi, 100_000, "BANK-7781")
    with pytest.raises(Refused, match="already recorded"):
        ledger.deposit(budi, 100_000, "BANK-7781")
    assert ledger.held_by("c1") == 800_000


def test_receipts_are_named_as_printed(ledger: Ledger) -> None:
    """A bare number could name another real payment after one mistyped digit."""
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 1000)
    sari = ledger.authenticate("s1", SUPERVISOR_PIN)
    for name in ("1", "000001", "KIOSK-01-1", "OTHER-000001"):
        with pytest.raises(BadInput, match="as printed"):
            ledger.void(name, "typo", sari)
    assert ledger.void("KIOSK-01-000001", "typo", sari)["amount"] == 1000


def test_a_float_over_the_cash_limit_is_refused(tmp_path: Path) -> None:
    ledger = ledger_for(tmp_path, cash={"max_in_hand": 1_000_000, "max_payment": 1_000})
    budi = ledger.authenticate("c1", PIN)
    with pytest.raises(LimitRefused, match="float"):
        ledger.open_day(budi, 1_000_001)
    assert ledger.open_day(budi, 1_000_000)["opening"] == 1_000_000


def test_a_pin_that_is_not_digits_is_bad_input_and_uses_no_try(ledger: Ledger) -> None:
    for pin in ("", "abcd", "12"):
        with pytest.raises(BadInput, match="4 to 12 digits"):
            ledger.authenticate("c1", pin)
    with pytest.raises(WrongPin, match="4 tries left"):
        ledger.authenticate("c1", "0000")


def test_hq_hears_of_every_collector_saved_on_the_device(ledger: Ledger) -> None:
    ledger.add_collector("s9", "Night supervisor", "supervisor", "556677")
    with ledger.store.read() as conn:
        payloads = (
            conn.execute(
                text("SELECT payload FROM outbox WHERE topic LIKE '%/collector_saved'")
            )
            .scalars()
            .all()
        )
    data = json.loads(payloads[-1])["data"]
    assert data == {
        "collector": "s9",
        "name": "Night supervisor",
        "role": "supervisor",
        "by": "device",
    }


def test_offline_too_long_refuses_until_synced_or_overridden(tmp_path: Path) -> None:
    """With a broker configured, a money event unsent for longer than the
    offline limit stops collecting; a supervisor can let one payment through."""
    ledger = ledger_for(
        tmp_path,
        broker={"url": "mqtt://127.0.0.1:1"},
        cash={"offline_limit_h": 72},
    )
    budi = ledger.authenticate("c1", PIN)
    ledger.collect(budi, "K-0001", 1000)
    with ledger.store.write() as conn:
        conn.execute(
            text("UPDATE outbox SET created_at = created_at - 73 * 3600"),
        )
    with pytest.raises(OfflineTooLong, match="over 72 h"):
        ledger.collect(budi, "K-0001", 1000)
    override = ledger.supervisor_override("s1", SUPERVISOR_PIN, "link down all week")
    assert ledger.collect(budi, "K-0001", 1000, override=override)["receipt"]

    # Once HQ has the backlog, collecting goes on.
    with ledger.store.write() as conn:
        conn.execute(text("UPDATE outbox SET sent_at = created_at"))
    ledger.collect(budi, "K-0001", 1000)
