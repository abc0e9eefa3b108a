"""Receipt layout: one description of a printout, rendered as text or ESC/POS.

``render_lines`` turns a print job (the JSON payload the core stores with the
payment) into a list of :class:`Line`, already broken to the paper's width.
``render_text`` shows those lines as plain text for the screen preview, logs
and tests; ``kiosk.hardware.printer.render`` turns the same lines into ESC/POS
bytes, so the paper and the preview never disagree about line breaks.
"""

from __future__ import annotations

import logging
import textwrap
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from num2words import num2words

from kiosk.errors import BadInput
from kiosk.money import format_amount

if TYPE_CHECKING:
    from kiosk.config import Config

log = logging.getLogger(__name__)

Align = Literal["left", "center", "right"]
Language = Literal["id", "en"]
KINDS = ("receipt", "void", "deposit", "x_report", "z_report", "hub")


@dataclass(frozen=True)
class Line:
    """One printed line, or one non-text element of the printout.

    Attributes:
        text: The characters of the line, never wider than the paper allows
            (half the columns when ``double``).
        align: Where the printer places the text.
        bold: Emphasised print.
        double: Double width and height.
        rule: A full-width separator instead of text.
        qr: The contents of a QR code printed instead of text.
        cut: The end of the printout: feed and cut.
    """

    text: str = ""
    align: Align = "left"
    bold: bool = False
    double: bool = False
    rule: bool = False
    qr: str | None = None
    cut: bool = False


@dataclass(frozen=True)
class ReceiptSettings:
    """How receipts look on this device.

    Attributes:
        columns: Characters per line on the paper: 32, 42 or 48.
        header: Lines printed centred at the top of every printout.
        footer: Lines printed centred at the bottom of every printout.
        amount_in_words: Print the amount paid in words under the figures.
        language: The words on the receipt and the amount in words.
        locale: How numbers and dates are written ("id": 1.500.000, 31-12-2026;
            "en": 1,500,000, 2026-12-31).
        timezone: The device's IANA time zone for local dates and times.
    """

    columns: int = 32
    header: tuple[str, ...] = ()
    footer: tuple[str, ...] = ()
    amount_in_words: bool = True
    language: Language = "id"
    locale: Language = "id"
    timezone: str = "Asia/Jakarta"
    tz: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.columns not in (32, 42, 48):
            raise BadInput(f"receipt: {self.columns} columns; expected 32, 42 or 48")
        object.__setattr__(self, "tz", zoneinfo.ZoneInfo(self.timezone))

    @classmethod
    def from_config(cls, config: Config) -> ReceiptSettings:
        """Take the receipt settings from the device configuration."""
        return cls(
            columns=config.printer.columns,
            header=tuple(config.receipt.header),
            footer=tuple(config.receipt.footer),
            amount_in_words=config.receipt.amount_in_words,
            language=config.device.language,
            locale=config.device.locale,
            timezone=config.device.timezone,
        )


