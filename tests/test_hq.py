"""The HQ service against a real Mosquitto, on SQLite and a real PostgreSQL.

A real device ledger makes the events; until the device's own link is wired in,
a plain paho client publishes its outbox the way the link does (QoS 1, in
sending order), which lets a test withhold, edit or repeat an event.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from kiosk.config import Config, parse_config, read_key_file
from kiosk.errors import StoreError
from kiosk.journal import entry_hash
from kiosk.ledger import Ledger
from kiosk.outbox import mark_sent, pending
from kiosk.sync.hq.commands import KeyRing, add_device
from kiosk.sync.hq.ingest import Ingest
from kiosk.sync.hq.store import SCHEMA_VERSION, HqStore, events, schema_version
from kiosk.sync.hq.views import list_devices, list_events
from kiosk.sync.protocol import ack_message, check_command
from kiosk.sync.state import build_state
from tests.brokers import Broker
from tests.cli_helpers import kiosk, kiosk_json
from tests.conftest import ROOT
from tests.factories import PIN, make_ledger

DEVICE = "KIOSK-01"
pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll until ``predicate`` holds; False when it never did in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def paho_client(url: str, client_id: str) -> mqtt.Client:
    port = int(url.rsplit(":", 1)[1])
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "test client could not connect"
    return client


class DeviceSim:
    """A real ledger whose outbox a plain paho client publishes."""

    def __init__(self, ledger: Ledger, broker: Broker) -> None:
        self.ledger = ledger
        self.broker = broker
        self.actor = ledger.authenticate("c1", PIN)

    def unsent(self) -> list[Any]:
        with self.ledger.store.read() as conn:
            return pending(conn, 1_000_000)

    def publish(
        self,
        rows: list[Any],
        edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        *,
        mark: bool = True,
    ) -> None:
        client = paho_client(self.broker.url, f"{DEVICE}-sim")
        try:
            for row in rows:
                message = json.loads(row.payload)
                if edit is not None:
                    message = edit(message)
                info = client.publish(row.topic, json.dumps(message), qos=1)
                info.wait_for_publish(10)
                assert info.is_published()
        finally:
            client.disconnect()
            client.loop_stop()
        if mark:
            with self.ledger.store.write() as conn:
                mark_sent(conn, [row.id for row in rows])

    def pump(self) -> None:
        self.publish(self.unsent())

    def money(self, seqs: set[int] | None = None) -> list[Any]:
        rows = [r for r in self.unsent() if r.lane == "money"]
        return [r for r in rows if seqs is None or r.seq in seqs]

    def pay(self, n: int, amount: int = 1000) -> None:
        for i in range(n):
            self.ledger.collect(self.actor, f"K-000{1 + i % 3}", amount)

    def state(self) -> dict[str, Any]:
        return build_state(self.ledger, online=True)

    def publish_state(self) -> None:
        client = paho_client(self.broker.url, f"{DEVICE}-state")
        info = client.publish(
            f"kiosk/v1/{DEVICE}/state", json.dumps(self.state()), qos=1, retain=True
        )
        info.wait_for_publish(10)
        client.disconnect()
        client.loop_stop()


class Wire:
    """Everything HQ sends a device, as it appears on the broker."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[dict[str, Any]] = []
        self.client = paho_client(broker.url, "wire-watcher")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            json.loads(m.payload)
        )
        self.client.subscribe(f"kiosk/v1/{DEVICE}/cmd/#", qos=1)
        assert subscribed.wait(10)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m.get("name") == name]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hq_config(tmp_path: Path, broker: Broker, db_url: str, **hq: Any) -> Config:
    return parse_config(
        {
            "device": {"data_dir": str(tmp_path / "hq-data")},
            "broker": {"url": broker.url},
            "hq": {
                "db_url": db_url,
                "keys_dir": str(tmp_path / "keys"),
                "client_id": "hq-test",
                "resync_wait_s": 0.3,
                **hq,
            },
        }
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.db'}"
    return str(request.getfixturevalue("pg_db"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hq.db'}"


@pytest.fixture
def device(tmp_path: Path, broker: Broker) -> DeviceSim:
    info = add_device(tmp_path / "keys", DEVICE)
    ledger = make_ledger(
        tmp_path / "device",
        3,
        security={"key_file": info["key_file"]},
        broker={"url": broker.url},
    )
    return DeviceSim(ledger, broker)


@pytest.fixture
def wire(broker: Broker) -> Iterator[Wire]:
    watcher = Wire(broker)
    yield watcher
    watcher.close()


def start_hq(config: Config, client_id: str = "hq-test") -> tuple[Ingest, HqStore]:
    store = HqStore(config.hq.db_url)
    ingest = Ingest(config, store, client_id=client_id, tick_s=0.1)
    ingest.start()
    assert ingest.wait_ready(10), "HQ did not subscribe"
    return ingest, store


def chain_of(store: HqStore) -> dict[str, Any]:
    with store.begin() as conn:
        return store.chain(conn, DEVICE) or {"verified_seq": 0, "problem": None}


def journal_seq(device: DeviceSim) -> int:
    return int(device.ledger.status()["journal"]["seq"])


# --- the feed ---------------------------------------------------------------


def test_hq_payments_through_a_broker_outage_arrive_once_in_order(
    tmp_path: Path, broker: Broker, device: DeviceSim, db_url: str
) -> None:
    """Payments made before, during and after an outage, some sent twice, end at
    HQ exactly once, chained in order, and HQ's cash equals the device's."""
    ingest, store = start_hq(hq_config(tmp_path, broker, db_url))
    try:
        device.pay(5)
        device.pump()

        broker.stop()
        device.pay(8, amount=2500)
        device.ledger.deposit(device.actor, 4000, "DEP-1")
        broker.start()

        unsent = device.unsent()
        device.publish(unsent)
        # The link resends after a lost PUBACK with the same ids.
        device.publish(unsent[:4], mark=False)
        last = journal_seq(device)
        assert wait_for(lambda: chain_of(store)["verified_seq"] == last)
    finally:
        ingest.stop()

    with store.begin() as conn:
        rows = conn.execute(
            select(events.c.seq, events.c.status, events.c.hash)
            .where(events.c.device == DEVICE, events.c.lane == "money")
            .order_by(events.c.seq)
        ).all()
        cash = store.cash_view(conn, DEVICE)
    assert [r.seq for r in rows] == list(range(1, last + 1))
    assert {r.status for r in rows} == {"verified"}
    assert rows[-1].hash == device.ledger.status()["journal"]["hash"]
    assert cash == device.ledger.status()["cash_held"]
    assert cash == {"c1": 5 * 1000 + 8 * 2500 - 4000}
    store.close()


def test_hq_gap_is_resynced_then_acknowledged(
    tmp_path: Path, broker: Broker, device: DeviceSim, wire: Wire, sqlite_url: str
) -> None:
    """An entry withheld past resync_wait_s brings a signed resync from it; when
    it comes, the chain closes and a journal_ack names the newest entry."""
    ingest, store = start_hq(hq_config(tmp_path, broker, sqlite_url))
    try:
        device.pay(3)
        device.publish(device.money({1, 2, 4}))
        assert wait_for(lambda: bool(wire.named("resync")))
        resync = wire.named("resync")[0]
        key = read_key_file(tmp_path / "keys" / f"{DEVICE}.key")
        command = check_command(
            json.dumps(resync).encode(),
            key=key,
            device=DEVICE,
            now=datetime.now(UTC),
            max_bytes=65536,
            topic_name="resync",
        )
        assert command.body == {"lane": "money", "seq": 3}
        assert chain_of(store)["verified_seq"] == 2

        device.pump()
        last = journal_seq(device)
        assert wait_for(lambda: chain_of(store)["verified_seq"] == last)
        assert wait_for(
            lambda: any(m["body"]["seq"] == last for m in wire.named("journal_ack"))
        )
        ack = next(m for m in wire.named("journal_ack") if m["body"]["seq"] == last)
        assert ack["body"]["hash"] == device.ledger.status()["journal"]["hash"]
    finally:
        ingest.stop()
        store.close()


def _edit_amount(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("seq") == 3 and message.get("type") == "payment":
        message["data"]["amount"] += 1
    return message


def _edit_and_rehash(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("seq") == 3 and message.get("type") == "payment":
        message["data"]["amount"] += 1
        message["hash"] = entry_hash(
            message["seq"],
            message["prev"],
            message["type"],
            message["time"],
            message["collector"],
            message["data"],
        )
    return message


@pytest.mark.parametrize(
    ("edit", "bad_seq", "words"),
    [(_edit_amount, 3, "was edited"), (_edit_and_rehash, 4, "does not follow")],
)
def test_hq_edited_event_fails_the_chain(
    tmp_path: Path,
    broker: Broker,
    device: DeviceSim,
    sqlite_url: str,
    edit: Callable[[dict[str, Any]], dict[str, Any]],
    bad_seq: int,
    words: str,
) -> None:
    """An edited payment is stored as tampered and raised as an alarm, whether
    its hash was left alone or recomputed (the next entry then breaks)."""
    config = hq_config(tmp_path, broker, sqlite_url)
    ingest, store = start_hq(config)
    try:
        device.pay(4)
        device.publish(device.money(), edit)
        assert wait_for(lambda: chain_of(store)["problem"] is not None)
    finally:
        ingest.stop()

    chain = chain_of(store)
    assert chain["verified_seq"] == bad_seq - 1
    assert chain["broken_seq"] == bad_seq
    assert words in chain["problem"]
    listed = list_devices(store, KeyRing(config.hq.keys_dir))["devices"][0]
    assert [a["kind"] for a in listed["alarms"]] == ["journal_tampered"]
    statuses = {
        e["seq"]: e["status"]
        for e in list_events(store, device=DEVICE)["events"]
        if e["lane"] == "money"
    }
    assert statuses[bad_seq] == "tampered"
    assert statuses[bad_seq + 1] == "pending"
    store.close()


def test_hq_deleted_journal_tail_is_flagged_after_journal_ack(
    tmp_path: Path, broker: Broker, device: DeviceSim, wire: Wire, sqlite_url: str
) -> None:
    """Once HQ has verified and acknowledged entries, a device whose state then
    reports a shorter journal is flagged: its tail was deleted."""
    config = hq_config(tmp_path, broker, sqlite_url)
    ingest, store = start_hq(config)
    try:
        device.pay(4)
        device.pump()
        device.publish_state()
        last = journal_seq(device)
        assert wait_for(
            lambda: any(m["body"]["seq"] == last for m in wire.named("journal_ack"))
        )
        assert (
            list_devices(store, KeyRing(config.hq.keys_dir))["devices"][0]["alarms"]
            == []
        )

        with device.ledger.store.write() as conn:
            conn.exec_driver_sql("DELETE FROM journal WHERE seq > 2")
        device.publish_state()

        def flagged() -> bool:
            listed = list_devices(store, KeyRing(config.hq.keys_dir))["devices"][0]
            return [a["kind"] for a in listed["alarms"]] == ["journal_truncated"]

        assert wait_for(flagged)
    finally:
        ingest.stop()
        store.close()


def test_hq_two_workers_share_the_feed_and_store_each_event_once(
    tmp_path: Path,
    broker: Broker,
    device: DeviceSim,
    pg_db: str,
) -> None:
    """Two workers on one shared subscription split the feed, store every event
    exactly once between them and verify the whole chain from the database."""
    config = hq_config(tmp_path, broker, pg_db, share_group="hq")
    first, store = start_hq(config, "hq-a")
    second, other = start_hq(config, "hq-b")
    try:
        device.pay(40)
        rows = device.unsent()
        device.publish(rows)
        last = journal_seq(device)
        assert wait_for(lambda: chain_of(store)["verified_seq"] == last)
        assert wait_for(lambda: first.idle() and second.idle())
    finally:
        first.stop()
        second.stop()

    with store.begin() as conn:
        stored = conn.execute(select(func.count()).select_from(events)).scalar()
    assert stored == len(rows)
    assert first.stats["received"] + second.stats["received"] == len(rows)
    assert first.stats["received"] > 0
    assert second.stats["received"] > 0
    assert chain_of(store)["problem"] is None
    with store.begin() as conn:
        assert store.cash_view(conn, DEVICE) == device.ledger.status()["cash_held"]
    store.close()
    other.close()


# --- the schema -------------------------------------------------------------


def test_hq_schema_migrates_forward_and_refuses_newer(db_url: str) -> None:
    """An empty database is brought to the current version; one from a newer
    release is refused rather than written to."""
    store = HqStore(db_url)
    with store.begin() as conn:
        assert store.version(conn) == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION

    with store.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer than this release"):
        HqStore(db_url)
    store.close()


def test_hq_store_inserts_events_idempotently(db_url: str) -> None:
    """The same event id inserted twice, also within one batch, is kept once."""
    store = HqStore(db_url)
    row = {
        "id": "e1",
        "device": DEVICE,
        "lane": "ops",
        "seq": 1,
        "type": "printer",
        "time": "2026-01-01T00:00:00.000Z",
        "data": "{}",
        "received_at": 1.0,
        "status": "stored",
    }
    with store.begin() as conn:
        store.insert_ignore(conn, events, [row, dict(row)])
        store.insert_ignore(conn, events, [dict(row, type="changed")])
        count = conn.execute(select(func.count()).select_from(events)).scalar()
        kept = conn.execute(select(events.c.type)).scalar()
    assert (count, kept) == (1, "printer")
    store.close()


# --- the command line ---------------------------------------------------------


def write_config(tmp_path: Path, broker: Broker, db_url: str) -> Path:
    path = tmp_path / "hq.toml"
    path.write_text(
        f"[device]\ndata_dir = '{tmp_path / 'hq-data'}'\n"
        f"[broker]\nurl = '{broker.url}'\n"
        f"[hq]\ndb_url = '{db_url}'\nkeys_dir = '{tmp_path / 'keys'}'\n"
        "client_id = 'hq-cli'\nresync_wait_s = 0.3\n"
    )
    return path


def test_hq_add_device_makes_a_private_key_once(tmp_path: Path, broker: Broker) -> None:
    """add-device writes 64 hex digits with mode 0600, says the next steps, and
    refuses to overwrite a key or to take a malformed id."""
    config = write_config(tmp_path, broker, f"sqlite:///{tmp_path / 'hq.db'}")
    code, made = kiosk_json("hq", "add-device", "VAN-9", config=config)
    assert code == 0
    key_file = Path(made["key_file"])
    assert key_file == tmp_path / "keys" / "VAN-9.key"
    assert len(read_key_file(key_file)) == 32
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "--key-file" in made["install"]
    assert "mosquitto_passwd" in made["broker_login"]

    code, refused = kiosk_json("hq", "add-device", "VAN-9", config=config)
    assert (code, refused["error"]["code"]) == (1, "refused")
    assert kiosk_json("hq", "add-device", "bad/id", config=config)[0] == 2
    assert kiosk_json("hq", "add-device", "hq", config=config)[0] == 2


def test_hq_verify_receipt_checks_key_and_journal(
    tmp_path: Path, broker: Broker, device: DeviceSim, sqlite_url: str
) -> None:
    """A real receipt code is accepted once HQ holds its payment; a changed
    amount or number is refused as altered; a genuine code HQ has no payment
    for is refused as not backed by the journal."""
    config_path = write_config(tmp_path, broker, sqlite_url)
    ingest, store = start_hq(hq_config(tmp_path, broker, sqlite_url))
    try:
        device.pay(2)
        held_back = device.ledger.collect(device.actor, "K-0003", 7000)["code"]
        device.publish(device.money({1, 2, 3}))
        assert wait_for(lambda: chain_of(store)["verified_seq"] == 3)
    finally:
        ingest.stop()
        store.close()

    with device.ledger.store.read() as conn:
        code = json.loads(
            conn.exec_driver_sql(
                "SELECT data FROM journal WHERE type='payment' ORDER BY seq LIMIT 1"
            ).scalar_one()
        )["code"]
    status, ok = kiosk_json("hq", "verify-receipt", code, config=config_path)
    assert status == 0, ok
    assert ok["ok"] and ok["amount"] == 1000 and ok["chain"] == "verified"

    parts = code.split("|")
    more = "|".join([*parts[:3], "100000", *parts[4:]])
    other = "|".join([*parts[:2], parts[2][:-1] + "9", *parts[3:]])
    for altered in (more, other):
        status, error = kiosk_json("hq", "verify-receipt", altered, config=config_path)
        assert status == 2
        assert "altered" in error["error"]["message"]

    status, error = kiosk_json("hq", "verify-receipt", held_back, config=config_path)
    assert status == 1
    assert "no payment" in error["error"]["message"]


class Responder:
    """Stands in for the device's command handler: checks and answers."""

    def __init__(self, broker: Broker, key: bytes, refuse: set[str]) -> None:
        self.client = paho_client(broker.url, f"{DEVICE}-responder")
        self.key = key
        self.refuse = refuse
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self.on_message
        self.client.subscribe(f"kiosk/v1/{DEVICE}/cmd/#", qos=1)
        assert subscribed.wait(10)

    def on_message(self, client: mqtt.Client, _u: Any, message: Any) -> None:
        command = check_command(
            message.payload,
            key=self.key,
            device=DEVICE,
            now=datetime.now(UTC),
            max_bytes=65536,
            topic_name=message.topic.rsplit("/", 1)[1],
        )
        refused = command.name in self.refuse
        answer = ack_message(
            DEVICE, command.id, not refused, "locked by test" if refused else ""
        )
        client.publish(f"kiosk/v1/{DEVICE}/ack", json.dumps(answer), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_hq_send_waits_for_the_answer(tmp_path: Path, broker: Broker) -> None:
    """send signs and publishes, then reports the device's answer: 0 applied,
    1 refused with its reason, 3 when no answer comes in time."""
    db = f"sqlite:///{tmp_path / 'hq.db'}"
    config = write_config(tmp_path, broker, db)
    info = add_device(tmp_path / "keys", DEVICE)
    body = tmp_path / "message.json"
    body.write_text(json.dumps({"text": "Setor tunai hari ini"}))

    status, error = kiosk_json(
        "hq",
        "send",
        DEVICE,
        "message",
        "--body",
        str(body),
        "--timeout",
        "1",
        config=config,
    )
    assert status == 3
    assert "no answer" in error["error"]["message"]

    responder = Responder(broker, read_key_file(Path(info["key_file"])), {"lock"})
    try:
        status, done = kiosk_json(
            "hq", "send", DEVICE, "message", "--body", str(body), config=config
        )
        assert (status, done["ok"]) == (0, True)
        status, error = kiosk_json(
            "hq",
            "send",
            DEVICE,
            "lock",
            "--body",
            "-",
            config=config,
            input_text='{"reason": "audit"}',
        )
        assert status == 1
        assert "locked by test" in error["error"]["message"]
    finally:
        responder.close()
    assert (
        kiosk_json(
            "hq", "send", "NOBODY", "message", "--body", str(body), config=config
        )[0]
        == 2
    )


def test_hq_serve_runs_until_sigterm_and_lists_what_it_stored(
    tmp_path: Path, broker: Broker, device: DeviceSim
) -> None:
    """`kiosk hq serve` takes the feed until SIGTERM (exit 0); `hq devices` and
    `hq events` then show the device, its cash and its verified journal."""
    db = f"sqlite:///{tmp_path / 'hq.db'}"
    config = write_config(tmp_path, broker, db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "hq", "serve", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        device.pay(3)
        device.publish_state()
        last = journal_seq(device)

        def listed() -> dict[str, Any]:
            code, result = kiosk_json("hq", "devices", config=config)
            assert code == 0, result
            return result["devices"][0] if result["devices"] else {}

        # serve subscribes in the background: send until it has the chain.
        def verified() -> bool:
            device.publish(device.money() or [], mark=False)
            return listed().get("verified_seq") == last

        assert wait_for(verified, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""

    shown = listed()
    assert shown["cash_held"] == device.ledger.status()["cash_held"]
    assert shown["reported_cash_held"] == shown["cash_held"]
    assert shown["has_key"] is True
    assert shown["outbox_depth"] == device.state()["outbox_depth"]
    assert shown["reported_seq"] == last
    code, found = kiosk_json(
        "hq", "events", "--device", DEVICE, "--type", "payment", config=config
    )
    assert code == 0
    assert [e["type"] for e in found["events"]] == ["payment"] * 3
    assert found["chain"]["verified_seq"] == last
    human = kiosk("hq", "events", "--device", DEVICE, config=config)
    assert human.returncode == 0 and "payment" in human.stdout
