"""The device's broker link against a real Mosquitto, with a plain subscriber as HQ.

Payments reach HQ exactly once and in journal order, across broker outages,
killed devices and a dead network loop; the retained state and the last will
tell HQ what it holds and when it went away.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import text

from kiosk import outbox
from kiosk.ledger import Ledger
from kiosk.sync.link import BrokerUnreachable, Link, broker_round_trip, parse_url
from tests.brokers import Broker
from tests.conftest import ROOT, free_port
from tests.factories import PIN, make_config, make_document

pytestmark = pytest.mark.integration

CASH = {"max_in_hand": 10**14, "max_payment": 10**9, "allow_overpayment": True}
DEVICE = "KIOSK-01"


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


class Feed:
    """A plain paho subscriber standing in for HQ, with a persistent session."""

    def __init__(self, url: str, client_id: str = "hq-test") -> None:
        address = parse_url(url)
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.5)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect(
            address.host, address.port, 30, clean_start=False, properties=properties
        )
        self.client.loop_start()
        assert self._subscribed.wait(10), "the HQ subscriber did not subscribe"

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe("kiosk/v1/#", qos=1)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/ping"):
            return
        with self._lock:
            self.messages.append(
                (message.topic, json.loads(message.payload), bool(message.retain))
            )

    def all(self) -> list[tuple[str, dict[str, Any], bool]]:
        with self._lock:
            return list(self.messages)

    def lane(self, lane: str) -> list[dict[str, Any]]:
        return [p for t, p, _ in self.all() if "/evt/" in t and p["lane"] == lane]

    def money_seqs(self) -> set[int]:
        return {p["seq"] for p in self.lane("money")}

    def states(self) -> list[dict[str, Any]]:
        return [p for t, p, _ in self.all() if t.endswith("/state")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def feed(broker: Broker) -> Iterator[Feed]:
    hq = Feed(broker.url)
    yield hq
    hq.close()


def device_ledger(data_dir: Path, url: str, **broker: Any) -> Ledger:
    config = make_config(data_dir, broker={"url": url, **broker}, cash=CASH)
    ledger = Ledger(config, check=False)
    with ledger.store.read() as conn:
        has_customers = conn.execute(text("SELECT count(*) FROM contract")).scalar()
    if not has_customers:
        ledger.import_document(make_document(3))
    return ledger


def pay(ledger: Ledger, count: int) -> None:
    actor = ledger.authenticate("c1", PIN)
    for n in range(count):
        ledger.collect(actor, f"K-000{n % 3 + 1}", 1000)


def last_seq(ledger: Ledger) -> int:
    return int(ledger.status()["journal"]["seq"])


def unsent(ledger: Ledger, lane: str = "money") -> int:
    with ledger.store.read() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND lane=:l"),
                {"l": lane},
            ).scalar_one()
        )


@pytest.fixture
def running() -> Iterator[list[Link]]:
    links: list[Link] = []
    yield links
    for link in links:
        link.stop()


def start_link(links: list[Link], ledger: Ledger, **kw: Any) -> Link:
    kw.setdefault("backoff_s", (0.05, 0.3))
    link = Link(ledger, **kw)
    links.append(link)
    link.start()
    wait_until(lambda: link.online, "the link to come online")
    return link


def assert_in_order_once(feed: Feed, upto: int) -> None:
    """Every money seq from 1 to ``upto`` arrived, in order, each once."""
    seqs = [p["seq"] for p in feed.lane("money")]
    assert seqs == list(range(1, upto + 1))


# --- tests ------------------------------------------------------------------------


def test_link_payments_reach_hq_once_in_order(
    tmp_path: Path, broker: Broker, feed: Feed, running: list[Link]
) -> None:
    """Payments made before and while online arrive once each, in journal order."""
    ledger = device_ledger(tmp_path / "dev", broker.url)
    pay(ledger, 5)
    link = start_link(running, ledger)
    pay(ledger, 5)
    link.wake()
    total = last_seq(ledger)

    wait_until(lambda: len(feed.money_seqs()) == total, "every money event")
    wait_until(lambda: unsent(ledger) == 0, "the outbox to be marked sent")
    assert_in_order_once(feed, total)
    money = feed.lane("money")
    assert [p["type"] for p in money].count("payment") == 10
    assert all(p["device"] == DEVICE and p["boot"] == ledger.boot for p in money)
    assert money[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(money))

    # The retained state, as a newcomer sees it, shows the cash held.
    late = Feed(broker.url, client_id="hq-late")
    try:
        state = wait_until(
            lambda: [
                p
                for p in late.states()
                if p["online"] and p["cash_held"].get("c1") == 10_000
            ],
            "the retained state with the cash held",
        )[-1]
    finally:
        late.close()
    assert state["boot"] == ledger.boot
    assert state["journal"]["seq"] == total
    assert state["outbox_depth"] == 0
    assert state["time_trust"]["trusted"] is True


def test_link_broker_outage_2000_payments(
    tmp_path: Path, broker: Broker, feed: Feed, running: list[Link]
) -> None:
    """2,000 payments made while the broker is down all arrive, in order, once."""
    ledger = device_ledger(tmp_path / "dev", broker.url)
    link = start_link(running, ledger)
    feed.client.disconnect()  # HQ's session keeps its queue while away
    feed.client.loop_stop()
    broker.stop()
    wait_until(lambda: not link.online, "the link to notice the outage")

    pay(ledger, 2000)
    total = last_seq(ledger)
    assert unsent(ledger) == total

    broker.start()
    feed.client.reconnect()
    feed.client.loop_start()
    wait_until(lambda: link.online, "the link to come back")
    wait_until(lambda: len(feed.money_seqs()) == total, "2,000 payments", 60)
    assert_in_order_once(feed, total)
    wait_until(lambda: unsent(ledger) == 0, "the outbox to be marked sent")


CHILD = """
import sys, time, logging
from pathlib import Path
from kiosk.ledger import Ledger
from kiosk.sync.link import Link
from tests.factories import make_config
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
config = make_config(
    Path(sys.argv[1]),
    broker={"url": sys.argv[2], "inflight": int(sys.argv[3])},
    cash=CASH_SECTION,
)
ledger = Ledger(config, check=False)
print("boot", ledger.boot, flush=True)
link = Link(ledger, backoff_s=(0.05, 0.3))
link.start()
while True:
    time.sleep(1)
