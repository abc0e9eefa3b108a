"""HQ's commands on the device: refused with a reason and no effect, or applied."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

from kiosk.clock import Clock
from kiosk.ledger import Ledger
from kiosk.sync.device_commands import CommandHandler
from kiosk.sync.link import Link, parse_url
from kiosk.sync.protocol import build_command, command_topic, sign
from tests.brokers import Broker
from tests.factories import PIN, make_config, make_document
from tests.test_link import wait_until

DEVICE = "KIOSK-01"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
POLICY = {
    "version": 2,
    "cash": {
        "max_in_hand": 20_000_000,
        "max_payment": 6_000_000,
        "daily_cap": 0,
        "warn_per_mille": 800,
        "allow_overpayment": False,
    },
    "location": {
        "radius_m": 300,
        "max_fix_age_s": 60,
        "max_accuracy_m": 100,
        "outside": "warn",
        "no_fix": "warn",
    },
}


def keyed_ledger(tmp_path: Path, clock: Clock | None = None, **sections: Any) -> Ledger:
    key_file = tmp_path / "device.key"
    key_file.write_text(KEY.hex())
    config = make_config(
        tmp_path / "dev", security={"key_file": str(key_file)}, **sections
    )
    ledger = Ledger(config, clock=clock)
    ledger.import_document(make_document(3))
    return ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    device = keyed_ledger(tmp_path)
    yield device
    device.close()


@pytest.fixture
def handler(ledger: Ledger) -> CommandHandler:
    return CommandHandler(ledger)


def payload(command: dict[str, Any]) -> bytes:
    return json.dumps(command).encode()


def send(
    handler: CommandHandler,
    name: str,
    body: Any,
    *,
    key: bytes = KEY,
    device: str = DEVICE,
    topic_name: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    command = build_command(key, device, name, body, **kw)
    topic = command_topic(DEVICE, topic_name or name)
    return handler.handle(topic, payload(command)).ack


def snapshot(ledger: Ledger) -> dict[str, Any]:
    """Everything a command could change, apart from the nonce it uses up."""
    status = ledger.status()
    del status["boot"]
    for key in ("oldest_age_s", "oldest_money_age_s"):
        status["outbox"].pop(key)
    with ledger.store.read() as conn:
        for table in ("message", "printjob", "contract", "collector", "policy"):
            status[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    return status


# --- refusals --------------------------------------------------------------------


def refused(handler: CommandHandler, ledger: Ledger, raw: bytes, topic: str) -> str:
    before = snapshot(ledger)
    ack = handler.handle(topic, raw).ack
    assert ack["ok"] is False
    assert snapshot(ledger) == before
    return str(ack["reason"])


LOCK_TOPIC = command_topic(DEVICE, "lock")


def test_command_forged_signature_refused(handler: CommandHandler, ledger: Ledger):
    """A command signed with another key is refused and changes nothing."""
    raw = payload(build_command(OTHER_KEY, DEVICE, "lock", {"reason": "stolen"}))
    assert refused(handler, ledger, raw, LOCK_TOPIC) == "bad signature"


def test_command_tampered_body_refused(handler: CommandHandler, ledger: Ledger):
    """Changing the body after signing breaks the signature."""
    command = build_command(KEY, DEVICE, "policy", POLICY)
    command["body"] = {**POLICY, "version": 3}
    topic = command_topic(DEVICE, "policy")
    assert refused(handler, ledger, payload(command), topic) == "bad signature"


def test_command_expired_refused(handler: CommandHandler, ledger: Ledger):
    """A command past its expiry is refused with the expiry time."""
    issued = datetime.now(UTC) - timedelta(hours=2)
    raw = payload(
        build_command(KEY, DEVICE, "lock", {"reason": "x"}, expires_in_s=60, now=issued)
    )
    assert refused(handler, ledger, raw, LOCK_TOPIC).startswith("expired at ")


def test_command_replayed_refused(handler: CommandHandler, ledger: Ledger):
    """The same command a second time is refused: its nonce is used up."""
    raw = payload(build_command(KEY, DEVICE, "unlock", {}))
    topic = command_topic(DEVICE, "unlock")
    assert handler.handle(topic, raw).ok
    assert refused(handler, ledger, raw, topic).startswith("replayed")


def test_command_misaddressed_refused(handler: CommandHandler, ledger: Ledger):
    """A command for another device is refused even on this device's topic."""
    raw = payload(build_command(KEY, "KIOSK-02", "lock", {"reason": "x"}))
    reason = refused(handler, ledger, raw, LOCK_TOPIC)
    assert reason == "command is for device 'KIOSK-02', not 'KIOSK-01'"


def test_command_on_the_wrong_topic_refused(handler: CommandHandler, ledger: Ledger):
    """A policy command arriving on the lock topic is refused."""
    raw = payload(build_command(KEY, DEVICE, "policy", POLICY))
    assert "arrived on the topic for 'lock'" in refused(
        handler, ledger, raw, LOCK_TOPIC
    )


