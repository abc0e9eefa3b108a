"""Widgets shared by the kiosk's screens: the header, the amount field, the meter.

None of them reads the store: they show what the app or their screen hands
them, so a slow disk never delays a redraw.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Static

from kiosk.errors import AmountError
from kiosk.money import SEPARATORS, parse_amount

if TYPE_CHECKING:
    from kiosk.ui.app import KioskApp

log = logging.getLogger(__name__)


class KioskHeader(Static):
    """One line on top of every screen: device, collector, clock and badges."""

    DEFAULT_CSS = """
    KioskHeader { height: 1; width: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__(markup=False)

    def on_mount(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        app: KioskApp = self.app  # type: ignore[assignment]
        self.update(app.header_text(self.size.width or app.size.width))

    def on_resize(self) -> None:
        self.refresh_text()


@dataclass(frozen=True, slots=True)
class Typed:
    """What an amount field made of a keystroke or paste."""

    text: str
    problem: str = ""  # catalogue key of a refusal, "" when accepted
    foreign_digits: bool = False


def normalise_amount(
    raw: str, exponent: int, locale: str, *, previous: str = ""
) -> Typed:
    """Read what is in an amount field and write it back grouped for the locale.

    Digits of other scripts (Arabic-Indic, full-width, Devanagari...) have one
    meaning and are turned into ``0-9``; anything else that is not a digit or
    one of the locale's separators, such as signs, exponents (``1e5``), spaces
    or letters, is refused. Group separators typed by hand are dropped and
    the grouping redone, so ``1500000`` and ``1.500.000`` end up the same.

    Args:
        raw: The field's text after the keystroke.
        exponent: The currency's decimals; 0 refuses a decimal separator.
        locale: ``"id"`` or ``"en"``.
        previous: The field's text before the keystroke, kept on refusal.
    """
    seps = SEPARATORS[locale]
    foreign = False
    chars = []
    for char in raw:
        if "0" <= char <= "9":
            chars.append(char)
        elif char.isdigit() and unicodedata.decimal(char, None) is not None:
            chars.append(str(unicodedata.decimal(char)))
            foreign = True
        elif char == seps.group:
            continue
        elif char == seps.decimal:
            if exponent == 0:
                return Typed(previous, "amount.no_decimals")
            chars.append(char)
        else:
            return Typed(previous, "amount.only_digits")

    text = "".join(chars)
    if text.count(seps.decimal) > 1:
        return Typed(previous, "amount.one_decimal")
    whole, dot, fraction = text.partition(seps.decimal)
    if len(fraction) > exponent:
        return Typed(previous, "amount.too_many_decimals")
    whole = whole.lstrip("0") or ("0" if whole or dot else "")
    if len(whole) + exponent > 15:
        return Typed(previous, "amount.too_large")
    grouped = f"{int(whole):,}".replace(",", seps.group) if whole else ""
    return Typed(grouped + dot + fraction, "", foreign)


class AmountInput(Input):
    """An amount field that groups digits as they are typed: ``1.500.000``.

    Exponent forms, signs, letters and a second decimal separator are refused
    on the keystroke, with a ``Refused`` message naming the catalogue key of
    the reason; digits from other scripts are read as the digits they are.
    """

    class Refused(Message):
        """A keystroke was refused; ``reason`` is a catalogue key."""

        def __init__(self, field: AmountInput, reason: str) -> None:
            super().__init__()
            self.field = field
            self.reason = reason

    def __init__(
        self,
        *,
        exponent: int,
        locale: str,
        allow_zero: bool = False,
        id: str | None = None,
        placeholder: str = "",
    ) -> None:
        super().__init__(id=id, placeholder=placeholder)
        self.exponent = exponent
        self.locale = locale
        self.allow_zero = allow_zero
        self.foreign_digits = False

    def replace(self, text: str, start: int, end: int) -> None:
        value = self.value
        start, end = sorted((max(0, start), min(len(value), end)))
        group = SEPARATORS[self.locale].group

        # Deleting only a group separator would change nothing once regrouped;
        # take the digit in front of it as well, as the person meant.
        if not text and value[start:end] == group and start > 0:
            start -= 1
        typed = normalise_amount(
            value[:start] + text + value[end:],
            self.exponent,
            self.locale,
            previous=value,
        )
        if typed.problem:
            self.post_message(self.Refused(self, typed.problem))
            self.app.bell()
            return
        self.foreign_digits = self.foreign_digits or typed.foreign_digits
        self.value = typed.text
        self.cursor_position = len(typed.text)

    def set_minor(self, amount: int) -> None:
        """Fill the field with an amount in minor units, formatted."""
        whole, fraction = divmod(amount, 10**self.exponent)
        text = str(whole)
        if self.exponent:
            text += SEPARATORS[self.locale].decimal + f"{fraction:0{self.exponent}d}"
        self.value = normalise_amount(text, self.exponent, self.locale).text
        self.cursor_position = len(self.value)

    @property
    def minor(self) -> int:
        """The amount in minor units.

        Raises:
            AmountError: The field is empty, zero (unless allowed) or malformed.
        """
        return parse_amount(
            self.value, self.exponent, self.locale, allow_zero=self.allow_zero
        )

    def minor_or_none(self) -> int | None:
        try:
            return self.minor
        except AmountError:
            return None


def meter_bar(part: int, whole: int, width: int = 20) -> str:
    """An ASCII bar such as ``[#####---------------]``, readable on any console."""
    if whole <= 0:
        return "[" + "-" * width + "]"
    filled = min(width, max(0, part * width // whole))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Plain(Static):
    """Static text shown as it is: names and messages from HQ may hold square
    brackets, which must not be read as styling."""

    def __init__(
        self,
        content: str = "",
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(content, id=id, classes=classes, markup=False)


KEY_NAMES = {"escape": "Esc", "enter": "Enter", "plus": "+", "minus": "-"}


class KeyBar(Widget):
    """The keys of the screen, wrapped onto as many lines as the width needs.

    Every action shows its key, even at 80 columns; the key is drawn in
    reverse video, which a monochrome console shows too.
    """

    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: auto; max-height: 3; padding: 0 1; }
    """

    def keys(self) -> list[tuple[str, str]]:
        shown = []
        for key, bindings in self.screen._bindings.key_to_bindings.items():
            for binding in bindings:
                if binding.show and binding.description:
                    name = KEY_NAMES.get(key, key.upper() if len(key) <= 3 else key)
                    shown.append((name, binding.description))
        return shown

    def render(self) -> Text:
        width = max(20, self.size.width or self.app.size.width)
        out = Text()
        used = 0
        for name, label in self.keys():
            size = len(name) + len(label) + 3
            if used and used + size > width:
                out.append("\n")
                used = 0
            out.append(f" {name} ", style="reverse bold")
            out.append(f" {label} ")
            used += size
        return out

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.render().plain.splitlines()) or 1
