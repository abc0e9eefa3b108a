"""Fuzzing the three readers of outside input: NMEA, HQ commands, assignments.

Each must refuse what it cannot read with its own error (or, for the NMEA
decoder, count it) and never let another exception out. Example counts are
bounded so the file runs in seconds.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.documents import parse_document
from kiosk.errors import CommandRejected, DocumentError
from kiosk.hardware.gps.nmea import NmeaDecoder, nmea_checksum
from kiosk.sync.protocol import (
    COMMAND_FIELDS,
    COMMAND_NAMES,
    build_command,
    check_command,
    sign,
)
from tests.factories import make_document

log = logging.getLogger(__name__)

KEY = bytes(range(32))
DEVICE = "KIOSK-01"
NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Valid sentences of every kind the decoder reads, to be spoiled a little.
SENTENCES = [
    "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
    "GNRMC,083559.00,A,0654.882,S,10736.588,E,0.004,77.52,091226,,,A,V",
    "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
    "GNGNS,014035.00,4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,",
    "GPGLL,4916.45,N,12311.12,W,225444,A",
    "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K",
    "GPGST,172814.0,0.006,0.023,0.020,273.6,0.023,0.020,0.031",
    "GPZDA,201530.00,04,07,2002,00,00",
    "GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00",
]
COUNTED = ("other", "ignored", "malformed", "bad_checksum", "sentences")


def counted_once(decoder: NmeaDecoder) -> bool:
    """Each line fed lands in exactly one of the counters.

    A line counted twice means the decoder's last-resort guard caught an
    exception after the line had been taken as a sentence.
    """
    stats = decoder.stats
    return sum(getattr(stats, name) for name in COUNTED) == stats.lines


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_fuzz_nmea_bytes(lines: list[bytes]) -> None:
    """Any bytes at all are counted, one kind per line, and never raise."""
    decoder = NmeaDecoder()
    for line in lines:
        decoder.feed(b"$" + line if line[:1] == b"G" else line)
    decoder.flush()
    assert decoder.stats.lines == len(lines)
    assert counted_once(decoder)


# Characters a receiver, a loose cable or a bad firmware can put in a field.
FIELD_TEXT = st.text(alphabet="0123456789.-+,NSEWAVMTKRFDPe *$\x00\xff", max_size=14)


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """A real sentence with some fields replaced, checksum right or not."""
    fields = draw(st.sampled_from(SENTENCES)).split(",")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(1, len(fields) - 1))
        fields[index] = draw(FIELD_TEXT)
    if draw(st.booleans()):
        fields = fields[: draw(st.integers(1, len(fields)))]
    body = ",".join(fields)
    ending = draw(
        st.sampled_from(["right", "wrong", "none", "short"]),
    )
    if ending == "right":
        return f"${body}*{nmea_checksum(body):02X}\r\n"
    if ending == "wrong":
        return f"${body}*{(nmea_checksum(body) + 1) % 256:02X}\r\n"
    if ending == "short":
        return f"${body}*{nmea_checksum(body):X}"[:-1]
    return f"${body}\r\n"


@FUZZ
@given(st.lists(near_valid(), min_size=1, max_size=12))
def test_fuzz_nmea_near_valid_sentences(lines: list[str]) -> None:
    """Sentences with spoiled fields are read or counted, never raised, and any
    position they give is on the globe."""
    decoder = NmeaDecoder()
    fixes = [decoder.feed(line) for line in lines]
    fixes.append(decoder.flush())
    assert counted_once(decoder)
    for fix in fixes:
        if fix is not None and fix.has_position:
            assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
            assert fix.accuracy_m is None or fix.accuracy_m >= 0


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def check(payload: bytes) -> None:
    """check_command may return or refuse, nothing else."""
    try:
        check_command(payload, key=KEY, device=DEVICE, now=NOW, max_bytes=65536)
    except CommandRejected as exc:
        assert exc.message and "\n" not in exc.message


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_check_command_bytes(payload: bytes) -> None:
    """Arbitrary bytes are refused with a reason."""
    check(payload)


@st.composite
def command_like(draw: st.DrawFn) -> bytes:
    """A command with some fields replaced by any JSON, often signed again so
    that the checks after the signature are reached too."""
    name = draw(st.sampled_from(COMMAND_NAMES))
    command: dict[str, Any] = build_command(KEY, DEVICE, name, None, now=NOW)
    command["body"] = draw(JSON_VALUES)
    for field in draw(st.lists(st.sampled_from(sorted(COMMAND_FIELDS)), max_size=3)):
        if draw(st.booleans()):
            command[field] = draw(JSON_VALUES)
        else:
            command.pop(field, None)

    # Infinity and NaN have no canonical form: such a command stays unsigned.
    if draw(st.booleans()):
        with contextlib.suppress(ValueError):
            command["sig"] = sign(KEY, command)
    return json.dumps(command).encode()


@FUZZ
@given(command_like())
def test_fuzz_check_command_fields(payload: bytes) -> None:
    """Commands with fields of any type or missing are refused with a reason."""
    check(payload)


BASE_DOCUMENT = make_document(2, installments=2, date="2026-12-04")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


PATHS = _paths(BASE_DOCUMENT)


@st.composite
def spoiled_document(draw: st.DrawFn) -> dict[str, Any]:
    """The good document with a few values anywhere in it replaced or removed."""
    document = copy.deepcopy(BASE_DOCUMENT)
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)):
        target: Any = document
        try:
            for part in path[:-1]:
                target = target[part]
            if draw(st.booleans()):
                target[path[-1]] = draw(JSON_VALUES)
            elif isinstance(target, dict):
                del target[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the way there
    return document


def parse(raw: Any) -> None:
    try:
        parse_document(raw, "IDR")
    except DocumentError as exc:
        assert exc.message and "\n" not in exc.message


@FUZZ
@given(spoiled_document())
def test_fuzz_parse_document_values(document: dict[str, Any]) -> None:
    """A document with any value anywhere is read or refused with a path."""
    parse(document)
    parse(json.dumps(document).encode())


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_fuzz_parse_document_bytes(raw: bytes | str) -> None:
    """Any bytes or text are refused with a reason, not another exception."""
    parse(raw)
