"""Versioned cash and location policy, and the cash-box limit check.

The configuration supplies the first version; a signed ``policy`` command from HQ
installs a newer one, kept in the store so it wins after a restart. Every
payment records the version it was checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection

from kiosk.config import Action, CashSection, Config, LocationSection
from kiosk.errors import BadInput, ConfigError, LimitRefused
from kiosk.money import format_money
from kiosk.store import sql

# Amounts stay below fifteen digits, like every typed or imported amount, and a
# version must fit the store's integer column.
MAX_AMOUNT = 10**15
MAX_VERSION = 2**63 - 1


class CashRules(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_in_hand: int = Field(ge=0, lt=MAX_AMOUNT)
    max_payment: int = Field(ge=0, lt=MAX_AMOUNT)
    daily_cap: int = Field(0, ge=0, lt=MAX_AMOUNT)
    warn_per_mille: int = Field(800, ge=1, le=1000)
    allow_overpayment: bool = False


class LocationRules(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    radius_m: int = Field(ge=1)
    max_fix_age_s: int = Field(ge=1)
    max_accuracy_m: int = Field(ge=1)
    outside: Action
    no_fix: Action


class PolicyDoc(BaseModel):
    """The body of a policy version, as stored and as HQ sends it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1, le=MAX_VERSION)
    cash: CashRules
    location: LocationRules

    @classmethod
    def from_config(cls, config: Config, version: int = 1) -> PolicyDoc:
        cash: CashSection = config.cash
        loc: LocationSection = config.location
        section = "cash"
        try:
            cash_rules = CashRules(
                max_in_hand=cash.max_in_hand,
                max_payment=cash.max_payment,
                daily_cap=cash.daily_cap,
                warn_per_mille=round(cash.warn_ratio * 1000),
                allow_overpayment=cash.allow_overpayment,
            )
            section = "location"
            location_rules = LocationRules(
                radius_m=loc.radius_m,
                max_fix_age_s=loc.max_fix_age_s,
                max_accuracy_m=loc.max_accuracy_m,
                outside=loc.outside,
                no_fix=loc.no_fix,
            )
        except ValidationError as exc:
            # The configuration allows what a policy cannot hold (an amount of
            # twenty digits): name the key, as every configuration error does.
            first = exc.errors()[0]
            key = ".".join(str(part) for part in (section, *first["loc"]))
            where = f"{config.source}: " if config.source else ""
            raise ConfigError(
                f"config error: {where}{key} = {first.get('input')!r}: {first['msg']}"
            ) from None
        return cls(version=version, cash=cash_rules, location=location_rules)

    @classmethod
    def parse(cls, body: object) -> PolicyDoc:
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise BadInput(f"policy {path}: {first['msg']}") from None

    def rules_json(self) -> str:
        return json.dumps(self.model_dump(exclude={"version"}), sort_keys=True)


def current_policy(conn: Connection) -> PolicyDoc:
    row = sql(
        conn, ("SELECT version, body FROM policy ORDER BY version DESC LIMIT 1")
    ).first()
    if row is None:
        raise LookupError("no policy installed")
    return PolicyDoc.parse({"version": row[0], **json.loads(row[1])})


def install_policy(conn: Connection, doc: PolicyDoc, source: str, when: str) -> bool:
    """Store a newer policy; an older or equal version is ignored (False)."""
    row = sql(conn, ("SELECT max(version) FROM policy")).first()
    latest = int(row[0]) if row and row[0] is not None else 0
    if doc.version <= latest:
        return False
    sql(
        conn,
        (
            "INSERT INTO policy (version, source, body, installed_at) "
            "VALUES (:v, :s, :b, :t)"
        ),
        {"v": doc.version, "s": source, "b": doc.rules_json(), "t": when},
    )
    return True


def sync_config_policy(conn: Connection, config: Config, when: str) -> PolicyDoc:
    """Make the configuration's values the first version, or a newer one after an
    installer edits them, unless HQ has taken over."""
    try:
        current = current_policy(conn)
    except LookupError:
        doc = PolicyDoc.from_config(config, 1)
        install_policy(conn, doc, "config", when)
        return doc
    source = sql(
        conn, ("SELECT source FROM policy WHERE version=:v"), {"v": current.version}
    ).scalar_one()
    wanted = PolicyDoc.from_config(config, current.version + 1)
    if source == "config" and wanted.rules_json() != current.rules_json():
        install_policy(conn, wanted, "config", when)
        return wanted
    return current


@dataclass(frozen=True, slots=True)
class CashCheck:
    held_after: int
    collected_today_after: int
    warning: str = ""
    overridden: str = ""  # what the override let through


def check_cash(
    rules: CashRules,
    *,
    amount: int,
    held: int,
    collected_today: int,
    currency: str,
    exponent: int,
    locale: str,
    override: bool,
) -> CashCheck:
    """Apply the cash-box limits to one payment; raise LimitRefused at a limit."""

    def money(value: int) -> str:
        return format_money(value, currency, exponent, locale)

    held_after = held + amount
    today_after = collected_today + amount
    problems = []
    if rules.max_payment and amount > rules.max_payment:
        problems.append(
            f"{money(amount)} is over the single-payment limit of "
            f"{money(rules.max_payment)}"
        )
    if rules.max_in_hand and held_after > rules.max_in_hand:
        problems.append(
            f"cash in hand would be {money(held_after)}, over the limit of "
            f"{money(rules.max_in_hand)}: deposit first"
        )
    if rules.daily_cap and today_after > rules.daily_cap:
        problems.append(
            f"today's collections would be {money(today_after)}, over the daily "
            f"cap of {money(rules.daily_cap)}"
        )
    if problems and not override:
        raise LimitRefused(
            "; ".join(problems) + " (a supervisor can override this one payment)"
        )

    warning = ""
    if (
        rules.max_in_hand
        and held_after * 1000 >= rules.max_in_hand * rules.warn_per_mille
    ):
        warning = (
            f"cash in hand {money(held_after)} is near the limit of "
            f"{money(rules.max_in_hand)}: deposit soon"
        )
    return CashCheck(held_after, today_after, warning, "; ".join(problems))
