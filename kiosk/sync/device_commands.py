"""HQ's commands on the device: verify, refuse or apply, and say which.

A command is checked by ``kiosk.sync.protocol.check_command`` (well formed, meant
for this device, signed with its key, not expired), then its nonce is recorded
so that a copy replayed later is refused, and only then applied through the
ledger. Every command gets an ``ack``; a refused one carries the reason, and a
refusal changes nothing on the device.

The link holds commands back while the device's clock is not trusted: an expiry
cannot be judged against a clock that may read 1970.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from kiosk.errors import CommandRejected, KioskError
from kiosk.ledger import Ledger
from kiosk.sync.protocol import Command, ack_message, check_command, command_id
from kiosk.sync.protocol import parse_topic as parse_protocol_topic

log = logging.getLogger(__name__)

HASH = re.compile(r"[0-9a-f]{64}")
SQLITE_MAX_INTEGER = 2**63 - 1
# Control characters (line breaks, escape sequences) and bidirectional overrides
# would garble or disguise a reason shown on screen and printed in a terminal.
UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of one command: the ack to publish and, if applied, what."""

    ack: dict[str, Any]
    command: Command | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return bool(self.ack["ok"])


class CommandHandler:
    """Applies verified commands from HQ to the device's ledger.

    Args:
        ledger: The device's ledger; every change goes through it.
        key: The device's command key; by default ``security.key_file``. With
            no key every command is refused, since none can be verified.
        on_command: Called with each applied command and its result, for the
            screen (a new message, a lock); its failures are logged.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        key: bytes | None = None,
        on_command: Callable[[Command, Any], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.device = ledger.device.id
        self.key = key if key is not None else ledger.config.device_key()
        self.on_command = on_command
        security = ledger.config.security
        self.max_command_bytes = security.max_command_bytes
        self.max_assignment_bytes = security.max_assignment_bytes

    def ready(self) -> bool:
        """True when the clock can be trusted to judge expiry."""
        return bool(self.ledger.clock.state().trusted)

    def limit_for(self, name: str | None) -> int:
        """Assignment documents may be large; every other command is small."""
        if name == "assignments":
            return self.max_assignment_bytes
        return self.max_command_bytes

    def handle(self, topic: str, payload: bytes) -> Handled:
        """Verify and apply one command; never raises for a bad command."""
        cid = command_id(payload)
        try:
            command = self._verify(topic, payload)
            result = self._apply(command)
        except KioskError as exc:
            log.warning("command %s on %s refused: %s", cid, topic, exc.message)
            return Handled(ack_message(self.device, cid, False, exc.message))
        except Exception as exc:
            # A fault of the device, not of the command: HQ hears that it was not
            # applied, and the maintainer gets the traceback.
            log.exception("command %s on %s failed", cid, topic)
            reason = f"the device could not apply it ({type(exc).__name__})"
            return Handled(ack_message(self.device, cid, False, reason))

        log.info("command %s (%s) applied", command.id, command.name)
        if self.on_command is not None:
            try:
                self.on_command(command, result)
            except Exception:
                log.exception("command listener failed")
        return Handled(ack_message(self.device, command.id, True), command, result)

    # --- checks ------------------------------------------------------------

    def _verify(self, topic: str, payload: bytes) -> Command:
        try:
            device, kind, name = parse_protocol_topic(topic)
        except ValueError:
            raise CommandRejected(f"not a command topic: {topic}") from None
        if device != self.device or kind != "cmd" or name is None:
            raise CommandRejected(f"not a command topic of {self.device}: {topic}")
        if self.key is None:
            raise CommandRejected(
                "this device has no command key (security.key_file); install the "
                "key HQ made for it"
            )

        command = check_command(
            payload,
            key=self.key,
            device=self.device,
            now=self.ledger.clock.now(),
            max_bytes=self.limit_for(name),
            topic_name=name,
        )

        # The nonce goes last: only a command that would otherwise be accepted
        # uses one up, so a forged copy cannot burn the nonce of a real one.
        if not self.ledger.remember_nonce(command.nonce, command.expires.timestamp()):
            raise CommandRejected(f"replayed: nonce {command.nonce} was already used")
        return command

    # --- applying ----------------------------------------------------------

    def _apply(self, command: Command) -> Any:
        body = command.body
        match command.name:
            case "assignments":
                return self.ledger.import_document(_object(body, "assignments"))
            case "policy":
                return self._policy(_object(body, "policy"))
            case "message":
                return self._message(command.id, _object(body, "message"))
            case "print":
                return self.ledger.queue_hub_print(_object(body, "print"))
            case "lock":
                reason = _object(body, "lock").get("reason")
                if (
                    not isinstance(reason, str)
                    or not reason.strip()
                    or UNSHOWABLE.search(reason)
                ):
                    raise CommandRejected("lock needs a reason the collector can read")
                self.ledger.set_lock(reason.strip())
                return None
            case "unlock":
                self.ledger.set_lock(None)
                return None
            case "resync":
                return self._resync(_object(body, "resync"))
            case "journal_ack":
                return self._journal_ack(_object(body, "journal_ack"))
        raise CommandRejected(f"unknown command {command.name!r}")

    def _policy(self, body: dict[str, Any]) -> int:
        if not self.ledger.install_policy(body):
            raise CommandRejected(
                f"policy version {body.get('version')} is not newer than the one "
                "installed; send a higher version"
            )
        return int(body["version"])

    def _message(self, message_id: str, body: dict[str, Any]) -> bool:
        words = body.get("text")
        if not isinstance(words, str) or not words.strip():
            raise CommandRejected("message needs a text to show the collector")
        return self.ledger.add_message(message_id, body)

    def _resync(self, body: dict[str, Any]) -> int:
        lane: Any = body.get("lane")
        seq: Any = body.get("seq")
        if not isinstance(lane, str) or not _count(seq):
            raise CommandRejected('resync needs {"lane": NAME, "seq": N} with N >= 1')
        return self.ledger.resend(lane, int(seq))

    def _journal_ack(self, body: dict[str, Any]) -> dict[str, Any]:
        seq: Any = body.get("seq")
        digest: Any = body.get("hash")
        if not _count(seq) or not isinstance(digest, str) or not HASH.fullmatch(digest):
            raise CommandRejected(
                'journal_ack needs {"seq": N, "hash": H} with N >= 1 and H 64 hex digits'
            )

        with self.ledger.store.read() as conn:
            ours = conn.execute(
                text("SELECT hash FROM journal WHERE seq=:s"), {"s": seq}
            ).scalar()
            recorded = self.ledger.store.get_meta(conn, "journal_ack")
        if ours is None:
            raise CommandRejected(f"journal entry {seq} does not exist on this device")
        if ours != digest:
            raise CommandRejected(
                f"journal entry {seq} has hash {ours} here, not {digest}: HQ's copy "
                "and the device's differ"
            )

        # Acknowledgements only move forward; a late copy of an older one is
        # accepted (it is true) but does not take back what HQ already verified.
        current = json.loads(recorded) if recorded else None
        if current is not None and int(current["seq"]) >= int(seq):
            return dict(current)
        self.ledger.record_journal_ack(int(seq), digest)
        return {"seq": seq, "hash": digest}


def _object(body: Any, name: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise CommandRejected(f"the body of {name} must be a JSON object")
    return body


def _count(value: Any) -> bool:
    # A journal seq is a SQLite integer; a larger number cannot name an entry.
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 1 <= value <= SQLITE_MAX_INTEGER
    )
