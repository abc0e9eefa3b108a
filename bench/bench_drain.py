"""Outbox drain rate of the link against a bare paho QoS 1 publish loop.

For each backlog size, a fresh store is filled with journal entries and their
money events (the real code path, in one transaction), then:

- ``bare``: one paho client publishes the same payloads to the same topics at
  QoS 1 with the same in-flight window and waits for every PUBACK;
- ``drain``: the device's ``Link`` starts and runs until the store has every
  event marked sent (a PUBACK each, recorded in the store).

Both go to the same Mosquitto, started here on a loopback port, in the same
run. The goals: ``ratio`` (drain rate over bare rate) at least 0.7, and 10,000
events drained in under 30 s.

Run ``python -m bench.bench_drain [--large]``; ``--large`` adds 100,000. It
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

from kiosk import journal, outbox
from kiosk.ledger import Ledger
from kiosk.sync.link import Link, parse_url
from kiosk.timefmt import rfc3339
from tests.brokers import Broker
from tests.factories import make_config

log = logging.getLogger(__name__)

GOAL_RATIO = 0.7
GOAL_10K_S = 30.0
INFLIGHT = 200


def fill(ledger: Ledger, count: int) -> list[tuple[str, bytes]]:
    """Journal ``count`` payment-sized entries; returns their topics and payloads."""
    data = {
        "receipt": "KIOSK-01-000001",
        "contract": "K-2026-000123",
        "customer": "CU-0001",
        "amount": 1_750_000,
        "currency": "IDR",
        "allocations": [{"no": n, "amount": 437_500} for n in range(1, 5)],
        "location": {"lat": -6.9147, "lon": 107.6098, "acc": 8, "result": "inside"},
    }
    with ledger.store.write() as conn:
        for n in range(count):
            when = rfc3339(ledger.clock.now())
            entry = journal.append(conn, "payment", when, "c1", {**data, "n": n})
            outbox.enqueue_money(conn, ledger.device.id, ledger.boot, entry)
    with ledger.store.read() as conn:
        rows = conn.execute(
            text("SELECT topic, payload FROM outbox WHERE sent_at IS NULL ORDER BY seq")
        ).all()
    return [(str(topic), str(body).encode()) for topic, body in rows]


def bare(url: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for a bare paho client to have every message acknowledged."""
    address = parse_url(url)
    done = threading.Event()
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(INFLIGHT)
    client.on_publish = on_publish
    started = time.perf_counter()
    client.connect(address.host, address.port, 30)
    client.loop_start()
    for topic, body in messages:
        info = client.publish(topic, body, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(mqtt.error_string(info.rc))
    if not done.wait(600):
        raise RuntimeError(f"only {acked} of {len(messages)} acknowledged")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def drain(ledger: Ledger) -> float:
    """Seconds for the link to have the whole outbox marked sent."""
    link = Link(ledger, backoff_s=(0.05, 0.3))
    started = time.perf_counter()
    link.start()
    try:
        while True:
            with ledger.store.read() as conn:
                left = conn.execute(
                    text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                ).scalar_one()
            if left == 0:
                return time.perf_counter() - started
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"{left} events still unsent after 600 s")
            time.sleep(0.02)
    finally:
        link.stop()


def measure(broker: Broker, workdir: Path, count: int) -> dict[str, Any]:
    config = make_config(
        workdir / f"dev-{count}", broker={"url": broker.url, "inflight": INFLIGHT}
    )
    ledger = Ledger(config, check=False)
    try:
        messages = fill(ledger, count)
        bare_s = bare(broker.url, messages)
        drain_s = drain(ledger)
    finally:
        ledger.close()
    return {
        "events": len(messages),
        "payload_bytes": sum(len(body) for _, body in messages) // len(messages),
        "bare_s": round(bare_s, 3),
        "bare_per_s": round(len(messages) / bare_s),
        "drain_s": round(drain_s, 3),
        "drain_per_s": round(len(messages) / drain_s),
        "ratio": round(bare_s / drain_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 100,000 events")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    sizes = [1_000, 10_000] + ([100_000] if args.large else [])
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "broker")
        broker.start()
        try:
            runs = [measure(broker, workdir, n) for n in sizes]
        finally:
            broker.stop()

    ten_k = next(r for r in runs if r["events"] == 10_000)
    print(
        json.dumps(
            {
                "inflight": INFLIGHT,
                "runs": runs,
                "goal_ratio": GOAL_RATIO,
                "ratio_met": all(r["ratio"] >= GOAL_RATIO for r in runs),
                "goal_10k_s": GOAL_10K_S,
                "10k_met": ten_k["drain_s"] < GOAL_10K_S,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
