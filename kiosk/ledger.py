"""The application layer: every action a collector, a supervisor or HQ can take.

The UI, the command line and the service's socket all call this class; none of
them touch SQL. Every action that touches money is one write transaction that
holds its journal entry, its outbox event and, where paper is due, its print job,
so a crash leaves either all of them or none.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from kiosk import journal, outbox
from kiosk.allocation import Due, allocate
from kiosk.clock import Clock
from kiosk.config import Config
from kiosk.directory import Actor, add_collector, check_pin
from kiosk.documents import parse_document
from kiosk.errors import (
    AmountError,
    BadInput,
    ClockUntrusted,
    ConfigError,
    DayClosed,
    DeviceLocked,
    KioskError,
    LimitRefused,
    NotAllowed,
    NotFound,
    OfflineTooLong,
    Overpayment,
    Refused,
)
from kiosk.fix import Fix
from kiosk.geo import distance_m
from kiosk.importer import apply_document, purge_expired
from kiosk.location import FixHistory, LocationCheck, enforce, judge
from kiosk.money import format_money, parse_amount
from kiosk.policy import PolicyDoc, check_cash, current_policy, sync_config_policy
from kiosk.receipt_code import make_code
from kiosk.store import Store, sql
from kiosk.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

OUTCOMES = ("promise", "not_home", "refused", "not_found")


@dataclass(frozen=True, slots=True)
class Override:
    """A supervisor's leave for one payment past a limit."""

    supervisor: Actor
    reason: str


def parse_fixed(spec: str) -> Fix | None:
    """A ``fixed:LAT,LON`` GPS string as a fix that never ages, else None."""
    if not spec.startswith("fixed:"):
        return None
    try:
        lat_text, lon_text = spec.removeprefix("fixed:").split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ConfigError(f"gps.source {spec!r}: expected fixed:LAT,LON") from None
    # The comparison also refuses nan, which float() reads without complaint.
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ConfigError(f"gps.source {spec!r}: latitude or longitude out of range")
    return Fix(lat=lat, lon=lon, accuracy_m=1.0, received=float("inf"))


