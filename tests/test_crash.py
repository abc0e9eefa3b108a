"""Crash safety: payments killed with SIGKILL at random moments lose nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from kiosk.ledger import Ledger
from tests.conftest import ROOT
from tests.factories import make_config, make_document

KILLS = 50


def check_invariants(ledger: Ledger) -> int:
    verified = ledger.verify()
    assert verified["ok"], verified["problems"]
    with ledger.store.read() as conn:
        numbers = (
            conn.execute(text("SELECT receipt_no FROM payment ORDER BY receipt_no"))
            .scalars()
            .all()
        )
        assert numbers == list(range(1, len(numbers) + 1)), "receipt numbers have a gap"
        assert conn.execute(
            text("SELECT value FROM counter WHERE name='receipt'")
        ).scalar() in (None, len(numbers))

        held = conn.execute(
            text(
                "SELECT coalesce(sum(amount), 0) FROM cashmovement WHERE collector_id='c1'"
            )
        ).scalar()
        paid = conn.execute(
            text("SELECT coalesce(sum(amount), 0) FROM payment")
        ).scalar()
        assert held == paid == ledger.held_by("c1")

        per_payment = conn.execute(
            text(
                "SELECT p.receipt_no, "
                "(SELECT count(*) FROM outbox o WHERE o.lane='money' AND o.seq=p.seq), "
                "(SELECT count(*) FROM printjob j WHERE j.kind='receipt' AND j.ref=p.id || '' OR "
                " j.kind='receipt' AND j.ref = :dev || '-' || printf('%06d', p.receipt_no)) "
                "FROM payment p"
            ),
            {"dev": ledger.device.id},
        ).all()
        for number, events, jobs in per_payment:
            assert (events, jobs) == (1, 1), (
                f"receipt {number}: {events} events, {jobs} jobs"
            )
        journal = conn.execute(text("SELECT count(*) FROM journal")).scalar()
        outbox = conn.execute(
            text("SELECT count(*) FROM outbox WHERE lane='money'")
        ).scalar()
        assert journal == outbox
    return len(numbers)


@pytest.mark.slow
def test_sigkill_during_payments_loses_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    setup = Ledger(config)
    setup.import_document(make_document(3, installments=2, amount=10**8))
    setup.close()

    rng = random.Random(20261204)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    counts = []
    for _ in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_child", str(tmp_path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready == b"ready\n", child.stderr.read() if child.stderr else b""
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

        ledger = Ledger(config)
        counts.append(check_invariants(ledger))
        ledger.close()

    # The loop really was interrupted mid-stream, many times, with work between.
    assert counts[-1] > KILLS
    assert len(set(counts)) > KILLS // 2
