"""GPS: NMEA decoding, sources chosen by connection string, and the worker thread."""

from kiosk.hardware.gps.nmea import DecoderStats, NmeaDecoder
from kiosk.hardware.gps.sources import GpsSource, GpsSpecError, open_source
from kiosk.hardware.gps.worker import GpsWorker

__all__ = [
    "DecoderStats",
    "GpsSource",
    "GpsSpecError",
    "GpsWorker",
    "NmeaDecoder",
    "open_source",
]
