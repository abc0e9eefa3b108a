"""Receipt layout and the receipt verification code."""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

import pytest

from kiosk.config import Config
from kiosk.errors import BadInput
from kiosk.receipt import (
    Line,
    ReceiptSettings,
    amount_in_words,
    render_lines,
    render_text,
)
from kiosk.receipt_code import make_code, verify_code

KEY = bytes(range(32))
TIME = "2026-12-04T08:15:02.123Z"


def receipt_job(**changes: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "kind": "receipt",
        "receipt": "KIOSK-01-000042",
        "copy": 0,
        "device": {"id": "KIOSK-01", "name": "Unit 7", "branch": "Bandung Timur"},
        "time": TIME,
        "collector": {"id": "c1", "name": "Budi"},
        "customer": {
            "id": "CU-1",
            "name": "Siti Nurhaliza",
            "address": "Jl. Soekarno-Hatta No. 12, Bandung",
        },
        "contract": "K-001",
        "currency": "IDR",
        "exponent": 0,
        "allocations": [
            {"no": 3, "due": "2026-10-01", "amount": 500000},
            {"no": 4, "due": "2026-11-01", "amount": 250000},
        ],
        "amount": 750000,
        "balance": 2250000,
        "next_due": {"date": "2026-12-01", "amount": 500000},
        "location": {"result": "inside", "distance_m": 35},
        "code": make_code(KEY, "KIOSK-01", "KIOSK-01-000042", 750000, "IDR", TIME),
        "override": None,
    }
    job.update(changes)
    return job


def text_of(job: dict[str, Any], **settings: Any) -> list[str]:
    chosen = ReceiptSettings(**settings)
    return render_text(render_lines(job, chosen), chosen.columns).splitlines()


# --- verification code ----------------------------------------------------


def test_code_round_trip() -> None:
    code = make_code(KEY, "KIOSK-01", "KIOSK-01-000042", 750000, "IDR", TIME)
    parsed = verify_code(KEY, code)
    assert code.startswith(f"K1|KIOSK-01|KIOSK-01-000042|750000|IDR|{TIME}|")
    assert (parsed.device, parsed.receipt, parsed.amount) == (
        "KIOSK-01",
        "KIOSK-01-000042",
        750000,
    )
    assert (parsed.currency, parsed.time) == ("IDR", TIME)


def test_code_mac_is_hmac_of_receipt_key() -> None:
    """The mac follows the published rule, so HQ can compute it independently."""
    code = make_code(KEY, "KIOSK-01", "KIOSK-01-000042", 750000, "IDR", TIME)
    body = code[: code.rindex("|") + 1]
    receipt_key = hmac.new(KEY, b"receipt", hashlib.sha256).digest()
    mac = hmac.new(receipt_key, body.encode(), hashlib.sha256).hexdigest()[:16]
    assert code == body + mac


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.replace("|750000|", "|950000|"),
        lambda c: c.replace("KIOSK-01-000042", "KIOSK-01-000043"),
        lambda c: c.replace("|IDR|", "|USD|"),
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),
    ],
)
def test_code_altered_is_refused(change: Any) -> None:
    code = make_code(KEY, "KIOSK-01", "KIOSK-01-000042", 750000, "IDR", TIME)
    with pytest.raises(BadInput, match="altered or not issued"):
        verify_code(KEY, change(code))


def test_code_from_another_device_key_is_refused() -> None:
    code = make_code(bytes(32), "KIOSK-01", "KIOSK-01-000042", 750000, "IDR", TIME)
    with pytest.raises(BadInput):
        verify_code(KEY, code)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "K2|KIOSK-01|R1|1|IDR|2026-12-04T08:15:02.123Z|0123456789abcdef",
        "K1|KIOSK-01|R1|1.5|IDR|2026-12-04T08:15:02.123Z|0123456789abcdef",
        "K1|KIOSK-01|R1|1|IDR|yesterday|0123456789abcdef",
        "K1|KIOSK-01|R1|1|IDR|2026-12-04T08:15:02.123Z|0123",
        "K1|KIOSK-01|R1|1|IDR|2026-12-04T08:15:02.123Z|0123456789abcdef|x",
    ],
)
def test_code_malformed_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        verify_code(KEY, text)


