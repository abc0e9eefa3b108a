"""The assignment document: local import and HQ's ``assignments`` command share it.

Validated whole before anything is applied; a bad record is named by its path
(``contracts[3].installments[1].due``). Unknown fields are kept.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kiosk.errors import DocumentError
from kiosk.pins import is_phc

MAX_AMOUNT = 10**15


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    def extra_json(self) -> str:
        return json.dumps(self.model_extra or {}, ensure_ascii=False, sort_keys=True)


def _date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a date YYYY-MM-DD") from None
    if len(value) != 10:
        raise ValueError("expected a date YYYY-MM-DD")
    return value


class CollectorRecord(Record):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    role: Literal["collector", "supervisor"] = "collector"
    pin_hash: str

    @field_validator("pin_hash")
    @classmethod
    def _phc(cls, value: str) -> str:
        if not is_phc(value):
            raise ValueError("expected a PHC string $scrypt$ln=..,r=..,p=..$salt$hash")
        return value


class CustomerRecord(Record):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field("", max_length=64)
    address: str = Field("", max_length=500)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    radius_m: int | None = Field(None, ge=1, le=100_000)

    @field_validator("lat", "lon", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


class InstallmentRecord(Record):
    no: int = Field(ge=1, le=10_000)
    due: str
    amount: int = Field(gt=0, lt=MAX_AMOUNT)
    paid: int = Field(0, ge=0, lt=MAX_AMOUNT)

    _due = field_validator("due")(lambda cls, v: _date(v))


class ContractRecord(Record):
    id: str = Field(min_length=1, max_length=64)
    customer: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    installments: list[InstallmentRecord] = Field(max_length=1000)

    @field_validator("installments")
    @classmethod
    def _installments(cls, value: list[InstallmentRecord]) -> list[InstallmentRecord]:
        numbers = [item.no for item in value]
        if len(set(numbers)) != len(numbers):
            raise ValueError("installment numbers repeat")
        for item in value:
            if item.paid > item.amount:
                raise ValueError(f"installment {item.no}: paid is more than the amount")
        return value


class AssignmentRecord(Record):
    id: str = Field(min_length=1, max_length=64)
    contract: str = Field(min_length=1)
    collector: str = Field(min_length=1)
    date: str
    priority: int = Field(100, ge=1, le=1_000_000)

    _date = field_validator("date")(lambda cls, v: _date(v))


class AssignmentDocument(Record):
    mode: Literal["replace", "upsert"]
    as_of: int = Field(ge=0)
    collectors: list[CollectorRecord] = Field(default_factory=list)
    customers: list[CustomerRecord] = Field(default_factory=list)
    contracts: list[ContractRecord] = Field(default_factory=list)
    assignments: list[AssignmentRecord] = Field(default_factory=list)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "document"


def parse_document(
    raw: bytes | str | dict[str, Any], currency: str | None = None
) -> AssignmentDocument:
    """Validate an assignment document; raise DocumentError naming the bad path."""
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DocumentError(
                f"assignment document is not valid JSON: {exc}"
            ) from None
    else:
        data = raw
    if not isinstance(data, dict):
        raise DocumentError("assignment document must be a JSON object")
    if "as_of" not in data:
        raise DocumentError(
            "as_of: missing (the last money seq HQ applied; 0 for a new device)"
        )

    try:
        doc = AssignmentDocument.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise DocumentError(f"{_path(first['loc'])}: {message}") from None

    # References between records are checked here, so nothing half-linked lands.
    customers = {c.id for c in doc.customers}
    contracts = {c.id for c in doc.contracts}
    for index, contract in enumerate(doc.contracts):
        if contract.customer not in customers:
            raise DocumentError(
                f"contracts[{index}].customer: {contract.customer!r} is not among "
                "the document's customers"
            )
        if currency and contract.currency != currency:
            raise DocumentError(
                f"contracts[{index}].currency: {contract.currency!r}, but this "
                f"device collects {currency}"
            )
    collectors = {c.id for c in doc.collectors}
    for index, assignment in enumerate(doc.assignments):
        if assignment.contract not in contracts:
            raise DocumentError(
                f"assignments[{index}].contract: {assignment.contract!r} is not "
                "among the document's contracts"
            )
        if collectors and assignment.collector not in collectors:
            raise DocumentError(
                f"assignments[{index}].collector: {assignment.collector!r} is not "
                "among the document's collectors"
            )
    for kind, items in (
        ("collectors", doc.collectors),
        ("customers", doc.customers),
        ("contracts", doc.contracts),
        ("assignments", doc.assignments),
    ):
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.id in seen:  # type: ignore[attr-defined]
                raise DocumentError(f"{kind}[{index}].id: repeats an earlier record")
            seen.add(item.id)  # type: ignore[attr-defined]
    return doc