# The words printed on the paper, by language.
_WORDS: dict[str, dict[str, str]] = {
    "id": {
        "receipt": "KWITANSI",
        "void": "PEMBATALAN",
        "deposit": "SETORAN",
        "x_report": "LAPORAN X",
        "z_report": "LAPORAN Z",
        "copy": "SALINAN (COPY)",
        "reprint": "cetak ulang ke-{n}",
        "duplicate": "MUNGKIN GANDA",
        "duplicate_note": "cek apakah kwitansi ini sudah tercetak",
        "number": "No.",
        "date": "Tanggal",
        "day": "Hari",
        "collector": "Kolektor",
        "customer": "Pelanggan",
        "address": "Alamat",
        "contract": "Kontrak",
        "installment": "Angsuran {no} jt {due}",
        "total": "JUMLAH",
        "in_words": "Terbilang",
        "balance": "Sisa pinjaman",
        "next_due": "Jatuh tempo",
        "location": "Lokasi",
        "override": "Disetujui",
        "reason": "Alasan",
        "voided": "Kwitansi batal",
        "supervisor": "Supervisor",
        "reference": "Referensi",
        "held_after": "Kas di tangan",
        "opening": "Saldo awal",
        "collected": "Diterima",
        "payments": "Pembayaran",
        "voided_amount": "Dibatalkan",
        "voids": "Pembatalan",
        "deposited": "Disetor",
        "expected": "Seharusnya",
        "counted": "Dihitung",
        "variance": "Selisih",
        "inside": "di lokasi ({m} m)",
        "outside": "di luar radius ({m} m)",
        "no_fix": "tanpa GPS",
        "stale": "GPS kedaluwarsa",
        "inaccurate": "GPS tidak akurat",
        "branch": "kantor cabang",
        "minor": "sen",
    },
    "en": {
        "receipt": "RECEIPT",
        "void": "VOID",
        "deposit": "DEPOSIT",
        "x_report": "X REPORT",
        "z_report": "Z REPORT",
        "copy": "COPY",
        "reprint": "reprint {n}",
        "duplicate": "POSSIBLE DUPLICATE",
        "duplicate_note": "check whether this receipt already printed",
        "number": "No.",
        "date": "Date",
        "day": "Day",
        "collector": "Collector",
        "customer": "Customer",
        "address": "Address",
        "contract": "Contract",
        "installment": "Installment {no} due {due}",
        "total": "TOTAL",
        "in_words": "In words",
        "balance": "Balance",
        "next_due": "Next due",
        "location": "Location",
        "override": "Approved by",
        "reason": "Reason",
        "voided": "Voided receipt",
        "supervisor": "Supervisor",
        "reference": "Reference",
        "held_after": "Cash held",
        "opening": "Opening",
        "collected": "Collected",
        "payments": "Payments",
        "voided_amount": "Voided",
        "voids": "Voids",
        "deposited": "Deposited",
        "expected": "Expected",
        "counted": "Counted",
        "variance": "Variance",
        "inside": "at customer ({m} m)",
        "outside": "outside radius ({m} m)",
        "no_fix": "no GPS fix",
        "stale": "GPS fix too old",
        "inaccurate": "GPS fix inaccurate",
        "branch": "at branch",
        "minor": "cents",
    },
}

# Currency names for the amount in words; others are spelled by their code.
_CURRENCY_NAMES = {
    "id": {"IDR": "rupiah", "USD": "dolar", "EUR": "euro", "SGD": "dolar Singapura"},
    "en": {
        "IDR": "rupiah",
        "USD": "dollars",
        "EUR": "euro",
        "SGD": "Singapore dollars",
    },
}


def amount_in_words(minor: int, exponent: int, currency: str, language: str) -> str:
    """Spell an amount out in words, e.g. "tujuh ratus lima puluh ribu rupiah"."""
    whole, frac = divmod(abs(minor), 10**exponent)
    name = _CURRENCY_NAMES.get(language, {}).get(currency, currency)
    words = f"{num2words(whole, lang=language)} {name}"
    if frac:
        words += f" {num2words(frac, lang=language)} {_WORDS[language]['minor']}"
    if minor < 0:
        words = ("minus " if language == "en" else "kurang ") + words
    return words[:1].upper() + words[1:]


