"""``kiosk gps``: show what a GPS source reports, for installers."""

from __future__ import annotations

import json
import logging
import math
from typing import TextIO

from kiosk.errors import BadInput, GpsError, KioskError
from kiosk.fix import Fix
from kiosk.hardware.gps.sources import describe, open_source

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0


def fix_to_json(fix: Fix) -> dict[str, object]:
    """The one-line JSON form of a fix; no position gives null lat/lon."""
    has_position = fix.has_position and math.isfinite(fix.lat)
    return {
        "lat": round(fix.lat, 8) if has_position else None,
        "lon": round(fix.lon, 8) if has_position else None,
        "time": fix.time.isoformat().replace("+00:00", "Z") if fix.time else None,
        "mode": int(fix.mode),
        "sats": fix.sats,
        "acc": round(fix.accuracy_m, 1) if fix.accuracy_m is not None else None,
        "quality": fix.quality,
    }


def fix_to_text(fix: Fix) -> str:
    """One readable line: time, position, mode and accuracy."""
    when = fix.time.isoformat().replace("+00:00", "Z") if fix.time else "-"
    if not fix.has_position:
        return f"{when}  {describe(fix)}"
    accuracy = f"  ±{fix.accuracy_m:.0f} m" if fix.accuracy_m is not None else ""
    return f"{when}  {fix.lat:.6f} {fix.lon:.6f}  {describe(fix)}{accuracy}"


def run_gps(
    source_spec: str, as_json: bool, out: TextIO, limit: int | None = None
) -> int:
    """Print fixes from a source as they come, until interrupted.

    Args:
        source_spec: a GPS connection string.
        as_json: one JSON object a line (``lat``, ``lon``, ``time``, ``mode``,
            ``sats``, ``acc``, ``quality``) instead of text.
        out: where to print.
        limit: stop after this many fixes; a recording also stops at its end.

    Returns:
        0 done, 2 a malformed connection string, 3 a source that cannot be
        opened or that failed.
    """
    try:
        source = open_source(source_spec)
        source.open()
    except (BadInput, GpsError) as error:
        return _fail(error, as_json, out)

    printed = 0
    try:
        with source:
            while limit is None or printed < limit:
                fix = source.read(READ_TIMEOUT_S)
                if fix is not None:
                    line = json.dumps(fix_to_json(fix)) if as_json else fix_to_text(fix)
                    print(line, file=out, flush=True)
                    printed += 1
                if source.finished:
                    break
    except GpsError as error:
        return _fail(error, as_json, out)
    except KeyboardInterrupt:
        pass
    return 0


def _fail(error: KioskError, as_json: bool, out: TextIO) -> int:
    if as_json:
        body = {"error": {"code": error.code, "message": error.message}}
        print(json.dumps(body), file=out)
    else:
        print(f"error: {error.message}", file=out)
    return error.exit_code
