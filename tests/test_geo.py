"""Great-circle geometry: known distances, the antimeridian and the poles."""

from __future__ import annotations

import math

import pytest

from kiosk.geo import bearing_deg, distance_m, moved_enough, valid_position


@pytest.mark.parametrize(
    ("a", "b", "metres", "tolerance"),
    [
        # Jakarta Monas to Bandung Gedung Sate, about 118 km
        ((-6.175392, 106.827153), (-6.902481, 107.618810), 118_800, 0.01),
        # one minute of latitude is about one nautical mile
        ((48.0, 11.0), (48.0 + 1 / 60, 11.0), 1852, 0.01),
        # a quarter of the way round the equator
        ((0.0, 0.0), (0.0, 90.0), math.pi / 2 * 6_371_008.8, 1e-9),
        # across the antimeridian: 0.2° of longitude at the equator
        ((0.0, 179.9), (0.0, -179.9), 22_239, 0.001),
        # Fiji, the two sides of 180°
        ((-17.8, 179.99), (-17.8, -179.99), 2_117, 0.01),
        # pole to pole
        ((90.0, 0.0), (-90.0, 0.0), math.pi * 6_371_008.8, 1e-9),
        # at the pole every longitude is the same place
        ((90.0, 0.0), (90.0, 135.0), 0.0, 0.0),
        # antipodes, where sines round: within a metre
        ((10.0, 20.0), (-10.0, -160.0), math.pi * 6_371_008.8, 1e-7),
    ],
)
def test_geo_distance_known(
    a: tuple[float, float], b: tuple[float, float], metres: float, tolerance: float
) -> None:
    """Distances match known values, whichever way round."""
    there = distance_m(*a, *b)
    back = distance_m(*b, *a)
    assert there == pytest.approx(metres, rel=tolerance, abs=1e-6)
    assert back == pytest.approx(there, abs=1e-6)


def test_geo_distance_small() -> None:
    """Ten centimetres apart is ten centimetres, not rounding noise."""
    step = 0.1 / 111_195  # degrees of latitude in 10 cm
    assert distance_m(-6.2, 106.8, -6.2 + step, 106.8) == pytest.approx(0.1, rel=1e-3)


def test_geo_bearing() -> None:
    """North, east, and east across the antimeridian."""
    assert bearing_deg(0, 0, 1, 0) == pytest.approx(0.0)
    assert bearing_deg(0, 0, 0, 1) == pytest.approx(90.0)
    assert bearing_deg(0, 179.5, 0, -179.5) == pytest.approx(90.0)
    assert bearing_deg(0, 0, -1, 0) == pytest.approx(180.0)


def test_geo_moved_enough() -> None:
    """A move inside the fix's accuracy is noise; beyond both thresholds it counts."""
    start = (-6.2, 106.8)
    thirty = (-6.2 + 30 / 111_195, 106.8)
    assert moved_enough(*start, *thirty, min_m=20)
    assert not moved_enough(*start, *thirty, min_m=20, accuracy_m=50)
    assert not moved_enough(*start, *start, min_m=0)


def test_geo_valid_position() -> None:
    """NaN, out of range and exactly 0,0 are not positions."""
    assert valid_position(-6.2, 106.8)
    assert not valid_position(0.0, 0.0)
    assert not valid_position(math.nan, 1.0)
    assert not valid_position(91.0, 0.0)
    assert not valid_position(0.0, 181.0)