class _Layout:
    """Builds the lines of one printout at one width."""

    def __init__(self, job: dict[str, Any], settings: ReceiptSettings) -> None:
        self.job = job
        self.settings = settings
        self.width = settings.columns
        self.words = _WORDS[settings.language]
        self.lines: list[Line] = []

    # --- primitives ------------------------------------------------------

    def rule(self) -> None:
        self.lines.append(Line(rule=True))

    def centred(self, text: str, *, bold: bool = False, double: bool = False) -> None:
        width = self.width // 2 if double else self.width
        for part in _wrap(text, width):
            self.lines.append(Line(part, "center", bold=bold, double=double))

    def wrapped(self, text: str, *, indent: str = "") -> None:
        for part in _wrap(text, self.width, indent):
            self.lines.append(Line(part))

    def pair(self, label: str, value: str, *, bold: bool = False) -> None:
        """A label on the left and its value on the right of the same line.

        A pair too wide for one line puts the label on its own line and the
        value, wrapped, right-aligned under it, so a figure is never cut.
        """
        gap = self.width - len(label) - len(value)
        if gap >= 1:
            self.lines.append(Line(label + " " * gap + value, bold=bold))
            return

        self.lines.append(Line(label, bold=bold))
        for part in _wrap(value, self.width):
            self.lines.append(Line(part.rjust(self.width), bold=bold))

    # --- formatting ------------------------------------------------------

    def money(self, minor: int, *, currency: bool = False) -> str:
        exponent = int(self.job.get("exponent", 0))
        text = format_amount(int(minor), exponent, self.settings.locale)
        return f"{self.job.get('currency', '')} {text}".strip() if currency else text

    def day(self, value: str) -> str:
        parsed = date.fromisoformat(value)
        if self.settings.locale == "id":
            return parsed.strftime("%d-%m-%Y")
        return parsed.isoformat()

    def moment(self, value: str) -> str:
        when = datetime.fromisoformat(value).astimezone(self.settings.tz)
        pattern = "%d-%m-%Y %H:%M" if self.settings.locale == "id" else "%Y-%m-%d %H:%M"
        return f"{when.strftime(pattern)} {when.strftime('%Z')}".strip()

    def person(self, who: dict[str, Any] | None) -> str:
        if not who:
            return ""
        name, ident = str(who.get("name") or ""), str(who.get("id") or "")
        return f"{name} ({ident})" if name and ident else name or ident

    # --- sections --------------------------------------------------------

    def top(self, title: str) -> None:
        for text in self.settings.header:
            self.centred(text)
        device = self.job.get("device") or {}
        for key in ("name", "branch"):
            if device.get(key):
                self.centred(str(device[key]))
        self.rule()
        self.centred(title, bold=True, double=True)

    def marks(self, possible_duplicate: bool) -> None:
        copy = int(self.job.get("copy") or 0)
        if copy > 0:
            reprint = self.words["reprint"].format(n=copy)
            self.centred(f"*** {self.words['copy']} ***", bold=True)
            self.centred(f"({reprint})")
        if possible_duplicate:
            self.centred(f"*** {self.words['duplicate']} ***", bold=True)
            self.centred(self.words["duplicate_note"])

    def identity(self) -> None:
        w = self.words
        if self.job.get("receipt"):
            self.pair(w["number"], str(self.job["receipt"]))
        if self.job.get("time"):
            self.pair(w["date"], self.moment(self.job["time"]))
        if self.job.get("collector"):
            self.pair(w["collector"], self.person(self.job["collector"]))

    def customer(self) -> None:
        w = self.words
        customer = self.job.get("customer") or {}
        self.rule()
        self.pair(w["customer"], str(customer.get("id") or ""))
        if customer.get("name"):
            self.wrapped(str(customer["name"]))
        if customer.get("address"):
            self.wrapped(str(customer["address"]))
        if self.job.get("contract"):
            self.pair(w["contract"], str(self.job["contract"]))

    def payment(self) -> None:
        w = self.words
        job = self.job
        self.rule()
        for item in job.get("allocations") or []:
            label = w["installment"].format(no=item["no"], due=self.day(item["due"]))
            self.pair(label, self.money(item["amount"]))
        self.pair(w["total"], self.money(job["amount"], currency=True), bold=True)
        if self.settings.amount_in_words:
            words = amount_in_words(
                int(job["amount"]),
                int(job.get("exponent", 0)),
                str(job.get("currency", "")),
                self.settings.language,
            )
            self.wrapped(f"{w['in_words']}: {words}")

        if job.get("balance") is not None:
            self.pair(w["balance"], self.money(job["balance"], currency=True))
        next_due = job.get("next_due")
        if next_due:
            when = self.day(next_due["date"])
            self.pair(
                w["next_due"], f"{when} {self.money(next_due['amount'], currency=True)}"
            )

    def location(self) -> None:
        place = self.job.get("location")
        if not place:
            return
        result = str(place.get("result", ""))
        text = self.words.get(result, result).format(m=place.get("distance_m") or 0)
        self.pair(self.words["location"], text)

    def override(self) -> None:
        override = self.job.get("override")
        if not override:
            return
        self.pair(self.words["override"], str(override.get("supervisor", "")))
        if override.get("reason"):
            self.wrapped(f"{self.words['reason']}: {override['reason']}")

    def code(self) -> None:
        if self.job.get("code"):
            self.rule()
            self.lines.append(Line(align="center", qr=str(self.job["code"])))

    def bottom(self) -> None:
        if self.settings.footer:
            self.rule()
        for text in self.settings.footer:
            self.centred(text)
        self.lines.append(Line(cut=True))

    # --- kinds -----------------------------------------------------------

    def receipt(self, possible_duplicate: bool) -> None:
        self.top(self.words["receipt"])
        self.marks(possible_duplicate)
        self.identity()
        self.customer()
        self.payment()
        self.location()
        self.override()
        self.code()

    def void(self, possible_duplicate: bool) -> None:
        w = self.words
        self.top(w["void"])
        self.marks(possible_duplicate)
        self.identity()
        self.customer()
        self.rule()
        self.pair(w["voided"], str(self.job.get("receipt", "")))
        self.pair(w["total"], self.money(self.job["amount"], currency=True), bold=True)
        self.pair(w["supervisor"], str(self.job.get("supervisor", "")))
        self.wrapped(f"{w['reason']}: {self.job.get('reason', '')}")

    def deposit(self, possible_duplicate: bool) -> None:
        w = self.words
        self.top(w["deposit"])
        self.marks(possible_duplicate)
        self.identity()
        self.rule()
        self.pair(w["reference"], str(self.job.get("ref", "")))
        self.pair(w["total"], self.money(self.job["amount"], currency=True), bold=True)
        if self.job.get("held_after") is not None:
            self.pair(w["held_after"], self.money(self.job["held_after"]))

    def report(self, possible_duplicate: bool) -> None:
        w = self.words
        job = self.job
        self.top(w[job["kind"]])
        self.marks(possible_duplicate)
        self.pair(w["day"], self.day(job["date"]))
        self.identity()
        self.rule()
        self.pair(w["opening"], self.money(job.get("opening", 0)))
        self.pair(w["collected"], self.money(job.get("collected", 0)))
        self.pair(w["payments"], str(job.get("payments", 0)))
        self.pair(w["voided_amount"], self.money(job.get("voided", 0)))
        self.pair(w["voids"], str(job.get("voids", 0)))
        self.pair(w["deposited"], self.money(job.get("deposited", 0)))
        self.rule()
        self.pair(w["expected"], self.money(job["expected"], currency=True), bold=True)
        if job.get("counted") is not None:
            self.pair(w["counted"], self.money(job["counted"], currency=True))
        if job.get("variance") is not None:
            self.pair(w["variance"], self.money(job["variance"], currency=True))

    def hub(self, possible_duplicate: bool) -> None:
        self.top(str(self.job.get("title", "")))
        self.marks(possible_duplicate)
        if self.job.get("time"):
            self.pair(self.words["date"], self.moment(self.job["time"]))
        self.rule()
        for text in self.job.get("lines") or []:
            if not str(text).strip():
                self.lines.append(Line())
            else:
                self.wrapped(str(text))


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    # Names and addresses come from HQ data: tabs and line breaks in them must
    # not reach the printer as control characters.
    text = " ".join(str(text).split())
    if not text:
        return []
    return textwrap.wrap(
        text, width, subsequent_indent=indent, break_on_hyphens=False
    ) or [text[:width]]