def test_code_refuses_fields_that_break_the_format() -> None:
    with pytest.raises(BadInput):
        make_code(KEY, "KIOSK|01", "R1", 1, "IDR", TIME)
    with pytest.raises(BadInput):
        make_code(KEY, "KIOSK-01", "R1", 1.5, "IDR", TIME)  # type: ignore[arg-type]


# --- layout ---------------------------------------------------------------


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_receipt_fits_the_paper(columns: int) -> None:
    job = receipt_job(
        customer={
            "id": "CU-1",
            "name": "Raden Ajeng Kartini Djojoadhiningrat Soerjosoeparto",
            "address": "Jl. " + "Panjang " * 12,
        }
    )
    lines = render_lines(job, ReceiptSettings(columns=columns, header=("PT Maju",)))
    for line in lines:
        limit = columns // 2 if line.double else columns
        assert len(line.text) <= limit, line
    for text in render_text(lines, columns).splitlines():
        assert len(text) <= columns


def test_receipt_32_columns_indonesian() -> None:
    lines = text_of(receipt_job(), header=("PT Maju Jaya",), footer=("Terima kasih",))
    assert lines == [
        "          PT Maju Jaya",
        "             Unit 7",
        "         Bandung Timur",
        "-" * 32,
        "            KWITANSI",
        "No.              KIOSK-01-000042",
        "Tanggal     04-12-2026 15:15 WIB",
        "Kolektor               Budi (c1)",
        "-" * 32,
        "Pelanggan                   CU-1",
        "Siti Nurhaliza",
        "Jl. Soekarno-Hatta No. 12,",
        "Bandung",
        "Kontrak                    K-001",
        "-" * 32,
        "Angsuran 3 jt 01-10-2026 500.000",
        "Angsuran 4 jt 01-11-2026 250.000",
        "JUMLAH               IDR 750.000",
        "Terbilang: Tujuh ratus lima",
        "puluh ribu rupiah",
        "Sisa pinjaman      IDR 2.250.000",
        "Jatuh tempo",
        "          01-12-2026 IDR 500.000",
        "Lokasi          di lokasi (35 m)",
        "-" * 32,
        "              [QR]",
        "-" * 32,
        "          Terima kasih",
    ]


def test_receipt_english_locale_and_minor_units() -> None:
    job = receipt_job(
        currency="USD",
        exponent=2,
        amount=1250,
        balance=250075,
        allocations=[{"no": 1, "due": "2026-10-01", "amount": 1250}],
        next_due=None,
    )
    lines = text_of(job, columns=42, language="en", locale="en", timezone="UTC")
    assert "Date                  2026-12-04 08:15 UTC" in lines
    assert "Installment 1 due 2026-10-01         12.50" in lines
    assert "TOTAL" + " " * 28 + "USD 12.50" in lines
    assert "In words: Twelve dollars fifty cents" in lines
    assert "Balance" + " " * 23 + "USD 2,500.75" in lines
    assert not any(line.startswith("Next due") for line in lines)


def test_receipt_time_in_device_zone() -> None:
    lines = text_of(receipt_job(), columns=48, timezone="Asia/Jayapura")
    assert any(line.endswith("04-12-2026 17:15 WIT") for line in lines)


def test_receipt_copy_shows_copy_and_count() -> None:
    lines = text_of(receipt_job(copy=2), columns=42, language="en", locale="en")
    assert "*** COPY ***" in [line.strip() for line in lines]
    assert "(reprint 2)" in [line.strip() for line in lines]
    assert not any("COPY" in line for line in text_of(receipt_job(), columns=42))


def test_receipt_possible_duplicate_is_marked() -> None:
    settings = ReceiptSettings(language="en")
    lines = render_lines(receipt_job(), settings, possible_duplicate=True)
    assert Line("*** POSSIBLE DUPLICATE ***", "center", bold=True) in lines


def test_receipt_override_and_location_outside() -> None:
    job = receipt_job(
        location={"result": "outside", "distance_m": 412},
        override={"supervisor": "s1", "reason": "customer moved to a new house"},
    )
    lines = text_of(job, language="en", locale="en")
    assert "Location  outside radius (412 m)" in lines
    assert "Approved by                   s1" in lines
    assert "Reason: customer moved to a new" in lines


