"""Messages from HQ, and the device's status for the collector and the fitter."""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from kiosk import __version__
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.widgets import KeyBar, KioskHeader, Plain

log = logging.getLogger(__name__)


def message_text(body: Any) -> tuple[str, str]:
    """A message's title and text, whatever fields HQ filled in."""
    if not isinstance(body, dict):
        return "", str(body)
    title = str(body.get("title") or body.get("subject") or "")
    text = body.get("text") or body.get("body") or body.get("message")
    if text is None:
        text = json.dumps(body, ensure_ascii=False)
    return title, str(text)


class MessagesScreen(KioskScreen):
    """HQ's messages, newest first; opening one marks it read."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "key.back")]

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield KioskHeader()
        with Vertical(id="messages", classes="panel"):
            yield Plain(self.t("messages.title"), classes="title")
            yield OptionList(id="message-list")
            yield Plain(id="message-body")
            yield Plain(id="problem", classes="problem")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#problem").display = False
        self.query_one("#message-list").focus()
        self.load()

    def load(self) -> None:
        self.ledger_call(self.kiosk.ledger.messages, done=self._show)

    def _show(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        options = self.query_one("#message-list", OptionList)
        options.clear_options()
        for m in messages:
            title, text = message_text(m["body"])
            mark = " " if m["read_at"] else "*"
            when = m["received_at"][:16].replace("T", " ")
            options.add_option(
                Option(f"{mark} {when}  {title or text[:40]}", id=m["id"])
            )
        if not messages:
            self.query_one("#message-body", Plain).update(self.t("messages.none"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        message = next(m for m in self.messages if m["id"] == event.option.id)
        title, text = message_text(message["body"])
        self.query_one("#message-body", Plain).update(
            f"{title}\n{text}" if title else text
        )
        if not message["read_at"]:
            self.ledger_call(
                self.kiosk.ledger.mark_message_read,
                message["id"],
                done=lambda _: self.load(),
            )

    def action_back(self) -> None:
        self.dismiss()


class StatusScreen(KioskScreen):
    """GPS, time, printer, link, outbox, disk, version and device id."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "key.back"),
        Binding("f5", "reload", "key.reload"),
    ]

    def compose(self) -> ComposeResult:
        yield KioskHeader()
        with VerticalScroll(id="status", classes="panel"):
            yield Plain(self.t("status.title"), classes="title")
            yield Plain(self.t("report.loading"), id="status-body")
        yield KeyBar()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.ledger_call(self.kiosk.ledger.status, done=self._show)

    def _show(self, state: dict[str, Any]) -> None:
        self.kiosk.state = state
        self.query_one("#status-body", Plain).update(self.status_text(state))

    def status_text(self, state: dict[str, Any]) -> str:
        t, app = self.t, self.kiosk
        service = app.service
        fix = service.current_fix()
        if fix is not None and fix.has_position:
            gps = t(
                "status.fix",
                lat=f"{fix.lat:.5f}",
                lon=f"{fix.lon:.5f}",
                sats=fix.sats if fix.sats is not None else "-",
                accuracy=f"{fix.accuracy_m:.0f}" if fix.accuracy_m else "-",
                age=f"{fix.age():.0f}",
            )
        else:
            gps = t("status.no_fix", state=service.status.get("gps", "off"))
        clock = state["time"]
        trusted = (
            t("status.trusted", source=clock["source"])
            if clock["trusted"]
            else t("status.untrusted", reason=clock["reason"])
        )
        outbox = state["outbox"]
        oldest = outbox.get("oldest_age_s")
        disk = shutil.disk_usage(app.config.data_dir)
        queue = state.get("print_queue", {})
        lock = state.get("locked")
        rows = [
            (t("status.device"), f"{state['device']} ({state['mode']})"),
            (t("status.version"), __version__),
            (t("status.gps"), gps),
            (t("status.time"), trusted),
            (
                t("status.printer"),
                t(
                    "status.printer_state",
                    state=service.status.get("printer", "off"),
                    n=sum(queue.values()),
                ),
            ),
            (t("status.link"), service.status.get("link", "off")),
            (
                t("status.outbox"),
                t(
                    "status.outbox_state",
                    n=outbox["depth"],
                    age="-" if oldest is None else f"{oldest} s",
                ),
            ),
            (
                t("status.disk"),
                t(
                    "status.disk_state",
                    free=disk.free // 2**20,
                    total=disk.total // 2**20,
                ),
            ),
            (t("status.policy"), str(state["policy_version"])),
            (t("status.journal"), str(state["journal"]["seq"])),
            (
                t("status.lock"),
                lock.get("reason", "") if lock else t("status.unlocked"),
            ),
        ]
        width = max(len(k) for k, _ in rows) + 2
        return "\n".join(f"{k:<{width}}{v}" for k, v in rows)

    def action_back(self) -> None:
        self.dismiss()