def test_command_malformed_refused(handler: CommandHandler, ledger: Ledger):
    """Bytes that are not a JSON command are refused, with no id to ack."""
    before = snapshot(ledger)
    ack = handler.handle(LOCK_TOPIC, b"{not json").ack
    assert (ack["ok"], ack["id"], ack["reason"]) == (False, None, "malformed JSON")
    command = build_command(KEY, DEVICE, "lock", {"reason": "x"})
    del command["nonce"]
    ack = handler.handle(LOCK_TOPIC, payload(command)).ack
    assert ack["id"] == command["id"] and ack["reason"] == "missing fields: nonce"
    assert snapshot(ledger) == before


def test_command_oversized_refused(handler: CommandHandler, ledger: Ledger):
    """Past 64 KiB a command is refused; only assignments may be larger."""
    big = {**POLICY, "note": "x" * 70_000}
    raw = payload(build_command(KEY, DEVICE, "policy", big))
    reason = refused(handler, ledger, raw, command_topic(DEVICE, "policy"))
    assert reason.endswith("over the 65536 limit")

    document = make_document(200)
    assert len(payload(document)) > 65536
    assert send(handler, "assignments", document)["ok"]
    huge = {"padding": "x" * (4 * 1024 * 1024)}
    raw = payload(build_command(KEY, DEVICE, "assignments", huge))
    reason = refused(handler, ledger, raw, command_topic(DEVICE, "assignments"))
    assert reason.endswith(f"over the {4 * 1024 * 1024} limit")


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("lock", "now", "the body of lock must be a JSON object"),
        ("lock", {"reason": ""}, "lock needs a reason the collector can read"),
        ("policy", [1, 2], "the body of policy must be a JSON object"),
        ("policy", {**POLICY, "version": "2"}, "policy version: "),
        ("message", {"text": 5}, "message needs a text to show the collector"),
        ("print", {"title": "x", "lines": "y"}, "a print job needs a title"),
        ("resync", {"lane": "money", "seq": True}, "resync needs"),
        ("resync", {"lane": "cash", "seq": 1}, "unknown lane 'cash'"),
        ("journal_ack", {"seq": 1, "hash": "zz"}, "journal_ack needs"),
        ("journal_ack", {"seq": 99, "hash": "a" * 64}, "journal entry 99 does not"),
        ("journal_ack", {"seq": 1, "hash": "a" * 64}, "HQ's copy and the device's"),
    ],
)
def test_command_wrong_body_refused(
    handler: CommandHandler, ledger: Ledger, name: str, body: Any, reason: str
):
    """A body of the wrong type or shape is refused with what was expected."""
    actor = ledger.authenticate("c1", PIN)
    ledger.collect(actor, "K-0001", 1000)
    raw = payload(build_command(KEY, DEVICE, name, body))
    assert reason in refused(handler, ledger, raw, command_topic(DEVICE, name))


def test_command_unknown_name_refused(handler: CommandHandler, ledger: Ledger):
    """A name outside the protocol is refused even when correctly signed."""
    command = build_command(KEY, DEVICE, "lock", {})
    command["name"] = "reboot"
    command["sig"] = sign(KEY, command)
    topic = command_topic(DEVICE, "reboot")
    assert refused(handler, ledger, payload(command), topic) == (
        "unknown command 'reboot'"
    )


def test_command_bad_document_refused_whole(handler: CommandHandler, ledger: Ledger):
    """An assignment document with one bad record is refused, its path the reason."""
    document = make_document(5)
    document["contracts"][3]["installments"][1]["due"] = "tomorrow"
    raw = payload(build_command(KEY, DEVICE, "assignments", document))
    reason = refused(handler, ledger, raw, command_topic(DEVICE, "assignments"))
    assert "contracts[3].installments[1].due" in reason


def test_command_old_policy_refused(handler: CommandHandler, ledger: Ledger):
    """A policy that is not newer than the installed one is refused."""
    raw = payload(build_command(KEY, DEVICE, "policy", {**POLICY, "version": 1}))
    reason = refused(handler, ledger, raw, command_topic(DEVICE, "policy"))
    assert "not newer" in reason


def test_command_without_a_device_key_refused(tmp_path: Path):
    """With no key configured nothing can be verified, so everything is refused."""
    ledger = Ledger(make_config(tmp_path))
    handler = CommandHandler(ledger)
    raw = payload(build_command(KEY, DEVICE, "unlock", {}))
    reason = refused(handler, ledger, raw, command_topic(DEVICE, "unlock"))
    assert "no command key" in reason


# --- commands that take effect ---------------------------------------------------------


