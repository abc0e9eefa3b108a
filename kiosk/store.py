"""The SQLite store: one file, WAL, ``synchronous=FULL``, checked at open.

Writers take the lock at the start of their transaction (``BEGIN IMMEDIATE``) so
that two processes never both read a counter and then race to bump it; readers
use deferred transactions and never block writers under WAL.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from kiosk import tables  # noqa: F401  (registers the tables on the metadata)
from kiosk.errors import DiskFull, StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000


def _add_track_speed(conn: Connection) -> None:
    # Version 2 keeps the course and speed of each track point, which the live
    # track's OwnTracks form sends as ``cog`` and ``vel``.
    columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(trackpoint)")}
    if "vel" not in columns:
        conn.exec_driver_sql("ALTER TABLE trackpoint ADD COLUMN vel FLOAT")
    if "cog" not in columns:
        conn.exec_driver_sql("ALTER TABLE trackpoint ADD COLUMN cog FLOAT")


# Forward migrations: MIGRATIONS[n] brings a version n-1 database to version n.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _add_track_speed}


def _disk_error(exc: BaseException) -> StoreError:
    message = str(getattr(exc, "orig", exc))
    if "disk is full" in message or "disk I/O error" in message:
        return DiskFull(
            "the data disk is full: nothing was recorded; free space on the "
            "data partition and try again"
        )
    if "locked" in message:
        return StoreError(
            "the database stayed locked by another kiosk process; try again"
        )
    return StoreError(f"database error: {message}")


class Store:
    """Owns the engine for one kiosk database file."""

    def __init__(
        self, path: Path, *, check: bool = True, synchronous: str = "FULL"
    ) -> None:
        self.path = Path(path)
        # Only a benchmark's bulk preparation asks for less than FULL.
        self.synchronous = synchronous
        try:
            existed = self.path.exists() and self.path.stat().st_size > 0
            if existed:
                self._preflight(check)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except StoreError:
            raise  # already says what is wrong (a full disk is also an OSError)
        except OSError as exc:
            raise StoreError(
                f"cannot use the data directory {self.path.parent}: "
                f"{exc.strerror or exc}; check device.data_dir"
            ) from None

        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"isolation_level": None, "check_same_thread": False},
        )
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "connect", self._on_connect_sync)
        event.listen(self.engine, "begin", self._on_begin)

        try:
            self._migrate(existed)
        except OperationalError as exc:
            raise _disk_error(exc) from None

    def _preflight(self, check: bool) -> None:
        """Refuse a file that is not a healthy kiosk database before using it."""
        try:
            raw = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
                result = (
                    raw.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
                )
            finally:
                raw.close()
        except sqlite3.DatabaseError as exc:
            # A full disk fails the first read here too (the shared-memory file
            # cannot grow); it must not be taken for a damaged database.
            problem = _disk_error(exc)
            if isinstance(problem, DiskFull):
                raise problem from None
            raise StoreError(
                f"{self.path} is not a usable database ({exc}); restore it from "
                "a backup or move it away"
            ) from None
        if mode.lower() != "wal":
            raise StoreError(
                f"{self.path} is in journal mode {mode!r}, not 'wal': it was "
                "changed outside the kiosk; restore it from a backup"
            )
        if result != "ok":
            raise StoreError(
                f"{self.path} failed its integrity check ({result}); restore it "
                "from a backup"
            )

    @staticmethod
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    def _on_connect_sync(self, dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA synchronous={self.synchronous}")

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    def _migrate(self, existed: bool) -> None:
        with self.write() as conn:
            has_meta = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).first()
            if not has_meta:
                if existed:
                    tables_present = conn.exec_driver_sql(
                        "SELECT count(*) FROM sqlite_master WHERE type='table'"
                    ).scalar_one()
                    if tables_present:
                        raise StoreError(
                            f"{self.path} is not a kiosk database; move it away"
                        )
                SQLModel.metadata.create_all(conn)
                sql(
                    conn,
                    ("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"),
                    {"v": str(SCHEMA_VERSION)},
                )
                log.info("created database %s at schema %d", self.path, SCHEMA_VERSION)
                return

            version = int(
                conn.exec_driver_sql(
                    "SELECT value FROM meta WHERE key='schema_version'"
                ).scalar_one()
            )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} is at schema {version}, newer than this program "
                    f"({SCHEMA_VERSION}); install the newer kiosk or restore the backup"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](conn)
                log.info("migrated %s to schema %d", self.path, target)
            # New tables added since are created; existing ones are left alone.
            SQLModel.metadata.create_all(conn)
            if version != SCHEMA_VERSION:
                sql(
                    conn,
                    ("UPDATE meta SET value=:v WHERE key='schema_version'"),
                    {"v": str(SCHEMA_VERSION)},
                )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction, holding the database's write lock throughout."""
        try:
            with (
                self.engine.connect().execution_options(
                    sqlite_begin="IMMEDIATE"
                ) as conn,
                conn.begin(),
            ):
                yield conn
        except OperationalError as exc:
            raise _disk_error(exc) from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent snapshot for reading."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise _disk_error(exc) from None

    def schema_version(self) -> int:
        with self.read() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT value FROM meta WHERE key='schema_version'"
                ).scalar_one()
            )

    def get_meta(
        self, conn: Connection, key: str, default: str | None = None
    ) -> str | None:
        row = sql(conn, ("SELECT value FROM meta WHERE key=:k"), {"k": key}).first()
        return row[0] if row else default

    @staticmethod
    def set_meta(conn: Connection, key: str, value: str) -> None:
        sql(
            conn,
            (
                "INSERT INTO meta (key, value) VALUES (:k, :v) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value"
            ),
            {"k": key, "v": value},
        )

    @staticmethod
    def next_counter(conn: Connection, name: str) -> int:
        """Bump a gap-free counter inside the caller's write transaction."""
        return int(
            sql(
                conn,
                (
                    "INSERT INTO counter (name, value) VALUES (:n, 1) "
                    "ON CONFLICT(name) DO UPDATE SET value=value+1 RETURNING value"
                ),
                {"n": name},
            ).scalar_one()
        )

    @staticmethod
    def add_to_counter(conn: Connection, name: str, delta: int) -> int:
        return int(
            sql(
                conn,
                (
                    "INSERT INTO counter (name, value) VALUES (:n, :d) "
                    "ON CONFLICT(name) DO UPDATE SET value=value+:d RETURNING value"
                ),
                {"n": name, "d": delta},
            ).scalar_one()
        )

    @staticmethod
    def counter(conn: Connection, name: str) -> int:
        row = sql(
            conn, ("SELECT value FROM counter WHERE name=:n"), {"n": name}
        ).first()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.engine.dispose()


