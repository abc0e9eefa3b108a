"""The real ``kiosk run`` in a real terminal (tmux at 80x24): sign in, take a
payment with keystrokes, shut down, and find the payment in the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from kiosk.config import load_config
from kiosk.ledger import Ledger
from tests.conftest import ROOT, need_tool
from tests.factories import PIN, make_document

pytestmark = pytest.mark.integration


class Tmux:
    """One tmux server of our own, on its own socket, with one session."""

    def __init__(self, tool: str, socket: str) -> None:
        self.tool = tool
        self.socket = socket

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            [self.tool, "-L", self.socket, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "kiosk")

    def wait_for(self, words: str, limit_s: float = 30.0) -> str:
        """Poll the pane until it shows the words; fail with the screen if not."""
        deadline = time.monotonic() + limit_s
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if words in shown:
                return shown
            time.sleep(0.2)
        pytest.fail(f"the screen never showed {words!r}; it shows:\n{shown}")

    def exit_status(self, status_file: Path, log: Path, limit_s: float = 60.0) -> str:
        """Wait for the command in the pane to end and return its exit status.

        The shell around the command writes the status to a file: tmux's own
        ``pane_dead_status`` is left empty when the terminal closes before tmux
        reaps the process, which happens often.
        """
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if status_file.exists() and status_file.read_text().strip():
                return status_file.read_text().strip()
            time.sleep(0.2)
        tail = log.read_text(encoding="utf-8")[-3000:] if log.exists() else "(no log)"
        pytest.fail(
            f"kiosk run did not end; the screen shows:\n{self.screen()}\n"
            f"and its log ends:\n{tail}"
        )

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "kiosk", *keys)
        # Pace the keys like a person: Enter moves the focus through a message,
        # and keys sent in the same instant would land in the old field.
        time.sleep(0.3)


def test_kiosk_run_takes_a_payment_in_tmux(tmp_path: Path) -> None:
    tool = need_tool("tmux")
    data = tmp_path / "data"
    config_path = tmp_path / "kiosk.toml"
    config_path.write_text(
        "[device]\n"
        f'data_dir = "{data}"\n'
        'language = "en"\n'
        'timezone = "UTC"\n'
        "[gps]\n"
        'source = "fixed:-6.9147,107.6098"\n',
        encoding="utf-8",
    )
    config = load_config(config_path)
    ledger = Ledger(config)
    ledger.import_document(make_document(3, date=datetime.now(UTC).date().isoformat()))
    ledger.close()

    tmux_conf = tmp_path / "tmux.conf"
    tmux_conf.write_text("set -g remain-on-exit on\n", encoding="utf-8")
    tmux = Tmux(tool, f"kiosk-ui-test-{os.getpid()}")
    status_file = tmp_path / "exit-status"
    command = (
        f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} -m kiosk run "
        f"--config {config_path}; echo $? > {status_file}"
    )
    tmux(
        "-f",
        str(tmux_conf),
        "new-session",
        "-d",
        "-s",
        "kiosk",
        "-x",
        "80",
        "-y",
        "24",
        command,
    )
    try:
        tmux.wait_for("Collector ID")
        tmux.keys("c1", "Enter")
        tmux.keys(PIN, "Enter")
        tmux.wait_for("Siti Nurhaliza")
        tmux.keys("F2")
        tmux.wait_for("Amount received")
        tmux.keys("500000")
        tmux.wait_for("500.000")
        tmux.keys("Enter")
        tmux.wait_for("Please confirm")
        tmux.keys("Enter")
        shown = tmux.wait_for("Receipt KIOSK-01-000001")
        assert "Traceback" not in shown

        # Leave the way a collector does, then shut the kiosk down.
        tmux.keys("Escape")
        tmux.wait_for("Type to filter")
        tmux.keys("Escape")
        tmux.wait_for("Collector ID")
        tmux.keys("F12")
        status = tmux.exit_status(status_file, data / "ui.log")
        # The screen is drawn on stderr, so the log file is where a failure shows.
        log_text = (data / "ui.log").read_text(encoding="utf-8")
        assert status == "0", f"{status}\n{log_text}"
    finally:
        subprocess.run(
            [tool, "-L", tmux.socket, "kill-server"], capture_output=True, timeout=10
        )

    ledger = Ledger(load_config(config_path))
    try:
        with ledger.store.read() as conn:
            payments = conn.execute(
                text("SELECT receipt_no, contract_id, amount FROM payment")
            ).all()
    finally:
        ledger.close()
    assert [tuple(p) for p in payments] == [(1, "K-0001", 500_000)]
