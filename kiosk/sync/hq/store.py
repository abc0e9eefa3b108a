"""HQ's database: every device event, device health, journal chains, alarms, commands.

One schema for SQLite and PostgreSQL, written with SQLAlchemy Core. Events are
stored once by their id (``INSERT ... ON CONFLICT DO NOTHING``), so a worker may
see any event twice, or two workers may race on it, without harm. The schema
carries a version; ``migrate`` brings an older database forward and refuses one
made by a newer release.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from kiosk.errors import StoreError
from kiosk.journal import GENESIS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SQLITE_BUSY_MS = 10_000

metadata = MetaData()

schema_version = Table(
    "hq_schema",
    metadata,
    Column("version", Integer, nullable=False),
)

# Every message a device sent on evt/#, loc: the envelope's fields, its data as
# JSON text, and what the chain check made of it.
events = Table(
    "hq_event",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("device", String(32), nullable=False),
    Column("lane", String(8), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(40), nullable=False),
    Column("time", String(32), nullable=False),
    Column("collector", String(64)),
    Column("boot", String(64)),
    Column("prev", String(64)),
    Column("hash", String(64)),
    Column("ref", String(64)),
    Column("data", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    # stored (not on the money lane) | pending | verified | tampered | conflict
    Column("status", String(12), nullable=False),
    Column("problem", Text),
    Index("hq_event_lane_seq", "device", "lane", "seq"),
    Index("hq_event_status", "device", "status"),
    Index("hq_event_ref", "device", "ref"),
    Index("hq_event_time", "time"),
)

devices = Table(
    "hq_device",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("online", Boolean),
    Column("boot", String(64)),
    Column("version", String(40)),
    Column("reported_cash", Text),
    Column("outbox_depth", Integer),
    Column("outbox_oldest_age_s", Float),
    Column("time_trust", Text),
    Column("last_fix", Text),
    Column("last_location", Text),
    Column("last_seq", BigInteger),
    Column("state_seq", BigInteger),
    Column("state_hash", String(64)),
    Column("state_time", String(32)),
    Column("state", Text),
    Column("state_at", Float),
)

# The journal chain as HQ has checked it, one row per device. Gap, resync and
# acknowledgement bookkeeping lives here so that any worker can carry it on.
chains = Table(
    "hq_chain",
    metadata,
    Column("device", String(32), primary_key=True),
    Column("verified_seq", BigInteger, nullable=False),
    Column("verified_hash", String(64), nullable=False),
    Column("verified_time", String(32)),
    Column("broken_seq", BigInteger),
    Column("problem", Text),
    Column("gap_seq", BigInteger),
    Column("gap_since", Float),
    Column("resync_seq", BigInteger),
    Column("resync_sent_at", Float),
    Column("ack_seq", BigInteger, nullable=False),
    Column("ack_sent_at", Float, nullable=False),
)

# Cash held per collector as HQ reads it from the verified journal.
cash = Table(
    "hq_cash",
    metadata,
    Column("device", String(32), primary_key=True),
    Column("collector", String(64), primary_key=True),
    Column("held", BigInteger, nullable=False),
    Column("currency", String(3)),
    Column("seq", BigInteger, nullable=False),
)

alarms = Table(
    "hq_alarm",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Deduplicates the same alarm raised by two workers or by a resent event.
    Column("key", String(160), nullable=False, unique=True),
    Column("device", String(32), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("seq", BigInteger),
    Column("event_id", String(64)),
    Column("message", Text, nullable=False),
    Column("raised_at", Float, nullable=False),
    Column("cleared_at", Float),
    Index("hq_alarm_device", "device", "cleared_at"),
)

commands = Table(
    "hq_command",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("device", String(32), nullable=False),
    Column("name", String(20), nullable=False),
    Column("body", Text, nullable=False),
    Column("issued", String(32), nullable=False),
    Column("expires", String(32), nullable=False),
    Column("sent_at", Float, nullable=False),
    Column("sent_by", String(128)),
    Column("ack_ok", Boolean),
    Column("ack_reason", Text),
    Column("acked_at", Float),
    Index("hq_command_device", "device", "sent_at"),
)


def _create_v1(conn: Connection) -> None:
    # Version 1 is the first schema. When a later version changes one of these
    # tables, its version 1 shape is frozen here and the change goes into a new
    # migration, so an old database always walks the same path.
    metadata.create_all(
        conn,
        tables=[events, devices, chains, cash, alarms, commands],
        checkfirst=True,
    )


# Forward migrations: MIGRATIONS[n] brings a version n-1 database to version n.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _create_v1}


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL to open; plain ``postgresql://`` means psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable database URL)"


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class HqStore:
    """Owns the engine of HQ's database.

    Args:
        url: An SQLAlchemy URL: ``sqlite:///PATH`` or ``postgresql://...``.
        migrate: Bring the schema to the current version on open.

    Raises:
        StoreError: The database cannot be opened, or is newer than this release.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalise_url(url)
        try:
            self.engine: Engine = self._engine()
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StoreError(
                f"hq.db_url {safe_url(url)!r} cannot be used: {exc}"
            ) from None
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"hq.db_url: {self.dialect} is not supported; use sqlite:///PATH "
                "or postgresql://..."
            )
        if migrate:
            self.migrate()

    def _engine(self) -> Engine:
        if not self.url.startswith("sqlite"):
            return create_engine(self.url, pool_pre_ping=True, pool_size=4)

        engine = create_engine(
            self.url,
            connect_args={"isolation_level": None, "check_same_thread": False},
        )

        # Writers take the lock when they begin, so two HQ processes never both
        # read a chain and then race to move it on.
        def on_connect(dbapi: Any, _record: Any) -> None:
            dbapi.execute("PRAGMA journal_mode=WAL")
            dbapi.execute("PRAGMA synchronous=NORMAL")
            dbapi.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")

        def on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", on_begin)
        return engine

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; database failures come out as StoreError."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise StoreError(
                f"HQ database {safe_url(self.url)}: {exc.orig or exc}"
            ) from exc

    # --- schema ------------------------------------------------------------

    def version(self, conn: Connection) -> int:
        if not self.engine.dialect.has_table(conn, schema_version.name):
            return 0
        value = conn.execute(select(func.max(schema_version.c.version))).scalar()
        return int(value or 0)

    def migrate(self) -> int:
        """Bring the schema forward to SCHEMA_VERSION; return the version."""
        with self.begin() as conn:
            if self.dialect == "postgresql":
                # Two workers starting together must not both create tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243001)")
            schema_version.create(conn, checkfirst=True)
            current = self.version(conn)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"HQ database {safe_url(self.url)} has schema version {current}, "
                    f"newer than this release knows ({SCHEMA_VERSION}); upgrade kiosk"
                )
            for target in range(current + 1, SCHEMA_VERSION + 1):
                log.info("HQ database: migrating to schema version %d", target)
                MIGRATIONS[target](conn)
            if current < SCHEMA_VERSION:
                conn.execute(schema_version.delete())
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        return SCHEMA_VERSION

    # --- writes ------------------------------------------------------------

    def _insert(self, table: Table) -> Any:
        return (
            postgresql.insert(table)
            if self.dialect == "postgresql"
            else sqlite.insert(table)
        )

    def insert_ignore(
        self, conn: Connection, table: Table, rows: list[dict[str, Any]]
    ) -> int:
        """Insert rows, skipping any whose key is already there; count the new."""
        if not rows:
            return 0
        statement = self._insert(table).on_conflict_do_nothing()
        result = conn.execute(statement, rows)
        return max(int(result.rowcount or 0), 0)

    def upsert(
        self,
        conn: Connection,
        table: Table,
        row: dict[str, Any],
        keys: Iterable[str],
    ) -> None:
        """Insert a row, or overwrite its other columns when the key exists."""
        keys = list(keys)
        statement = self._insert(table).values(**row)
        changes = {k: statement.excluded[k] for k in row if k not in keys}
        conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes))

    def touch_device(self, conn: Connection, device: str, now: float) -> None:
        self.insert_ignore(
            conn, devices, [{"id": device, "first_seen": now, "last_seen": now}]
        )
        conn.execute(
            update(devices)
            .where(devices.c.id == device, devices.c.last_seen < now)
            .values(last_seen=now)
        )

    def ensure_chain(self, conn: Connection, device: str) -> None:
        self.insert_ignore(
            conn,
            chains,
            [
                {
                    "device": device,
                    "verified_seq": 0,
                    "verified_hash": GENESIS,
                    "ack_seq": 0,
                    "ack_sent_at": 0.0,
                }
            ],
        )

    def raise_alarm(
        self,
        conn: Connection,
        device: str,
        kind: str,
        message: str,
        *,
        key: str,
        seq: int | None = None,
        event_id: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Record an alarm once per key; True when it is new (and logged)."""
        new = self.insert_ignore(
            conn,
            alarms,
            [
                {
                    "key": key[:160],
                    "device": device,
                    "kind": kind,
                    "seq": seq,
                    "event_id": event_id,
                    "message": message,
                    "raised_at": time.time() if now is None else now,
                }
            ],
        )
        if new:
            log.warning("ALARM %s %s: %s", device, kind, message)
        return bool(new)

    def record_command(
        self, conn: Connection, command: dict[str, Any], sent_by: str
    ) -> None:
        self.insert_ignore(
            conn,
            commands,
            [
                {
                    "id": command["id"],
                    "device": command["device"],
                    "name": command["name"],
                    "body": dumps(command["body"]),
                    "issued": command["issued"],
                    "expires": command["expires"],
                    "sent_at": time.time(),
                    "sent_by": sent_by,
                }
            ],
        )

    def record_ack(
        self,
        conn: Connection,
        device: str,
        command_id: str,
        ok: bool,
        reason: str,
        now: float,
    ) -> bool:
        """Store a device's answer to a command; False for an unknown command."""
        result = conn.execute(
            update(commands)
            .where(commands.c.id == command_id, commands.c.device == device)
            .values(ack_ok=ok, ack_reason=reason, acked_at=now)
        )
        return bool(result.rowcount)

    # --- reads -------------------------------------------------------------

    def chain(self, conn: Connection, device: str) -> dict[str, Any] | None:
        row = conn.execute(select(chains).where(chains.c.device == device)).first()
        return None if row is None else dict(row._mapping)

    def cash_view(self, conn: Connection, device: str) -> dict[str, int]:
        rows = conn.execute(
            select(cash.c.collector, cash.c.held).where(cash.c.device == device)
        ).all()
        return {str(c): int(h) for c, h in rows}

    def open_alarms(
        self, conn: Connection, device: str | None = None
    ) -> list[dict[str, Any]]:
        query = select(alarms).where(alarms.c.cleared_at.is_(None))
        if device is not None:
            query = query.where(alarms.c.device == device)
        rows = conn.execute(query.order_by(alarms.c.raised_at, alarms.c.id)).all()
        return [dict(r._mapping) for r in rows]
