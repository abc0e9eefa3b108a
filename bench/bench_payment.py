"""The latency of one durable payment against a plain sqlite3 insert.

Both run in the same process on the same disk with the same pragmas (WAL,
``synchronous=FULL``). The store is first filled with payments through the
ledger itself (with ``synchronous=OFF`` for speed; the timed part uses FULL),
so the cost is measured at the size a busy device reaches.

    python -m bench.bench_payment [--stored 100000] [--samples 300]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kiosk.ledger import Ledger
from kiosk.store import Store
from tests.factories import PIN, make_config, make_document

CASH = {"max_in_hand": 10**14, "max_payment": 10**12, "allow_overpayment": True}


def _ledger(root: Path, synchronous: str) -> Ledger:
    config = make_config(root, cash=CASH)
    store = Store(root / "kiosk.db", synchronous=synchronous, check=False)
    return Ledger(config, store)


def fill(root: Path, payments: int) -> None:
    ledger = _ledger(root, "OFF")
    ledger.import_document(make_document(50, installments=2, amount=10**10))
    actor = ledger.authenticate("c1", PIN)
    for n in range(payments):
        ledger.collect(actor, f"K-{n % 50 + 1:04d}", 1000 + n % 97)
    ledger.close()


def time_payments(root: Path, samples: int) -> list[float]:
    ledger = _ledger(root, "FULL")
    actor = ledger.authenticate("c1", PIN)
    out = []
    for n in range(samples):
        started = time.perf_counter()
        ledger.collect(actor, f"K-{n % 50 + 1:04d}", 1000 + n % 97)
        out.append(time.perf_counter() - started)
    ledger.close()
    return out


def time_plain(root: Path, samples: int) -> list[float]:
    db = sqlite3.connect(root / "plain.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE payment (id INTEGER PRIMARY KEY, contract TEXT, amount INT)"
    )
    out = []
    for n in range(samples):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO payment (contract, amount) VALUES (?, ?)", ("K", n))
        db.execute("COMMIT")
        out.append(time.perf_counter() - started)
    db.close()
    return out


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(stored: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        fill(root, stored)
        payment = time_payments(root, samples)
        plain = time_plain(root, samples)
        size = (root / "kiosk.db").stat().st_size
    p50, plain50 = statistics.median(payment), statistics.median(plain)
    p95, plain95 = percentile(payment, 0.95), percentile(plain, 0.95)
    return {
        "name": "durable payment vs plain sqlite3 insert",
        "stored_payments": stored,
        "samples": samples,
        "payment_ms": {"p50": round(p50 * 1000, 3), "p95": round(p95 * 1000, 3)},
        "plain_insert_ms": {
            "p50": round(plain50 * 1000, 3),
            "p95": round(plain95 * 1000, 3),
        },
        "ratio_p50": round(p50 / plain50, 2),
        "ratio_p95": round(p95 / plain95, 2),
        "goal_ratio": 3.0,
        "database_mb": round(size / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(run(args.stored, args.samples), indent=2))


if __name__ == "__main__":
    main()
