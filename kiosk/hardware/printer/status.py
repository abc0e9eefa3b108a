"""Printer status from the real-time status replies (DLE EOT n).

A printer answers ``DLE EOT 1`` (printer), ``DLE EOT 2`` (offline cause) and
``DLE EOT 4`` (paper sensor) with one byte each. Every valid reply has bits 1
and 4 set and bits 0 and 7 clear; anything else (no answer, several bytes, a
byte without that frame) is read as "unknown" and never raises, because many
cheap printers answer oddly or not at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

DLE_EOT = b"\x10\x04"
QUERIES = (1, 2, 4)

_FRAME_MASK = 0x93
_FRAME = 0x12


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer reported; ``None`` where it could not say.

    Attributes:
        online: The printer is ready to print.
        cover_open: The paper cover is open.
        paper_near_end: The roll is nearly used up.
        paper_out: No paper: nothing can print.
    """

    online: bool | None = None
    cover_open: bool | None = None
    paper_near_end: bool | None = None
    paper_out: bool | None = None

    @property
    def known(self) -> bool:
        """Whether the printer answered anything useful."""
        return any(
            value is not None
            for value in (
                self.online,
                self.cover_open,
                self.paper_near_end,
                self.paper_out,
            )
        )

    @property
    def ready(self) -> bool:
        """False only when the printer said it cannot print now."""
        return not (self.paper_out or self.cover_open or self.online is False)

    def describe(self) -> str:
        """A short sentence for the collector."""
        if not self.known:
            return "status unknown"
        if self.paper_out:
            return "out of paper: load a new roll"
        if self.cover_open:
            return "cover open: close the paper cover"
        if self.online is False:
            return "offline: check the printer's power and error light"
        if self.paper_near_end:
            return "ready, paper nearly used up"
        return "ready"


def _byte(reply: bytes | None) -> int | None:
    if not reply or len(reply) != 1:
        return None
    value = reply[0]
    return value if value & _FRAME_MASK == _FRAME else None


def parse_status(replies: dict[int, bytes | None]) -> PrinterStatus:
    """Read the replies to DLE EOT 1, 2 and 4 (keyed by n).

    Args:
        replies: The bytes received after each request, or None for silence.
    """
    printer = _byte(replies.get(1))
    cause = _byte(replies.get(2))
    paper = _byte(replies.get(4))

    online = None if printer is None else not printer & 0x08
    cover_open = None if cause is None else bool(cause & 0x04)
    near_end = None if paper is None else paper & 0x0C == 0x0C
    paper_out = None if paper is None else paper & 0x60 == 0x60
    if cause is not None and cause & 0x20:
        # "Stopped by paper end" also means no paper when the sensor byte
        # was missing.
        paper_out = True

    return PrinterStatus(online, cover_open, near_end, paper_out)
