"""The assignment document: local import and HQ's ``assignments`` command share it.

Validated whole before anything is applied; a bad record is named by its path
(``contracts[3].installments[1].due``). Unknown fields are kept.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from kiosk.errors import DocumentError
from kiosk.pins import is_phc

MAX_AMOUNT = 10**15
MAX_SEQ = 2**63 - 1  # the store's largest integer
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Bidirectional embeddings, overrides and isolates reorder what is shown: on a
# receipt they could make one name or amount read as another.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _id_text(value: str) -> str:
    """An id is typed on a keypad and printed: no invisible or look-alike forms."""
    for char in value:
        category = unicodedata.category(char)
        if category[0] in "CZ":
            raise ValueError(
                f"{char!r} is not allowed in an id (no spaces, control or "
                "invisible characters)"
            )
    if unicodedata.normalize("NFKC", value) != value:
        raise ValueError(
            f"{value!r} uses look-alike characters (such as full-width letters); "
            f"write it as {unicodedata.normalize('NFKC', value)!r}"
        )
    return value


def _shown_text(value: str) -> str:
    """Text shown on screen and printed: no control characters or bidi overrides."""
    for char in value:
        if unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS:
            raise ValueError(
                f"{char!r} is not allowed: control characters and text-direction "
                "overrides garble the screen and the receipt"
            )
    return value


Id = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_id_text)]
Shown = Annotated[str, AfterValidator(_shown_text)]


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    def extra_json(self) -> str:
        return json.dumps(self.model_extra or {}, ensure_ascii=False, sort_keys=True)


def _date(value: str) -> str:
    # fromisoformat alone also takes week dates (2026-W49-5) and other digits.
    if not DATE.fullmatch(value):
        raise ValueError("expected a date YYYY-MM-DD")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a date YYYY-MM-DD that exists") from None
    return value


class CollectorRecord(Record):
    id: Id
    name: Shown = Field(min_length=1, max_length=200)
    role: Literal["collector", "supervisor"] = "collector"
    pin_hash: str

    @field_validator("pin_hash")
    @classmethod
    def _phc(cls, value: str) -> str:
        if not is_phc(value):
            raise ValueError("expected a PHC string $scrypt$ln=..,r=..,p=..$salt$hash")
        return value


class CustomerRecord(Record):
    id: Id
    name: Shown = Field(min_length=1, max_length=200)
    phone: Shown = Field("", max_length=64)
    address: Shown = Field("", max_length=500)
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
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
    id: Id
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
    id: Id
    contract: str = Field(min_length=1)
    collector: str = Field(min_length=1)
    date: str
    priority: int = Field(100, ge=1, le=1_000_000)

    _date = field_validator("date")(lambda cls, v: _date(v))


class AssignmentDocument(Record):
    mode: Literal["replace", "upsert"]
    as_of: int = Field(ge=0, le=MAX_SEQ)
    collectors: list[CollectorRecord] = Field(default_factory=list)
    customers: list[CustomerRecord] = Field(default_factory=list)
    contracts: list[ContractRecord] = Field(default_factory=list)
    assignments: list[AssignmentRecord] = Field(default_factory=list)


def _unencodable(value: Any, path: str = "") -> str | None:
    """The path of the first text a UTF-8 store cannot hold, if any."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else path or "document"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and not _encodes(key):
                return path or "document"
            found = _unencodable(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unencodable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    if isinstance(raw, bytes):
        # JSON in UTF-8 as the format says (a leading BOM is tolerated); without
        # this, json.loads would guess UTF-16 or UTF-32 from the first bytes.
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(
                f"assignment document is not UTF-8: byte {exc.start} cannot be read"
            ) from None
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            problem = str(exc)
            if "integer string conversion" in problem:
                problem = "a number has thousands of digits"
            raise DocumentError(
                f"assignment document is not valid JSON: {problem}"
            ) from None
        except RecursionError:
            raise DocumentError(
                "assignment document is not valid JSON: nested too deeply"
            ) from None
    else:
        data = raw
    if not isinstance(data, dict):
        raise DocumentError("assignment document must be a JSON object")
    if "as_of" not in data:
        raise DocumentError(
            "as_of: missing (the last money seq HQ applied; 0 for a new device)"
        )
    broken = _unencodable(data)
    if broken is not None:
        raise DocumentError(f"{broken}: text with a lone surrogate (not UTF-8)")

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
