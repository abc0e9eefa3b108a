"""The NMEA decoder against gpsd's own decoding of real captures, and field faults."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.fix import Fix, FixMode
from kiosk.hardware.gps.nmea import (
    HDOP_TO_METRES,
    NmeaDecoder,
    nmea_checksum,
    parse_degrees,
    parse_time_of_day,
)
from tests.conftest import CORPUS

TIMED = ("RMC", "GGA", "GNS", "GLL", "GST", "ZDA")

# Where this decoder and gpsd 3.22 disagree on a capture, and why the decoder is
# right. The counts are exact: a change in either direction fails the test.
#
# mode_2d: the receiver's own GSA says 2D; gpsd reports 3D because GGA carries a
#   height (or, in mtk-3301, a height from three satellites, which can only be
#   held, not measured). The location check does not care; the record is honest.
# date_rollover: the receiver says 2015-03-18 (the capture header's date); gpsd,
#   run with no clock, moved it 1024 weeks forward to 2034.
# sats_gga: the receiver's GGA count of satellites used; gpsd counts its own
#   list (telit-he910: GGA says 5 and GSA lists 5 PRNs; gpsd says 4).
EXCEPTIONS: dict[str, Counter[str]] = {
    "ch-4711": Counter(mode_2d=7),
    "garmin-10x": Counter(mode_2d=2),
    "haicom-305N": Counter(mode_2d=1),
    "mtk-3301": Counter(mode_2d=3),
    "quectel": Counter(mode_2d=33, sats_gga=18),
    "quectel-eg25-g": Counter(sats_gga=1),
    "telit-he910": Counter(sats_gga=3),
    "neo-m8n": Counter(date_rollover=22),
}

CAPTURES = sorted(p.name.removesuffix(".log") for p in (CORPUS / "nmea").glob("*.log"))


def sentence_time(line: str) -> float | None:
    """The time of day a sentence carries, or None."""
    text = line.strip()
    start = text.rfind("$")
    if start < 0:
        return None
    fields = text[start:].split("*")[0].split(",")
    kind = fields[0][3:6]
    if kind not in TIMED:
        return None
    index = 5 if kind == "GLL" else 1
    return parse_time_of_day(fields[index]) if len(fields) > index else None


@dataclass
class Reference:
    tpv: dict[float, dict[str, object]]
    used: dict[float, int]


def read_reference(path: Path) -> Reference:
    """gpsd's last TPV and SKY uSat for each epoch, keyed by the epoch's time."""
    tpv: dict[float, dict[str, object]] = {}
    used: dict[float, int] = {}
    tod: float | None = None
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            if tod is None:
                continue
            if report.get("class") == "TPV":
                tpv[round(tod, 3)] = report
            elif report.get("class") == "SKY" and "uSat" in report:
                used[round(tod, 3)] = report["uSat"]
        elif line.startswith("$"):
            tod = sentence_time(line) if sentence_time(line) is not None else tod
    return Reference(tpv, used)


def decode_capture(path: Path) -> tuple[dict[float, Fix], NmeaDecoder]:
    """Every fix of a capture keyed by its epoch's time of day.

    The key is worked out from the lines themselves, so fixes without a date
    (and so without a `Fix.time`) are compared too.
    """
    decoder = NmeaDecoder()
    fixes: dict[float, Fix] = {}
    last: float | None = None
    with path.open("rb") as handle:
        for raw in handle:
            tod = sentence_time(raw.decode("latin-1"))
            accepted = decoder.stats.sentences
            fix = decoder.feed(raw)
            if decoder.stats.sentences == accepted:
                tod = None  # dropped by the decoder: not part of any epoch
            if fix is not None:
                # A new time closes the previous epoch; otherwise this line did.
                key = last if tod is None or (last is not None and tod != last) else tod
                if key is not None:
                    fixes[round(key, 3)] = fix
            if tod is not None:
                last = tod
    fix = decoder.flush()
    if fix is not None and last is not None:
        fixes[round(last, 3)] = fix
    return fixes, decoder


@pytest.mark.corpus
@pytest.mark.parametrize("name", CAPTURES)
def test_nmea_capture_matches_gpsd(corpus: Path, name: str) -> None:
    """Each epoch's position, mode, date and satellites agree with gpsd's report,
    apart from the documented exceptions."""
    path = corpus / "nmea" / f"{name}.log"
    reference = read_reference(path.with_name(path.name + ".chk"))
    fixes, _ = decode_capture(path)

    compared = 0
    found: Counter[str] = Counter()
    for key, tpv in reference.tpv.items():
        fix = fixes.get(key)
        assert fix is not None, f"{name}: gpsd reported epoch {key} s, we did not"
        compared += 1

        if int(fix.mode) != tpv["mode"]:
            assert (fix.mode, tpv["mode"]) == (FixMode.TWO_D, 3), (name, key, tpv)
            found["mode_2d"] += 1
        if not fix.has_position:
            assert tpv["mode"] <= 1, (name, key, tpv)
            continue

        assert math.isclose(fix.lat, tpv["lat"], abs_tol=1e-6), (name, key)
        assert math.isclose(fix.lon, tpv["lon"], abs_tol=1e-6), (name, key)
        if "time" in tpv:
            assert fix.time is not None, (name, key)
            ours = fix.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if ours != tpv["time"]:
                theirs = datetime.fromisoformat(str(tpv["time"]).replace("Z", "+00:00"))
                assert (theirs - fix.time).days == 1024 * 7, (name, key)
                found["date_rollover"] += 1
        if key in reference.used and reference.used[key] != fix.sats:
            found["sats_gga"] += 1

    assert compared >= len(fixes) * 0.8, f"{name}: too few epochs compared"
    assert found == EXCEPTIONS.get(name, Counter())


@pytest.mark.corpus
def test_nmea_capture_counts(corpus: Path) -> None:
    """Bad checksums, garbage and cut-off lines in the captures are counted."""
    _, coldboot = decode_capture(corpus / "nmea/gp-320fw-2019-04-07-coldboot.log")
    assert coldboot.stats.bad_checksum == 13  # of the kinds read; GSV is not checked
    _, firefly = decode_capture(corpus / "nmea/firefly-II.log")
    assert firefly.stats.bad_checksum == 23  # every GGA
    assert (
        coldboot.stats.malformed == 9
    )  # NUL bytes; cut short without checksum; garbled cold-boot addresses
    _, ublox = decode_capture(corpus / "nmea/ublox-8.log")
    assert ublox.stats.malformed == 1  # the last line, cut off with no checksum
    assert ublox.stats.no_checksum == 0
    _, tn200 = decode_capture(corpus / "nmea/tn200.log")
    assert tn200.stats.fixes > 0 and not any(
        f.has_position for f in decode_capture(corpus / "nmea/tn200.log")[0].values()
    )


@pytest.mark.corpus
def test_nmea_pynmea2_sample(corpus: Path) -> None:
    """The pynmea2 sample: its southern GGA is a fix; route, R00, garbage and
    wind are skipped without error."""
    decoder = NmeaDecoder()
    lines = (corpus / "nmea/pynmea2/data.log").read_bytes().splitlines()
    fixes = [decoder.feed(line) for line in lines]
    fixes.append(decoder.flush())
    found = [f for f in fixes if f is not None]
    assert len(found) == 1
    assert found[0].lat == pytest.approx(-(19 + 29.045 / 60), abs=1e-9)
    assert found[0].lon == pytest.approx(24 + 10.506 / 60, abs=1e-9)
    assert found[0].mode == FixMode.THREE_D
    assert found[0].time is None  # a time, but never a date
    assert decoder.stats.other == 1  # foobar


def sentence(body: str, checksum: str | None = None) -> str:
    """A sentence with its checksum worked out, or the one given."""
    given = f"{nmea_checksum(body):02X}" if checksum is None else checksum
    return f"${body}*{given}\r\n"


def decode(*lines: str) -> list[Fix]:
    decoder = NmeaDecoder()
    out = [decoder.feed(line) for line in lines]
    out.append(decoder.flush())
    return [f for f in out if f is not None]


RMC = "GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A"
GGA = "GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # every talker reads the same
        ([sentence(RMC.replace("GP", talker, 1))], (48.1173, 11.5166667, 2))
        for talker in ("GP", "GN", "GL", "GA", "GB", "BD", "GQ")
    ]
    + [
        # southern and western hemispheres
        (
            [sentence(RMC.replace(",N,", ",S,").replace(",E,", ",W,"))],
            (-48.1173, -11.5166667, 2),
        ),
        # GGA with height and 8 satellites is 3D
        ([sentence(GGA)], (48.1173, 11.5166667, 3)),
        # GSA's 2D wins over a GGA height
        (
            [sentence(GGA), sentence("GPGSA,A,2,01,02,03,,,,,,,,,,2.0,0.9,1.8")],
            (48.1173, 11.5166667, 2),
        ),
        # a height from three satellites is held, not measured
        ([sentence(GGA.replace(",08,", ",03,"))], (48.1173, 11.5166667, 2)),
        # degrees by the decimal point: 5°07.038' with no leading zeros
        ([sentence(RMC.replace("4807.038", "507.038"))], (5.1173, 11.5166667, 2)),
        # one-hex-digit checksum
        (
            [f"$GPRMC,0,V*{nmea_checksum('GPRMC,0,V'):X}\r\n", sentence(RMC)],
            (48.1173, 11.5166667, 2),
        ),
        # a complete sentence without a checksum is believed
        ([f"${GGA}\r\n"], (48.1173, 11.5166667, 3)),
    ],
)
def test_nmea_position_table(
    lines: list[str], expected: tuple[float, float, int]
) -> None:
    """Talkers, hemispheres, modes and framings decode to the same place."""
    fixes = [f for f in decode(*lines) if f.has_position]
    assert fixes, lines
    lat, lon, mode = expected
    assert fixes[-1].lat == pytest.approx(lat, abs=1e-6)
    assert fixes[-1].lon == pytest.approx(lon, abs=1e-6)
    assert int(fixes[-1].mode) == mode


@pytest.mark.parametrize(
    "line",
    [
        sentence(RMC, checksum="00"),  # bad checksum
        sentence(RMC.replace(",A,", ",V,")),  # void
        sentence(RMC.replace(",A*", ",N*").replace(",A", ",N", 1)[:-1]),  # FAA N
        sentence(GGA.replace(",1,08,", ",0,08,")),  # quality 0
        sentence(GGA.replace(",1,08,", ",8,08,")),  # simulator
        sentence(RMC.replace("4807.038,N,01131.000,E", "0000.000,N,00000.000,E")),
        sentence(RMC.replace("4807.038", "8960.000")),  # 60 minutes
        sentence(RMC.replace("4807.038", "9107.038")),  # beyond the pole
        sentence(RMC.replace(",N,", ",,")),  # no hemisphere
        sentence("GPRMC,,A,,,,,,,,,,A"),  # fix claimed, fields empty
        f"${GGA[:40]}\r\n",  # truncated, no checksum
        f"${RMC.replace('GPRMC,', 'GPRMC,,')}\r\n",  # too many fields, no checksum
    ],
)
def test_nmea_no_position_table(line: str) -> None:
    """Faults seen in the field give no position, never an exception."""
    assert not any(f.has_position for f in decode(line))


def test_nmea_zero_zero_counted_as_suspect() -> None:
    """Exactly 0,0 with a fix claimed is a placeholder: no fix, and counted."""
    decoder = NmeaDecoder()
    decoder.feed(
        sentence(GGA.replace("4807.038,N,01131.000,E", "0000.0000,N,00000.0000,E"))
    )
    fix = decoder.flush()
    assert fix is not None and fix.mode == FixMode.NO_FIX and math.isnan(fix.lat)
    assert decoder.stats.suspect_zero == 1


def test_nmea_time_before_date_then_date() -> None:
    """A time before any date gives no Fix.time; once RMC brings the date, it does."""
    first = decode(sentence(GGA))
    assert first[0].time is None
    both = decode(sentence(GGA), sentence(RMC))
    assert both[-1].time == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)


def test_nmea_midnight_moves_the_date() -> None:
    """Without a new date, a time of day that wraps past midnight moves the date."""
    late = RMC.replace("123519.00", "235959.00")
    after = GGA.replace("123519.00", "000001.00")
    fixes = decode(sentence(late), sentence(after))
    assert fixes[-1].time == datetime(1994, 3, 24, 0, 0, 1, tzinfo=UTC)


def test_nmea_accuracy_from_gst_else_hdop() -> None:
    """GST's one-sigma errors give the accuracy; without GST, HDOP × the factor."""
    gst = sentence("GPGST,123519.00,1.0,,,,3.0,4.0,5.0")
    assert decode(sentence(GGA), gst)[-1].accuracy_m == pytest.approx(5.0)
    assert decode(sentence(GGA))[-1].accuracy_m == pytest.approx(0.9 * HDOP_TO_METRES)


