"""HQ ingest rate: a worker that stores and chain-checks, against a bare subscriber.

A real Mosquitto on loopback carries chained money events (payments with the
fields a device sends) published QoS 1 as fast as the broker takes them. The
bare baseline is a plain paho QoS 1 subscriber that only counts; an HQ worker
counts when every event is stored and verified in its database. Sizes 1,000
and 10,000 (``--large`` adds 100,000) on SQLite; then 10,000 events from ten
devices into PostgreSQL with one ``kiosk hq serve`` process and with two
sharing a subscription.

Run ``python -m bench.bench_hq``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from kiosk.config import Config, parse_config
from kiosk.journal import GENESIS, entry_hash
from kiosk.sync.hq.commands import add_device
from kiosk.sync.hq.ingest import Ingest
from kiosk.sync.hq.store import HqStore, events

log = logging.getLogger(__name__)

TIMEOUT_S = 600.0


def chained_events(device: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` money events of one device, chained as its journal makes them."""
    out = []
    prev = GENESIS
    for seq in range(1, count + 1):
        when = f"2026-12-04T08:{seq // 60000 % 60:02d}:{seq // 1000 % 60:02d}.{seq % 1000:03d}Z"
        data = {
            "payment": str(uuid.uuid4()),
            "receipt": f"{device}-{seq:06d}",
            "contract": f"K-{seq % 97:04d}",
            "customer": f"CU-{seq % 97:04d}",
            "amount": 150000,
            "credit": 0,
            "currency": "IDR",
            "allocations": [{"no": 1, "due": "2026-12-01", "amount": 150000}],
            "day": 1,
            "held_after": 150000 * seq,
            "policy_version": 1,
            "override": None,
            "location": {"result": "inside", "distance_m": 42, "accuracy_m": 8.5},
            "location_reason": None,
            "code": f"K1|{device}|{device}-{seq:06d}|150000|IDR|{when}|0123456789abcdef",
        }
        digest = entry_hash(seq, prev, "payment", when, "c1", data)
        message = {
            "v": 1,
            "id": str(uuid.uuid4()),
            "device": device,
            "boot": "bench",
            "lane": "money",
            "seq": seq,
            "type": "payment",
            "time": when,
            "collector": "c1",
            "data": data,
            "prev": prev,
            "hash": digest,
        }
        prev = digest
        topic = f"kiosk/v1/{device}/evt/payment"
        out.append((topic, json.dumps(message, separators=(",", ":")).encode()))
    return out


def feed(devices: int, per_device: int) -> list[tuple[str, bytes]]:
    streams = [chained_events(f"BENCH-{d:02d}", per_device) for d in range(devices)]
    # Interleave devices as a busy broker would.
    return [m for batch in zip(*streams, strict=True) for m in batch]


