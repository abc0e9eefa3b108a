"""Shared test helpers: where the corpus is, real tools, free loopback ports.

Integration tests use real parts. Outside CI a missing part skips the test with
the reason; in CI (``CI=true``) it fails, because a skipped integration test there
would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

pytest_plugins = ["tests.brokers", "tests.pg"]

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """Skip outside CI; fail in CI, where every part must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


def need_tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        missing(f"{name} is not installed")
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def corpus() -> Path:
    """The shared corpus of real captures, read in place."""
    if not CORPUS.is_dir():
        missing(f"the shared corpus is not at {CORPUS}")
    return CORPUS
