"""The device's tables, one SQLite file.

Amounts are integers in minor units. Times are RFC 3339 UTC text with
milliseconds (the journal's form), so rows read the same in SQL as on the wire.
Free-form extra fields from HQ documents are kept as JSON text in ``extra``.
"""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Meta(SQLModel, table=True):
    key: str = Field(primary_key=True)
    value: str


class Counter(SQLModel, table=True):
    """Gap-free counters: receipt numbers and per-lane outbox sequences."""

    name: str = Field(primary_key=True)
    value: int = 0


class Collector(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str
    role: str = "collector"  # collector | supervisor
    pin_hash: str
    failed_pins: int = 0
    locked_until: float = 0.0  # unix time; a lockout is a wall-clock rule
    active: bool = True


class Customer(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str
    phone: str = ""
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    radius_m: int | None = None
    extra: str = "{}"
    expires_at: str | None = None  # removed after this, with its contracts


class Contract(SQLModel, table=True):
    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customer.id", index=True)
    currency: str
    extra: str = "{}"


class Installment(SQLModel, table=True):
    contract_id: str = Field(foreign_key="contract.id", primary_key=True)
    no: int = Field(primary_key=True)
    due: str  # YYYY-MM-DD
    amount: int
    paid: int = 0


class Assignment(SQLModel, table=True):
    id: str = Field(primary_key=True)
    contract_id: str = Field(index=True)
    collector_id: str = Field(index=True)
    date: str
    priority: int = 100
    outcome: str | None = None
    extra: str = "{}"


class Visit(SQLModel, table=True):
    id: str = Field(primary_key=True)
    seq: int
    time: str
    collector_id: str
    contract_id: str = Field(index=True)
    outcome: str
    promise_date: str | None = None
    promise_amount: int | None = None
    note: str = ""
    location: str = "{}"


class Payment(SQLModel, table=True):
    id: str = Field(primary_key=True)
    receipt_no: int = Field(unique=True)
    seq: int = Field(unique=True)
    time: str
    collector_id: str = Field(index=True)
    day_id: int
    contract_id: str = Field(index=True)
    amount: int
    credit: int = 0  # the part kept as credit when overpayment is allowed
    currency: str
    policy_version: int
    override_by: str | None = None
    override_reason: str | None = None
    location: str = "{}"
    location_reason: str | None = None
    voided_seq: int | None = None
    void_reason: str | None = None
    void_by: str | None = None
    printed: int = 0  # times it reached paper, copies included


class Allocation(SQLModel, table=True):
    payment_id: str = Field(foreign_key="payment.id", primary_key=True)
    installment_no: int = Field(primary_key=True)
    contract_id: str
    amount: int


class BusinessDay(SQLModel, table=True):
    __table_args__ = (Index("ix_day_open", "collector_id", "closed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    collector_id: str
    date: str  # the local date the day was opened on
    opened_at: str
    opening: int  # the float, or the cash carried over
    carried: bool = False
    closed_at: str | None = None
    counted: int | None = None
    variance: int | None = None


class CashMovement(SQLModel, table=True):
    """Every change to a collector's cash in hand; their sum is the cash held."""

    id: int | None = Field(default=None, primary_key=True)
    collector_id: str = Field(index=True)
    day_id: int = Field(index=True)
    seq: int
    kind: str  # float | payment | void | deposit | variance
    amount: int  # signed
    ref: str = ""
    time: str


class Policy(SQLModel, table=True):
    version: int = Field(primary_key=True)
    source: str  # config | hq
    body: str
    installed_at: str


class Journal(SQLModel, table=True):
    """The money lane: append-only, each entry hashing the one before."""

    seq: int = Field(primary_key=True)
    prev: str
    hash: str
    type: str
    time: str
    collector: str | None = None
    data: str


class Outbox(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("lane", "seq"),
        Index("ix_outbox_pending", "sent_at", "priority", "lane", "seq"),
    )

    id: str = Field(primary_key=True)  # the event id, a UUID
    lane: str
    seq: int
    priority: int  # sending order: lower first
    topic: str
    payload: str
    created_at: float  # unix time, for the oldest-unsent age
    sent_at: float | None = None


class PrintJob(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    ref: str = ""
    payload: str
    status: str = "queued"  # queued | printing | done | failed
    attempts: int = 0
    possible_duplicate: bool = False
    last_error: str = ""
    retry_at: float = 0.0
    created_at: float
    printed_at: float | None = None


class Message(SQLModel, table=True):
    id: str = Field(primary_key=True)
    received_at: str
    body: str
    read_at: str | None = None


class Nonce(SQLModel, table=True):
    nonce: str = Field(primary_key=True)
    expires: float


class TrackPoint(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    time: str
    lat: float
    lon: float
    acc: float | None = None
    alt: float | None = None
    vel: float | None = None
    cog: float | None = None
