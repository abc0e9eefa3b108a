"""Distances and directions on the Earth, for location checks and the track."""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8
"""The mean Earth radius (IUGG); a sphere is within 0.5% of the ellipsoid."""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points in decimal degrees.

    Uses the haversine in its atan2 form, which stays accurate for points a few
    centimetres apart and for points on opposite sides of the Earth. Longitudes
    are compared as angles, so 179.9 and -179.9 are 0.2° apart across the
    antimeridian; at a pole every longitude is the same place. NaN in, NaN out.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)

    h = (
        math.sin(d_phi / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    )
    h = min(1.0, max(0.0, h))
    return 2 * EARTH_RADIUS_M * math.atan2(math.sqrt(h), math.sqrt(1 - h))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial course from the first point to the second, degrees true (0-360)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_lambda = math.radians(lon2 - lon1)
    x = math.sin(d_lambda) * math.cos(phi2)
    y = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(
        d_lambda
    )
    return math.degrees(math.atan2(x, y)) % 360.0


def moved_enough(
    lat1: float,
    lon1: float,
    lat2: float,
    lon2: float,
    min_m: float,
    accuracy_m: float | None = None,
) -> bool:
    """Whether a new position is far enough from the last to report.

    A move smaller than the fix's own accuracy is noise, so the threshold is the
    larger of ``min_m`` and ``accuracy_m``.
    """
    threshold = max(min_m, accuracy_m or 0.0)
    return distance_m(lat1, lon1, lat2, lon2) > threshold


def valid_position(lat: float, lon: float) -> bool:
    """Finite, within ±90/±180, and not the 0,0 that receivers send for nothing."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if abs(lat) > 90.0 or abs(lon) > 180.0:
        return False
    return not (lat == 0.0 and lon == 0.0)
