"""A network receipt printer on a loopback port, for tests.

It accepts raw ESC/POS on TCP like a printer's port 9100, records every byte of
every connection, and answers real-time status requests (DLE EOT n). Switches
make it misbehave the way printers in the field do: refuse connections, drop a
connection part-way through a job, run out of paper, open its cover, answer
status requests slowly, oddly or not at all.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DLE_EOT = b"\x10\x04"


class PrinterEmulator:
    """A TCP printer emulator running in a thread.

    Attributes:
        paper_out: Report no paper; a printer in this state prints nothing.
        paper_near_end: Report the roll nearly used up.
        cover_open: Report the cover open.
        status_reply: When not None, the bytes sent for every status request
            instead of the real answer (``b""`` means no answer at all).
        reply_delay: Seconds to wait before answering a status request.
        read_delay: Seconds to wait between reads, a slow printer.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.paper_out = False
        self.paper_near_end = False
        self.cover_open = False
        self.status_reply: bytes | None = None
        self.reply_delay = 0.0
        self.read_delay = 0.0
        self.connections: list[bytearray] = []
        self._drop_after: int | None = None
        # Re-entrant: wait_for's condition reads the recordings under the lock.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._server: socket.socket | None = None
        self._listening = False
        self._closed = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- life cycle ------------------------------------------------------

    def start(self) -> PrinterEmulator:
        """Listen and serve; calling it again on a running emulator does nothing."""
        if self._threads:
            return self
        self._listen()
        thread = threading.Thread(
            target=self._serve, name="printer-emulator", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> PrinterEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def spec(self) -> str:
        """The connection string that reaches this printer."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    # --- switches --------------------------------------------------------

    def refuse(self) -> None:
        """Stop listening: new connections are refused."""
        # The serving thread closes the socket itself: closing it under a
        # select() in that thread would leave it accepting for a moment.
        self._listening = False
        self._closed.clear()
        self._closed.wait(5)

    def accept(self) -> None:
        """Listen again on the same port."""
        if not self._listening:
            self._listen()

    def drop_next(self, after_bytes: int) -> None:
        """Reset the next connection once it has sent this many bytes."""
        self._drop_after = after_bytes

    # --- what was received -----------------------------------------------

    @property
    def jobs(self) -> list[bytes]:
        """The bytes of each connection that sent more than status requests."""
        with self._lock:
            return [bytes(c) for c in self.connections if _without_status(bytes(c))]

    @property
    def data(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c) for c in self.connections)

    def wait_for(
        self, condition: Callable[[PrinterEmulator], bool], timeout: float
    ) -> bool:
        """Wait until ``condition(self)`` holds; False when it never did."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
        return True

    # --- the server ------------------------------------------------------

    def _listen(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self.port))
        server.listen(8)
        self.port = server.getsockname()[1]
        self._server = server
        self._listening = True

    def _serve(self) -> None:
        while not self._stop.is_set():
            server = self._server
            if not self._listening and server is not None:
                server.close()
                self._server = None
                self._closed.set()
                continue
            if server is None:
                time.sleep(0.01)
                continue
            ready, _, _ = select.select([server], [], [], 0.02)
            if not ready:
                continue
            conn, _ = server.accept()
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _handle(self, conn: socket.socket) -> None:
        record = bytearray()
        with self._lock:
            self.connections.append(record)
        drop_after, self._drop_after = self._drop_after, None
        pending = b""
        conn.settimeout(0.05)
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(256 if self.read_delay else 65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                if drop_after is not None and len(record) + len(chunk) >= drop_after:
                    self._append(record, chunk[: max(0, drop_after - len(record))])
                    _reset(conn)
                    return
                self._append(record, chunk)

                # Answer each complete DLE EOT n; keep a split one for later.
                pending += chunk
                while (at := pending.find(DLE_EOT)) >= 0 and at + 2 < len(pending):
                    self._answer(conn, pending[at + 2])
                    pending = pending[at + 3 :]
                pending = pending[-2:]
                if self.read_delay:
                    time.sleep(self.read_delay)
        except OSError as exc:
            log.debug("emulator connection ended: %s", exc)
        finally:
            conn.close()

    def _append(self, record: bytearray, chunk: bytes) -> None:
        with self._changed:
            record.extend(chunk)
            self._changed.notify_all()

    def _answer(self, conn: socket.socket, n: int) -> None:
        if self.reply_delay:
            time.sleep(self.reply_delay)
        reply = self.status_reply if self.status_reply is not None else self._status(n)
        if reply:
            conn.sendall(reply)

    def _status(self, n: int) -> bytes:
        value = 0x12
        if n == 1 and (self.paper_out or self.cover_open):
            value |= 0x08  # offline
        elif n == 2:
            value |= (0x04 if self.cover_open else 0) | (0x20 if self.paper_out else 0)
        elif n == 4:
            value |= (0x0C if self.paper_near_end or self.paper_out else 0) | (
                0x60 if self.paper_out else 0
            )
        return bytes([value])


def _without_status(data: bytes) -> bytes:
    """The bytes of a connection with the status requests taken out."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i : i + 2] == DLE_EOT and i + 2 < len(data):
            i += 3
            continue
        out.append(data[i])
        i += 1
    return bytes(out)


def _reset(conn: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send a reset, as a printer
    # that loses power mid-job does.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
