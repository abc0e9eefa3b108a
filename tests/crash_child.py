"""A forked child that makes payments as fast as it can until it is killed."""

from __future__ import annotations

import os
from pathlib import Path

from kiosk.ledger import Ledger
from tests.factories import PIN, make_config


def pay_forever(data_dir: str, ready_fd: int) -> None:
    config = make_config(
        Path(data_dir),
        cash={"max_in_hand": 10**14, "max_payment": 10**9, "allow_overpayment": True},
    )
    ledger = Ledger(config, check=False)
    budi = ledger.authenticate("c1", PIN)
    os.write(ready_fd, b"ready\n")
    n = 0
    while True:
        n += 1
        ledger.collect(budi, f"K-000{n % 3 + 1}", 1000 + n % 7)
