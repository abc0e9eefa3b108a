"""The location check of a payment or visit against the customer's place.

No fix, a stale fix and a fix too inaccurate to judge all count as no fix, and
the ``no_fix`` action applies; a fix whose distance less its accuracy is beyond
the radius is outside. A branch makes no distance check: customers come to the
counter.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from kiosk.errors import LocationRefused, ReasonRequired
from kiosk.fix import Fix
from kiosk.geo import distance_m
from kiosk.policy import LocationRules


@dataclass(frozen=True, slots=True)
class LocationCheck:
    result: str  # inside | outside | no_fix | stale | inaccurate | no_place | branch
    action: str  # allow | warn | require_reason | block
    distance_m: int | None = None
    accuracy_m: int | None = None
    fix_age_s: int | None = None
    dwell_s: int | None = None
    lat: float | None = None
    lon: float | None = None
    sats: int | None = None

    def as_data(self) -> dict[str, Any]:
        data = asdict(self)
        if data["lat"] is not None:
            data["lat"] = round(data["lat"], 7)
            data["lon"] = round(data["lon"], 7)
        return data

    @property
    def message(self) -> str:
        if self.result == "outside":
            return f"you are {self.distance_m} m from the customer's registered place"
        if self.result in ("no_fix", "stale", "inaccurate"):
            words = {
                "no_fix": "there is no GPS fix",
                "stale": f"the last GPS fix is {self.fix_age_s} s old",
                "inaccurate": f"the GPS fix is only good to {self.accuracy_m} m",
            }
            return words[self.result]
        return ""


class FixHistory:
    """Recent fixes, to tell a stop at the customer from a drive-by."""

    def __init__(self, keep_s: float = 3600.0, maxlen: int = 4000) -> None:
        self.keep_s = keep_s
        self._fixes: deque[Fix] = deque(maxlen=maxlen)

    def add(self, fix: Fix) -> None:
        self._fixes.append(fix)
        while self._fixes and self._fixes[0].age() > self.keep_s:
            self._fixes.popleft()

    def dwell_s(self, lat: float, lon: float, radius_m: float, now: float) -> int:
        """Seconds the fixes have stayed within the radius, counting back from now."""
        start = None
        for fix in reversed(self._fixes):
            if not fix.has_position:
                continue
            if distance_m(fix.lat, fix.lon, lat, lon) > radius_m:
                break
            start = fix.received
        return 0 if start is None else int(max(0.0, now - start))


def judge(
    rules: LocationRules,
    fix: Fix | None,
    place: tuple[float, float] | None,
    radius_m: int | None,
    *,
    branch: bool,
    now: float,
    history: FixHistory | None = None,
) -> LocationCheck:
    """Classify a fix against the customer's place and pick the policy action."""
    stamp: dict[str, Any] = {}
    if fix is not None and fix.has_position:
        stamp = {
            "lat": fix.lat,
            "lon": fix.lon,
            "fix_age_s": int(fix.age(now)),
            "accuracy_m": None if fix.accuracy_m is None else math.ceil(fix.accuracy_m),
            "sats": fix.sats,
        }
    if branch:
        return LocationCheck("branch", "allow", **stamp)

    if fix is None or not fix.has_position or (fix.lat == 0.0 and fix.lon == 0.0):
        return LocationCheck("no_fix", rules.no_fix, **stamp)
    if fix.age(now) > rules.max_fix_age_s:
        return LocationCheck("stale", rules.no_fix, **stamp)
    accuracy = fix.accuracy_m
    if accuracy is None or accuracy > rules.max_accuracy_m:
        return LocationCheck("inaccurate", rules.no_fix, **stamp)
    if place is None:
        # A customer with no registered place cannot be checked; this is not
        # the collector's fault, so it is allowed and recorded as such.
        return LocationCheck("no_place", "allow", **stamp)

    radius = radius_m or rules.radius_m
    distance = distance_m(fix.lat, fix.lon, place[0], place[1])
    dwell = (
        history.dwell_s(place[0], place[1], radius + accuracy, now) if history else None
    )
    inside = distance - accuracy <= radius
    return LocationCheck(
        "inside" if inside else "outside",
        "allow" if inside else rules.outside,
        distance_m=round(distance),
        dwell_s=dwell,
        **stamp,
    )


def enforce(check: LocationCheck, reason: str | None) -> str:
    """Raise when the policy blocks or wants a reason; return a warning or ''."""
    if check.action == "block":
        raise LocationRefused(
            f"{check.message}; the location policy blocks collecting here"
        )
    if check.action == "require_reason" and not (reason and reason.strip()):
        raise ReasonRequired(f"{check.message}; give a reason (--reason) to go on")
    if check.action == "warn":
        return check.message
    return ""
