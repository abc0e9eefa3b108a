"""A real PostgreSQL for tests, found or started, with a fresh database each time.

In order: ``KIOSK_TEST_PG_URL`` when set; else a server answering on
127.0.0.1:5432 that lets ``postgres`` in without a password; else a throw-away
cluster made with ``initdb`` and run with ``pg_ctl`` on a free loopback port in a
temporary folder (through ``su postgres`` when running as root, since the server
refuses to run as root). When none of these works, ``missing`` says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, missing

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class PgServer:
    """A reachable server and the admin URL to make databases with."""

    def __init__(self, admin_url: str, *, can_create: bool = True) -> None:
        self.admin_url = admin_url
        self.can_create = can_create
        self.made: list[str] = []

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        if not self.can_create:
            return self.admin_url
        import psycopg
        from psycopg import sql

        name = f"kiosk_hq_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_psycopg_url(self.admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        base, _, _ = _psycopg_url(self.admin_url).rpartition("/")
        return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)

    def drop(self, url: str) -> None:
        import psycopg
        from psycopg import sql

        name = url.rsplit("/", 1)[1]
        if name not in self.made:
            return
        with psycopg.connect(_psycopg_url(self.admin_url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )
        self.made.remove(name)

    def drop_all(self) -> None:
        for name in list(self.made):
            self.drop(f"x/{name}")


def _try(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(_psycopg_url(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _can_create(url: str) -> bool:
    import psycopg

    with psycopg.connect(_psycopg_url(url), connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    return bool(row and row[0])


class Cluster:
    """A throw-away cluster in a temporary folder, run as ``postgres`` if root."""

    def __init__(self) -> None:
        self.initdb = shutil.which("initdb") or ""
        self.pg_ctl = shutil.which("pg_ctl") or ""
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kiosk-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        if self.as_root:
            command = " ".join(f"'{a}'" for a in argv)
            argv = ("su", "postgres", "-s", "/bin/sh", "-c", command)
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False
        )

    def start(self) -> str:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        done = self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust"
        )
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        )
        done = self._run(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the session; see the module's docstring."""
    cluster: Cluster | None = None
    env = os.environ.get("KIOSK_TEST_PG_URL")
    if env:
        if not _try(env):
            missing(f"KIOSK_TEST_PG_URL={env} does not answer")
        server = PgServer(env, can_create=_can_create(env))
    elif _answers("127.0.0.1", 5432) and _try(LOCAL_URL):
        server = PgServer(LOCAL_URL)
    else:
        if not (shutil.which("initdb") and shutil.which("pg_ctl")):
            missing("PostgreSQL is not installed (initdb, pg_ctl) and none answers")
        cluster = Cluster()
        try:
            server = PgServer(cluster.start())
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            cluster.stop()
            missing(f"cannot start a PostgreSQL cluster: {exc}")
            raise

    yield server

    server.drop_all()
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """One fresh database for the whole session."""
    return pg_server.new_database()


@pytest.fixture
def pg_db(pg_server: PgServer) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    url = pg_server.new_database()
    yield url
    pg_server.drop(url)
