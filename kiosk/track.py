"""The live track: fixes kept at a time and distance interval and sent to HQ.

A point is kept when the vehicle has moved ``track_distance_m`` and at least
``track_interval_s`` has passed, or after ``parked_interval_s`` when it has not
moved, so a parked unit writes to its SD card every few minutes, not every
second. Each kept point is one transaction: the track row and its loc event.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from kiosk import outbox
from kiosk.fix import Fix
from kiosk.geo import distance_m
from kiosk.store import sql
from kiosk.timefmt import rfc3339

if TYPE_CHECKING:
    from kiosk.ledger import Ledger

log = logging.getLogger(__name__)


class TrackRecorder:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.gps = ledger.config.gps
        self._last: Fix | None = None
        self._last_kept_at = 0.0
        self._last_prune = 0.0
        # OwnTracks' tid is two characters; the device id's last two.
        self.tid = ledger.device.id[-2:]

    def should_keep(self, fix: Fix) -> bool:
        if not fix.has_position:
            return False
        if self._last is None:
            return True
        elapsed = fix.received - self._last_kept_at
        moved = distance_m(self._last.lat, self._last.lon, fix.lat, fix.lon)
        if moved >= self.gps.track_distance_m and elapsed >= self.gps.track_interval_s:
            return True
        return elapsed >= self.gps.parked_interval_s

    def on_fix(self, fix: Fix) -> bool:
        """Keep the fix as a track point when it is due; True when kept."""
        if not self.should_keep(fix):
            return False
        now = self.ledger.clock.now()
        point = {
            "tst": int(now.timestamp()),
            "lat": round(fix.lat, 7),
            "lon": round(fix.lon, 7),
            "acc": None if fix.accuracy_m is None else round(fix.accuracy_m),
            "alt": None if fix.alt is None else round(fix.alt),
            # OwnTracks speaks km/h; the fix holds metres per second.
            "vel": None if fix.speed is None else round(fix.speed * 3.6),
            "cog": None if fix.course is None else round(fix.course),
        }
        with self.ledger.store.write() as conn:
            sql(
                conn,
                (
                    "INSERT INTO trackpoint (time, lat, lon, acc, alt, vel, cog) "
                    "VALUES (:t, :lat, :lon, :acc, :alt, :vel, :cog)"
                ),
                {"t": rfc3339(now), **{k: v for k, v in point.items() if k != "tst"}},
            )
            outbox.enqueue_location(conn, self.ledger.device.id, point, self.tid)
        self._last = fix
        self._last_kept_at = fix.received
        if fix.received - self._last_prune > 3600:
            self._last_prune = fix.received
            self.prune(now)
        return True

    def prune(self, now: dt.datetime) -> int:
        cutoff = rfc3339(now - dt.timedelta(days=self.gps.track_retention_days))
        with self.ledger.store.write() as conn:
            result = sql(
                conn, ("DELETE FROM trackpoint WHERE time < :c"), {"c": cutoff}
            )
        return int(result.rowcount or 0)