""".replace("CASH_SECTION", repr(CASH))


def spawn_device(data_dir: Path, url: str, inflight: int = 200) -> tuple[Any, str]:
    """The link in a process of its own, to be killed; returns it and its boot."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), url, str(inflight)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=open(data_dir / "child.log", "ab"),  # noqa: SIM115
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[:1] == ["boot"], (data_dir / "child.log").read_text()
    return proc, line[1]


def kill(proc: Any) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_link_last_will_marks_a_killed_device_offline(
    tmp_path: Path, broker: Broker, feed: Feed
) -> None:
    """SIGKILL leaves no goodbye: the broker's last will says offline, same boot."""
    data = tmp_path / "dev"
    device_ledger(data, broker.url).close()
    proc, boot = spawn_device(data, broker.url)
    try:
        wait_until(
            lambda: any(s["online"] and s["boot"] == boot for s in feed.states()),
            "the device's birth message",
        )
    finally:
        kill(proc)
    will = wait_until(
        lambda: [s for s in feed.states() if not s["online"] and s["boot"] == boot],
        "the last will",
    )[-1]
    assert will == {"v": 1, "device": DEVICE, "online": False, "boot": boot}


def test_link_device_killed_mid_drain_loses_nothing(
    tmp_path: Path, broker: Broker, feed: Feed
) -> None:
    """Killed while draining and started again: all arrive; copies share ids."""
    data = tmp_path / "dev"
    ledger = device_ledger(data, broker.url)
    pay(ledger, 1500)
    total = last_seq(ledger)

    proc, _ = spawn_device(data, broker.url, inflight=2)
    try:
        wait_until(lambda: len(feed.money_seqs()) >= 200, "the drain to start")
    finally:
        kill(proc)
    assert unsent(ledger) > 0, "the drain finished before the kill"

    proc, _ = spawn_device(data, broker.url)
    try:
        wait_until(lambda: len(feed.money_seqs()) == total, "every money event", 60)
        wait_until(lambda: unsent(ledger) == 0, "the outbox to be marked sent")
    finally:
        kill(proc)

    first: dict[int, dict[str, Any]] = {}
    for event in feed.lane("money"):
        kept = first.setdefault(event["seq"], event)
        assert kept == event  # a copy is the same event: same id, same content
    assert sorted(first) == list(range(1, total + 1))
    assert len({e["id"] for e in first.values()}) == total


