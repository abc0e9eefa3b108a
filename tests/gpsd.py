"""gpsfake running its own gpsd on a free loopback port, looping a capture."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import need_tool


class FakeGpsd:
    """gpsfake running its own gpsd on a free loopback port, looping a capture."""

    def __init__(self, capture: Path, port: int, folder: Path) -> None:
        self.gpsfake = need_tool("gpsfake")
        self.gpsd = need_tool("gpsd")
        self.capture, self.port, self.folder = capture, port, folder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PATH"] = f"{Path(self.gpsd).parent}:{env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [
                self.gpsfake,
                "-q",
                "-n",
                "-c",
                "0.02",
                "-P",
                str(self.port),
                "-W",
                "60",
                str(self.capture),
            ],
            env=env,
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # gpsfake and the gpsd it started share the session made above.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
