"""Decoding the NMEA 0183 stream of a GPS receiver into `Fix` objects.

`NmeaDecoder` takes one line at a time and hands back a `Fix` at the end of each
epoch: the group of sentences a receiver sends for one instant (RMC, GGA, GSA, ...
all stamped with the same time). An epoch ends when

- the sentence the receiver always sends last arrives (learned from the stream:
  once two epochs in a row ended with the same sentence, its arrival closes the
  epoch at once, so a fix is not held back until the next second),
- a sentence carries a different time, or
- a position sentence repeats (receivers without a time in their no-fix
  sentences still get one report per cycle).

Only RMC, GGA, GNS, GLL, GSA, VTG, GST and ZDA are read, from any talker (GP, GN,
GL, GA, GB, BD, GQ, ...); everything else is counted and skipped. pynmea2 supplies
the sentence catalogue; the numbers are read here, because its own helpers parse
coordinates by fixed widths and swallow conversion errors.

The decoder never raises: a line that is garbage, truncated, run together with
another or fails its checksum is counted in `NmeaDecoder.stats` and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pynmea2

from kiosk.fix import Fix, FixMode

log = logging.getLogger(__name__)

HDOP_TO_METRES = 5.0
"""Metres of horizontal error per unit of HDOP, used when no GST is sent.

5 m is a typical one-sigma range error of a consumer receiver without
corrections, so ``HDOP × 5`` is about one standard deviation of the position, the
same kind of figure as GST's, and of OwnTracks' ``acc``.
"""

KNOTS_TO_MPS = 1852.0 / 3600.0

# Fields after the address that a complete sentence of each kind has, by NMEA
# version. A sentence without a checksum is only believed when it has one of these
# counts: a truncated line nearly always has fewer.
COMPLETE_FIELDS: dict[str, tuple[int, ...]] = {
    "RMC": (11, 12, 13),
    "GGA": (14,),
    "GNS": (12, 13),
    "GLL": (6, 7),
    "GSA": (17, 18),
    "VTG": (8, 9),
    "GST": (8,),
    "ZDA": (6,),
}

HEX_DIGITS = frozenset("0123456789ABCDEFabcdef")

# pynmea2's class for each kind the decoder reads.
SENTENCE_CLASSES: dict[str, type[pynmea2.TalkerSentence]] = {
    kind: pynmea2.TalkerSentence.sentence_types[kind] for kind in COMPLETE_FIELDS
}

GSA_FIRST_PRN = SENTENCE_CLASSES["GSA"].name_to_idx["sv_id01"]

POSITION_KINDS = frozenset({"RMC", "GGA", "GNS", "GLL"})

# GGA quality indicator -> (position is real, Fix.quality).
GGA_QUALITY: dict[str, tuple[bool, str | None]] = {
    "0": (False, None),
    "1": (True, "gps"),
    "2": (True, "dgps"),
    "3": (True, "gps"),
    "4": (True, "rtk"),
    "5": (True, "float"),
    "6": (True, "dr"),
    "7": (True, "manual"),
    "8": (False, None),  # simulator: not where the device is
}

# FAA mode indicator of RMC, GNS, GLL and VTG -> (position is real, quality).
FAA_MODE: dict[str, tuple[bool, str | None]] = {
    "A": (True, "gps"),
    "P": (True, "gps"),
    "D": (True, "dgps"),
    "R": (True, "rtk"),
    "F": (True, "float"),
    "E": (True, "dr"),
    "M": (True, "manual"),
    "N": (False, None),
    "S": (False, None),
}

# Best first, for GNS's one mode letter per constellation.
FAA_RANK = "RFDPAEM"

NO_POSITION = math.nan


@dataclass(slots=True)
class DecoderStats:
    """What the decoder has seen, for `kiosk doctor` and the logs."""

    lines: int = 0
    sentences: int = 0
    """Sentences accepted, checksum good or complete without one."""
    bad_checksum: int = 0
    no_checksum: int = 0
    """Accepted without a checksum because they were complete and plausible."""
    other: int = 0
    """Lines with no sentence in them: comments, blank lines, JSON."""
    malformed: int = 0
    """Broken sentences: truncated, bad characters, implausible without checksum."""
    ignored: int = 0
    """Good sentences of a kind the decoder does not read (GSV, TXT, vendor)."""
    suspect_zero: int = 0
    """Fixes claimed at exactly 0,0, reported as no fix."""
    fixes: int = 0


@dataclass(slots=True)
class _Epoch:
    """What the sentences of one epoch said, before it becomes a Fix."""

    tod: float | None = None
    day: date | None = None
    lat: float | None = None
    lon: float | None = None
    valid: bool | None = None
    suspect_zero: bool = False
    position_seen: bool = False
    quality: str | None = None
    gga_quality: str | None = None
    gsa_mode: int | None = None
    gsa_prns: set[str] = field(default_factory=set)
    sats: int | None = None
    hdop: float | None = None
    alt: float | None = None
    speed: float | None = None
    course: float | None = None
    gst_m: float | None = None
    keys: list[str] = field(default_factory=list)
    arrival: float = 0.0


def _number(text: str) -> float | None:
    """A finite float from a field, or None when empty or not a number."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _integer(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_degrees(value: str, hemisphere: str, limit: float) -> float | None:
    """Signed degrees from NMEA's ``[d]ddmm.mmmm`` and a hemisphere letter.

    The two digits before the decimal point are the minutes and everything before
    them the degrees, so ``512.3`` (5°12.3') and ``00512.3`` read the same and a
    receiver that drops leading zeros is still understood.

    Args:
        value: the coordinate field.
        hemisphere: ``N``/``S`` for latitude, ``E``/``W`` for longitude.
        limit: 90 for latitude, 180 for longitude.

    Returns:
        The angle, negative south and west; None when empty or out of range
        (minutes of 60 or more, more degrees than the limit, wrong letter).
    """
    if hemisphere not in ("N", "S", "E", "W") or not value:
        return None
    whole, _, fraction = value.partition(".")
    if len(whole) < 3 or not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None

    minutes = float(f"{whole[-2:]}.{fraction or '0'}")
    if minutes >= 60.0:
        return None
    degrees = int(whole[:-2]) + minutes / 60.0
    if degrees > limit:
        return None
    return -degrees if hemisphere in ("S", "W") else degrees


