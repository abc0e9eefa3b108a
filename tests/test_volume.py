"""At volume, as a newcomer and HQ would see it: 500 customers imported, 1,000
payments from a script through the service's socket and 100 more as separate
command-line calls, the broker down for a third of them. The X report adds up to
the unit, the journal verifies, and HQ's totals reconcile with the device's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kiosk.config import load_config
from kiosk.control import ControlClient
from kiosk.sync.hq.ingest import Ingest
from kiosk.sync.hq.store import HqStore, events
from tests.brokers import Broker
from tests.cli_helpers import kiosk, kiosk_json, start_agent, stop
from tests.factories import PIN, make_document

ENV = {"KIOSK_PIN": PIN}


def _hq_payments(store: HqStore) -> tuple[int, int]:
    with store.begin() as conn:
        rows = conn.execute(
            select(events.c.seq).where(
                events.c.device == "VOL-1", events.c.lane == "money"
            )
        ).all()
        count = conn.execute(
            select(func.count()).where(
                events.c.device == "VOL-1", events.c.type == "payment"
            )
        ).scalar_one()
    return len(rows), int(count)


@pytest.mark.slow
def test_volume_with_an_outage_reconciles_at_hq(tmp_path: Path, broker: Broker) -> None:
    data = tmp_path / "data"
    key = tmp_path / "keys" / "VOL-1.key"
    key.parent.mkdir()
    key.write_text("ab" * 32)
    config_path = tmp_path / "kiosk.toml"
    config_path.write_text(
        f"[device]\nid = 'VOL-1'\ndata_dir = '{data}'\n"
        "[cash]\nmax_in_hand = 100000000000\nmax_payment = 100000000\n"
        f"[broker]\nurl = '{broker.url}'\n"
        f"[security]\nkey_file = '{key}'\n"
        f"[hq]\ndb_url = 'sqlite:///{tmp_path / 'hq.db'}'\nkeys_dir = '{key.parent}'\n"
    )
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(make_document(500, installments=6, amount=2_000_000)))
    done = kiosk("import", str(doc), config=config_path)
    assert done.returncode == 0 and "500 customers" in done.stdout, done.stderr

    store = HqStore(load_config(config_path).hq.db_url)
    hq = Ingest(load_config(config_path), store, client_id="test-hq")
    hq.start()
    assert hq.wait_ready(10)
    agent = start_agent(config_path, data)
    expected = 0
    try:
        with ControlClient(data / "kiosk.sock") as client:
            auth = {"collector": "c1", "pin": PIN}
            for n in range(1000):
                if n == 300:
                    broker.stop()  # a third of the day with no link
                if n == 633:
                    broker.start()
                amount = 10_000 + (n * 7919) % 90_000
                result = client.call(
                    "collect",
                    {"contract": f"K-{n % 500 + 1:04d}", "amount": amount},
                    auth,
                )
                assert result["receipt"] == f"VOL-1-{n + 1:06d}"
                expected += amount

        for n in range(100):
            amount = 1_000 + n
            code, result = kiosk_json(
                "collect",
                "--contract",
                f"K-{n + 1:04d}",
                "--amount",
                str(amount),
                "--collector",
                "c1",
                config=config_path,
                env=ENV,
            )
            assert code == 0, result
            expected += amount

        code, report = kiosk_json(
            "report", "--collector", "c1", config=config_path, env=ENV
        )
        assert code == 0 and report["payments"] == 1100
        assert report["collected"] == expected == report["expected"] == report["held"]

        # Everything reaches HQ once, in order, and HQ's cash view is the device's.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _hq_payments(store)[1] < 1100:
            time.sleep(0.5)
        money, payments = _hq_payments(store)
        assert payments == 1100
        assert money == 1101  # the day's opening and each payment, none twice
        with store.begin() as conn:
            seqs = sorted(
                conn.execute(
                    select(events.c.seq).where(
                        events.c.device == "VOL-1", events.c.lane == "money"
                    )
                ).scalars()
            )
            assert seqs == list(range(1, 1102))
            deadline = time.monotonic() + 30
            view = store.cash_view(conn, "VOL-1")
        while time.monotonic() < deadline and view.get("c1") != expected:
            time.sleep(0.5)
            with store.begin() as conn:
                view = store.cash_view(conn, "VOL-1")
        assert view == {"c1": expected}
        with store.begin() as conn:
            chain = store.chain(conn, "VOL-1")
        assert (
            chain is not None and chain["verified_seq"] == 1101 and not chain["problem"]
        )
    finally:
        stop(agent)
        hq.stop()

    code, verified = kiosk_json("verify", config=config_path)
    assert code == 0 and verified["ok"] and verified["entries"] == 1101
