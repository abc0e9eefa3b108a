"""Builders for test data: configurations, assignment documents, ledgers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kiosk.config import Config, parse_config
from kiosk.ledger import Ledger
from kiosk.pins import hash_pin

PIN = "1234"
SUPERVISOR_PIN = "9876"
NAMES = [
    "Siti Nurhaliza",
    "Budi Santoso",
    "José Müller",
    "Ñoño Pérez",
    "Đặng Thị Hồng",
    "Ахмед Иванов",
    "王小明",
    "Zoë Straße",
]


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {"device": {"data_dir": str(data_dir)}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data)


def make_document(
    customers: int = 3,
    *,
    installments: int = 4,
    amount: int = 500_000,
    as_of: int = 0,
    mode: str = "replace",
    date: str | None = None,
    collector: str = "c1",
    center: tuple[float, float] = (-6.9147, 107.6098),
    currency: str = "IDR",
) -> dict[str, Any]:
    """An assignment document: one contract per customer, monthly installments."""
    today = dt.date.fromisoformat(date) if date else dt.date.today()
    doc: dict[str, Any] = {
        "mode": mode,
        "as_of": as_of,
        "collectors": [
            {
                "id": collector,
                "name": "Budi",
                "role": "collector",
                "pin_hash": hash_pin(PIN, ln=4),
            },
            {
                "id": "s1",
                "name": "Sari",
                "role": "supervisor",
                "pin_hash": hash_pin(SUPERVISOR_PIN, ln=4),
            },
        ],
        "customers": [],
        "contracts": [],
        "assignments": [],
    }
    for n in range(customers):
        cid = f"CU-{n + 1:04d}"
        kid = f"K-{n + 1:04d}"
        doc["customers"].append(
            {
                "id": cid,
                "name": NAMES[n % len(NAMES)],
                "phone": f"+62 812 {n:04d}",
                "address": f"Jl. Merdeka No. {n + 1}",
                "lat": center[0] + n * 0.001,
                "lon": center[1],
                "radius_m": 150,
            }
        )
        schedule = []
        for i in range(installments):
            due = today.replace(day=1) - dt.timedelta(days=30 * (installments - 2 - i))
            schedule.append(
                {"no": i + 1, "due": due.isoformat(), "amount": amount, "paid": 0}
            )
        doc["contracts"].append(
            {"id": kid, "customer": cid, "currency": currency, "installments": schedule}
        )
        doc["assignments"].append(
            {
                "id": f"A-{n + 1:04d}",
                "contract": kid,
                "collector": collector,
                "date": today.isoformat(),
                "priority": n + 1,
            }
        )
    return doc


def make_ledger(
    data_dir: Path, customers: int = 3, **sections: dict[str, Any]
) -> Ledger:
    ledger = Ledger(make_config(data_dir, **sections))
    ledger.import_document(make_document(customers))
    return ledger
