"""The service's local control socket: one JSON request a line, one reply a line.

The socket lives in the data directory, which only the kiosk user can enter, and
is itself owner-only. A request names an operation of ``kiosk.commands`` with its
arguments and the PINs it needs; the reply carries the result or the error with
its code and exit status, so a command run through the socket exits exactly as
it would have run alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kiosk.errors import BadInput, KioskError, ServiceUnavailable

log = logging.getLogger(__name__)

SOCKET_NAME = "kiosk.sock"
MAX_REQUEST = 8 * 1024 * 1024
Dispatch = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[Any]]


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def error_reply(exc: KioskError) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {"code": exc.code, "message": exc.message, "exit": exc.exit_code},
    }


class ControlServer:
    """Serves requests on the socket, handing each to ``dispatch``."""

    def __init__(self, path: Path, dispatch: Dispatch) -> None:
        self.path = path
        self.dispatch = dispatch
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path.exists():
            if _answers(self.path):
                raise ServiceUnavailable(
                    f"another kiosk service is already running on {self.path}"
                )
            self.path.unlink()  # left behind by a service that was killed
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        log.info("control socket listening on %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                reply = await self._answer(line)
                writer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise BadInput("a request is an object with an 'op'")
            result = await self.dispatch(
                request["op"], request.get("args") or {}, request.get("auth") or {}
            )
            return {"ok": True, "result": result}
        except KioskError as exc:
            return error_reply(exc)
        except ValueError as exc:
            return error_reply(BadInput(f"malformed request: {exc}"))
        except Exception as exc:
            log.exception("control request failed")
            return error_reply(KioskError(f"internal error: {exc}"))


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class ControlClient:
    """A blocking client for one request at a time."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise ServiceUnavailable(f"no kiosk service on {path}: {exc}") from None
        self._file = self.sock.makefile("rb")

    @classmethod
    def connect_if_running(cls, data_dir: Path) -> ControlClient | None:
        path = socket_path(data_dir)
        if not path.exists():
            return None
        try:
            return cls(path)
        except ServiceUnavailable:
            return None

    def call(
        self, op: str, args: dict[str, Any], auth: dict[str, Any] | None = None
    ) -> Any:
        """Run an operation in the service; raise the same error it raised there."""
        request = {"op": op, "args": args, "auth": auth or {}}
        try:
            self.sock.sendall(json.dumps(request, ensure_ascii=False).encode() + b"\n")
            line = self._file.readline()
        except OSError as exc:
            raise ServiceUnavailable(
                f"the kiosk service stopped answering: {exc}"
            ) from None
        if not line:
            raise ServiceUnavailable("the kiosk service closed the connection")
        reply = json.loads(line)
        if reply.get("ok"):
            return reply.get("result")
        raise remote_error(reply["error"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remote_error(error: dict[str, Any]) -> KioskError:
    """Rebuild an error from its reply, keeping its code and exit status."""
    exc = KioskError(str(error.get("message", "error")))
    exc.code = str(error.get("code", "error"))  # type: ignore[misc]
    exc.exit_code = int(error.get("exit", 3))  # type: ignore[misc]
    return exc