def parse_time_of_day(value: str) -> float | None:
    """Seconds since midnight UTC from ``hhmmss[.sss]``; None when not a time."""
    head = value[:6]
    if len(head) < 6 or not head.isdigit():
        return None
    hours, minutes, seconds = int(head[:2]), int(head[2:4]), int(head[4:6])
    if hours > 23 or minutes > 59 or seconds > 60:
        return None

    fraction = 0.0
    if len(value) > 6:
        if value[6] != "." or not (value[7:].isdigit() or value[7:] == ""):
            return None
        fraction = float("0." + (value[7:] or "0"))
    return hours * 3600 + minutes * 60 + seconds + fraction


def parse_date(value: str) -> date | None:
    """The date from RMC's ``ddmmyy``; two-digit years 80-99 are 19xx."""
    if len(value) != 6 or not value.isdigit():
        return None
    day, month, year = int(value[:2]), int(value[2:4]), int(value[4:])
    try:
        return date(year + (1900 if year >= 80 else 2000), month, day)
    except ValueError:
        return None


def nmea_checksum(body: str) -> int:
    """XOR of the characters between ``$`` and ``*``.

    The bytes are read as one big integer and folded in halves, which XORs them
    all in a handful of steps instead of one Python step per character.
    """
    data = body.encode("ascii", "replace")
    total = int.from_bytes(data, "little")
    width = len(data)
    while width > 1:
        half = (width + 1) // 2
        total = (total >> (8 * half)) ^ (total & ((1 << (8 * half)) - 1))
        width = half
    return total


