"""A small TCP proxy on loopback that delays traffic and can cut every link.

This kernel has no ``netem`` queueing discipline, so delay and cuts are made
here: each chunk is held back a little, and ``cut()`` resets every connection
through the proxy, as a dropped mobile link does.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``.

    Args:
        target: The port traffic goes to.
        delay_s: How long each chunk is held back, each way.
    """

    def __init__(self, target: int, delay_s: float = 0.005) -> None:
        self.target = target
        self.delay_s = delay_s
        self.cuts = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        self.cut()
        self._thread.join(5)

    def cut(self) -> int:
        """Reset every connection through the proxy; how many there were."""
        with self._lock:
            socks, self._open = self._open, []
        for sock in socks:
            try:
                # A zero linger makes close() send a reset, not a goodbye.
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                sock.close()
            except OSError:
                pass
        self.cuts += 1
        return len(socks) // 2

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                time.sleep(self.delay_s)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