# --- a thin, fast path to SQLite for the ledger's own statements -------------
#
# SQLAlchemy's text() statements cost about 0.2 ms each in compiling and result
# handling; a payment runs twenty of them. The ledger's statements are plain
# SQLite with named parameters, so they go straight to the driver's cursor in
# the same transaction, and rows keep attribute access through named tuples.

_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _row_type(names: tuple[str, ...]) -> Any:
    if names not in _ROW_TYPES:
        _ROW_TYPES[names] = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    return _ROW_TYPES[names]


class Rows:
    """The result of one statement, read the way SQLAlchemy results are."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor
        self.rowcount = cursor.rowcount
        description = cursor.description
        self._type = (
            _row_type(tuple(d[0] for d in description)) if description else None
        )

    def __iter__(self) -> Iterator[Any]:
        make = self._type
        for values in self.cursor:
            yield make._make(values) if make else values

    def first(self) -> Any:
        values = self.cursor.fetchone()
        if values is None or self._type is None:
            return values
        return self._type._make(values)

    def all(self) -> list[Any]:
        return list(self)

    def one(self) -> Any:
        row = self.first()
        if row is None:
            raise StoreError("expected a row, found none")
        return row

    def scalar(self) -> Any:
        values = self.cursor.fetchone()
        return None if values is None else values[0]

    def scalar_one(self) -> Any:
        values = self.cursor.fetchone()
        if values is None:
            raise StoreError("expected a value, found none")
        return values[0]

    scalar_one_or_none = scalar

    def scalars(self) -> list[Any]:
        return [values[0] for values in self.cursor]


def sql(conn: Connection, statement: str, params: dict[str, Any] | None = None) -> Rows:
    """Run one SQLite statement inside ``conn``'s transaction."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    try:
        return Rows(raw.execute(statement, params or {}))
    except sqlite3.OperationalError as exc:
        raise _disk_error(exc) from None
