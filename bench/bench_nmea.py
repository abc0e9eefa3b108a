"""Decoder cost: the whole NMEA corpus through `NmeaDecoder` against bare pynmea2.

Run as ``python -m bench.bench_nmea``; prints one JSON object. Goals: the decoder
costs at most 1.5 times a bare ``pynmea2.parse`` of every line, and decoding a
10 Hz stream takes less than 2% of one core.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pynmea2

from kiosk.hardware.gps.nmea import NmeaDecoder

log = logging.getLogger(__name__)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "nmea"
ROUNDS = 5


def load_lines() -> list[str]:
    """Every line of every capture, decoded as text, comments included."""
    lines: list[str] = []
    for path in sorted(CORPUS.glob("*.log")):
        lines.extend(path.read_text(encoding="latin-1").splitlines())
    return lines


def bare(lines: list[str]) -> None:
    for line in lines:
        # A plain try costs nothing when nothing is raised; contextlib.suppress
        # would add its own overhead to the baseline.
        try:  # noqa: SIM105
            pynmea2.parse(line, check=True)
        except pynmea2.ParseError:
            pass


def decoded(lines: list[str]) -> None:
    decoder = NmeaDecoder()
    for line in lines:
        decoder.feed(line)
    decoder.flush()


def best_of(run: object, lines: list[str]) -> float:
    """The fastest of several rounds, in CPU seconds."""
    assert callable(run)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        run(lines)
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    lines = load_lines()
    bare_s = best_of(bare, lines)
    decoder_s = best_of(decoded, lines)
    per_line = decoder_s / len(lines)

    # A 10 Hz receiver sending GGA, RMC, GSA, VTG and 3 GSV sentences each epoch.
    stream_lines_per_s = 10 * 7
    print(
        json.dumps(
            {
                "lines": len(lines),
                "bare_pynmea2_lines_per_s": round(len(lines) / bare_s),
                "decoder_lines_per_s": round(len(lines) / decoder_s),
                "ratio_to_bare": round(decoder_s / bare_s, 3),
                "ratio_goal": 1.5,
                "cpu_share_10hz_percent": round(per_line * stream_lines_per_s * 100, 4),
                "cpu_share_goal_percent": 2.0,
            }
        )
    )


if __name__ == "__main__":
    main()