class Ledger:
    """The kiosk's ledger over one store, with the device's clock and position."""

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        fix_source: Callable[[], Fix | None] | None = None,
        history: FixHistory | None = None,
        check: bool = True,
    ) -> None:
        self.config = config
        self.device = config.device
        self.store = store or Store(config.data_dir / "kiosk.db", check=check)
        self.clock = clock or Clock(config.time.trust)
        self.history = history
        self.boot = str(uuid.uuid4())
        self.exponent = self.device.exponent
        self.currency = self.device.currency

        fixed = parse_fixed(config.gps.source) if config.gps.source else None
        self.fix_source = fix_source or (lambda: fixed)

        with self.store.write() as conn:
            self.policy = sync_config_policy(conn, config, self._now_text())
            self.key = self._device_key(conn)

    # --- helpers -----------------------------------------------------------

    def _device_key(self, conn: Connection) -> bytes:
        key = self.config.device_key()
        if key is not None:
            return key
        # Without a key from HQ the device still signs its receipts with a key of
        # its own, so they stay self-consistent; HQ cannot verify them until the
        # device is registered with `kiosk hq add-device` and given its key.
        local = self.store.get_meta(conn, "local_key")
        if local is None:
            local = os.urandom(32).hex()
            self.store.set_meta(conn, "local_key", local)
            log.warning("no security.key_file configured: receipts use a local key")
        return bytes.fromhex(local)

    def _now_text(self) -> str:
        return rfc3339(self.clock.now())

    def money(self, amount: int) -> str:
        return format_money(amount, self.currency, self.exponent, self.device.locale)

    def parse_amount(self, value: str | int, *, allow_zero: bool = False) -> int:
        """An amount as typed (by the device's locale) or already in minor units."""
        if isinstance(value, bool):
            raise AmountError("amount must be a number")
        if isinstance(value, int):
            if value < 0 or (value == 0 and not allow_zero):
                raise AmountError(f"amount {value} must be positive")
            if value >= 10**15:
                raise AmountError(f"amount {value} is too large")
            return value
        return parse_amount(
            value, self.exponent, self.device.locale, allow_zero=allow_zero
        )

    def receipt_name(self, number: int) -> str:
        return f"{self.device.id}-{number:06d}"

    def receipt_number(self, name: str) -> int:
        """The counter of a receipt named as printed (``DEVICE-000042``).

        A bare number is refused: one mistyped digit would name another real
        payment, and a void or reprint must mean exactly the paper in hand.
        """
        prefix = f"{self.device.id}-"
        digits = name.strip().removeprefix(prefix)
        if not name.strip().startswith(prefix) or not (
            digits.isascii() and digits.isdigit() and len(digits) >= 6
        ):
            raise BadInput(
                f"receipt {name!r}: give the number as printed, e.g. "
                f"{self.receipt_name(42)}"
            )
        return int(digits)

    def _event(
        self,
        conn: Connection,
        lane: str,
        type_: str,
        collector: str | None,
        data: dict[str, Any],
    ) -> str:
        return outbox.enqueue(
            conn,
            self.device.id,
            self.boot,
            lane,
            type_,
            self._now_text(),
            collector,
            data,
        )

    def ops_event(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an operations event (printer, GPS, clock, health) for HQ."""
        with self.store.write() as conn:
            self._event(conn, "ops", type_, None, data)

    def _journal(
        self,
        conn: Connection,
        type_: str,
        when: str,
        collector: str | None,
        data: dict[str, Any],
    ) -> journal.Entry:
        entry = journal.append(conn, type_, when, collector, data)
        outbox.enqueue_money(conn, self.device.id, self.boot, entry)
        return entry

    def journal_entry(
        self, conn: Connection, type_: str, collector: str | None, data: dict[str, Any]
    ) -> journal.Entry:
        """Journal an event that moves no money (a receipt reaching paper).

        Its time is the clock's, but never before the newest entry, so a clock
        that stepped back cannot make the journal go backwards.
        """
        _, _, last = journal.last_entry(conn)
        when = self._now_text()
        if last is not None and when < last:
            when = last
        return self._journal(conn, type_, when, collector, data)

    def _print(
        self, conn: Connection, kind: str, ref: str, payload: dict[str, Any]
    ) -> int:
        return int(
            sql(
                conn,
                (
                    "INSERT INTO printjob (kind, ref, payload, status, attempts, "
                    "possible_duplicate, last_error, retry_at, created_at) VALUES "
                    "(:k, :r, :p, 'queued', 0, 0, '', 0, :c) RETURNING id"
                ),
                {
                    "k": kind,
                    "r": ref,
                    "p": json.dumps(payload, ensure_ascii=False),
                    "c": time.time(),
                },
            ).scalar_one()
        )

    def _device_block(self) -> dict[str, str]:
        return {
            "id": self.device.id,
            "name": self.device.name,
            "branch": self.device.branch,
        }

    def _trusted_time(self, conn: Connection) -> str:
        """Now, as the journal will record it; refuses a clock it cannot trust."""
        trust = self.clock.state()
        if not trust.trusted:
            raise ClockUntrusted(f"collecting is paused: {trust.reason}")
        now = self.clock.now()
        _, _, last = journal.last_entry(conn)
        if last is not None and now < parse_rfc3339(last):
            raise ClockUntrusted(
                f"the clock reads {rfc3339(now)}, earlier than the last journal entry "
                f"({last}); set the correct time before collecting"
            )
        return rfc3339(now)

    def _check_unlocked(self, conn: Connection) -> None:
        lock = self.store.get_meta(conn, "lock")
        if lock:
            reason = json.loads(lock).get("reason", "")
            raise DeviceLocked(f"HQ has locked this device: {reason}; call your branch")

    def _check_offline_limit(self, conn: Connection, override: Override | None) -> str:
        if not self.config.broker.url:
            return ""
        row = sql(
            conn,
            # The oldest unsent money event is the lowest seq: read it off the
            # sending-order index instead of scanning the whole backlog.
            "SELECT created_at FROM outbox WHERE sent_at IS NULL AND priority=2 "
            "AND lane='money' ORDER BY seq LIMIT 1",
        ).first()
        limit_s = self.config.cash.offline_limit_h * 3600
        if row and row[0] is not None and time.time() - row[0] > limit_s:
            problem = (
                f"nothing has reached HQ for over {self.config.cash.offline_limit_h} h"
            )
            if override is None:
                raise OfflineTooLong(
                    f"{problem}: find a network link so the device can sync, or ask "
                    "a supervisor to override"
                )
            return problem
        return ""

    # --- people ------------------------------------------------------------

    def add_collector(self, collector_id: str, name: str, role: str, pin: str) -> None:
        """Add a collector or supervisor, or give one a new PIN.

        Whoever may run the program as the kiosk user may do this (they own the
        database anyway); HQ hears of every change, so a supervisor made on the
        device is never a secret.
        """
        with self.store.write() as conn:
            add_collector(conn, collector_id, name, role, pin)
            self._event(
                conn,
                "ops",
                "collector_saved",
                None,
                {"collector": collector_id, "name": name, "role": role, "by": "device"},
            )

    def authenticate(self, collector_id: str, pin: str) -> Actor:
        with self.store.write() as conn:
            outcome = check_pin(conn, collector_id, pin)
        if isinstance(outcome, KioskError):
            raise outcome
        return outcome

    def supervisor_override(
        self, supervisor_id: str, pin: str, reason: str
    ) -> Override:
        actor = self.authenticate(supervisor_id, pin)
        if not actor.is_supervisor:
            raise NotAllowed(f"{supervisor_id} is not a supervisor")
        if not reason or not reason.strip():
            raise BadInput("an override needs a reason")
        return Override(actor, reason.strip())

    # --- days and cash -----------------------------------------------------

    def held(self, conn: Connection, collector: str) -> int:
        return Store.counter(conn, f"cash:{collector}")

    def _move_cash(
        self,
        conn: Connection,
        collector: str,
        day_id: int,
        seq: int,
        kind: str,
        amount: int,
        ref: str,
        when: str,
    ) -> int:
        sql(
            conn,
            (
                "INSERT INTO cashmovement (collector_id, day_id, seq, kind, amount, ref, "
                "time) VALUES (:c, :d, :s, :k, :a, :r, :t)"
            ),
            {
                "c": collector,
                "d": day_id,
                "s": seq,
                "k": kind,
                "a": amount,
                "r": ref,
                "t": when,
            },
        )
        if kind in ("payment", "void"):
            Store.add_to_counter(conn, f"collected:{day_id}", amount)
        return Store.add_to_counter(conn, f"cash:{collector}", amount)

    def _local_date(self, when: str) -> str:
        return parse_rfc3339(when).astimezone(self.device.tz).date().isoformat()

    def _open_day_row(self, conn: Connection, collector: str) -> Any:
        return sql(
            conn,
            (
                "SELECT id, date, opened_at, opening FROM businessday "
                "WHERE collector_id=:c AND closed_at IS NULL"
            ),
            {"c": collector},
        ).first()

    def _start_day(
        self, conn: Connection, collector: str, when: str, float_amount: int
    ) -> int:
        carried = self.held(conn, collector)
        day_id = int(
            sql(
                conn,
                (
                    "INSERT INTO businessday (collector_id, date, opened_at, opening, "
                    "carried) VALUES (:c, :d, :t, :o, :k) RETURNING id"
                ),
                {
                    "c": collector,
                    "d": self._local_date(when),
                    "t": when,
                    "o": carried + float_amount,
                    "k": carried > 0,
                },
            ).scalar_one()
        )
        entry = self._journal(
            conn,
            "day_open",
            when,
            collector,
            {
                "day": day_id,
                "carried": carried,
                "float": float_amount,
                "opening": carried + float_amount,
                "currency": self.currency,
            },
        )
        if float_amount:
            self._move_cash(
                conn, collector, day_id, entry.seq, "float", float_amount, "", when
            )
        return day_id

    def _current_day(self, conn: Connection, collector: str, when: str) -> int:
        """The collector's open day, opened now with the carried cash if none is."""
        row = self._open_day_row(conn, collector)
        if row is not None:
            age = parse_rfc3339(when) - parse_rfc3339(row.opened_at)
            if age > timedelta(hours=self.config.cash.max_day_age_h):
                raise DayClosed(
                    f"the day opened {row.date} has been open over "
                    f"{self.config.cash.max_day_age_h} h: close it first "
                    "(report --close --counted N)"
                )
            return int(row.id)
        today = self._local_date(when)
        closed = sql(
            conn,
            (
                "SELECT closed_at FROM businessday WHERE collector_id=:c AND date=:d "
                "AND closed_at IS NOT NULL ORDER BY id DESC LIMIT 1"
            ),
            {"c": collector, "d": today},
        ).first()
        if closed is not None:
            raise DayClosed(
                f"today's day was closed at {closed[0]}; open a new one with "
                "`day open` before taking or handing in cash"
            )
        return self._start_day(conn, collector, when, 0)

    def open_day(self, actor: Actor, float_amount: int | str = 0) -> dict[str, Any]:
        amount = self.parse_amount(float_amount, allow_zero=True) if float_amount else 0
        with self.store.write() as conn:
            when = self._trusted_time(conn)
            if self._open_day_row(conn, actor.id) is not None:
                raise Refused(
                    f"{actor.id} already has an open day; close it first with "
                    "report --close --counted N"
                )
            limit = self._policy(conn).cash.max_in_hand
            after = self.held(conn, actor.id) + amount
            if limit and after > limit:
                raise LimitRefused(
                    f"a float of {self.money(amount)} would make the cash in hand "
                    f"{self.money(after)}, over the limit of {self.money(limit)}"
                )
            day_id = self._start_day(conn, actor.id, when, amount)
            held = self.held(conn, actor.id)
        return {
            "day": day_id,
            "opening": held,
            "float": amount,
            "currency": self.currency,
        }

    # --- collecting --------------------------------------------------------

    def _policy(self, conn: Connection) -> PolicyDoc:
        """The newest policy; parsed again only when its version changed."""
        version = sql(conn, "SELECT max(version) FROM policy").scalar()
        if version != self.policy.version:
            self.policy = current_policy(conn)
        return self.policy

    def _installments(self, conn: Connection, contract_id: str) -> list[Due]:
        rows = sql(
            conn,
            (
                "SELECT no, due, amount, paid FROM installment WHERE contract_id=:c "
                "ORDER BY due, no"
            ),
            {"c": contract_id},
        ).all()
        return [Due(r.no, r.due, r.amount, r.paid) for r in rows]

    def _contract(self, conn: Connection, contract_id: str) -> Any:
        row = sql(
            conn,
            (
                "SELECT c.id, c.currency, u.id AS customer_id, u.name, u.address, "
                "u.lat, u.lon, u.radius_m FROM contract c JOIN customer u "
                "ON u.id = c.customer_id WHERE c.id=:id"
            ),
            {"id": contract_id},
        ).first()
        if row is None:
            raise NotFound(
                f"no contract {contract_id!r} on this device; import it first"
            )
        return row

    def check_location(self, contract_id: str) -> LocationCheck:
        """The location check a payment on this contract would get now."""
        with self.store.read() as conn:
            contract = self._contract(conn, contract_id)
        return self._judge(contract)

    def _judge(self, contract: Any) -> LocationCheck:
        place = (
            (contract.lat, contract.lon)
            if contract.lat is not None and contract.lon is not None
            else None
        )
        return judge(
            self.policy.location,
            self.fix_source(),
            place,
            contract.radius_m,
            branch=self.device.mode == "branch",
            now=time.monotonic(),
            history=self.history,
        )

    def collect(
        self,
        actor: Actor,
        contract_id: str,
        amount: int | str,
        *,
        reason: str | None = None,
        override: Override | None = None,
    ) -> dict[str, Any]:
        """Take a payment: check, allocate, journal, queue its event and receipt."""
        amount = self.parse_amount(amount)

        with self.store.write() as conn:
            self._check_unlocked(conn)
            when = self._trusted_time(conn)
            offline = self._check_offline_limit(conn, override)
            policy = self._policy(conn)
            contract = self._contract(conn, contract_id)
            if contract.currency != self.currency:
                raise BadInput(
                    f"contract {contract_id} is in {contract.currency}; this device "
                    f"collects {self.currency}"
                )

            # Allocation first: an overpayment is refused before any limit talk.
            dues = self._installments(conn, contract_id)
            split = allocate(amount, dues)
            if split.leftover and not policy.cash.allow_overpayment:
                open_total = sum(d.open for d in dues)
                raise Overpayment(
                    f"{self.money(amount)} is more than the {self.money(open_total)} "
                    f"still open on {contract_id}; take at most that"
                )

            day_id = self._current_day(conn, actor.id, when)
            # A running total per day, kept by _move_cash: summing the day's
            # movements would cost a scan that grows with every payment.
            collected_today = Store.counter(conn, f"collected:{day_id}")
            cash = check_cash(
                policy.cash,
                amount=amount,
                held=self.held(conn, actor.id),
                collected_today=collected_today,
                currency=self.currency,
                exponent=self.exponent,
                locale=self.device.locale,
                override=override is not None,
            )
            location = self._judge(contract)
            location_warning = enforce(location, reason)
            stamp = location.as_data()

            # Numbers are taken inside this transaction, so a rollback frees them
            # and no receipt number is ever skipped or used twice.
            number = Store.next_counter(conn, "receipt")
            receipt = self.receipt_name(number)
            payment_id = str(uuid.uuid4())
            allocations = []
            due_by_no = {d.no: d for d in dues}
            for no, part in split.parts:
                allocations.append({"no": no, "due": due_by_no[no].due, "amount": part})
            overridden = "; ".join(p for p in (cash.overridden, offline) if p)
            override_data = (
                {
                    "supervisor": override.supervisor.id,
                    "reason": override.reason,
                    "what": overridden,
                }
                if override and overridden
                else None
            )
            code = make_code(
                self.key, self.device.id, receipt, amount, self.currency, when
            )
            data = {
                "payment": payment_id,
                "receipt": receipt,
                "contract": contract_id,
                "customer": contract.customer_id,
                "amount": amount,
                "credit": split.leftover,
                "currency": self.currency,
                "allocations": allocations,
                "day": day_id,
                "held_after": cash.held_after,
                "policy_version": policy.version,
                "override": override_data,
                "location": stamp,
                "location_reason": reason,
                "code": code,
            }
            entry = self._journal(conn, "payment", when, actor.id, data)

            sql(
                conn,
                (
                    "INSERT INTO payment (id, receipt_no, seq, time, collector_id, day_id, "
                    "contract_id, amount, credit, currency, policy_version, override_by, "
                    "override_reason, location, location_reason, printed) VALUES "
                    "(:id, :no, :seq, :t, :c, :d, :k, :a, :cr, :cur, :pv, :ob, :orr, "
                    ":loc, :lr, 0)"
                ),
                {
                    "id": payment_id,
                    "no": number,
                    "seq": entry.seq,
                    "t": when,
                    "c": actor.id,
                    "d": day_id,
                    "k": contract_id,
                    "a": amount,
                    "cr": split.leftover,
                    "cur": self.currency,
                    "pv": policy.version,
                    "ob": override.supervisor.id
                    if override_data and override
                    else None,
                    "orr": override.reason if override_data and override else None,
                    "loc": json.dumps(stamp),
                    "lr": reason,
                },
            )
            for no, part in split.parts:
                sql(
                    conn,
                    (
                        "INSERT INTO allocation (payment_id, installment_no, contract_id, "
                        "amount) VALUES (:p, :n, :c, :a)"
                    ),
                    {"p": payment_id, "n": no, "c": contract_id, "a": part},
                )
                sql(
                    conn,
                    (
                        "UPDATE installment SET paid = paid + :a "
                        "WHERE contract_id=:c AND no=:n"
                    ),
                    {"a": part, "c": contract_id, "n": no},
                )
            held_after = self._move_cash(
                conn, actor.id, day_id, entry.seq, "payment", amount, receipt, when
            )
            self._mark_assignment(conn, contract_id, actor.id, when, "paid")

            remaining = self._installments(conn, contract_id)
            balance = sum(d.open for d in remaining)
            next_due = next((d for d in remaining if d.open), None)
            job = self._print(
                conn,
                "receipt",
                receipt,
                {
                    "kind": "receipt",
                    "receipt": receipt,
                    "copy": 0,
                    "device": self._device_block(),
                    "time": when,
                    "collector": {"id": actor.id, "name": actor.name},
                    "customer": {
                        "id": contract.customer_id,
                        "name": contract.name,
                        "address": contract.address,
                    },
                    "contract": contract_id,
                    "currency": self.currency,
                    "exponent": self.exponent,
                    "allocations": allocations,
                    "amount": amount,
                    "credit": split.leftover,
                    "balance": balance,
                    "next_due": (
                        {"date": next_due.due, "amount": next_due.open}
                        if next_due
                        else None
                    ),
                    "location": {
                        "result": location.result,
                        "distance_m": location.distance_m,
                    },
                    "code": code,
                    "override": override_data,
                },
            )

        warnings = [w for w in (cash.warning, location_warning) if w]
        log.info("payment %s recorded (journal %d)", receipt, entry.seq)
        return {
            "receipt": receipt,
            "payment": payment_id,
            "seq": entry.seq,
            "contract": contract_id,
            "amount": amount,
            "credit": split.leftover,
            "currency": self.currency,
            "allocations": allocations,
            "balance": balance,
            "next_due": {"date": next_due.due, "amount": next_due.open}
            if next_due
            else None,
            "held": held_after,
            "location": stamp,
            "warnings": warnings,
            "print_job": job,
            "code": code,
        }

    def _mark_assignment(
        self,
        conn: Connection,
        contract_id: str,
        collector: str,
        when: str,
        outcome: str,
    ) -> None:
        sql(
            conn,
            (
                "UPDATE assignment SET outcome=:o WHERE contract_id=:k AND date=:d "
                "AND (outcome IS NULL OR outcome != 'paid')"
            ),
            {"o": outcome, "k": contract_id, "d": self._local_date(when)},
        )

    def visit(
        self,
        actor: Actor,
        contract_id: str,
        outcome: str,
        *,
        promise_date: str | None = None,
        promise_amount: int | str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Record a visit that took no payment."""
        if outcome not in OUTCOMES:
            raise BadInput(
                f"outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}"
            )
        promised = None
        if outcome == "promise":
            if not promise_date or promise_amount in (None, ""):
                raise BadInput(
                    "a promise to pay needs --promise-date and --promise-amount"
                )
            try:
                day = datetime.strptime(promise_date, "%Y-%m-%d").date()
            except ValueError:
                raise BadInput(
                    f"promise date {promise_date!r}: expected YYYY-MM-DD"
                ) from None
            promised = self.parse_amount(promise_amount)  # type: ignore[arg-type]
        elif promise_date or promise_amount:
            raise BadInput("a promise date and amount go only with --outcome promise")
        if len(note) > 1000:
            raise BadInput("a note is at most 1000 characters")

        with self.store.write() as conn:
            when = self._trusted_time(conn)
            if (
                outcome == "promise"
                and day < parse_rfc3339(when).astimezone(self.device.tz).date()
            ):
                raise BadInput(f"promise date {promise_date} is in the past")
            contract = self._contract(conn, contract_id)
            location = self._judge(contract)
            visit_id = str(uuid.uuid4())
            data = {
                "visit": visit_id,
                "contract": contract_id,
                "customer": contract.customer_id,
                "outcome": outcome,
                "promise_date": promise_date if promised else None,
                "promise_amount": promised,
                "currency": self.currency,
                "note": note,
                "location": location.as_data(),
            }
            entry = self._journal(conn, "visit", when, actor.id, data)
            sql(
                conn,
                (
                    "INSERT INTO visit (id, seq, time, collector_id, contract_id, outcome, "
                    "promise_date, promise_amount, note, location) VALUES "
                    "(:id, :s, :t, :c, :k, :o, :pd, :pa, :n, :l)"
                ),
                {
                    "id": visit_id,
                    "s": entry.seq,
                    "t": when,
                    "c": actor.id,
                    "k": contract_id,
                    "o": outcome,
                    "pd": data["promise_date"],
                    "pa": promised,
                    "n": note,
                    "l": json.dumps(data["location"]),
                },
            )
            self._mark_assignment(conn, contract_id, actor.id, when, outcome)
        return {"visit": visit_id, "seq": entry.seq, **data}

    def deposit(self, actor: Actor, amount: int | str, ref: str) -> dict[str, Any]:
        """Cash handed in: it leaves the collector's hands, never more than held."""
        amount = self.parse_amount(amount)
        ref = (ref or "").strip()
        if not ref or len(ref) > 64:
            raise BadInput("a deposit needs a reference (--ref), at most 64 characters")
        with self.store.write() as conn:
            when = self._trusted_time(conn)
            held = self.held(conn, actor.id)
            if amount > held:
                raise Refused(
                    f"{actor.id} holds {self.money(held)}; a deposit of "
                    f"{self.money(amount)} is more than that"
                )
            earlier = sql(
                conn,
                "SELECT time FROM cashmovement WHERE collector_id=:c AND "
                "kind='deposit' AND ref=:r LIMIT 1",
                {"c": actor.id, "r": ref},
            ).scalar()
            if earlier is not None:
                raise Refused(
                    f"deposit slip {ref} was already recorded at {earlier}; a slip "
                    "is used once: check the slip, or give its own reference"
                )
            day_id = self._current_day(conn, actor.id, when)
            data = {
                "amount": amount,
                "ref": ref,
                "currency": self.currency,
                "held_before": held,
                "held_after": held - amount,
                "day": day_id,
            }
            entry = self._journal(conn, "deposit", when, actor.id, data)
            self._move_cash(
                conn, actor.id, day_id, entry.seq, "deposit", -amount, ref, when
            )
            job = self._print(
                conn,
                "deposit",
                ref,
                {
                    "kind": "deposit",
                    "ref": ref,
                    "amount": amount,
                    "held_after": held - amount,
                    "time": when,
                    "collector": {"id": actor.id, "name": actor.name},
                    "device": self._device_block(),
                    "currency": self.currency,
                    "exponent": self.exponent,
                },
            )
        return {"seq": entry.seq, "print_job": job, **data}

    def void(self, receipt: str, reason: str, supervisor: Actor) -> dict[str, Any]:
        """Reverse a payment: allocation and cash; its number stays used."""
        if not supervisor.is_supervisor:
            raise NotAllowed(f"{supervisor.id} is not a supervisor")
        if not reason or not reason.strip():
            raise BadInput("a void needs a reason (--reason)")
        number = self.receipt_number(receipt)
        with self.store.write() as conn:
            when = self._trusted_time(conn)
            payment = sql(
                conn, ("SELECT * FROM payment WHERE receipt_no=:n"), {"n": number}
            ).first()
            if payment is None:
                raise NotFound(f"no receipt {self.receipt_name(number)} on this device")
            name = self.receipt_name(number)
            if payment.voided_seq is not None:
                raise Refused(f"receipt {name} is already void")
            held = self.held(conn, payment.collector_id)
            if held < payment.amount:
                raise Refused(
                    f"{payment.collector_id} holds {self.money(held)}, less than the "
                    f"{self.money(payment.amount)} to void: the cash was deposited"
                )
            allocations = sql(
                conn,
                ("SELECT installment_no, amount FROM allocation WHERE payment_id=:p"),
                {"p": payment.id},
            ).all()
            day_id = self._current_day(conn, payment.collector_id, when)
            data = {
                "payment": payment.id,
                "receipt": name,
                "contract": payment.contract_id,
                "amount": payment.amount,
                "currency": payment.currency,
                "reason": reason.strip(),
                "supervisor": supervisor.id,
                "allocations": [
                    {"no": a.installment_no, "amount": a.amount} for a in allocations
                ],
            }
            entry = self._journal(conn, "void", when, payment.collector_id, data)
            for alloc in allocations:
                sql(
                    conn,
                    (
                        "UPDATE installment SET paid = max(0, paid - :a) "
                        "WHERE contract_id=:c AND no=:n"
                    ),
                    {
                        "a": alloc.amount,
                        "c": payment.contract_id,
                        "n": alloc.installment_no,
                    },
                )
            sql(
                conn,
                (
                    "UPDATE payment SET voided_seq=:s, void_reason=:r, void_by=:b "
                    "WHERE id=:id"
                ),
                {
                    "s": entry.seq,
                    "r": reason.strip(),
                    "b": supervisor.id,
                    "id": payment.id,
                },
            )
            self._move_cash(
                conn,
                payment.collector_id,
                day_id,
                entry.seq,
                "void",
                -payment.amount,
                name,
                when,
            )
            job = self._print(
                conn,
                "void",
                name,
                {
                    "kind": "void",
                    "receipt": name,
                    "reason": reason.strip(),
                    "supervisor": supervisor.id,
                    "amount": payment.amount,
                    "time": when,
                    "contract": payment.contract_id,
                    "device": self._device_block(),
                    "collector": {
                        "id": payment.collector_id,
                        "name": payment.collector_id,
                    },
                    "currency": self.currency,
                    "exponent": self.exponent,
                },
            )
        return {"seq": entry.seq, "print_job": job, **data}

    # --- reports -----------------------------------------------------------

    def _day_figures(
        self, conn: Connection, day: Any, collector: str
    ) -> dict[str, Any]:
        rows = sql(
            conn,
            (
                "SELECT kind, count(*) AS n, coalesce(sum(amount), 0) AS total "
                "FROM cashmovement WHERE day_id=:d GROUP BY kind"
            ),
            {"d": day.id},
        ).all()
        by_kind = {r.kind: (int(r.n), int(r.total)) for r in rows}
        floats = by_kind.get("float", (0, 0))[1]
        payments = by_kind.get("payment", (0, 0))
        voids = by_kind.get("void", (0, 0))
        deposits = by_kind.get("deposit", (0, 0))
        variance = by_kind.get("variance", (0, 0))[1]
        carried = day.opening - floats
        expected = carried + floats + payments[1] + voids[1] + deposits[1] + variance
        return {
            "day": day.id,
            "date": day.date,
            "collector": collector,
            "opened_at": day.opened_at,
            "carried": carried,
            "float": floats,
            "opening": day.opening,
            "collected": payments[1],
            "payments": payments[0],
            "voided": -voids[1],
            "voids": voids[0],
            "deposited": -deposits[1],
            "deposits": deposits[0],
            "expected": expected,
            "currency": self.currency,
        }

    def report(
        self,
        actor: Actor,
        *,
        close: bool = False,
        counted: int | str | None = None,
        print_it: bool = False,
    ) -> dict[str, Any]:
        """The X report of the open day, or with ``close`` the Z report."""
        if close and counted in (None, ""):
            raise BadInput("closing the day needs the counted cash (--counted N)")
        if counted not in (None, "") and not close:
            raise BadInput("--counted goes with --close")
        counted_amount = (
            self.parse_amount(counted, allow_zero=True) if close else None  # type: ignore[arg-type]
        )

        with self.store.write() as conn:
            when = self._trusted_time(conn) if close else self._now_text()
            day = self._open_day_row(conn, actor.id)
            if day is None:
                raise Refused(f"{actor.id} has no open day")
            figures = self._day_figures(conn, day, actor.id)
            figures["held"] = self.held(conn, actor.id)
            kind = "x_report"
            if close:
                assert counted_amount is not None
                kind = "z_report"
                variance = counted_amount - figures["expected"]
                figures.update(counted=counted_amount, variance=variance)
                entry = self._journal(conn, "day_close", when, actor.id, figures)
                if variance:
                    self._move_cash(
                        conn,
                        actor.id,
                        day.id,
                        entry.seq,
                        "variance",
                        variance,
                        "",
                        when,
                    )
                sql(
                    conn,
                    (
                        "UPDATE businessday SET closed_at=:t, counted=:c, variance=:v "
                        "WHERE id=:id"
                    ),
                    {"t": when, "c": counted_amount, "v": variance, "id": day.id},
                )
                figures["held"] = self.held(conn, actor.id)
                figures["seq"] = entry.seq
            if print_it or close:
                figures["print_job"] = self._print(
                    conn,
                    kind,
                    str(day.id),
                    {
                        "counted": None,
                        "variance": None,
                        **figures,
                        # The figures name the collector by id; paper wants both.
                        "kind": kind,
                        "time": when,
                        "device": self._device_block(),
                        "collector": {"id": actor.id, "name": actor.name},
                        "exponent": self.exponent,
                    },
                )
        figures["kind"] = kind
        return figures

    def report_all(self) -> list[dict[str, Any]]:
        """X figures for every collector with an open day (a branch's view)."""
        with self.store.read() as conn:
            days = sql(
                conn,
                (
                    "SELECT id, collector_id, date, opened_at, opening FROM businessday "
                    "WHERE closed_at IS NULL ORDER BY collector_id"
                ),
            ).all()
            out = []
            for day in days:
                figures = self._day_figures(conn, day, day.collector_id)
                figures["held"] = self.held(conn, day.collector_id)
                out.append(figures)
        return out

    def receipt_payload(self, receipt: str) -> dict[str, Any]:
        """The receipt as it was laid out for paper, for an on-screen preview."""
        name = self.receipt_name(self.receipt_number(receipt))
        with self.store.read() as conn:
            row = sql(
                conn,
                "SELECT payload FROM printjob WHERE kind='receipt' AND ref=:r "
                "ORDER BY id LIMIT 1",
                {"r": name},
            ).first()
        if row is None:
            raise NotFound(f"no receipt {name} on this device")
        return dict(json.loads(row.payload))

    def reprint(self, receipt: str) -> dict[str, Any]:
        """Queue a copy of a receipt; the copy says COPY and its number."""
        number = self.receipt_number(receipt)
        name = self.receipt_name(number)
        with self.store.write() as conn:
            row = sql(
                conn,
                (
                    "SELECT payload FROM printjob WHERE kind='receipt' AND ref=:r "
                    "ORDER BY id LIMIT 1"
                ),
                {"r": name},
            ).first()
            if row is None:
                raise NotFound(f"no receipt {name} on this device")
            copies = int(
                sql(
                    conn,
                    ("SELECT count(*) FROM printjob WHERE kind='reprint' AND ref=:r"),
                    {"r": name},
                ).scalar_one()
            )
            payload = json.loads(row[0])
            payload.update(copy=copies + 1, reprinted_at=self._now_text())
            voided = sql(
                conn,
                ("SELECT voided_seq FROM payment WHERE receipt_no=:n"),
                {"n": number},
            ).scalar_one_or_none()
            payload["voided"] = voided is not None
            job = self._print(conn, "reprint", name, payload)
        return {"receipt": name, "copy": copies + 1, "print_job": job}

    # --- state -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self.store.read() as conn:
            seq, digest, last_time = journal.last_entry(conn)
            held = sql(
                conn, ("SELECT name, value FROM counter WHERE name LIKE 'cash:%'")
            ).all()
            jobs = sql(
                conn,
                (
                    "SELECT status, count(*) FROM printjob WHERE status != 'done' "
                    "GROUP BY status"
                ),
            ).all()
            lock = self.store.get_meta(conn, "lock")
            ack = self.store.get_meta(conn, "journal_ack")
            policy = current_policy(conn)
            summary = outbox.pending_summary(conn)
            open_days = sql(
                conn,
                ("SELECT collector_id, date FROM businessday WHERE closed_at IS NULL"),
            ).all()
        trust = self.clock.state()
        return {
            "device": self.device.id,
            "boot": self.boot,
            "mode": self.device.mode,
            "currency": self.currency,
            "journal": {"seq": seq, "hash": digest, "time": last_time},
            "journal_ack": json.loads(ack) if ack else None,
            "cash_held": {name.removeprefix("cash:"): int(v) for name, v in held},
            "open_days": {c: d for c, d in open_days},
            "outbox": summary,
            "print_queue": {s: int(n) for s, n in jobs},
            "policy_version": policy.version,
            "locked": json.loads(lock) if lock else None,
            "time": {
                "trusted": trust.trusted,
                "source": trust.source,
                "reason": trust.reason,
            },
        }

    def verify(self) -> dict[str, Any]:
        """Check the journal chain and that the ledger agrees with it."""
        with self.store.read() as conn:
            result = journal.verify(conn)
            problems = [result.problem] if not result.ok else []
            newest_payment = sql(conn, ("SELECT max(seq) FROM payment")).scalar()
            if newest_payment and newest_payment > result.last_seq and result.ok:
                problems.append(
                    f"payment at journal entry {newest_payment} has no journal entry: "
                    f"the journal ends at {result.last_seq} (its tail was deleted)"
                )
            ack = self.store.get_meta(conn, "journal_ack")
            if ack and result.ok:
                acked = json.loads(ack)
                if acked["seq"] > result.last_seq:
                    problems.append(
                        f"HQ verified entry {acked['seq']}, but the journal ends at "
                        f"{result.last_seq} (its tail was deleted)"
                    )
            for name, value in sql(
                conn, ("SELECT name, value FROM counter WHERE name LIKE 'cash:%'")
            ).all():
                collector = name.removeprefix("cash:")
                total = sql(
                    conn,
                    (
                        "SELECT coalesce(sum(amount), 0) FROM cashmovement "
                        "WHERE collector_id=:c"
                    ),
                    {"c": collector},
                ).scalar_one()
                if total != value:
                    problems.append(
                        f"cash held by {collector} is {value} but its movements sum "
                        f"to {total}"
                    )
        return {
            "ok": not problems,
            "entries": result.entries,
            "last_seq": result.last_seq,
            "last_hash": result.last_hash,
            "problems": problems,
            "first_bad_seq": result.bad_seq,
        }

    def outbox_summary(self) -> dict[str, Any]:
        with self.store.read() as conn:
            return outbox.pending_summary(conn)

    # --- assignments and customers ----------------------------------------

    def import_document(self, raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Validate and apply an assignment document; all of it or none."""
        doc = parse_document(raw, self.currency)
        with self.store.write() as conn:
            summary = apply_document(conn, doc)
            self._event(conn, "ops", "assignments_applied", None, summary)
        return summary

    def purge_customers(self) -> int:
        retention = self.config.security.customer_retention_days
        with self.store.write() as conn:
            today = self.clock.now().astimezone(self.device.tz).date()
            return purge_expired(conn, today, retention)

    def today(
        self, collector: str | None = None, date: str | None = None
    ) -> list[dict[str, Any]]:
        """The day's assignments with what a collector needs to plan the round."""
        now = self.clock.now().astimezone(self.device.tz).date()
        day = date or now.isoformat()
        fix = self.fix_source()
        with self.store.read() as conn:
            rows = sql(
                conn,
                (
                    "SELECT a.id, a.contract_id, a.collector_id, a.priority, a.outcome, "
                    "u.id AS customer_id, u.name, u.address, u.phone, u.lat, u.lon, "
                    "coalesce(sum(CASE WHEN i.due < :d THEN i.amount - i.paid END), 0) "
                    "AS arrears, "
                    "coalesce(sum(CASE WHEN i.due = :d THEN i.amount - i.paid END), 0) "
                    "AS due_today, "
                    "coalesce(sum(i.amount - i.paid), 0) AS balance "
                    "FROM assignment a JOIN contract k ON k.id = a.contract_id "
                    "JOIN customer u ON u.id = k.customer_id "
                    "LEFT JOIN installment i ON i.contract_id = k.id "
                    "WHERE a.date = :d AND (:c IS NULL OR a.collector_id = :c) "
                    "GROUP BY a.id ORDER BY a.priority, a.id"
                ),
                {"d": day, "c": collector},
            ).all()
            promises = {
                r.contract_id: (r.promise_date, r.promise_amount)
                for r in sql(
                    conn,
                    (
                        "SELECT contract_id, promise_date, promise_amount FROM visit "
                        "WHERE outcome='promise' AND promise_date=:d"
                    ),
                    {"d": day},
                )
            }
        out = []
        for r in rows:
            distance = None
            if fix is not None and fix.has_position and r.lat is not None:
                distance = round(distance_m(fix.lat, fix.lon, r.lat, r.lon))
            promise = promises.get(r.contract_id)
            out.append(
                {
                    "assignment": r.id,
                    "contract": r.contract_id,
                    "collector": r.collector_id,
                    "priority": r.priority,
                    "outcome": r.outcome,
                    "customer": r.customer_id,
                    "name": r.name,
                    "address": r.address,
                    "phone": r.phone,
                    "arrears": int(r.arrears),
                    "due_today": int(r.due_today),
                    "balance": int(r.balance),
                    "distance_m": distance,
                    "promise_due": (
                        {"date": promise[0], "amount": promise[1]} if promise else None
                    ),
                }
            )
        return out

    def contract_detail(self, contract_id: str) -> dict[str, Any]:
        """Customer, schedule, payments and visits of one contract."""
        today = self.clock.now().astimezone(self.device.tz).date().isoformat()
        with self.store.read() as conn:
            contract = self._contract(conn, contract_id)
            customer = sql(
                conn,
                ("SELECT * FROM customer WHERE id=:u"),
                {"u": contract.customer_id},
            ).first()
            schedule: list[dict[str, Any]] = []
            for d in self._installments(conn, contract_id):
                state = "paid" if not d.open else ("partly paid" if d.paid else "open")
                if d.open and d.due < today:
                    state = "overdue"
                schedule.append(
                    {
                        "no": d.no,
                        "due": d.due,
                        "amount": d.amount,
                        "paid": d.paid,
                        "open": d.open,
                        "state": state,
                    }
                )
            payments = [
                {
                    "receipt": self.receipt_name(r.receipt_no),
                    "time": r.time,
                    "amount": r.amount,
                    "collector": r.collector_id,
                    "voided": r.voided_seq is not None,
                }
                for r in sql(
                    conn,
                    (
                        "SELECT receipt_no, time, amount, collector_id, voided_seq "
                        "FROM payment WHERE contract_id=:k ORDER BY seq DESC"
                    ),
                    {"k": contract_id},
                )
            ]
            visits = [
                {
                    "time": r.time,
                    "outcome": r.outcome,
                    "note": r.note,
                    "promise_date": r.promise_date,
                    "promise_amount": r.promise_amount,
                    "collector": r.collector_id,
                }
                for r in sql(
                    conn,
                    (
                        "SELECT time, outcome, note, promise_date, promise_amount, "
                        "collector_id FROM visit WHERE contract_id=:k ORDER BY seq DESC"
                    ),
                    {"k": contract_id},
                )
            ]
        assert customer is not None
        return {
            "contract": contract_id,
            "currency": contract.currency,
            "customer": {
                "id": customer.id,
                "name": customer.name,
                "phone": customer.phone,
                "address": customer.address,
                "lat": customer.lat,
                "lon": customer.lon,
                "radius_m": customer.radius_m,
            },
            "schedule": schedule,
            "balance": sum(i["open"] for i in schedule),
            "arrears": sum(i["open"] for i in schedule if i["due"] < today),
            "payments": payments,
            "visits": visits,
        }

    def preview_allocation(self, contract_id: str, amount: int) -> dict[str, Any]:
        """How a payment would be split, without taking it."""
        with self.store.read() as conn:
            dues = self._installments(conn, contract_id)
        split = allocate(amount, dues)
        return {
            "parts": [{"no": n, "amount": a} for n, a in split.parts],
            "leftover": split.leftover,
        }

    def held_by(self, collector: str) -> int:
        with self.store.read() as conn:
            return self.held(conn, collector)

    # --- HQ-driven state ---------------------------------------------------

    def install_policy(self, body: dict[str, Any]) -> bool:
        from kiosk.policy import install_policy

        doc = PolicyDoc.parse(body)
        with self.store.write() as conn:
            installed = install_policy(conn, doc, "hq", self._now_text())
            if installed:
                self.policy = doc
                self._event(
                    conn, "ops", "policy_installed", None, {"version": doc.version}
                )
        return installed

    def set_lock(self, reason: str | None) -> None:
        with self.store.write() as conn:
            if reason is None:
                sql(conn, ("DELETE FROM meta WHERE key='lock'"))
            else:
                Store.set_meta(
                    conn,
                    "lock",
                    json.dumps({"reason": reason, "since": self._now_text()}),
                )
            self._event(
                conn,
                "ops",
                "locked" if reason else "unlocked",
                None,
                {"reason": reason},
            )

    def record_journal_ack(self, seq: int, digest: str) -> None:
        with self.store.write() as conn:
            Store.set_meta(
                conn, "journal_ack", json.dumps({"seq": seq, "hash": digest})
            )

    def last_receipt(self) -> str | None:
        with self.store.read() as conn:
            number = sql(conn, ("SELECT max(receipt_no) FROM payment")).scalar()
        return None if number is None else self.receipt_name(int(number))

    def raise_alarm(self, type_: str, data: dict[str, Any]) -> None:
        """An alarm (panic, tamper) for HQ, sent ahead of everything else."""
        with self.store.write() as conn:
            self._event(conn, "alarm", type_, None, data)

    def add_message(self, message_id: str, body: dict[str, Any]) -> bool:
        """Keep a message from HQ for the collector; False when already kept."""
        with self.store.write() as conn:
            result = sql(
                conn,
                (
                    "INSERT INTO message (id, received_at, body) VALUES (:i, :t, :b) "
                    "ON CONFLICT(id) DO NOTHING"
                ),
                {"i": message_id, "t": self._now_text(), "b": json.dumps(body)},
            )
        return bool(result.rowcount)

    def messages(self, unread_only: bool = False) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = sql(
                conn,
                (
                    "SELECT id, received_at, body, read_at FROM message "
                    + ("WHERE read_at IS NULL " if unread_only else "")
                    + "ORDER BY received_at DESC"
                ),
            ).all()
        return [
            {
                "id": r.id,
                "received_at": r.received_at,
                "body": json.loads(r.body),
                "read_at": r.read_at,
            }
            for r in rows
        ]

    def mark_message_read(self, message_id: str) -> bool:
        """Mark a message read; its acknowledgement to HQ is an ops event."""
        with self.store.write() as conn:
            result = sql(
                conn,
                ("UPDATE message SET read_at=:t WHERE id=:i AND read_at IS NULL"),
                {"t": self._now_text(), "i": message_id},
            )
            if result.rowcount:
                self._event(conn, "ops", "message_read", None, {"message": message_id})
        return bool(result.rowcount)

    def queue_hub_print(self, body: dict[str, Any]) -> int:
        """A print job sent by HQ (a statement of account, a notice)."""
        title = body.get("title")
        lines = body.get("lines")
        if (
            not isinstance(title, str)
            or not isinstance(lines, list)
            or not all(isinstance(line, str) for line in lines)
        ):
            raise BadInput("a print job needs a title and a list of text lines")
        if len(lines) > 500 or any(len(line) > 200 for line in lines):
            raise BadInput("a print job is at most 500 lines of 200 characters")
        with self.store.write() as conn:
            return self._print(
                conn,
                "hub",
                title[:64],
                {
                    "kind": "hub",
                    "title": title,
                    "lines": lines,
                    "time": self._now_text(),
                    "device": self._device_block(),
                },
            )

    def resend(self, lane: str, seq: int) -> int:
        """HQ asked for a lane again from ``seq``."""
        if lane not in outbox.PRIORITY or lane == "loc_historical":
            raise BadInput(f"unknown lane {lane!r}")
        with self.store.write() as conn:
            return outbox.resend_from(conn, lane, seq)

    def remember_nonce(self, nonce: str, expires: float) -> bool:
        """Record a command's nonce until it expires; False when seen before."""
        with self.store.write() as conn:
            sql(conn, ("DELETE FROM nonce WHERE expires < :t"), {"t": time.time()})
            result = sql(
                conn,
                (
                    "INSERT INTO nonce (nonce, expires) VALUES (:n, :e) "
                    "ON CONFLICT(nonce) DO NOTHING"
                ),
                {"n": nonce, "e": expires},
            )
        return bool(result.rowcount)

    def data_dir(self) -> Path:
        return self.config.data_dir

    def close(self) -> None:
        self.store.close()