def test_link_sending_order_and_historical_locations(
    tmp_path: Path, broker: Broker, feed: Feed, running: list[Link]
) -> None:
    """A backlog goes alarm, live loc, money, ops, then old locs marked historical."""
    ledger = device_ledger(tmp_path / "dev", broker.url)
    pay(ledger, 3)
    point = {"tst": int(time.time()), "lat": -6.9147, "lon": 107.6098, "acc": 8}
    with ledger.store.write() as conn:
        old = outbox.enqueue_location(conn, DEVICE, {**point, "tst": 1}, "01")
        conn.execute(
            text("UPDATE outbox SET created_at=created_at-600 WHERE id=:i"), {"i": old}
        )
        live = outbox.enqueue_location(conn, DEVICE, point, "01")
    ledger.ops_event("printer", {"status": "paper_out"})
    ledger.raise_alarm("panic", {"source": "button"})

    start_link(running, ledger)
    wait_until(lambda: any(p.get("id") == old for _, p, _ in feed.all()), "old loc")
    events = [(t, p) for t, p, _ in feed.all() if not t.endswith("/state")]
    kinds = [p.get("lane") or p["_type"] for _, p in events]
    money = kinds.count("money")
    assert kinds == ["alarm", "location", *["money"] * money, "ops", "ops", "location"]
    assert events[1][1]["id"] == live and events[1][1]["historical"] is False
    assert events[-1][1]["id"] == old and events[-1][1]["historical"] is True
    assert events[-1][0] == f"kiosk/v1/{DEVICE}/loc"


def test_link_restarts_a_dead_network_loop(
    tmp_path: Path, broker: Broker, feed: Feed, running: list[Link]
) -> None:
    """A network loop that died unnoticed is found by the stall check and replaced."""
    ledger = device_ledger(tmp_path / "dev", broker.url)
    link = start_link(running, ledger, stall_timeout_s=1.0)
    assert link._client is not None
    link._client.loop_stop()  # the loop dies; paho still believes it is connected

    pay(ledger, 5)
    link.wake()
    total = last_seq(ledger)
    wait_until(lambda: len(feed.money_seqs()) == total, "money after the restart")
    wait_until(lambda: unsent(ledger) == 0, "the outbox to be marked sent")


def test_link_mqtt_311(
    tmp_path: Path, broker: Broker, feed: Feed, running: list[Link]
) -> None:
    """The link also speaks MQTT 3.1.1 when configured to."""
    ledger = device_ledger(tmp_path / "dev", broker.url, protocol="3.1.1")
    pay(ledger, 3)
    start_link(running, ledger)
    total = last_seq(ledger)
    wait_until(lambda: len(feed.money_seqs()) == total, "every money event")
    assert_in_order_once(feed, total)


def test_link_clean_stop_says_offline(
    tmp_path: Path, broker: Broker, feed: Feed, running: list[Link]
) -> None:
    """A clean stop publishes the full state with online false."""
    ledger = device_ledger(tmp_path / "dev", broker.url)
    link = start_link(running, ledger)
    statuses: list[str] = []
    link.on_status = lambda _part, value: statuses.append(value)
    link.stop()
    last = wait_until(
        lambda: [s for s in feed.states() if not s["online"]], "the offline state"
    )[-1]
    assert last["boot"] == ledger.boot and "cash_held" in last
    assert statuses[-1] == "stopped"


def test_broker_round_trip(tmp_path: Path, broker: Broker) -> None:
    """The doctor's round trip works under its own client id, and fails clearly."""
    config = make_config(tmp_path, broker={"url": broker.url})
    seconds = broker_round_trip(config, f"{DEVICE}-doctor", timeout=10)
    assert 0 < seconds < 10

    with pytest.raises(ValueError, match="other than the device"):
        broker_round_trip(config, DEVICE)
    nowhere = make_config(tmp_path, broker={"url": f"mqtt://127.0.0.1:{free_port()}"})
    with pytest.raises(BrokerUnreachable, match="cannot reach the broker"):
        broker_round_trip(nowhere, f"{DEVICE}-doctor", timeout=2)
    no_ca = make_config(
        tmp_path,
        broker={
            "url": f"mqtts://127.0.0.1:{broker.port}",
            "ca_file": str(tmp_path / "missing-ca.crt"),
        },
    )
    with pytest.raises(BrokerUnreachable, match="cannot set up TLS"):
        broker_round_trip(no_ca, f"{DEVICE}-doctor", timeout=2)


def test_link_keeps_within_the_brokers_receive_maximum(
    tmp_path: Path, running: list[Link]
) -> None:
    """Regression: a broker that advertises a receive maximum (Mosquitto's
    default of 20) made the link fail at every connect; it must narrow its own
    window instead, and everything still arrives once, in order."""
    narrow = Broker(tmp_path / "narrow", extra="max_inflight_messages 20\n")
    narrow.start()
    try:
        watcher = Feed(narrow.url)
        try:
            ledger = device_ledger(tmp_path / "dev", narrow.url)
            pay(ledger, 150)
            link = start_link(running, ledger)
            wait_until(lambda: link.online, "the link to come online")
            total = last_seq(ledger)
            wait_until(lambda: len(watcher.money_seqs()) == total, "every money event")
            assert_in_order_once(watcher, total)
        finally:
            watcher.close()
    finally:
        narrow.stop()
