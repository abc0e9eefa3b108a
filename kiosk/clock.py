"""The device's idea of the time, and whether it may be trusted.

A Pi has no battery clock: after a power cut it may wake in 1970 or at the last
shutdown. With ``trust = "system"`` the system clock is used as it is, but never
before the newest journal entry. With ``"network_or_gps"`` the clock is trusted
only when the kernel says it is synchronised to network time, or once a good GPS
fix has measured its offset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kiosk.fix import Fix, FixMode

log = logging.getLogger(__name__)

# No GPS date before this software existed is believable; week-rollover
# receivers report 1999 or 1980 and must never set the clock.
RELEASE_DATE = datetime(2026, 11, 1, tzinfo=UTC)
TIME_ERROR = 5  # adjtimex: clock not synchronised


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def kernel_synchronised() -> bool:
    """True when the kernel clock is disciplined by NTP (chrony, timesyncd)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return False
    return state not in (-1, TIME_ERROR)


@dataclass(frozen=True, slots=True)
class Trust:
    trusted: bool
    source: str  # "system" | "network" | "gps" | "none"
    reason: str = ""
    offset_s: float = 0.0


class Clock:
    """Trusted wall-clock time for the journal, with the reason when it is not."""

    def __init__(
        self,
        trust: str = "system",
        *,
        wall: Callable[[], float] = time.time,
        synchronised: Callable[[], bool] = kernel_synchronised,
        on_correction: Callable[[float], None] | None = None,
    ) -> None:
        self.mode = trust
        self._wall = wall
        self._synchronised = synchronised
        self._gps_offset: float | None = None
        self.on_correction = on_correction
        self.correction_log_s = 5.0

    def now(self) -> datetime:
        offset = 0.0
        if self.mode == "network_or_gps" and not self._synchronised():
            offset = self._gps_offset or 0.0
        return datetime.fromtimestamp(self._wall() + offset, UTC)

    def state(self) -> Trust:
        if self.mode == "system":
            return Trust(True, "system")
        if self._synchronised():
            return Trust(True, "network")
        if self._gps_offset is not None:
            return Trust(True, "gps", offset_s=self._gps_offset)
        return Trust(
            False,
            "none",
            "the clock is not synchronised to network time and no GPS fix has "
            "corrected it yet; wait for a GPS fix under open sky or a network link",
        )

    def correct_from_gps(self, fix: Fix, not_before: datetime | None = None) -> bool:
        """Measure the clock's offset against a good GPS fix; True when taken."""
        if fix.mode < FixMode.THREE_D or fix.time is None:
            return False
        floor = max(RELEASE_DATE, not_before) if not_before else RELEASE_DATE
        if fix.time < floor:
            log.warning(
                "GPS reports %s, before %s: not used for the clock", fix.time, floor
            )
            return False

        # The fix's time was true when it arrived; age it to now on the
        # monotonic clock, then compare with the wall clock.
        true_now = fix.time + timedelta(seconds=fix.age())
        offset = true_now.timestamp() - self._wall()
        previous = self._gps_offset
        self._gps_offset = offset
        change = abs(offset - (previous or 0.0))
        if change > self.correction_log_s:
            log.warning("clock corrected from GPS by %.1f s", offset)
            if self.on_correction:
                self.on_correction(offset)
        return True