class NmeaDecoder:
    """Turns NMEA lines into one `Fix` per epoch.

    A fix has position when the receiver claimed one (RMC/GLL status ``A``, GGA
    quality above 0, a GNS or FAA mode other than ``N``); any sentence of the
    epoch that says "no fix" wins. Its mode is GSA's 2D or 3D when sent,
    otherwise 3D when GGA or GNS carries an altitude and 2D when not. A fix at
    exactly 0,0 is a receiver's placeholder, reported as no fix.

    A Fix with no position has mode `FixMode.NO_FIX` and NaN coordinates.
    ``time`` is None on a fix without position (receivers without a fix send
    power-on defaults) and until a date has been seen (RMC or ZDA); after that,
    a time of day that wraps past midnight moves the date on. ``accuracy_m`` is GST's
    one-sigma horizontal error when the receiver sends GST for the epoch,
    otherwise HDOP × `HDOP_TO_METRES`.

    Example:
        >>> decoder = NmeaDecoder()
        >>> for line in port:
        ...     fix = decoder.feed(line)
        ...     if fix is not None and fix.has_position:
        ...         print(fix.lat, fix.lon)
    """

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._epoch = _Epoch()
        self._day: date | None = None
        self._last_tod: float | None = None
        self._ender: str | None = None
        self._ender_candidate: str | None = None

    def feed(self, line: str | bytes) -> Fix | None:
        """Read one line; return a Fix when it completes an epoch.

        Never raises: anything that cannot be read is counted in `stats`.
        """
        try:
            return self._feed(line)
        except Exception:  # the last guard of a decoder that must never raise
            self.stats.malformed += 1
            log.debug("unreadable NMEA line %r", line, exc_info=True)
            return None

    def flush(self) -> Fix | None:
        """End the epoch in progress, at the end of a stream."""
        try:
            return self._close()
        except Exception:
            log.debug("could not finish the last epoch", exc_info=True)
            return None

    def _feed(self, line: str | bytes) -> Fix | None:
        arrival = time.monotonic()
        if isinstance(line, bytes):
            line = line.decode("ascii", "replace")
        self.stats.lines += 1

        sentence = self._frame(line)
        if sentence is None:
            return None
        kind, message, key = sentence

        # A new time, or a second position sentence of the same kind, starts a new
        # epoch; the one in progress is finished first.
        done: Fix | None = None
        tod = self._time_of(kind, message)
        epoch = self._epoch
        if (tod is not None and epoch.tod is not None and tod != epoch.tod) or (
            kind in POSITION_KINDS and key in epoch.keys
        ):
            done = self._close(learn=True)
            epoch = self._epoch
        if tod is not None:
            epoch.tod = tod

        self._read(kind, message, epoch)
        epoch.keys.append(key)
        epoch.arrival = arrival

        # A line that both ended the previous epoch and is the last of its own
        # leaves its epoch open until the next line, so that no fix is lost.
        if key == self._ender and done is None:
            done = self._close()
        return done

    def _frame(self, line: str) -> tuple[str, pynmea2.NMEASentence, str] | None:
        """Check a line's framing and checksum; the sentence kind, parsed, and key."""
        text = line.strip().strip("\x00")

        # Lines run together keep only their last sentence, which is whole.
        start = text.rfind("$")
        if start < 0 or text.startswith("#"):
            self.stats.other += 1
            return None
        body, star, given = text[start + 1 :].partition("*")

        # Kinds the decoder does not read are counted and left unchecked: most of
        # a stream is GSV, and checking it would double the decoder's cost.
        comma = body.find(",")
        address = body[:comma] if comma >= 0 else body
        kind = address[2:]
        # A broken address ("$", "$GP", control bytes) is no sentence of any kind.
        if len(address) < 3 or not address.isascii() or not address.isalnum():
            self.stats.malformed += 1
            return None
        if kind not in COMPLETE_FIELDS or len(address) != 5 or address[0] == "P":
            self.stats.ignored += 1
            return None

        if star:
            given = given.strip()[:2]
            if not given or not all(c in HEX_DIGITS for c in given):
                self.stats.malformed += 1
                return None
            if nmea_checksum(body) != int(given, 16):
                self.stats.bad_checksum += 1
                return None
        if not body.isascii() or not body.isprintable() or not address.isalnum():
            self.stats.malformed += 1
            return None
        if not star:
            if body.count(",") not in COMPLETE_FIELDS[kind]:
                self.stats.malformed += 1
                return None
            self.stats.no_checksum += 1

        # pynmea2's sentence class for the kind, built from the fields directly:
        # the framing has been checked above, so its regular expression is not
        # run a second time.
        # Padded to the full field list, so a short sentence reads as empty fields.
        fields = body.split(",")
        cls = SENTENCE_CLASSES[kind]
        missing_fields = len(cls.fields) + 1 - len(fields)
        if missing_fields > 0:
            fields.extend([""] * missing_fields)
        message = cls(address[:2], kind, fields[1:])
        self.stats.sentences += 1
        return kind, message, address

    @staticmethod
    def _time_of(kind: str, message: pynmea2.NMEASentence) -> float | None:
        if kind in ("GSA", "VTG"):
            return None
        return parse_time_of_day(_field(message, "timestamp"))

    def _read(self, kind: str, message: pynmea2.NMEASentence, epoch: _Epoch) -> None:
        """Fold one sentence into the epoch."""
        if kind == "RMC":
            self._read_position(message, epoch, _field(message, "status") == "A")
            epoch.day = parse_date(_field(message, "datestamp")) or epoch.day
            self._read_faa(_field(message, "mode_indicator"), epoch)
            knots = _number(_field(message, "spd_over_grnd"))
            if knots is not None:
                epoch.speed = knots * KNOTS_TO_MPS
            epoch.course = _number(_field(message, "true_course")) or epoch.course
        elif kind == "GGA":
            quality = _field(message, "gps_qual")
            real, name = GGA_QUALITY.get(quality, (False, None))
            self._read_position(message, epoch, real)
            if real:
                epoch.gga_quality = name
                epoch.alt = _number(_field(message, "altitude"))
            epoch.sats = _integer(_field(message, "num_sats"))
            epoch.hdop = _number(_field(message, "horizontal_dil")) or epoch.hdop
        elif kind == "GNS":
            letters = [c for c in _field(message, "mode_indicator") if c in FAA_MODE]
            best = min(letters, key=_faa_rank, default="N")
            self._read_position(message, epoch, FAA_MODE[best][0])
            epoch.quality = FAA_MODE[best][1] or epoch.quality
            if FAA_MODE[best][0]:
                epoch.alt = _number(_field(message, "altitude")) or epoch.alt
            epoch.sats = _integer(_field(message, "num_sats")) or epoch.sats
            epoch.hdop = _number(_field(message, "hdop")) or epoch.hdop
        elif kind == "GLL":
            self._read_position(message, epoch, _field(message, "status") == "A")
            self._read_faa(_field(message, "faa_mode"), epoch)
        elif kind == "GSA":
            self._read_gsa(message, epoch)
        elif kind == "VTG":
            self._read_vtg(message, epoch)
        elif kind == "GST":
            lat_err = _number(_field(message, "std_dev_latitude"))
            lon_err = _number(_field(message, "std_dev_longitude"))
            if lat_err is not None and lon_err is not None:
                epoch.gst_m = math.hypot(lat_err, lon_err)
        elif kind == "ZDA":
            day = _integer(_field(message, "day"))
            month = _integer(_field(message, "month"))
            year = _integer(_field(message, "year"))
            if day and month and year:
                with contextlib.suppress(ValueError):
                    epoch.day = date(year, month, day)

    def _read_position(
        self, message: pynmea2.NMEASentence, epoch: _Epoch, claimed: bool
    ) -> None:
        epoch.position_seen = True
        if not claimed:
            epoch.valid = False
            return

        lat = parse_degrees(_field(message, "lat"), _field(message, "lat_dir"), 90.0)
        lon = parse_degrees(_field(message, "lon"), _field(message, "lon_dir"), 180.0)
        if lat is None or lon is None:
            epoch.valid = False
            return
        if lat == 0.0 and lon == 0.0:
            epoch.suspect_zero = True
            return
        epoch.lat, epoch.lon = lat, lon
        if epoch.valid is None:
            epoch.valid = True

    @staticmethod
    def _read_faa(letter: str, epoch: _Epoch) -> None:
        if letter not in FAA_MODE:
            return
        real, name = FAA_MODE[letter]
        if not real:
            epoch.valid = False
        epoch.quality = name or epoch.quality

    @staticmethod
    def _read_gsa(message: pynmea2.NMEASentence, epoch: _Epoch) -> None:
        mode = _integer(_field(message, "mode_fix_type"))
        if mode in (1, 2, 3):
            # Several GSAs in one epoch (one per constellation) agree on the mode,
            # but each lists only its own satellites.
            epoch.gsa_mode = mode
        talker = message.talker
        for prn in message.data[GSA_FIRST_PRN : GSA_FIRST_PRN + 12]:
            if prn:
                epoch.gsa_prns.add(talker + prn)
        epoch.hdop = epoch.hdop or _number(_field(message, "hdop"))

    @staticmethod
    def _read_vtg(message: pynmea2.NMEASentence, epoch: _Epoch) -> None:
        if _field(message, "faa_mode") == "N":
            return
        kmph = _number(_field(message, "spd_over_grnd_kmph"))
        knots = _number(_field(message, "spd_over_grnd_kts"))
        if epoch.speed is None:
            if kmph is not None:
                epoch.speed = kmph / 3.6
            elif knots is not None:
                epoch.speed = knots * KNOTS_TO_MPS
        if epoch.course is None:
            epoch.course = _number(_field(message, "true_track"))

    def _close(self, learn: bool = False) -> Fix | None:
        """Finish the epoch in progress and start an empty one."""
        epoch, self._epoch = self._epoch, _Epoch()
        if learn:
            self._learn_ender(epoch)
        if not epoch.position_seen:
            return None

        fix = self._build(epoch)
        self.stats.fixes += 1
        return fix

    def _learn_ender(self, epoch: _Epoch) -> None:
        """Remember which sentence ends an epoch, once two epochs agree."""
        if not epoch.keys:
            return
        last = epoch.keys[-1]
        if epoch.keys.count(last) != 1:
            # Sent several times an epoch (one GSA per constellation): not an end.
            last = ""
        if self._ender is not None and self._ender != last:
            log.debug("NMEA epochs no longer end with %s", self._ender)
            self._ender = None
        if last and last == self._ender_candidate and self._ender is None:
            self._ender = last
            log.debug("NMEA epochs end with %s", last)
        self._ender_candidate = last or None

    def _build(self, epoch: _Epoch) -> Fix:
        quality = epoch.gga_quality or epoch.quality
        # Some receivers send 00 satellites in GGA beside a fix; GSA's list is
        # then the better count.
        sats = epoch.sats or len(epoch.gsa_prns) or epoch.sats

        has_position = (
            epoch.valid is True
            and epoch.lat is not None
            and epoch.lon is not None
            and epoch.gsa_mode != 1
        )
        if epoch.suspect_zero and epoch.lat is None:
            self.stats.suspect_zero += 1
        if not has_position or epoch.lat is None or epoch.lon is None:
            # No time either: a receiver without a fix sends its power-on
            # defaults (1980, 2006, a date 1024 weeks early), not the time.
            return Fix(
                lat=NO_POSITION,
                lon=NO_POSITION,
                mode=FixMode.NO_FIX,
                time=None,
                sats=sats,
                received=epoch.arrival,
            )

        when = self._timestamp(epoch)
        if epoch.gsa_mode in (2, 3):
            mode = FixMode(epoch.gsa_mode)
        elif epoch.alt is not None and (sats is None or sats >= 4):
            mode = FixMode.THREE_D
        else:
            # A height from fewer than four satellites is held, not measured.
            mode = FixMode.TWO_D
        if epoch.gst_m is not None:
            accuracy: float | None = epoch.gst_m
        elif epoch.hdop is not None:
            accuracy = epoch.hdop * HDOP_TO_METRES
        else:
            accuracy = None

        return Fix(
            lat=epoch.lat,
            lon=epoch.lon,
            mode=mode,
            time=when,
            alt=epoch.alt if mode == FixMode.THREE_D else None,
            speed=epoch.speed,
            course=epoch.course,
            sats=sats,
            hdop=epoch.hdop,
            accuracy_m=accuracy,
            quality=quality,
            received=epoch.arrival,
        )

    def _timestamp(self, epoch: _Epoch) -> datetime | None:
        """The epoch's UTC time, once a date is known."""
        if epoch.day is not None:
            self._day = epoch.day
        elif (
            self._day is not None
            and epoch.tod is not None
            and self._last_tod is not None
            and epoch.tod < self._last_tod - 43200
        ):
            # The time of day wrapped past midnight with no date sent since.
            self._day += timedelta(days=1)
        if epoch.tod is not None:
            self._last_tod = epoch.tod
        if self._day is None or epoch.tod is None:
            return None
        midnight = datetime(self._day.year, self._day.month, self._day.day, tzinfo=UTC)
        return midnight + timedelta(seconds=epoch.tod)


def _field(message: pynmea2.NMEASentence, name: str) -> str:
    """A field's raw text by its pynmea2 name (sentences are padded when short)."""
    text: str = message.data[message.name_to_idx[name]]
    return text


def _faa_rank(letter: str) -> int:
    return FAA_RANK.index(letter) if letter in FAA_RANK else len(FAA_RANK)
