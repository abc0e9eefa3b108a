"""The store: pragmas, forward migrations, and refusing an unhealthy file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from kiosk.errors import StoreError
from kiosk.store import SCHEMA_VERSION, Store


def test_new_store_uses_wal_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    assert store.schema_version() == SCHEMA_VERSION


def test_migrates_a_version_1_database_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    with raw:
        # Make it look like a version 1 file: no speed or course on track points.
        raw.execute("ALTER TABLE trackpoint DROP COLUMN vel")
        raw.execute("ALTER TABLE trackpoint DROP COLUMN cog")
        raw.execute("INSERT INTO trackpoint (time, lat, lon) VALUES ('t', 1.5, 2.5)")
        raw.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    raw.close()

    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    with store.read() as conn:
        columns = {r[1] for r in conn.exec_driver_sql("PRAGMA table_info(trackpoint)")}
        assert {"vel", "cog"} <= columns
        assert conn.execute(text("SELECT lat, lon FROM trackpoint")).one() == (1.5, 2.5)


def test_refuses_a_database_in_the_wrong_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=DELETE")
    raw.close()
    with pytest.raises(StoreError, match="journal mode 'delete', not 'wal'"):
        Store(path)


def test_refuses_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = Store(path)
    with store.write() as conn:
        for n in range(2000):
            conn.execute(
                text("INSERT INTO meta (key, value) VALUES (:k, :v)"),
                {"k": f"k{n}", "v": "x" * 200},
            )
    store.close()
    data = bytearray(path.read_bytes())
    # Scribble over the middle pages, leaving the header intact.
    for offset in range(len(data) // 2, len(data) // 2 + 8192):
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="restore it from a backup"):
        Store(path)


def test_refuses_a_foreign_database_and_a_newer_schema(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    raw = sqlite3.connect(other)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE songs (title TEXT)")
    raw.close()
    with pytest.raises(StoreError, match="not a kiosk database"):
        Store(other)

    newer = tmp_path / "newer.db"
    Store(newer).close()
    raw = sqlite3.connect(newer)
    with raw:
        raw.execute(
            f"UPDATE meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'"
        )
    raw.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store(newer)


def test_counters_are_gap_free_inside_transactions(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    with store.write() as conn:
        assert Store.next_counter(conn, "receipt") == 1
    with pytest.raises(RuntimeError), store.write() as conn:
        assert Store.next_counter(conn, "receipt") == 2
        raise RuntimeError("rolled back")
    with store.write() as conn:
        assert Store.next_counter(conn, "receipt") == 2


def test_an_unusable_data_directory_is_one_clear_error(tmp_path: Path) -> None:
    """Regression: a data_dir under /proc or behind a file gave a traceback."""
    afile = tmp_path / "plain-file"
    afile.write_text("x")
    for path in (Path("/proc/no-such-dir/kiosk.db"), afile / "kiosk.db"):
        with pytest.raises(StoreError, match="cannot use the data directory"):
            Store(path)
