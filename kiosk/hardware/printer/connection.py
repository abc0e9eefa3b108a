"""Receipt printer connections, one class per kind of link.

A connection string picks the class:

- ``usb:VID:PID`` (hex ids, e.g. ``usb:0416:5011``), through pyusb;
- ``serial:/dev/ttyUSB0?baud=19200`` (the default baud is 19200);
- ``tcp:HOST:9100`` (IPv6 hosts in brackets, the port defaults to 9100);
- ``file:/dev/usb/lp0`` (a device file that must already exist);
- ``dir:PATH``: one ``<job>.bin`` (the bytes) and ``<job>.txt`` (the text) per
  job, for a kiosk with no printer and for tests.

Every job is rendered completely before the first byte leaves, then written in
chunks with timeouts. Links that can answer (tcp, serial, usb) are asked for
the printer's status before the job, so a job is not sent to a printer with no
paper, and again after it, so a link that dropped mid-job is noticed.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from kiosk.errors import PrinterError
from kiosk.hardware.printer.render import render_escpos
from kiosk.hardware.printer.status import DLE_EOT, QUERIES, PrinterStatus, parse_status
from kiosk.receipt import Line, render_text

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "POS-5890"
DEFAULT_TCP_PORT = 9100
DEFAULT_BAUD = 19200
CHUNK = 512
# Long enough for a printer busy with a job, short enough not to stall a job
# on a printer that never answers status requests.
STATUS_WAIT_S = 1.0

SPEC_HELP = (
    "expected usb:VID:PID, serial:PATH[?baud=N], tcp:HOST[:PORT], file:PATH or dir:PATH"
)


class ReceiptPrinter(ABC):
    """A receipt printer behind one connection.

    Attributes:
        spec: The connection string, used in every message about this printer.
        profile: The python-escpos profile (code pages, fonts, cutter).
        native_qr: Whether the printer draws QR codes itself.
        timeout: Seconds allowed for connecting and for each chunk written.
    """

    def __init__(
        self, spec: str, profile: str, *, native_qr: bool = True, timeout: float = 10.0
    ) -> None:
        self.spec = spec
        self.profile = profile
        self.native_qr = native_qr
        self.timeout = timeout

    def print_lines(self, name: str, lines: list[Line], columns: int) -> None:
        """Render receipt lines and print them as one job.

        Args:
            name: A file-safe name for the job (used by ``dir:``, and in logs).
            lines: From :func:`kiosk.receipt.render_lines`.
            columns: The width the lines were laid out for.

        Raises:
            PrinterError: The job could not be printed; nothing or only part of
                it may have reached the printer.
        """
        data = render_escpos(
            lines, profile=self.profile, columns=columns, native_qr=self.native_qr
        )
        self.print_job(name, data, render_text(lines, columns))

    @abstractmethod
    def print_job(self, name: str, data: bytes, text: str) -> None:
        """Send one complete job; return only once all its bytes were written."""

    def status(self) -> PrinterStatus:
        """Ask the printer how it is; links that cannot answer say "unknown"."""
        return PrinterStatus()

    def close(self) -> None:  # noqa: B027 - most links hold nothing open
        """Release the link; safe to call more than once."""

    def error(self, what: str) -> PrinterError:
        return PrinterError(f"printer {self.spec}: {what}")

    def __enter__(self) -> ReceiptPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, profile={self.profile!r})"


class _Link(Protocol):
    def send(self, data: bytes) -> None: ...

    def receive(self, wait: float) -> bytes | None: ...

    def close(self) -> None: ...


class _AnsweringPrinter(ReceiptPrinter):
    """A printer on a two-way link: status before, confirmation after a job."""

    @abstractmethod
    def _connect(self) -> _Link:
        """Open the link, raising PrinterError when it cannot."""

    def _release(self, link: _Link, *, failed: bool) -> None:
        link.close()

    def _query(self, link: _Link) -> PrinterStatus:
        replies: dict[int, bytes | None] = {}
        for n in QUERIES:
            link.send(DLE_EOT + bytes([n]))
            replies[n] = link.receive(min(self.timeout, STATUS_WAIT_S))
            if replies[n] is None:
                break  # a printer that ignores one request ignores them all
        return parse_status(replies)

    def status(self) -> PrinterStatus:
        try:
            link = self._connect()
        except PrinterError as exc:
            log.debug("status: %s", exc)
            return PrinterStatus(online=False)
        try:
            return self._query(link)
        except OSError as exc:
            log.debug("status of %s: %s", self.spec, exc)
            return PrinterStatus(online=False)
        finally:
            self._release(link, failed=False)

    def print_job(self, name: str, data: bytes, text: str) -> None:
        link = self._connect()
        failed = True
        try:
            before = self._query(link)
            if not before.ready:
                raise self.error(before.describe())

            for start in range(0, len(data), CHUNK):
                link.send(data[start : start + CHUNK])

            # The printer answers a status request only after it has taken in
            # everything before it, so an answer confirms the job arrived.
            link.send(DLE_EOT + b"\x01")
            reply = link.receive(min(self.timeout, STATUS_WAIT_S))
            if reply == b"":
                raise self.error("the connection closed before the job was confirmed")
            if reply is None:
                log.debug("%s does not answer status requests", self.spec)
            failed = False
            log.info("printed %s on %s (%d bytes)", name, self.spec, len(data))
        except PrinterError:
            raise
        except OSError as exc:
            raise self.error(f"lost the connection mid-job: {_reason(exc)}") from exc
        finally:
            self._release(link, failed=failed)


class _SocketLink:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def receive(self, wait: float) -> bytes | None:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(64)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.sock.close()


class TcpPrinter(_AnsweringPrinter):
    """A network printer on a raw TCP port (usually 9100), one connection a job."""

    def __init__(
        self, spec: str, host: str, port: int, profile: str, **kw: Any
    ) -> None:
        super().__init__(spec, profile, **kw)
        self.host = host
        self.port = port

    def _connect(self) -> _Link:
        try:
            sock = socket.create_connection((self.host, self.port), self.timeout)
        except OSError as exc:
            raise self.error(f"cannot connect: {_reason(exc)}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _SocketLink(sock, self.timeout)


class _SerialLink:
    def __init__(self, port: Any) -> None:
        self.port = port

    def send(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)
            self.port.flush()
        except serial.SerialTimeoutException as exc:
            raise TimeoutError(
                "write timed out (is the printer's buffer full?)"
            ) from exc
        except serial.SerialException as exc:
            raise OSError(str(exc)) from exc

    def receive(self, wait: float) -> bytes | None:
        self.port.timeout = wait
        reply = self.port.read(1)
        if not reply:
            return None
        return bytes(reply + self.port.read(self.port.in_waiting))

    def close(self) -> None:
        self.port.close()


class SerialPrinter(_AnsweringPrinter):
    """A printer on a serial port, kept open between jobs."""

    def __init__(
        self, spec: str, path: str, baud: int, profile: str, **kw: Any
    ) -> None:
        super().__init__(spec, profile, **kw)
        self.path = path
        self.baud = baud
        self._link: _SerialLink | None = None

    def _connect(self) -> _Link:
        if self._link is not None:
            return self._link
        import serial

        # A chunk must fit in the write timeout even at a low baud rate.
        chunk_s = CHUNK * 10 / self.baud
        try:
            port = serial.Serial(
                self.path,
                self.baud,
                timeout=STATUS_WAIT_S,
                write_timeout=max(self.timeout, 2 * chunk_s),
            )
        except (serial.SerialException, ValueError) as exc:
            raise self.error(f"cannot open the port: {exc}") from exc
        self._link = _SerialLink(port)
        return self._link

    def _release(self, link: _Link, *, failed: bool) -> None:
        # Keep a healthy port open; reopen after a failure in case the
        # adapter was unplugged and came back.
        if failed:
            self.close()

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None


class FilePrinter(ReceiptPrinter):
    """A printer seen as a device file, such as ``/dev/usb/lp0``."""

    def __init__(self, spec: str, path: str, profile: str, **kw: Any) -> None:
        super().__init__(spec, profile, **kw)
        self.path = path

    def print_job(self, name: str, data: bytes, text: str) -> None:
        try:
            # No O_CREAT: a missing device must not become a regular file.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        except OSError as exc:
            raise self.error(f"cannot open: {_reason(exc)}") from exc
        try:
            view = memoryview(data)
            while view:
                _, ready, _ = select.select([], [fd], [], self.timeout)
                if not ready:
                    raise self.error(f"no progress for {self.timeout:g} s (paper out?)")
                try:
                    written = os.write(fd, view[:CHUNK])
                except BlockingIOError:
                    time.sleep(0.05)
                    continue
                view = view[written:]
        except PrinterError:
            raise
        except OSError as exc:
            raise self.error(f"write failed: {_reason(exc)}") from exc
        finally:
            os.close(fd)
        log.info("printed %s on %s (%d bytes)", name, self.spec, len(data))


class DirPrinter(ReceiptPrinter):
    """Jobs as files in a folder: ``<job>.bin`` and ``<job>.txt``."""

    def __init__(self, spec: str, path: str, profile: str, **kw: Any) -> None:
        super().__init__(spec, profile, **kw)
        self.path = Path(path)

    def print_job(self, name: str, data: bytes, text: str) -> None:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "job"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # The text first, the bytes last: whoever watches for .bin files
            # finds the text already there.
            _write_atomic(self.path / f"{stem}.txt", text.encode("utf-8"))
            _write_atomic(self.path / f"{stem}.bin", data)
        except OSError as exc:
            raise self.error(f"cannot write {stem}: {_reason(exc)}") from exc
        log.info("printed %s into %s", stem, self.path)

    def status(self) -> PrinterStatus:
        writable = self.path.is_dir() and os.access(self.path, os.W_OK)
        return PrinterStatus(online=writable or not self.path.exists())


class UsbPrinter(_AnsweringPrinter):
    """A printer on USB, driven through pyusb (``python-escpos[usb]``)."""

    def __init__(self, spec: str, vid: int, pid: int, profile: str, **kw: Any) -> None:
        super().__init__(spec, profile, **kw)
        self.vid = vid
        self.pid = pid

    def _connect(self) -> _Link:
        try:
            import usb.core
            import usb.util
        except ImportError as exc:
            raise self.error(
                "USB printing needs pyusb: install python-escpos[usb] and the "
                "libusb-1.0-0 package"
            ) from exc

        try:
            device = usb.core.find(idVendor=self.vid, idProduct=self.pid)
            if device is None:
                raise self.error("no such USB device is connected; check the cable")
            if device.is_kernel_driver_active(0):
                device.detach_kernel_driver(0)
            device.set_configuration()
            interface = device.get_active_configuration()[(0, 0)]
            out, inp = (
                usb.util.find_descriptor(interface, custom_match=_direction(d))
                for d in (usb.util.ENDPOINT_OUT, usb.util.ENDPOINT_IN)
            )
        except usb.core.USBError as exc:
            if exc.errno == errno.EACCES:
                raise self.error(usb_permission_hint(self.vid, self.pid)) from exc
            raise self.error(f"USB error: {exc}") from exc
        except usb.core.NoBackendError as exc:
            raise self.error("libusb is missing: install libusb-1.0-0") from exc
        if out is None:
            raise self.error("the USB device has no output endpoint")
        return _UsbLink(out, inp, self.timeout)


class _UsbLink:
    def __init__(self, out: Any, inp: Any, timeout: float) -> None:
        self.out = out
        self.inp = inp
        self.timeout_ms = int(timeout * 1000)

    def send(self, data: bytes) -> None:
        import usb.core

        try:
            self.out.write(data, self.timeout_ms)
        except usb.core.USBError as exc:
            raise OSError(str(exc)) from exc

    def receive(self, wait: float) -> bytes | None:
        if self.inp is None:
            return None
        import usb.core

        try:
            return bytes(self.inp.read(64, int(wait * 1000)))
        except usb.core.USBError:
            return None

    def close(self) -> None:
        return None


def _direction(wanted: int) -> Any:
    import usb.util

    return lambda e: usb.util.endpoint_direction(e.bEndpointAddress) == wanted


def usb_permission_hint(vid: int, pid: int) -> str:
    """The message for a USB printer the kiosk user may not open."""
    return (
        "permission denied on the USB device; install a udev rule such as "
        f'SUBSYSTEM=="usb", ATTRS{{idVendor}}=="{vid:04x}", '
        f'ATTRS{{idProduct}}=="{pid:04x}", MODE="0660", GROUP="lp" '
        "in /etc/udev/rules.d/99-kiosk-printer.rules, add the kiosk user to the "
        "lp group and plug the printer in again"
    )


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


def _host_port(target: str, spec: str) -> tuple[str, int]:
    match = re.fullmatch(
        r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]/\s]+)(?::(\d+))?", target
    )
    if not match:
        raise PrinterError(f"printer connection {spec!r}: bad host; {SPEC_HELP}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or DEFAULT_TCP_PORT)
    if not 0 < port < 65536:
        raise PrinterError(f"printer connection {spec!r}: port {port} is out of range")
    return host, port


def open_printer(
    spec: str,
    profile: str = DEFAULT_PROFILE,
    *,
    native_qr: bool = True,
    timeout: float = 10.0,
) -> ReceiptPrinter:
    """Build the printer a connection string names.

    Nothing is opened yet: a printer that is off when the kiosk starts only
    makes its first job wait in the queue.

    Args:
        spec: A printer connection string (see the module documentation).
        profile: A python-escpos profile name, e.g. ``POS-5890``.
        native_qr: Whether the printer draws QR codes itself.
        timeout: Seconds allowed to connect and to write each chunk.

    Raises:
        PrinterError: The connection string is malformed.
    """
    scheme, _, target = spec.partition(":")
    options: dict[str, Any] = {"native_qr": native_qr, "timeout": timeout}

    if scheme == "tcp" and target:
        host, port = _host_port(target, spec)
        return TcpPrinter(spec, host, port, profile, **options)
    if scheme == "serial" and target:
        path, _, query = target.partition("?")
        baud_text = parse_qs(query).get("baud", [str(DEFAULT_BAUD)])[0]
        if not baud_text.isdigit() or not path:
            raise PrinterError(f"printer connection {spec!r}: bad baud rate or path")
        return SerialPrinter(spec, path, int(baud_text), profile, **options)
    if scheme == "usb":
        match = re.fullmatch(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})", target)
        if match:
            vid, pid = (int(group, 16) for group in match.groups())
            return UsbPrinter(spec, vid, pid, profile, **options)
    if scheme == "file" and target:
        return FilePrinter(spec, target, profile, **options)
    if scheme == "dir" and target:
        return DirPrinter(spec, target, profile, **options)
    raise PrinterError(f"printer connection {spec!r}: {SPEC_HELP}")


def printer_from_config(section: Any) -> ReceiptPrinter | None:
    """The printer a ``[printer]`` section configures, or None when none is.

    Args:
        section: ``config.printer`` (connection, profile, native_qr, timeout_s).
    """
    if not section.connection:
        log.info("no printer configured: receipts stay queued")
        return None
    return open_printer(
        section.connection,
        section.profile,
        native_qr=section.native_qr,
        timeout=section.timeout_s,
    )