def client(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    ready = threading.Event()
    c.on_connect = lambda *_a: ready.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not ready.wait(10):
        raise RuntimeError("cannot connect to the bench broker")
    return c


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    c = client(port, f"bench-pub-{uuid.uuid4().hex[:6]}")
    infos = [c.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(TIMEOUT_S)
    c.disconnect()
    c.loop_stop()


def bare_rate(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Messages a second a plain QoS 1 subscriber receives."""
    done = threading.Event()
    seen = 0

    def on_message(*_a: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == len(messages):
            done.set()

    sub = client(port, f"bench-bare-{uuid.uuid4().hex[:6]}")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = on_message
    sub.subscribe("kiosk/v1/+/evt/#", qos=1)
    subscribed.wait(10)

    start = time.perf_counter()
    publish_all(port, messages)
    done.wait(TIMEOUT_S)
    elapsed = time.perf_counter() - start
    sub.disconnect()
    sub.loop_stop()
    return len(messages) / elapsed


def hq_config(workdir: Path, port: int, db_url: str, group: str = "") -> Config:
    return parse_config(
        {
            "device": {"data_dir": str(workdir / "data")},
            "broker": {"url": f"mqtt://127.0.0.1:{port}"},
            "hq": {
                "db_url": db_url,
                "keys_dir": str(workdir / "keys"),
                "share_group": group,
                "client_id": f"bench-hq-{uuid.uuid4().hex[:6]}",
            },
        }
    )


def verified_count(store: HqStore) -> int:
    with store.begin() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.status == "verified")
            ).scalar_one()
        )


def hq_rate(
    config: Config, port: int, messages: list[tuple[str, bytes]], workers: int
) -> dict[str, Any]:
    """Messages a second stored and verified by ``workers`` HQ workers."""
    store = HqStore(config.hq.db_url)
    running = []
    for n in range(workers):
        ingest = Ingest(
            config, HqStore(config.hq.db_url), client_id=f"{config.hq.client_id}-{n}"
        )
        ingest.start()
        ingest.wait_ready(10)
        running.append(ingest)

    start = time.perf_counter()
    publish_all(port, messages)
    deadline = time.monotonic() + TIMEOUT_S
    while verified_count(store) < len(messages) and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    complete = verified_count(store) == len(messages)

    for ingest in running:
        ingest.stop()
        ingest.store.close()
    store.close()
    return {
        "rate": round(len(messages) / elapsed),
        "seconds": round(elapsed, 2),
        "complete": complete,
        "per_worker": [i.stats["received"] for i in running],
    }


def postgres_admin() -> tuple[str, Any]:
    """An admin URL and a cluster to stop afterwards (None when one answered)."""
    import os

    from tests.pg import LOCAL_URL, Cluster, _try

    env = os.environ.get("KIOSK_TEST_PG_URL")
    if env and _try(env):
        return env, None
    if _try(LOCAL_URL):
        return LOCAL_URL, None
    cluster = Cluster()
    return cluster.start(), cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="add 100,000 events")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from tests.brokers import Broker

    workdir = Path(tempfile.mkdtemp(prefix="bench-hq-"))
    broker = Broker(workdir / "broker")
    broker.start()
    result: dict[str, Any] = {"sqlite": [], "postgresql": None}
    try:
        for d in range(10):
            add_device(workdir / "keys", f"BENCH-{d:02d}")
        sizes = [1000, 10_000] + ([100_000] if args.large else [])
        sizes = [] if args.no_sqlite else sizes
        for size in sizes:
            messages = feed(1, size)
            bare = bare_rate(broker.port, messages)
            db = workdir / f"hq-{size}.db"
            config = hq_config(workdir, broker.port, f"sqlite:///{db}")
            hq = hq_rate(config, broker.port, messages, 1)
            result["sqlite"].append(
                {
                    "events": size,
                    "bare_rate": round(bare),
                    "hq_rate": hq["rate"],
                    "ratio": round(hq["rate"] / bare, 3),
                    "hq_seconds": hq["seconds"],
                    "complete": hq["complete"],
                }
            )

        if not args.no_postgres:
            result["postgresql"] = bench_postgres(workdir, broker.port)
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


def serve_workers(
    config: Config, workdir: Path, workers: int
) -> list[subprocess.Popen[bytes]]:
    """``kiosk hq serve`` processes, each with its own client id, subscribed."""
    path = workdir / f"hq-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(
        f"[device]\ndata_dir = '{workdir / 'data'}'\n"
        f"[broker]\nurl = '{config.broker.url}'\n"
        f"[hq]\ndb_url = '{config.hq.db_url}'\nkeys_dir = '{config.hq.keys_dir}'\n"
        f"share_group = '{config.hq.share_group}'\n"
        f"client_id = '{config.hq.client_id}'\n"
    )
    procs = []
    for n in range(workers):
        log_path = workdir / f"{path.stem}-{n}.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kiosk",
                    "hq",
                    "serve",
                    "-v",
                    "--config",
                    str(path),
                ],
                env={**os.environ, "KIOSK_HQ_WORKER": str(n)},
                stdout=subprocess.DEVNULL,
                stderr=log_path.open("wb"),
            )
        )
        deadline = time.monotonic() + 30
        while b"subscribed" not in log_path.read_bytes():
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HQ worker did not start: {log_path.read_text()}")
            time.sleep(0.05)
    return procs


def process_rate(
    config: Config,
    workdir: Path,
    port: int,
    messages: list[tuple[str, bytes]],
    workers: int,
) -> dict[str, Any]:
    """Messages a second stored and verified by ``workers`` worker processes."""
    store = HqStore(config.hq.db_url)
    procs = serve_workers(config, workdir, workers)
    try:
        start = time.perf_counter()
        publish_all(port, messages)
        deadline = time.monotonic() + TIMEOUT_S
        while verified_count(store) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        complete = verified_count(store) == len(messages)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        store.close()
    return {
        "rate": round(len(messages) / elapsed),
        "seconds": round(elapsed, 2),
        "complete": complete,
    }


def bench_postgres(workdir: Path, port: int) -> dict[str, Any]:
    from tests.pg import PgServer

    admin, cluster = postgres_admin()
    server = PgServer(admin)
    try:
        messages = feed(10, 1000)
        runs = {}
        for workers in (1, 2):
            url = server.new_database()
            # A fresh group each run: a stopped worker's persistent session
            # keeps its place in its group and would take a share of the feed.
            group = f"bench-{uuid.uuid4().hex[:6]}"
            config = hq_config(workdir, port, url, group=group)
            runs[workers] = process_rate(config, workdir, port, messages, workers)
            server.drop(url)
        return {
            "events": len(messages),
            "devices": 10,
            "one_worker": runs[1],
            "two_workers": runs[2],
            "speedup": round(runs[2]["rate"] / runs[1]["rate"], 2),
        }
    finally:
        server.drop_all()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
