"""The tamper-evident journal: the money lane of the protocol.

Each entry's ``hash`` is SHA-256 over the canonical JSON of
``{seq, prev, type, time, collector, data}``; ``prev`` is the hash of the entry
before, 64 zeros for the first. Editing, deleting or reordering any entry breaks
the chain at that entry, which ``verify`` names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from kiosk.canonical import sha256_hex
from kiosk.store import sql

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    prev: str
    hash: str
    type: str
    time: str
    collector: str | None
    data: dict[str, Any]


def entry_hash(
    seq: int, prev: str, type_: str, time: str, collector: str | None, data: Any
) -> str:
    return sha256_hex(
        {
            "seq": seq,
            "prev": prev,
            "type": type_,
            "time": time,
            "collector": collector,
            "data": data,
        }
    )


def last_entry(conn: Connection) -> tuple[int, str, str | None]:
    """The newest entry's seq, hash and time, or (0, GENESIS, None)."""
    row = sql(
        conn, ("SELECT seq, hash, time FROM journal ORDER BY seq DESC LIMIT 1")
    ).first()
    if row is None:
        return 0, GENESIS, None
    return int(row[0]), str(row[1]), str(row[2])


def append(
    conn: Connection, type_: str, time: str, collector: str | None, data: dict[str, Any]
) -> Entry:
    """Append one entry inside the caller's write transaction."""
    seq, prev, _ = last_entry(conn)
    seq += 1
    digest = entry_hash(seq, prev, type_, time, collector, data)
    sql(
        conn,
        (
            "INSERT INTO journal (seq, prev, hash, type, time, collector, data) "
            "VALUES (:seq, :prev, :hash, :type, :time, :collector, :data)"
        ),
        {
            "seq": seq,
            "prev": prev,
            "hash": digest,
            "type": type_,
            "time": time,
            "collector": collector,
            "data": json.dumps(data, ensure_ascii=False, sort_keys=True),
        },
    )
    return Entry(seq, prev, digest, type_, time, collector, data)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    entries: int
    last_seq: int
    last_hash: str
    problem: str = ""
    bad_seq: int | None = None


def verify_rows(rows: Any) -> VerifyResult:
    """Check a chain of rows (seq, prev, hash, type, time, collector, data-json)."""
    expected_seq, expected_prev, count = 1, GENESIS, 0
    for seq, prev, digest, type_, time, collector, data_json in rows:
        count += 1
        if seq != expected_seq:
            where = expected_seq
            what = (
                f"entry {where} is missing (next present is {seq})"
                if seq > expected_seq
                else f"entry {seq} is out of order"
            )
            return VerifyResult(
                False, count, expected_seq - 1, expected_prev, what, where
            )
        if prev != expected_prev:
            return VerifyResult(
                False,
                count,
                seq - 1,
                expected_prev,
                f"entry {seq} does not follow entry {seq - 1} (its prev hash differs): "
                f"an entry before it was edited, deleted or reordered",
                seq,
            )
        try:
            data = json.loads(data_json)
        except ValueError:
            return VerifyResult(
                False,
                count,
                seq - 1,
                expected_prev,
                f"entry {seq} data is not JSON",
                seq,
            )
        if entry_hash(seq, prev, type_, time, collector, data) != digest:
            return VerifyResult(
                False,
                count,
                seq - 1,
                expected_prev,
                f"entry {seq} ({type_} at {time}) was edited: its hash does not match",
                seq,
            )
        expected_seq, expected_prev = seq + 1, digest
    return VerifyResult(True, count, expected_seq - 1, expected_prev)


def verify(conn: Connection) -> VerifyResult:
    rows = sql(
        conn,
        (
            "SELECT seq, prev, hash, type, time, collector, data FROM journal "
            "ORDER BY rowid"
        ),
    )
    return verify_rows(rows)
