"""Family 2: the broker killed and restarted mid-drain, the link cut by a proxy.

The device's link reaches the broker through a delaying TCP proxy that resets
every connection on command; HQ's worker subscribes to the broker directly.
Payments keep being made throughout. At the end HQ must hold every money
event exactly once, in journal order, with its chain verified.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from faults import Context, FamilyResult
from faults.invariants import arrival_note, device_checks, hq_checks
from faults.parts import contract, prepare, wait_until, write_config
from faults.proxy import Proxy
from kiosk.config import load_config
from kiosk.ledger import Ledger
from kiosk.sync.hq.ingest import Ingest
from kiosk.sync.hq.store import HqStore
from kiosk.sync.link import Link
from tests.brokers import Broker
from tests.factories import PIN

log = logging.getLogger(__name__)

TITLE = "broker killed and restarted mid-drain; link cut by a delaying proxy"


def _hq_money(hq_db: Path, device: str) -> int:
    try:
        db = sqlite3.connect(f"file:{hq_db}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute(
                "SELECT count(*) FROM hq_event WHERE device=? AND lane='money'",
                (device,),
            ).fetchone()
            return int(row[0])
        finally:
            db.close()
    except sqlite3.Error:
        return -1


def run(ctx: Context, result: FamilyResult) -> None:
    folder = ctx.folder("link")
    broker = Broker(folder / "broker")
    broker.start()
    proxy = Proxy(broker.port).start()
    hq_db = folder / "hq.db"
    try:
        # HQ reads the broker's own port; the device goes through the proxy.
        config_path = write_config(folder, broker={"url": broker.url})
        prepare(config_path)
        hq_config = load_config(config_path)
        device_path = write_config(
            folder, broker={"url": f"mqtt://127.0.0.1:{proxy.port}", "inflight": 5}
        )
        config = load_config(device_path)

        store = HqStore(hq_config.hq.db_url)
        hq = Ingest(hq_config, store, client_id="faults-hq")
        hq.start()
        hq.wait_ready(10)
        ledger = Ledger(config, check=False)
        link = Link(ledger, backoff_s=(0.05, 0.3))
        link.start()
        try:
            _inject(ctx, result, ledger, link, broker, proxy)
            total = int(ledger.status()["journal"]["seq"])
            arrived = wait_until(
                lambda: _hq_money(hq_db, config.device.id) >= total, 120, 0.2
            )
            time.sleep(1.0)  # HQ checks chains on a tick
            if not arrived:
                result.notes.append(
                    f"HQ held {_hq_money(hq_db, config.device.id)} of {total} "
                    "money events when the wait ended"
                )
        finally:
            link.stop()
            ledger.close()
            hq.stop()
            store.close()
        result.record(device_checks(config))
        result.record(hq_checks(hq_db, config))
        result.notes.append(f"{total} money events drained through the faults")
        result.notes.append(arrival_note(hq_db, config.device.id))
    finally:
        proxy.stop()
        broker.stop()


def _inject(
    ctx: Context,
    result: FamilyResult,
    ledger: Ledger,
    link: Link,
    broker: Broker,
    proxy: Proxy,
) -> None:
    """Pay in rounds; between rounds kill the broker or cut the link."""
    actor = ledger.authenticate("c1", PIN)
    n = 0
    for round_ in range(ctx.scale(10, 60)):
        for _ in range(ctx.rng.randint(30, 120)):
            n += 1
            ledger.collect(actor, contract(n), 2000 + n % 13)
        link.wake()
        time.sleep(ctx.rng.uniform(0.05, 0.4))
        if round_ % 2 == 0:
            broker.kill()
            result.inject("broker killed (SIGKILL) mid-drain and restarted")
            time.sleep(ctx.rng.uniform(0.1, 0.5))
            broker.start()
        else:
            proxy.cut()
            result.inject("link cut by the proxy (connections reset)")
