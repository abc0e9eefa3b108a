"""The device's retained state message: what HQ sees on its device board.

The link publishes it retained on ``kiosk/v1/<device>/state`` when it connects,
whenever something in it changes, and every ``broker.state_interval_s``. The
broker keeps the last one, so HQ reads a device's state the moment it
subscribes, even while the device is away. The last will is the short offline
form with the same ``boot``, so HQ can tell which run of the device went quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kiosk import __version__
from kiosk.ledger import Ledger
from kiosk.sync.protocol import VERSION
from kiosk.timefmt import rfc3339

log = logging.getLogger(__name__)

# Parts of the state that move on their own (clocks, ages) and so do not count
# as a change worth a new message; the periodic refresh carries them.
VOLATILE = ("time", "outbox_oldest_age_s")


def build_state(
    ledger: Ledger,
    *,
    online: bool,
    extra: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The full state message of a running device.

    Args:
        ledger: The device's ledger, read for cash, outbox, journal and time.
        online: False for the message a device sends as it shuts down.
        extra: Returns the hardware side (``printer``, ``gps``, ``last_fix``);
            a failure there is logged and leaves those fields empty.
    """
    status = ledger.status()
    hardware: dict[str, Any] = {}
    if extra is not None:
        try:
            hardware = dict(extra())
        except Exception:
            log.exception("device state for the printer and GPS failed")

    outbox = status["outbox"]
    journal = status["journal"]
    return {
        "v": VERSION,
        "device": status["device"],
        "online": online,
        "boot": status["boot"],
        "version": __version__,
        "time": rfc3339(datetime.now(UTC)),
        "mode": status["mode"],
        "currency": status["currency"],
        "cash_held": status["cash_held"],
        "outbox_depth": outbox["depth"],
        "outbox_lanes": outbox["lanes"],
        "outbox_oldest_age_s": outbox["oldest_age_s"],
        "printer": hardware.get("printer"),
        "gps": hardware.get("gps"),
        "last_fix": hardware.get("last_fix"),
        "time_trust": status["time"],
        "journal": {"seq": journal["seq"], "hash": journal["hash"]},
        "journal_ack": status["journal_ack"],
        "locked": status["locked"],
        "policy_version": status["policy_version"],
    }


def offline_state(device: str, boot: str) -> dict[str, Any]:
    """The last will: the device's run ``boot`` is gone, with no other news."""
    return {"v": VERSION, "device": device, "online": False, "boot": boot}


def fingerprint(state: dict[str, Any]) -> dict[str, Any]:
    """The state without the fields that change by themselves, for comparing."""
    return {k: v for k, v in state.items() if k not in VOLATILE}
