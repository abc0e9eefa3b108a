"""Which workers the service runs, chosen by the configuration, and how their
reports reach the ledger, the screen and HQ."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kiosk.fix import Fix

if TYPE_CHECKING:
    from kiosk.service import Service, Worker

log = logging.getLogger(__name__)


class GpsPart:
    """The GPS worker, feeding fixes to the service, the clock and the track."""

    name = "gps"

    def __init__(self, service: Service) -> None:
        from kiosk.hardware.gps.worker import GpsWorker
        from kiosk.track import TrackRecorder

        self.service = service
        self.ledger = service.ledger
        self.track = TrackRecorder(self.ledger)
        self._clock_checked = 0.0
        self.worker = GpsWorker(
            service.config.gps.source, on_fix=self._fix, on_status=self._status
        )

    def _fix(self, fix: Fix) -> None:
        self.service.on_fix(fix)
        clock = self.ledger.clock
        if clock.mode == "network_or_gps" and fix.received - self._clock_checked > 60:
            self._clock_checked = fix.received
            status = self.ledger.status()["journal"]
            newest = status["time"]
            floor = (
                datetime.fromisoformat(newest.replace("Z", "+00:00"))
                if newest
                else None
            )
            clock.correct_from_gps(fix, floor)
        try:
            self.track.on_fix(fix)
        except Exception:
            log.exception("could not store a track point")

    def _status(self, text: str) -> None:
        previous = self.service.status.get("gps")
        self.service.on_status("gps", text)
        lost = text == "no GPS"
        if lost != (previous == "no GPS") and previous is not None:
            self._event("gps_lost" if lost else "gps_back", {"status": text})

    def _event(self, type_: str, data: dict[str, Any]) -> None:
        try:
            self.ledger.ops_event(type_, data)
        except Exception:
            log.exception("could not queue a GPS event")

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()


class PrinterPart:
    """The print queue, woken when the ledger writes a job."""

    name = "printer"

    def __init__(self, service: Service) -> None:
        from kiosk.hardware.printer import printer_from_config
        from kiosk.hardware.printer.queue import PrintQueue
        from kiosk.printjobs import LedgerPrintJobs
        from kiosk.receipt import ReceiptSettings

        self.service = service
        self.jobs = LedgerPrintJobs(service.ledger)
        self.jobs.recover()
        printer = printer_from_config(service.config.printer)
        self.queue = PrintQueue(
            self.jobs,
            printer,
            ReceiptSettings.from_config(service.config),
            on_status=self._status,
        )
        service.on_status("printer", "ready" if printer else "no printer")
        service.listeners.append(self._changed)

    def _changed(self, kind: str, value: Any) -> None:
        if kind == "changed":
            self.queue.wake()

    def _status(self, text: str) -> None:
        self.service.on_status("printer", text)
        try:
            self.service.ledger.ops_event("printer", {"status": text})
        except Exception:
            log.exception("could not queue a printer event")

    def start(self) -> None:
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()


class PinsPart:
    """GPIO: the status LED follows the link, the buttons raise alarms."""

    name = "gpio"

    def __init__(self, service: Service) -> None:
        from kiosk.hardware.gpio import KioskPins

        self.service = service
        self.pins = KioskPins(
            service.config.gpio,
            on_panic=self._panic,
            on_lid_open=self._lid,
            on_reprint=self._reprint,
        )
        service.listeners.append(self._changed)

    def _alarm(self, type_: str, when: datetime) -> None:
        # Callbacks run on gpiozero's thread; the store write is quick.
        fix = self.service.current_fix()
        data: dict[str, Any] = {"time": when.isoformat()}
        if fix is not None and fix.has_position:
            data.update(
                lat=round(fix.lat, 7), lon=round(fix.lon, 7), acc=fix.accuracy_m
            )
        self.service.ledger.raise_alarm(type_, data)
        log.warning("alarm: %s", type_)
        self.service.emit("alarm", type_)

    def _panic(self, when: datetime) -> None:
        self._alarm("panic", when)

    def _lid(self, when: datetime) -> None:
        self._alarm("tamper", when)

    def _reprint(self) -> None:
        threading.Thread(target=self._reprint_last, daemon=True).start()

    def _reprint_last(self) -> None:
        receipt = self.service.ledger.last_receipt()
        if receipt:
            self.service.ledger.reprint(receipt)
            self.service.emit("changed", "reprint")

    def _changed(self, kind: str, value: Any) -> None:
        if kind != "status" or not self.pins.active:
            return
        status = self.service.status
        fault = status.get("printer", "").startswith("Printer problem")
        self.pins.show(
            online=status.get("link") == "online",
            backlog=True,
            fault=fault,
        )

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.pins.close()


class LinkPart:
    """The MQTT link to HQ, woken whenever the ledger queues something."""

    name = "link"

    def __init__(self, service: Service) -> None:
        from kiosk.sync.link import Link

        self.service = service
        self.link = Link(
            service.ledger,
            service.config,
            on_status=service.on_status,
            on_command=self._command,
            extra_state=self._state,
        )
        service.listeners.append(self._changed)

    def _state(self) -> dict[str, Any]:
        fix = self.service.current_fix()
        last_fix = None
        if fix is not None and fix.has_position:
            last_fix = {
                "lat": round(fix.lat, 7),
                "lon": round(fix.lon, 7),
                "acc": fix.accuracy_m,
                "age_s": round(fix.age(), 1),
            }
        return {
            "printer": self.service.status.get("printer"),
            "gps": self.service.status.get("gps"),
            "last_fix": last_fix,
        }

    def _command(self, command: Any, result: Any) -> None:
        # A command changed the ledger (assignments, a lock, a print job...):
        # the screen and the printer look again.
        self.service.emit("changed", f"command:{command.name}")
        self.service.emit("command", command.name)

    def _changed(self, kind: str, value: Any) -> None:
        if kind in ("changed", "alarm"):
            self.link.wake()

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()


def build_workers(service: Service) -> list[Worker]:
    config = service.config
    workers: list[Worker] = []
    if config.gps.source and not config.gps.source.startswith("fixed:"):
        workers.append(GpsPart(service))
    elif config.gps.source:
        service.on_status("gps", "fixed place")
    else:
        service.on_status("gps", "no GPS configured")
    workers.append(PrinterPart(service))
    if config.gpio.enabled:
        workers.append(PinsPart(service))
    if config.broker.url:
        workers.append(LinkPart(service))
    else:
        service.on_status("link", "offline (no broker configured)")
    return workers
