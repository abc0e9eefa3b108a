"""Setting up the real parts the families share: configurations, data, agents."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from kiosk.config import Config, load_config
from kiosk.control import ControlClient
from kiosk.errors import ServiceUnavailable
from kiosk.ledger import Ledger
from tests.factories import PIN, make_document

log = logging.getLogger(__name__)

DEVICE = "FAULT-01"
AUTH = {"collector": "c1", "pin": PIN}
# Limits far above what a run collects: the faults, not the cash policy, are
# what is tested.
CASH = {"max_in_hand": 10**14, "max_payment": 10**9, "allow_overpayment": True}
LOCATION = {"outside": "allow", "no_fix": "allow"}
KEY = "ab" * 32


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    """A device configuration file in ``folder``, data in ``folder/data``.

    The device key is written beside it, and the ``[hq]`` section points at a
    database and key folder in ``folder/hq`` so that HQ can run from the same
    file.
    """
    keys = folder / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    key = keys / f"{DEVICE}.key"
    key.write_text(KEY)
    data: dict[str, dict[str, Any]] = {
        "device": {"id": DEVICE, "data_dir": str(folder / "data")},
        "cash": dict(CASH),
        "location": dict(LOCATION),
        "security": {"key_file": str(key)},
        "hq": {"db_url": f"sqlite:///{folder / 'hq.db'}", "keys_dir": str(keys)},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
        for name, values in data.items()
    )
    path = folder / "kiosk.toml"
    path.write_text(text)
    return path


def prepare(config_path: Path, customers: int = 3) -> Config:
    """Load a configuration and give its device today's assignments."""
    config = load_config(config_path)
    ledger = Ledger(config, check=False)
    try:
        ledger.import_document(make_document(customers, installments=2, amount=10**8))
    finally:
        ledger.close()
    return config


def contract(n: int, customers: int = 3) -> str:
    return f"K-{n % customers + 1:04d}"


def wait_for_service(data_dir: Path, timeout: float = 30.0) -> bool:
    """Wait until the agent answers on its socket (a killed one leaves the file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with ControlClient(data_dir / "kiosk.sock", timeout=5) as client:
                client.call("service_status", {})
                return True
        except (ServiceUnavailable, OSError):
            time.sleep(0.05)
    return False


def wait_until(check: Any, timeout: float, pause: float = 0.05) -> bool:
    """Poll ``check`` until it is truthy; False when it never was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(pause)
    return bool(check())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
