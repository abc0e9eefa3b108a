"""The position fix: what every GPS source produces and the location policy reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from time import monotonic


class FixMode(IntEnum):
    """gpsd's numbering, so reports from gpsd and from NMEA compare directly."""

    UNKNOWN = 0
    NO_FIX = 1
    TWO_D = 2
    THREE_D = 3


@dataclass(frozen=True, slots=True)
class Fix:
    """One position report.

    ``received`` is the ``time.monotonic()`` reading when the fix arrived. Age is
    measured from it, never from ``time``, so a replayed capture with old dates is
    as fresh as it is on arrival, and a clock that jumps does not age a fix.
    """

    lat: float
    lon: float
    mode: FixMode = FixMode.THREE_D
    time: datetime | None = None
    alt: float | None = None
    speed: float | None = None  # metres per second
    course: float | None = None  # degrees true
    sats: int | None = None
    hdop: float | None = None
    accuracy_m: float | None = None
    quality: str | None = None  # "gps", "dgps", "rtk", "float", "dr", "manual"
    received: float = field(default_factory=monotonic)

    def age(self, now: float | None = None) -> float:
        """Seconds since the fix arrived, on the monotonic clock."""
        return max(0.0, (monotonic() if now is None else now) - self.received)

    @property
    def has_position(self) -> bool:
        return self.mode >= FixMode.TWO_D
