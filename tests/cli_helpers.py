"""Running the real ``kiosk`` command and service in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def kiosk(
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "kiosk", *args]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        input=input_text,
        timeout=timeout,
    )


def kiosk_json(*args: str, **kw: Any) -> tuple[int, Any]:
    done = kiosk(*args, "--json", **kw)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


def start_agent(
    config: Path, data_dir: Path, *, log: Path | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = open(log or data_dir / "agent.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "agent", "--config", str(config), "-v"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    sock = data_dir / "kiosk.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"agent did not start: {(data_dir / 'agent.log').read_text()}"
            )
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
