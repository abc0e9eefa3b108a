"""A small ESC/POS decoder for tests: bytes back into printed lines.

It follows the printer's state (code page, alignment, emphasis, size, font) and
turns a byte stream into text lines, QR code contents, images, barcodes and
cuts, so tests can assert what a receipt says rather than which bytes it holds.
Commands it does not print (line spacing, drawer kicks, status requests...) are
skipped by their length; bytes it cannot make sense of raise ``DecodeError``
with the offset, so a malformed stream never passes silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from escpos.capabilities import CAPABILITIES, get_profile

log = logging.getLogger(__name__)

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
PRINT_GRAPHICS = b"\x1d(L\x02\x0002"  # GS ( L: print the stored graphics
Kind = Literal["text", "qr", "image", "barcode", "cut"]

# ESC commands with a fixed number of parameter bytes.
_ESC_FIXED = {
    0x40: 0,  # @ reset
    0x21: 1,  # ! print mode
    0x45: 1,  # E emphasis
    0x47: 1,  # G double strike
    0x2D: 1,  # - underline
    0x61: 1,  # a alignment
    0x74: 1,  # t code page
    0x4D: 1,  # M font
    0x64: 1,  # d print and feed n lines
    0x65: 1,  # e reverse feed
    0x4A: 1,  # J print and feed n dots
    0x4B: 1,  # K reverse feed dots
    0x32: 0,  # 2 default line spacing
    0x33: 1,  # 3 line spacing
    0x41: 1,  # A line spacing (some models)
    0x2B: 1,  # + line spacing (some models)
    0x7B: 1,  # { upside down
    0x56: 1,  # V rotate
    0x72: 1,  # r colour
    0x52: 1,  # R international character set
    0x20: 1,  # SP right-side spacing
    0x24: 2,  # $ absolute position
    0x5C: 2,  # \ relative position
    0x70: 3,  # p drawer kick
    0x3D: 1,  # = peripheral select
    0x3F: 1,  # ? cancel user character
    0x25: 1,  # % user character set
    0x69: 0,  # i partial cut (old)
    0x6D: 0,  # m partial cut (old)
    0x4C: 0,  # L page mode
    0x53: 0,  # S standard mode
    0x57: 8,  # W print area in page mode
    0x54: 1,  # T print direction in page mode
    0x0C: 0,  # FF print page
    0x3C: 0,  # < return home
    0x55: 1,  # U unidirectional
    0x75: 1,  # u peripheral status
    0x76: 1,  # v paper status
    0x42: 2,  # B buzzer (some models)
}

# GS commands with a fixed number of parameter bytes.
_GS_FIXED = {
    0x21: 1,  # ! character size
    0x42: 1,  # B reverse
    0x68: 1,  # h barcode height
    0x77: 1,  # w barcode width
    0x48: 1,  # H barcode text position
    0x66: 1,  # f barcode text font
    0x4C: 2,  # L left margin
    0x57: 2,  # W print area width
    0x2F: 1,  # / print downloaded image
    0x61: 1,  # a automatic status back
    0x72: 1,  # r status
    0x49: 1,  # I printer id
    0x62: 1,  # b smoothing
    0x50: 2,  # P motion units
    0x24: 2,  # $ absolute vertical position
    0x5C: 2,  # \ relative vertical position
    0x54: 1,  # T set print position to line start
    0x3A: 0,  # : macro definition start/end
    0x5E: 3,  # ^ run macro
    0x7C: 1,  # | print density
}

# FS commands with a fixed number of parameter bytes.
_FS_FIXED = {
    0x26: 0,  # & Kanji mode on
    0x2E: 0,  # . Kanji mode off
    0x21: 1,  # ! Kanji print mode
    0x43: 1,  # C Kanji code system
    0x2D: 1,  # - Kanji underline
    0x53: 2,  # S Kanji spacing
    0x57: 1,  # W Kanji quadruple size
    0x70: 2,  # p print NV bit image
}


class DecodeError(ValueError):
    """The stream is not ESC/POS this decoder understands."""


@dataclass
class Printed:
    """One printed line or element.

    Attributes:
        kind: "text", "qr", "image", "barcode" or "cut".
        text: The line's characters, the QR or barcode contents, or the image size.
        align: "left", "center" or "right".
        bold: Emphasised (ESC E or ESC !).
        width: Character width multiplier.
        height: Character height multiplier.
        font: 0 for font A, 1 for font B.
        underline: Underlined.
        upside_down: Printed upside down (ESC {).
        inverted: White on black (GS B).
    """

    kind: Kind
    text: str = ""
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1
    font: int = 0
    underline: bool = False
    upside_down: bool = False
    inverted: bool = False


@dataclass
class Decoded:
    """Everything a stream printed, in order."""

    items: list[Printed] = field(default_factory=list)
    resets: int = 0
    code_pages: list[int] = field(default_factory=list)
    status_requests: list[int] = field(default_factory=list)

    @property
    def qr_codes(self) -> list[str]:
        return [item.text for item in self.items if item.kind == "qr"]

    @property
    def cuts(self) -> int:
        return sum(1 for item in self.items if item.kind == "cut")

    @property
    def text(self) -> str:
        """The text lines joined, without layout; QR codes and images left out."""
        return "".join(f"{i.text}\n" for i in self.items if i.kind == "text")

    def lines(self, columns: int, *, trim: bool = True) -> list[str]:
        """The printout laid out on ``columns`` characters, as a person sees it.

        QR codes show as ``[QR]``, images as ``[IMAGE WxH]``, barcodes as
        ``[BARCODE data]``; cuts add no line. With ``trim``, the blank feed at
        the end is dropped.
        """
        out: list[str] = []
        for item in self.items:
            if item.kind == "cut":
                continue
            if item.kind == "text":
                text = item.text
            elif item.kind == "qr":
                text = "[QR]"
            elif item.kind == "image":
                text = f"[IMAGE {item.text}]"
            else:
                text = f"[BARCODE {item.text}]"
            out.append(_place(text, item.align, columns))
        while trim and out and not out[-1].strip():
            out.pop()
        return out


def _place(text: str, align: str, columns: int) -> str:
    if align == "center":
        return " " * max(0, (columns - len(text)) // 2) + text
    if align == "right":
        return text.rjust(columns)
    return text


class _CodePages:
    """Byte-to-character tables for the code pages of one printer profile."""

    def __init__(self, profile: str) -> None:
        self.pages: dict[str, str] = get_profile(profile).profile_data["codePages"]
        self.tables: dict[int, list[str]] = {}

    def table(self, number: int) -> list[str]:
        if number not in self.tables:
            self.tables[number] = self._build(number)
        return self.tables[number]

    def _build(self, number: int) -> list[str]:
        name = self.pages.get(str(number), "Unknown")
        info = CAPABILITIES["encodings"].get(name, {})
        table = [chr(b) if 0x20 <= b < 0x7F else "\ufffd" for b in range(256)]
        if "data" in info:
            upper = "".join(info["data"])
            for offset, char in enumerate(upper):
                table[0x80 + offset] = char
        elif "python_encode" in info:
            codec = info["python_encode"]
            for b in range(0x80, 0x100):
                try:
                    table[b] = bytes([b]).decode(codec)
                except UnicodeDecodeError:
                    table[b] = "\ufffd"
        else:
            # Streams select pages nobody has charted (profiles list them as
            # "Unknown"); their upper half shows as replacement characters.
            log.debug("code page %s (%s) has no known table", number, name)
        return table


class _Decoder:
    def __init__(self, data: bytes, profile: str) -> None:
        self.data = data
        self.pos = 0
        self.pages = _CodePages(profile)
        self.out = Decoded()
        self.line: list[str] = []
        self.line_style: Printed | None = None
        self.qr_data = ""
        self.tabs: list[int] = list(range(8, 256, 8))
        self.reset()

    def reset(self) -> None:
        self.page = 0
        self.align = "left"
        self.bold = False
        self.width = 1
        self.height = 1
        self.font = 0
        self.underline = False
        self.upside_down = False
        self.inverted = False
        self.tabs = list(range(8, 256, 8))

    # --- reading ---------------------------------------------------------

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise DecodeError(
                f"stream ends inside a command at offset {self.pos} "
                f"({count} bytes wanted)"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def until_nul(self) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise DecodeError(f"unterminated data at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end + 1
        return chunk

    # --- output ----------------------------------------------------------

    def style(self, kind: Kind, text: str = "") -> Printed:
        return Printed(
            kind,
            text,
            self.align,
            self.bold,
            self.width,
            self.height,
            self.font,
            self.underline,
            self.upside_down,
            self.inverted,
        )

    def char(self, char: str) -> None:
        if self.line_style is None:
            self.line_style = self.style("text")
        elif self.bold:
            self.line_style.bold = True
        self.line.append(char)

    def flush(self, *, blank: bool = True) -> None:
        """End the current line; ``blank`` also prints an empty line."""
        if self.line or blank:
            item = self.line_style or self.style("text")
            item.text = "".join(self.line)
            self.out.items.append(item)
        self.line = []
        self.line_style = None

    def element(self, kind: Kind, text: str) -> None:
        if self.line:
            self.flush()
        self.out.items.append(self.style(kind, text))

    # --- commands --------------------------------------------------------

    def run(self) -> Decoded:
        while self.pos < len(self.data):
            b = self.byte()
            if b == ESC:
                self.esc()
            elif b == GS:
                self.gs()
            elif b == FS:
                self.fs()
            elif b == DLE:
                self.dle()
            elif b == 0x0A:
                self.flush()
            elif b == 0x09:
                self.tab()
            elif b == 0x0C:
                self.flush(blank=False)
            elif b < 0x20 or b == 0x7F:
                continue  # CR, CAN and other controls print nothing
            else:
                self.char(self.pages.table(self.page)[b])
        if self.line:
            self.flush()
        return self.out

    def tab(self) -> None:
        column = len(self.line)
        # A printer already standing on a tab stop stays there (as a real
        # printout of the corpus receipt shows), so the test is ">=".
        for stop in self.tabs:
            if stop >= column:
                self.line.extend(" " * (stop - column))
                if self.line_style is None:
                    self.line_style = self.style("text")
                return

    def esc(self) -> None:
        cmd = self.byte()
        if cmd == 0x2A:  # * bit image
            mode, low, high = self.take(3)
            self.take((low + high * 256) * (3 if mode in (32, 33) else 1))
            self.element("image", f"column {low + high * 256}")
            return
        if cmd == 0x44:  # D tab stops
            self.tabs = [int(b) for b in self.until_nul()] or list(range(8, 256, 8))
            return
        if cmd == 0x63:  # c panel and sensor settings
            self.take(2)
            return
        if cmd == 0x26:  # & user-defined characters
            self.user_characters()
            return
        if cmd == 0x28:  # ( function with a length
            self.take(1)
            low, high = self.take(2)
            self.take(low + high * 256)
            return
        if cmd not in _ESC_FIXED:
            raise DecodeError(f"unknown command ESC 0x{cmd:02x} at {self.pos - 2}")

        args = self.take(_ESC_FIXED[cmd])
        n = args[0] if args else 0
        if cmd == 0x40:
            self.reset()
            self.out.resets += 1
        elif cmd == 0x21:
            self.font = n & 0x01
            self.bold = bool(n & 0x08)
            self.height = 2 if n & 0x10 else 1
            self.width = 2 if n & 0x20 else 1
            self.underline = bool(n & 0x80)
        elif cmd == 0x45:
            self.bold = bool(n & 1)
        elif cmd == 0x2D:
            self.underline = n in (1, 2, 49, 50)
        elif cmd == 0x61:
            self.align = {0: "left", 1: "center", 2: "right"}.get(n % 48, "left")
        elif cmd == 0x74:
            self.page = n
            self.pages.table(n)
            self.out.code_pages.append(n)
        elif cmd == 0x4D:
            self.font = n % 48
        elif cmd == 0x64:
            self.flush(blank=bool(self.line))
            for _ in range(n):
                self.flush()
        elif cmd == 0x4A:
            self.flush(blank=False)
        elif cmd == 0x7B:
            self.upside_down = bool(n & 1)
        elif cmd in (0x69, 0x6D):
            self.element("cut", "partial")

    def user_characters(self) -> None:
        height, first, last = self.take(3)
        for _ in range(max(0, last - first + 1)):
            width = self.byte()
            self.take(height * width)

    def gs(self) -> None:
        cmd = self.byte()
        if cmd == 0x56:  # V cut
            mode = self.byte()
            if mode in (65, 66, 97, 98, 103, 104):
                self.take(1)
            self.element("cut", "partial" if mode in (1, 49, 66, 98) else "full")
        elif cmd == 0x28:  # ( functions with a two-byte length
            self.gs_paren()
        elif cmd == 0x76:  # v 0 raster image
            self.take(2)
            xl, xh, yl, yh = self.take(4)
            width, height = xl + xh * 256, yl + yh * 256
            self.take(width * height)
            self.element("image", f"{width * 8}x{height}")
        elif cmd == 0x38:  # 8 L graphics with a four-byte length
            self.take(1)
            p = self.take(4)
            fn = self.data[self.pos + 1] if self.pos + 1 < len(self.data) else 0
            self.skip_graphics(p[0] + p[1] * 256 + p[2] * 65536 + p[3] * 16777216)
            if fn in (2, 50):  # print now, rather than store for later
                self.element("image", "graphics")
        elif cmd == 0x6B:  # k barcode
            self.barcode()
        elif cmd == 0x2A:  # * downloaded bit image
            x, y = self.take(2)
            self.take(x * y * 8)
        elif cmd in _GS_FIXED:
            args = self.take(_GS_FIXED[cmd])
            if cmd == 0x21:
                self.width = (args[0] >> 4) + 1
                self.height = (args[0] & 0x0F) + 1
            elif cmd == 0x42:
                self.inverted = bool(args[0] & 1)
        else:
            raise DecodeError(f"unknown command GS 0x{cmd:02x} at {self.pos - 2}")

    def skip_graphics(self, length: int) -> None:
        """Skip stored graphics data, even when its declared length is wrong.

        Some programs write a length past the real data; the printer then
        swallows the next command. A decoder should still find the command
        that prints the stored graphics, so it resumes there.
        """
        if self.pos + length <= len(self.data):
            self.pos += length
            return
        resume = self.data.find(PRINT_GRAPHICS, self.pos)
        if resume < 0:
            raise DecodeError(
                f"graphics at offset {self.pos} declare {length} bytes past the end"
            )
        log.debug("graphics at %s are shorter than declared", self.pos)
        self.pos = resume

    def gs_paren(self) -> None:
        fn_group = self.byte()
        low, high = self.take(2)
        body = self.take(low + high * 256)
        if fn_group != 0x6B or len(body) < 2:
            if fn_group == 0x4C and len(body) >= 2 and body[1] in (2, 50):
                self.element("image", "graphics")
            return

        code, fn = body[0], body[1]
        if code == 49 and fn == 80:  # QR: store the data
            self.qr_data = body[3:].decode("utf-8", errors="replace")
        elif code == 49 and fn == 81:  # QR: print
            self.element("qr", self.qr_data)
        elif fn == 81:
            self.element("barcode", f"2D code {code}")

    def barcode(self) -> None:
        system = self.byte()
        # Systems 0-6 end their data with NUL; 65 and up give its length first.
        data = self.until_nul() if system <= 6 else self.take(self.byte())
        text = data.decode("latin-1")
        if system == 73 and text[:1] == "{":
            text = text[2:]  # CODE128: drop the code-set selector
        self.element("barcode", text)

    def fs(self) -> None:
        cmd = self.byte()
        if cmd == 0x71:  # q define NV images
            for _ in range(self.byte()):
                xl, xh, yl, yh = self.take(4)
                self.take((xl + xh * 256) * (yl + yh * 256) * 8)
        elif cmd == 0x32:  # 2 define a Kanji character
            self.take(2 + 72)
        elif cmd == 0x28:  # ( functions with a two-byte length
            self.take(1)
            low, high = self.take(2)
            self.take(low + high * 256)
        elif cmd in _FS_FIXED:
            self.take(_FS_FIXED[cmd])
            if cmd == 0x70:
                self.element("image", "NV image")
        else:
            raise DecodeError(f"unknown command FS 0x{cmd:02x} at {self.pos - 2}")

    def dle(self) -> None:
        cmd = self.byte()
        if cmd in (0x04, 0x05):  # EOT / ENQ: real-time status, request
            n = self.byte()
            if cmd == 0x04:
                self.out.status_requests.append(n)
        elif cmd == 0x14:  # DC4: real-time functions
            self.take(3)
        else:
            raise DecodeError(f"unknown command DLE 0x{cmd:02x} at {self.pos - 2}")


def decode(data: bytes, profile: str = "default") -> Decoded:
    """Decode an ESC/POS stream.

    Args:
        data: The bytes sent to the printer.
        profile: The python-escpos profile whose code page numbers apply.

    Raises:
        DecodeError: The stream holds an unknown command or ends inside one.
    """
    return _Decoder(data, profile).run()


def split_jobs(data: bytes) -> list[bytes]:
    """Split a recording into jobs, each starting at a reset (ESC @)."""
    parts = data.split(b"\x1b@")
    return [b"\x1b@" + part for part in parts[1:] if part.strip(b"\x00")] or (
        [data] if data else []
    )
