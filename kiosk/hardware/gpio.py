"""The kiosk's pins: status LED, buzzer, panic button, lid switch, reprint button.

Wiring (BCM pin numbers in ``[gpio]``), every input between its pin and ground
with the Pi's internal pull-up:

- ``status_led``: an LED with its resistor. Steady when all is well, a slow
  blink while offline with events waiting to be sent, a fast blink on a fault.
- ``buzzer``: an active buzzer (it sounds when its pin is high). Patterns for
  "near the cash limit", "refused" and "error".
- ``panic_button``: held for ``panic_hold_s`` seconds it raises the panic
  alarm, so a brush against it does not.
- ``lid_switch``: a switch closed while the cash-box lid is shut; each opening
  is reported.
- ``reprint_button``: a press reprints the last receipt.

Off a Pi, or with ``enabled = false`` or no pins set, everything here does
nothing and says so once in the log, so the kiosk runs on a laptop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

log = logging.getLogger(__name__)

LedPattern = Literal["off", "steady", "slow", "fast"]
Beep = Literal["near_limit", "refusal", "error"]

# (on seconds, off seconds) for each blinking pattern.
BLINKS: dict[str, tuple[float, float]] = {"slow": (1.0, 1.0), "fast": (0.1, 0.1)}

# (on seconds, off seconds, count): two short chirps warn, one long tone
# refuses, three beeps report an error the collector must look at.
BEEPS: dict[str, tuple[float, float, int]] = {
    "near_limit": (0.08, 0.08, 2),
    "refusal": (0.6, 0.1, 1),
    "error": (0.2, 0.15, 3),
}

PIN_NAMES = ("status_led", "buzzer", "panic_button", "lid_switch", "reprint_button")
BOUNCE_S = 0.05


class KioskPins:
    """The kiosk's GPIO devices, built from a ``[gpio]`` section.

    Args:
        section: An object with ``enabled``, the pin numbers in
            :data:`PIN_NAMES` (None when not fitted) and ``panic_hold_s``,
            such as ``config.gpio``.
        on_panic: Called with the UTC time when the panic button was held.
        on_lid_open: Called with the UTC time at each opening of the lid.
        on_reprint: Called when the reprint button is pressed.
        pin_factory: A gpiozero pin factory; the default picks the Pi's.

    Callbacks run on gpiozero's thread and must return quickly.
    """

    def __init__(
        self,
        section: Any,
        *,
        on_panic: Callable[[datetime], None] | None = None,
        on_lid_open: Callable[[datetime], None] | None = None,
        on_reprint: Callable[[], None] | None = None,
        pin_factory: Any = None,
    ) -> None:
        self.on_panic = on_panic
        self.on_lid_open = on_lid_open
        self.on_reprint = on_reprint
        self.pattern: LedPattern = "off"
        self.led: Any = None
        self.buzzer: Any = None
        self.panic: Any = None
        self.lid: Any = None
        self.reprint: Any = None
        self._devices: list[Any] = []

        pins = {name: getattr(section, name, None) for name in PIN_NAMES}
        if not getattr(section, "enabled", False) or all(
            p is None for p in pins.values()
        ):
            log.info("GPIO off: not enabled in the configuration")
            return
        try:
            self._build(pins, float(getattr(section, "panic_hold_s", 2.0)), pin_factory)
        except Exception as exc:  # gpiozero raises many types off a Pi
            log.warning("GPIO off: the pins cannot be used here (%s)", exc)
            self.close()

    @property
    def active(self) -> bool:
        """Whether any pin is in use."""
        return bool(self._devices)

    def _build(self, pins: dict[str, int | None], hold_s: float, factory: Any) -> None:
        from gpiozero import LED, Button, Buzzer

        def add(device: Any) -> Any:
            self._devices.append(device)
            return device

        if pins["status_led"] is not None:
            self.led = add(LED(pins["status_led"], pin_factory=factory))
        if pins["buzzer"] is not None:
            self.buzzer = add(Buzzer(pins["buzzer"], pin_factory=factory))

        if pins["panic_button"] is not None:
            self.panic = add(
                Button(pins["panic_button"], hold_time=hold_s, pin_factory=factory)
            )
            self.panic.when_held = self._panic
        if pins["lid_switch"] is not None:
            self.lid = add(
                Button(pins["lid_switch"], bounce_time=BOUNCE_S, pin_factory=factory)
            )
            # Closed switch = "pressed"; the lid opening releases it.
            self.lid.when_released = self._lid_opened
        if pins["reprint_button"] is not None:
            self.reprint = add(
                Button(
                    pins["reprint_button"], bounce_time=BOUNCE_S, pin_factory=factory
                )
            )
            self.reprint.when_pressed = self._reprint
        log.info("GPIO on: %s", ", ".join(f"{k}={v}" for k, v in pins.items() if v))

    # --- outputs ---------------------------------------------------------

    def show(
        self, *, online: bool, backlog: int = 0, fault: bool = False
    ) -> LedPattern:
        """Set the status LED from the device state and return the pattern.

        A fault wins; offline with events waiting blinks slowly; otherwise
        (online, or offline with nothing at risk) the LED is steady.
        """
        if fault:
            pattern: LedPattern = "fast"
        elif not online and backlog > 0:
            pattern = "slow"
        else:
            pattern = "steady"
        self.set_led(pattern)
        return pattern

    def set_led(self, pattern: LedPattern) -> None:
        """Show a pattern; setting the pattern already shown changes nothing."""
        if pattern == self.pattern:
            return
        self.pattern = pattern
        if self.led is None:
            return
        if pattern == "off":
            self.led.off()
        elif pattern == "steady":
            self.led.on()
        else:
            on_s, off_s = BLINKS[pattern]
            self.led.blink(on_time=on_s, off_time=off_s, background=True)

    def beep(self, kind: Beep) -> None:
        """Sound a buzzer pattern in the background."""
        if self.buzzer is None:
            return
        on_s, off_s, count = BEEPS[kind]
        self.buzzer.beep(on_time=on_s, off_time=off_s, n=count, background=True)

    # --- inputs ----------------------------------------------------------

    def _panic(self) -> None:
        log.warning("panic button held")
        self._call(self.on_panic, datetime.now(UTC))

    def _lid_opened(self) -> None:
        log.warning("cash-box lid opened")
        self._call(self.on_lid_open, datetime.now(UTC))

    def _reprint(self) -> None:
        log.info("reprint button pressed")
        self._call(self.on_reprint)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("a GPIO callback failed")

    # --- life cycle ------------------------------------------------------

    def close(self) -> None:
        """Switch everything off and release the pins; safe to call twice."""
        for device in self._devices:
            try:
                device.close()
            except Exception:
                log.debug("closing %r failed", device, exc_info=True)
        self._devices = []
        self.led = self.buzzer = self.panic = self.lid = self.reprint = None

    def __enter__(self) -> KioskPins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