@pytest.mark.parametrize(
    ("quality", "name"),
    [("1", "gps"), ("2", "dgps"), ("4", "rtk"), ("5", "float"), ("6", "dr")],
)
def test_nmea_gga_quality(quality: str, name: str) -> None:
    """GGA quality names the kind of fix, dead reckoning and RTK included."""
    fix = decode(sentence(GGA.replace(",1,08,", f",{quality},08,")))[-1]
    assert fix.has_position and fix.quality == name


def test_nmea_epoch_ends_on_learned_last_sentence() -> None:
    """Once two epochs end with RMC, an RMC closes its epoch at once."""
    decoder = NmeaDecoder()
    results = []
    for second in range(4):
        stamp = f"1235{second:02d}.00"
        results.append(decoder.feed(sentence(GGA.replace("123519.00", stamp))))
        results.append(decoder.feed(sentence(RMC.replace("123519.00", stamp))))
    assert results[-1] is not None and results[-1].time is not None
    assert results[-1].time.second == 3


def test_nmea_received_is_monotonic_arrival() -> None:
    """Fix.received is the monotonic clock at arrival, not the sentence's date."""
    import time

    before = time.monotonic()
    fix = decode(sentence(RMC))[-1]
    assert before <= fix.received <= time.monotonic()


def test_nmea_coordinate_helpers() -> None:
    """Degrees are read by the decimal point, with eight decimals of minutes."""
    assert parse_degrees("4807.03800000", "N", 90) == pytest.approx(48.1173, abs=1e-12)
    assert parse_degrees("00000.5", "W", 180) == pytest.approx(-0.5 / 60)
    assert parse_degrees("12", "N", 90) is None
    assert parse_degrees("48x7.0", "N", 90) is None
    assert parse_time_of_day("235960") == 86400.0  # a leap second
    assert parse_time_of_day("246000") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_nmea_random_bytes_never_raise(data: bytes) -> None:
    """Any bytes at all are counted, never raised."""
    decoder = NmeaDecoder()
    decoder.feed(data)
    decoder.feed(data.decode("latin-1"))
    decoder.flush()
    assert decoder.stats.lines == 2


VALID_LINES = [
    sentence(RMC),
    sentence(GGA),
    sentence("GPGSA,A,3,01,02,03,04,,,,,,,,,2.0,0.9,1.8"),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(VALID_LINES), st.integers(0, 90), st.booleans()),
        max_size=12,
    )
)
def test_nmea_truncated_and_interleaved_never_raise(
    pieces: list[tuple[str, int, bool]],
) -> None:
    """Lines cut short or run into each other are dropped or read, never raised,
    and never produce a position that was not sent."""
    decoder = NmeaDecoder()
    carry = ""
    for line, cut, join in pieces:
        part = line[:cut] if cut else line
        if join:
            carry += part.rstrip("\r\n")
            continue
        fix = decoder.feed(carry + part)
        carry = ""
        if fix is not None and fix.has_position:
            assert fix.lat == pytest.approx(48.1173, abs=1e-6)
    fix = decoder.flush()
    if fix is not None and fix.has_position:
        assert fix.lon == pytest.approx(11.5166667, abs=1e-6)