def test_receipt_without_words_or_code() -> None:
    lines = render_lines(receipt_job(code=None), ReceiptSettings(amount_in_words=False))
    assert not any("Terbilang" in line.text for line in lines)
    assert not any(line.qr for line in lines)
    assert lines[-1] == Line(cut=True)


def test_receipt_qr_carries_the_code() -> None:
    job = receipt_job()
    (qr,) = [line.qr for line in render_lines(job, ReceiptSettings()) if line.qr]
    assert verify_code(KEY, qr).amount == 750000


def test_receipt_names_with_control_characters_stay_on_their_line() -> None:
    job = receipt_job(customer={"id": "CU-1", "name": "Siti\nNur\thaliza"})
    assert "Siti Nur haliza" in text_of(job)


def test_void_deposit_reports_and_hub() -> None:
    base = receipt_job()
    void = dict(base, kind="void", reason="wrong contract", supervisor="s1")
    assert "PEMBATALAN" in [line.strip() for line in text_of(void)]
    assert "Alasan: wrong contract" in text_of(void)

    deposit = {
        "kind": "deposit",
        "ref": "BANK-123",
        "amount": 5_000_000,
        "held_after": 250_000,
        "time": TIME,
        "collector": {"id": "c1", "name": "Budi"},
        "device": base["device"],
        "currency": "IDR",
        "exponent": 0,
    }
    lines = text_of(deposit, language="en")
    assert "Reference" + " " * 15 + "BANK-123" in lines
    assert "TOTAL" + " " * 14 + "IDR 5.000.000" in lines

    report = {
        "kind": "z_report",
        "date": "2026-12-04",
        "collector": {"id": "c1", "name": "Budi"},
        "device": base["device"],
        "currency": "IDR",
        "exponent": 0,
        "opening": 100_000,
        "collected": 750_000,
        "payments": 1,
        "voided": 0,
        "voids": 0,
        "deposited": 0,
        "expected": 850_000,
        "counted": 840_000,
        "variance": -10_000,
        "time": TIME,
    }
    lines = text_of(report)
    assert "LAPORAN Z" in [line.strip() for line in lines]
    assert "Selisih" + " " * 14 + "IDR -10.000" in lines
    assert "Pembayaran" + " " * 21 + "1" in lines

    hub = {
        "kind": "hub",
        "title": "Statement of account",
        "lines": ["Contract K-001", "", "Paid in full. " * 5],
        "time": TIME,
        "device": base["device"],
    }
    lines = text_of(hub, columns=48, language="en")
    assert "Statement of account" in "".join(lines)
    assert "Contract K-001" in lines
    assert "" in lines


@pytest.mark.parametrize(
    "job",
    [
        {"kind": "payslip"},
        {"kind": "receipt"},
        dict(receipt_job(), time="yesterday"),
        dict(receipt_job(), allocations=[{"no": 1}]),
    ],
)
def test_render_bad_job_is_bad_input(job: dict[str, Any]) -> None:
    with pytest.raises(BadInput):
        render_lines(copy.deepcopy(job), ReceiptSettings())


def test_settings_refuse_other_widths() -> None:
    with pytest.raises(BadInput):
        ReceiptSettings(columns=40)


def test_settings_from_config() -> None:
    config = Config.model_validate(
        {
            "device": {"language": "en", "locale": "en", "timezone": "Asia/Makassar"},
            "printer": {"columns": 48},
            "receipt": {"header": ["PT Maju"], "amount_in_words": False},
        }
    )
    settings = ReceiptSettings.from_config(config)
    assert (settings.columns, settings.header, settings.amount_in_words) == (
        48,
        ("PT Maju",),
        False,
    )
    assert (settings.language, settings.timezone) == ("en", "Asia/Makassar")


def test_amount_in_words() -> None:
    assert (
        amount_in_words(1_500_000, 0, "IDR", "id") == "Satu juta lima ratus ribu rupiah"
    )
    assert amount_in_words(750_000, 0, "IDR", "en").startswith(
        "Seven hundred and fifty"
    )
    assert amount_in_words(1005, 2, "EUR", "en") == "Ten euro five cents"
