"""ESC/POS bytes for receipt lines, built with python-escpos.

Every job starts with a reset (ESC @) and selects its code page explicitly, so
it prints the same whatever the previous job left behind. Text is encoded in one
code page chosen from the printer profile: what that page can show prints as is
(é ñ ü ß €), other letters lose their accents (NFKD), and anything still left
becomes '?'. Encoding never raises, so a name in an unexpected script can never
stop a receipt half-way.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import qrcode
from escpos.capabilities import CAPABILITIES, get_profile
from escpos.constants import QR_ECLEVEL_M
from escpos.exceptions import Error as EscposError
from escpos.printer import Dummy

from kiosk.errors import PrinterError
from kiosk.receipt import Line

log = logging.getLogger(__name__)

ESC = b"\x1b"
RESET = ESC + b"@"

# Code pages that hold Western European letters and the euro sign, best first.
PREFERRED_CODE_PAGES = ("CP858", "CP1252", "ISO_8859-15", "CP850", "CP437")

# Letters that NFKD leaves alone but that have an obvious plain-Latin reading.
_FALLBACK = str.maketrans(
    {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "Ŧ": "T", "ŧ": "t"}
)

QR_SIZE = 4


@dataclass(frozen=True)
class CodePage:
    """A code page the printer knows: its ESC t number and Python codec."""

    number: int
    name: str
    codec: str


@functools.lru_cache(maxsize=32)
def code_page_for(profile: str) -> CodePage:
    """Choose the code page a profile's jobs are printed in.

    Raises:
        PrinterError: The profile is unknown or has no usable code page.
    """
    try:
        pages = get_profile(profile).profile_data["codePages"]
    except Exception as exc:  # python-escpos raises its own error types here
        raise PrinterError(
            f"printer profile {profile!r} is unknown to python-escpos; "
            "set printer.profile to a listed profile such as POS-5890"
        ) from exc

    encodings = CAPABILITIES["encodings"]
    for name in PREFERRED_CODE_PAGES:
        numbers = sorted(int(n) for n, page in pages.items() if page == name)
        codec = encodings.get(name, {}).get("python_encode")
        if numbers and codec:
            return CodePage(numbers[0], name, codec)
    raise PrinterError(f"printer profile {profile!r} has no Western code page")


@functools.lru_cache(maxsize=4096)
def _printable_char(char: str, codec: str) -> str:
    # Control characters in data would be read as printer commands.
    if unicodedata.category(char)[0] == "C":
        return "?"
    try:
        char.encode(codec)
        return char
    except UnicodeEncodeError:
        pass

    # Keep one printed character per character so that columns still line up.
    base = "".join(
        c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
    ).translate(_FALLBACK)
    if len(base) == 1:
        try:
            base.encode(codec)
            return base
        except UnicodeEncodeError:
            pass
    return "?"


def printable(text: str, codec: str) -> str:
    """Return the text as it will appear on paper in the given codec."""
    return "".join(_printable_char(char, codec) for char in text)


def encode_text(text: str, codec: str) -> bytes:
    """Encode text for the printer; never raises."""
    return printable(text, codec).encode(codec)


def _font_for(profile: str, columns: int) -> int | None:
    """The profile font that gives ``columns`` characters per line, if any."""
    fonts = get_profile(profile).profile_data.get("fonts", {})
    for number, font in sorted(fonts.items()):
        if int(font.get("columns", 0)) == columns:
            return None if number == "0" else int(number)
    return None


def render_escpos(
    lines: Iterable[Line], *, profile: str, columns: int, native_qr: bool = True
) -> bytes:
    """Turn receipt lines into ESC/POS bytes for one printer profile.

    Args:
        lines: The printout from :func:`kiosk.receipt.render_lines`.
        profile: A python-escpos profile name, e.g. ``POS-5890``.
        columns: Characters per line the lines were laid out for.
        native_qr: Let the printer draw QR codes (about 190 bytes) instead of
            sending them as an image (a few kilobytes) for printers without
            the QR command.

    Raises:
        PrinterError: The profile is unknown.
    """
    page = code_page_for(profile)
    printer = Dummy(profile=profile)
    printer._raw(RESET)
    printer._raw(ESC + b"t" + bytes([page.number]))

    font = _font_for(profile, columns)
    if font is not None:
        printer.set(font=font)

    align, bold, double = "left", False, False
    for line in lines:
        if line.cut:
            _finish(printer)
            continue

        if line.rule:
            text, want = "-" * columns, ("left", False, False)
        elif line.qr is not None:
            text, want = "", ("center", False, False)
        else:
            text, want = line.text, (line.align, line.bold, line.double)

        # Send only what changed: each style command costs bytes on a slow
        # serial line. A size change (ESC !) also resets emphasis and the
        # font, so those are sent again.
        if want[2] != double:
            if want[2]:
                printer.set(double_width=True, double_height=True)
            else:
                printer.set(normal_textsize=True)
            if font is not None:
                printer.set(font=font)
            double, bold = want[2], False
        if want[1] != bold:
            printer.set(bold=want[1])
            bold = want[1]
        if want[0] != align:
            printer.set(align=want[0])
            align = want[0]

        if line.qr is not None:
            _qr(printer, line.qr, native_qr)
        else:
            printer._raw(encode_text(text, page.codec) + b"\n")

    return printer.output


def _qr(printer: Dummy, content: str, native: bool) -> None:
    try:
        if native:
            printer.qr(content, ec=QR_ECLEVEL_M, size=QR_SIZE, native=True)
            printer._raw(b"\n")
            return

        # Drawn here rather than by python-escpos's qr(), which sends its line
        # feeds through the automatic encoder and so switches code page.
        code = qrcode.QRCode(
            box_size=QR_SIZE,
            border=1,
            error_correction=qrcode.constants.ERROR_CORRECT_M,
        )
        code.add_data(content)
        code.make(fit=True)
        printer.image(code.make_image().get_image().convert("RGB"), center=False)
    except (EscposError, ValueError) as exc:
        # A code that cannot be drawn must not cost the receipt its text.
        log.warning("QR code left off the receipt: %s", exc)


def _finish(printer: Dummy) -> None:
    if printer.profile.supports("paperFullCut") or printer.profile.supports(
        "paperPartCut"
    ):
        printer.cut(mode="PART")
    else:
        # No cutter: feed the text clear of the tear bar.
        printer.print_and_feed(4)
