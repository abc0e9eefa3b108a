"""Journal tampering: edits, deletions and swaps made with SQL are found."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kiosk.canonical import sha256_hex
from kiosk.journal import GENESIS
from kiosk.ledger import Ledger
from tests.factories import PIN, make_ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = make_ledger(tmp_path, 3)
    budi = ledger.authenticate("c1", PIN)
    for n in range(6):
        ledger.collect(budi, f"K-000{n % 3 + 1}", 10_000 + n)
    assert ledger.verify()["ok"]
    return ledger


def _sql(ledger: Ledger, *statements: str) -> None:
    raw = sqlite3.connect(ledger.store.path)
    with raw:
        for statement in statements:
            raw.execute(statement)
    raw.close()


def test_hash_is_sha256_of_canonical_fields(ledger: Ledger) -> None:
    raw = sqlite3.connect(ledger.store.path)
    seq, prev, digest, type_, time, collector, data = raw.execute(
        "SELECT seq, prev, hash, type, time, collector, data FROM journal WHERE seq=1"
    ).fetchone()
    raw.close()
    assert prev == GENESIS
    expected = sha256_hex(
        {
            "seq": seq,
            "prev": prev,
            "type": type_,
            "time": time,
            "collector": collector,
            "data": json.loads(data),
        }
    )
    assert digest == expected


def test_edited_amount_is_named(ledger: Ledger) -> None:
    _sql(ledger, "UPDATE journal SET data=replace(data, '10003', '90003') WHERE seq=5")
    result = ledger.verify()
    assert not result["ok"]
    assert result["first_bad_seq"] == 5
    assert "entry 5" in result["problems"][0] and "edited" in result["problems"][0]


def test_deleted_entry_is_named(ledger: Ledger) -> None:
    _sql(ledger, "DELETE FROM journal WHERE seq=3")
    result = ledger.verify()
    assert result["first_bad_seq"] == 3
    assert "missing" in result["problems"][0]


def test_swapped_entries_are_named(ledger: Ledger) -> None:
    _sql(
        ledger,
        "UPDATE journal SET seq=-1 WHERE seq=4",
        "UPDATE journal SET seq=4 WHERE seq=5",
        "UPDATE journal SET seq=5 WHERE seq=-1",
    )
    result = ledger.verify()
    assert not result["ok"]
    assert result["first_bad_seq"] == 4


def test_rehashed_edit_breaks_the_next_link(ledger: Ledger) -> None:
    """An attacker who recomputes the edited entry's hash still breaks its successor."""
    raw = sqlite3.connect(ledger.store.path)
    seq, prev, type_, time, collector, data = raw.execute(
        "SELECT seq, prev, type, time, collector, data FROM journal WHERE seq=3"
    ).fetchone()
    body = json.loads(data)
    body["amount"] = 1
    forged = sha256_hex(
        {
            "seq": seq,
            "prev": prev,
            "type": type_,
            "time": time,
            "collector": collector,
            "data": body,
        }
    )
    with raw:
        raw.execute(
            "UPDATE journal SET data=?, hash=? WHERE seq=3", (json.dumps(body), forged)
        )
    raw.close()
    result = ledger.verify()
    assert result["first_bad_seq"] == 4
    assert "does not follow" in result["problems"][0]


def test_deleted_tail_is_found_from_the_payments(ledger: Ledger) -> None:
    _sql(ledger, "DELETE FROM journal WHERE seq >= 6")
    result = ledger.verify()
    assert not result["ok"]
    assert "tail was deleted" in result["problems"][0]


def test_deleted_tail_is_found_after_hq_acknowledged_it(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, 1)
    budi = ledger.authenticate("c1", PIN)
    ledger.open_day(budi, 0)
    ledger.visit(budi, "K-0001", "not_home")
    status = ledger.status()["journal"]
    ledger.record_journal_ack(status["seq"], status["hash"])
    _sql(ledger, f"DELETE FROM journal WHERE seq={status['seq']}")
    result = ledger.verify()
    assert "HQ verified entry" in result["problems"][0]


def test_cash_that_disagrees_with_movements_is_found(ledger: Ledger) -> None:
    _sql(ledger, "UPDATE counter SET value=value+5 WHERE name='cash:c1'")
    problems = ledger.verify()["problems"]
    assert any("cash held by c1" in p for p in problems)
