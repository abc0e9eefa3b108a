"""Writing NMEA 0183: for the demo's drive and for tests that need a receiver."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence

from kiosk.geo import bearing_deg, distance_m


def checksum(body: str) -> str:
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return f"{value:02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def _angle(value: float, degree_digits: int, hemispheres: str) -> tuple[str, str]:
    hemisphere = hemispheres[0] if value >= 0 else hemispheres[1]
    value = abs(value)
    degrees = int(value)
    minutes = (value - degrees) * 60
    return f"{degrees:0{degree_digits}d}{minutes:07.4f}", hemisphere


def epoch(
    when: dt.datetime,
    lat: float,
    lon: float,
    *,
    speed_ms: float = 0.0,
    course: float = 0.0,
    sats: int = 9,
    hdop: float = 0.9,
    alt: float = 700.0,
) -> list[str]:
    """One receiver epoch: RMC, GGA and GSA for a 3D fix at ``when`` (UTC)."""
    hhmmss = when.strftime("%H%M%S") + f".{when.microsecond // 10000:02d}"
    ddmmyy = when.strftime("%d%m%y")
    la, ns = _angle(lat, 2, "NS")
    lo, ew = _angle(lon, 3, "EW")
    knots = speed_ms / 0.514444
    used = ",".join(f"{n:02d}" for n in range(1, sats + 1)[:12])
    used += "," * (12 - min(sats, 12))
    return [
        sentence(
            f"GPRMC,{hhmmss},A,{la},{ns},{lo},{ew},{knots:.1f},{course:.1f},{ddmmyy},,,A"
        ),
        sentence(
            f"GPGGA,{hhmmss},{la},{ns},{lo},{ew},1,{sats:02d},{hdop:.1f},{alt:.1f},M,0.0,M,,"
        ),
        sentence(f"GPGSA,A,3,{used},{hdop + 0.6:.1f},{hdop:.1f},{hdop + 0.4:.1f}"),
    ]


def drive(
    waypoints: Sequence[tuple[float, float, float]],
    start: dt.datetime,
    *,
    speed_ms: float = 8.0,
) -> Iterator[str]:
    """A drive through waypoints (lat, lon, seconds to stop there), one epoch a second."""
    when = start
    for (lat1, lon1, stop), (lat2, lon2, _) in zip(
        waypoints, [*waypoints[1:], waypoints[-1]], strict=True
    ):
        for _ in range(int(stop)):
            yield from epoch(when, lat1, lon1)
            when += dt.timedelta(seconds=1)
        length = distance_m(lat1, lon1, lat2, lon2)
        steps = max(1, math.ceil(length / speed_ms)) if length else 0
        course = bearing_deg(lat1, lon1, lat2, lon2) if length else 0.0
        for step in range(steps):
            share = step / steps
            lat = lat1 + (lat2 - lat1) * share
            lon = lon1 + (lon2 - lon1) * share
            yield from epoch(when, lat, lon, speed_ms=speed_ms, course=course)
            when += dt.timedelta(seconds=1)
