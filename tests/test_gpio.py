"""The kiosk's pins, on gpiozero's mock pin factory."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.config import GpioSection
from kiosk.hardware.gpio import BEEPS, KioskPins

LED, BUZZER, PANIC, LID, REPRINT = 17, 18, 22, 23, 24


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pins = MockFactory(pin_class=MockPWMPin)
    yield pins
    pins.close()


def section(**overrides: object) -> GpioSection:
    values: dict[str, object] = {
        "enabled": True,
        "status_led": LED,
        "buzzer": BUZZER,
        "panic_button": PANIC,
        "lid_switch": LID,
        "reprint_button": REPRINT,
        "panic_hold_s": 0.2,
    }
    values.update(overrides)
    return GpioSection.model_validate(values)


def wait_until(condition: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def changes(pin: MockPWMPin) -> list[tuple[float, bool]]:
    """The pin's history as (seconds held before the change, new state)."""
    return [(float(s.timestamp), bool(s.state)) for s in pin.states]


def test_gpio_led_steady_when_online(factory: MockFactory) -> None:
    with KioskPins(section(), pin_factory=factory) as pins:
        assert pins.show(online=True, backlog=5) == "steady"
        time.sleep(0.3)
        assert [state for _, state in changes(factory.pin(LED))] == [False, True]


def test_gpio_led_fast_blink_on_fault(factory: MockFactory) -> None:
    with KioskPins(section(), pin_factory=factory) as pins:
        assert pins.show(online=True, fault=True) == "fast"
        assert wait_until(lambda: len(factory.pin(LED).states) >= 7)

    history = changes(factory.pin(LED))[:7]
    states = [state for _, state in history]
    assert states == [False, True, False, True, False, True, False]
    # Each phase of the fast blink is far shorter than a slow blink's second.
    assert all(held < 0.5 for held, _ in history[2:])


def test_gpio_led_slow_blink_offline_with_backlog(factory: MockFactory) -> None:
    with KioskPins(section(), pin_factory=factory) as pins:
        assert pins.show(online=False, backlog=3) == "slow"
        assert wait_until(lambda: len(factory.pin(LED).states) >= 3)

    history = changes(factory.pin(LED))
    assert [state for _, state in history[:3]] == [False, True, False]
    # The LED stayed on for the slow blink's on-time before going off.
    assert history[2][0] >= 0.5


def test_gpio_led_offline_without_backlog_is_steady(factory: MockFactory) -> None:
    with KioskPins(section(), pin_factory=factory) as pins:
        assert pins.show(online=False, backlog=0) == "steady"


def test_gpio_led_same_pattern_does_not_restart(factory: MockFactory) -> None:
    with KioskPins(section(), pin_factory=factory) as pins:
        pins.show(online=True)
        pins.show(online=True)
        assert [state for _, state in changes(factory.pin(LED))] == [False, True]


@pytest.mark.parametrize("kind", sorted(BEEPS))
def test_gpio_buzzer_patterns(factory: MockFactory, kind: str) -> None:
    on_s, off_s, count = BEEPS[kind]
    with KioskPins(section(), pin_factory=factory) as pins:
        pins.beep(kind)  # type: ignore[arg-type]
        expected = [False] + [True, False] * count
        assert wait_until(lambda: len(factory.pin(BUZZER).states) >= len(expected))
        time.sleep(on_s + off_s)

    history = changes(factory.pin(BUZZER))
    assert [state for _, state in history][: len(expected)] == expected
    # The beep count is the pattern: no extra beep follows.
    assert [state for _, state in history].count(True) == count


def test_gpio_panic_needs_a_long_press(factory: MockFactory) -> None:
    pressed: list[datetime] = []
    held = threading.Event()

    def on_panic(when: datetime) -> None:
        pressed.append(when)
        held.set()

    with KioskPins(section(), on_panic=on_panic, pin_factory=factory):
        pin = factory.pin(PANIC)
        pin.drive_low()
        pin.drive_high()  # a brush against the button
        time.sleep(0.4)
        assert pressed == []

        pin.drive_low()
        assert held.wait(3)
        pin.drive_high()

    assert len(pressed) == 1
    assert pressed[0].tzinfo is not None


def test_gpio_lid_reports_each_opening(factory: MockFactory) -> None:
    openings: list[datetime] = []
    with KioskPins(section(), on_lid_open=openings.append, pin_factory=factory):
        pin = factory.pin(LID)
        for _ in range(2):
            pin.drive_low()  # lid shut: switch closed
            time.sleep(0.1)
            pin.drive_high()  # lid opened
            time.sleep(0.1)
        assert wait_until(lambda: len(openings) == 2)


def test_gpio_reprint_button(factory: MockFactory) -> None:
    presses: list[int] = []
    with KioskPins(
        section(), on_reprint=lambda: presses.append(1), pin_factory=factory
    ):
        pin = factory.pin(REPRINT)
        pin.drive_low()
        pin.drive_high()
        assert wait_until(lambda: presses == [1])


def test_gpio_callback_error_is_logged_not_raised(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with KioskPins(section(), on_reprint=broken, pin_factory=factory):
        pin = factory.pin(REPRINT)
        pin.drive_low()
        pin.drive_high()
        assert wait_until(lambda: "a GPIO callback failed" in caplog.text)


def test_gpio_off_when_not_enabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kiosk.hardware.gpio")
    pins = KioskPins(GpioSection())
    assert not pins.active
    pins.show(online=False, backlog=1, fault=True)
    pins.beep("error")
    pins.close()
    pins.close()
    assert caplog.text.count("GPIO off") == 1


def test_gpio_off_when_no_pin_library(caplog: pytest.LogCaptureFixture) -> None:
    class NoPins:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("no pin library on this machine")

    pins = KioskPins(section(), pin_factory=NoPins())
    assert not pins.active
    pins.beep("refusal")
    assert "GPIO off" in caplog.text


def test_gpio_section_duck_typed(factory: MockFactory) -> None:
    config_like = SimpleNamespace(enabled=True, status_led=LED, panic_hold_s=1.0)
    with KioskPins(config_like, pin_factory=factory) as pins:
        assert pins.active
        assert pins.buzzer is None
