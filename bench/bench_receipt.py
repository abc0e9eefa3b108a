"""Receipt size and render time, native QR against image QR.

Renders a typical 40-line receipt (header, four installments, amount in words,
balance, location, override, footer and the verification QR code) and reports
the bytes sent, the render time and how long the bytes take on a serial line.
The goal is at most 2,400 bytes, a little over two seconds at 9600 baud.

Run ``python -m bench.bench_receipt``; it prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from typing import Any

from kiosk.hardware.printer.render import render_escpos
from kiosk.receipt import ReceiptSettings, render_lines, render_text
from kiosk.receipt_code import make_code

log = logging.getLogger(__name__)

GOAL_BYTES = 2400
BAUDS = (9600, 19200, 115200)
RUNS = 50
TIME = "2026-12-04T08:15:02.123Z"


def typical_job() -> dict[str, Any]:
    """A receipt with the fields a busy collection day produces."""
    return {
        "kind": "receipt",
        "receipt": "KIOSK-01-000042",
        "copy": 0,
        "device": {"id": "KIOSK-01", "name": "Unit 7", "branch": "Bandung Timur"},
        "time": TIME,
        "collector": {"id": "c1", "name": "Budi Santoso"},
        "customer": {
            "id": "CU-1",
            "name": "Siti Nurhaliza binti Abdullah",
            "address": "Jl. Soekarno-Hatta No. 123, Kel. Cisaranten, Bandung",
        },
        "contract": "K-2026-000123",
        "currency": "IDR",
        "exponent": 0,
        "allocations": [
            {"no": n, "due": f"2026-{n + 6:02d}-01", "amount": 500000}
            for n in (1, 2, 3)
        ]
        + [{"no": 4, "due": "2026-10-01", "amount": 250000}],
        "amount": 1750000,
        "balance": 4250000,
        "next_due": {"date": "2026-12-01", "amount": 500000},
        "location": {"result": "outside", "distance_m": 412},
        "code": make_code(
            bytes(32), "KIOSK-01", "KIOSK-01-000042", 1750000, "IDR", TIME
        ),
        "override": {"supervisor": "s1", "reason": "customer moved to a new house"},
    }


def measure(
    native_qr: bool, settings: ReceiptSettings, job: dict[str, Any]
) -> dict[str, Any]:
    """Bytes and median render time (layout and ESC/POS) for one QR mode."""
    timings = []
    data = b""
    for _ in range(RUNS):
        start = time.perf_counter()
        lines = render_lines(job, settings)
        data = render_escpos(
            lines, profile="POS-5890", columns=settings.columns, native_qr=native_qr
        )
        timings.append(time.perf_counter() - start)

    return {
        "bytes": len(data),
        "within_goal": len(data) <= GOAL_BYTES,
        "render_ms_median": round(statistics.median(timings) * 1000, 2),
        # 8N1 framing: ten bits on the wire per byte.
        "transfer_s": {str(baud): round(len(data) * 10 / baud, 3) for baud in BAUDS},
    }


def main() -> None:
    settings = ReceiptSettings(
        columns=32,
        header=("PT Maju Jaya Finance", "Jl. Asia Afrika 8, Bandung"),
        footer=("Terima kasih", "Simpan kwitansi ini", "sebagai bukti pembayaran"),
    )
    job = typical_job()
    lines = render_lines(job, settings)
    result = {
        "columns": settings.columns,
        "lines": len(render_text(lines, settings.columns).splitlines()),
        "goal_bytes": GOAL_BYTES,
        "native_qr": measure(True, settings, job),
        "image_qr": measure(False, settings, job),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