def render_lines(
    job: dict[str, Any], settings: ReceiptSettings, *, possible_duplicate: bool = False
) -> list[Line]:
    """Lay a print job out as lines for the paper width in ``settings``.

    Args:
        job: The print job payload as the core stores it.
        settings: Paper width, header and footer, language, locale, time zone.
        possible_duplicate: Mark the printout as possibly printed before (the
            job was interrupted mid-print and is printed again).

    Raises:
        BadInput: The job is of an unknown kind or misses a field it needs.
    """
    kind = job.get("kind")
    if kind not in KINDS:
        raise BadInput(f"print job: unknown kind {kind!r}; expected one of {KINDS}")

    layout = _Layout(job, settings)
    build = {
        "receipt": layout.receipt,
        "void": layout.void,
        "deposit": layout.deposit,
        "x_report": layout.report,
        "z_report": layout.report,
        "hub": layout.hub,
    }[kind]
    try:
        build(possible_duplicate)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(
            f"print job: a {kind} job is missing or has a bad {exc}"
        ) from exc

    layout.bottom()
    return layout.lines


def place(text: str, align: Align, columns: int) -> str:
    """Position text on a line of ``columns`` characters as the printer would."""
    if align == "center":
        return " " * max(0, (columns - len(text)) // 2) + text
    if align == "right":
        return text.rjust(columns)
    return text


def render_text(lines: Iterable[Line], columns: int) -> str:
    """Show lines as plain text with the same line breaks as the paper.

    A rule is a row of dashes, a QR code is the mark ``[QR]`` and the cut adds
    no line.
    """
    out: list[str] = []
    for line in lines:
        if line.cut:
            continue
        if line.rule:
            out.append("-" * columns)
        elif line.qr is not None:
            out.append(place("[QR]", "center", columns))
        else:
            out.append(place(line.text, line.align, columns))
    return "".join(f"{text}\n" for text in out)