def test_command_assignments_policy_lock_and_ack_apply(
    handler: CommandHandler, ledger: Ledger
):
    """Valid assignments, policy, lock, unlock, journal_ack and message take effect."""
    assert send(handler, "assignments", make_document(6))["ok"]
    assert snapshot(ledger)["contract"] == 6

    assert send(handler, "policy", POLICY)["ok"]
    assert ledger.status()["policy_version"] == 2
    assert ledger.policy.cash.max_in_hand == 20_000_000

    assert send(handler, "lock", {"reason": "audit"})["ok"]
    assert ledger.status()["locked"]["reason"] == "audit"
    assert send(handler, "unlock", {})["ok"]
    assert ledger.status()["locked"] is None

    actor = ledger.authenticate("c1", PIN)
    ledger.collect(actor, "K-0001", 1000)
    journal = ledger.status()["journal"]
    ack = {"seq": journal["seq"], "hash": journal["hash"]}
    assert send(handler, "journal_ack", ack)["ok"]
    assert ledger.status()["journal_ack"] == ack
    # An older acknowledgement is true but does not move the mark back.
    older = {"seq": 1, "hash": _hash_at(ledger, 1)}
    assert send(handler, "journal_ack", older)["ok"]
    assert ledger.status()["journal_ack"] == ack

    reply = send(handler, "message", {"text": "Setor kas sebelum jam 5"})
    assert reply["ok"]
    assert [m["id"] for m in ledger.messages()] == [reply["id"]]

    assert send(handler, "print", {"title": "Notice", "lines": ["one", "two"]})["ok"]


# --- through the broker ------------------------------------------------------------------


class Hq:
    """HQ's side for the test: publishes commands, collects the device's acks."""

    def __init__(self, url: str) -> None:
        address = parse_url(url)
        self.acks: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="hq-cmd", protocol=mqtt.MQTTv5
        )
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port, 30)
        self.client.loop_start()
        self.client.subscribe(f"kiosk/v1/{DEVICE}/ack", qos=1)
        assert ready.wait(10)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.acks.append(json.loads(message.payload))

    def send(self, command: dict[str, Any], topic_name: str | None = None) -> str:
        topic = command_topic(DEVICE, topic_name or command["name"])
        self.client.publish(topic, payload(command), qos=1).wait_for_publish(10)
        return str(command["id"])

    def ack_for(self, command_id: str) -> dict[str, Any]:
        def find() -> list[dict[str, Any]]:
            with self._lock:
                return [a for a in self.acks if a["id"] == command_id]

        return wait_until(find, f"the ack of {command_id}")[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def hq(broker: Broker) -> Iterator[Hq]:
    side = Hq(broker.url)
    yield side
    side.close()


def test_commands_through_the_broker(tmp_path: Path, broker: Broker, hq: Hq) -> None:
    """Commands wait while the clock is untrusted, then apply and are acked."""
    synced = threading.Event()
    clock = Clock("network_or_gps", synchronised=synced.is_set)
    ledger = keyed_ledger(
        tmp_path,
        clock=clock,
        broker={"url": broker.url, "retention_days": 0},
        time={"trust": "network_or_gps"},
    )
    link = Link(ledger, backoff_s=(0.05, 0.3))
    link.start()
    try:
        wait_until(lambda: link.online, "the link")
        lock = hq.send(build_command(KEY, DEVICE, "lock", {"reason": "audit"}))
        wait_until(lambda: link._commands, "the command to be held")
        assert ledger.status()["locked"] is None and hq.acks == []

        synced.set()
        assert hq.ack_for(lock)["ok"] is True
        assert ledger.status()["locked"]["reason"] == "audit"

        forged = hq.send(build_command(OTHER_KEY, DEVICE, "unlock", {}))
        refusal = hq.ack_for(forged)
        assert (refusal["ok"], refusal["reason"]) == (False, "bad signature")
        assert ledger.status()["locked"] is not None

        # Once HQ has verified the journal, sent money events past the
        # retention period leave the outbox.
        ledger.set_lock(None)
        actor = ledger.authenticate("c1", PIN)
        for _ in range(3):
            ledger.collect(actor, "K-0001", 1000)
        link.wake()
        wait_until(lambda: ledger.status()["outbox"]["depth"] == 0, "the drain")
        journal = ledger.status()["journal"]
        body = {"seq": journal["seq"] - 1, "hash": _hash_at(ledger, journal["seq"] - 1)}
        assert hq.ack_for(hq.send(build_command(KEY, DEVICE, "journal_ack", body)))[
            "ok"
        ]
        wait_until(lambda: _money_rows(ledger) == [journal["seq"]], "the prune")
    finally:
        link.stop()
        ledger.close()


def _hash_at(ledger: Ledger, seq: int) -> str:
    with ledger.store.read() as conn:
        return str(
            conn.execute(
                text("SELECT hash FROM journal WHERE seq=:s"), {"s": seq}
            ).scalar_one()
        )


def _money_rows(ledger: Ledger) -> list[int]:
    with ledger.store.read() as conn:
        return [
            int(r[0])
            for r in conn.execute(
                text("SELECT seq FROM outbox WHERE lane='money' ORDER BY seq")
            )
        ]
