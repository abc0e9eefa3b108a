"""Shown instead of the kiosk when the terminal is too small to use."""

from __future__ import annotations

import logging

from textual.app import ComposeResult
from textual.screen import Screen

from kiosk.ui.widgets import Plain

log = logging.getLogger(__name__)


class TooSmallScreen(Screen[None]):
    """Says how big the terminal is and how big it must be; leaves on resize."""

    def compose(self) -> ComposeResult:
        yield Plain(id="too-small")

    def on_mount(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        from kiosk.ui.app import MIN_HEIGHT, MIN_WIDTH, KioskApp

        app = self.app
        assert isinstance(app, KioskApp)
        self.query_one("#too-small", Plain).update(
            app.t(
                "small.text",
                width=app.size.width,
                height=app.size.height,
                min_width=MIN_WIDTH,
                min_height=MIN_HEIGHT,
            )
        )
