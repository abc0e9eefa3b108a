"""Crash safety: payments killed with SIGKILL at random moments lose nothing."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from kiosk.ledger import Ledger
from tests import crash_child
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

        events = dict(
            conn.execute(
                text("SELECT seq, count(*) FROM outbox WHERE lane='money' GROUP BY seq")
            ).all()
        )
        jobs = dict(
            conn.execute(
                text(
                    "SELECT ref, count(*) FROM printjob WHERE kind='receipt' GROUP BY ref"
                )
            ).all()
        )
        for seq, number in conn.execute(
            text("SELECT seq, receipt_no FROM payment")
        ).all():
            name = ledger.receipt_name(number)
            assert (events.get(seq), jobs.get(name)) == (1, 1), f"receipt {name}"
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
    counts = []
    for _ in range(KILLS):
        # A forked child starts in milliseconds with everything imported, so
        # the kills land on payments, not on interpreter start-up.
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: pay until killed
            os.close(ready_r)
            try:
                crash_child.pay_forever(str(tmp_path), ready_w)
            finally:
                os._exit(1)
        os.close(ready_w)
        assert os.read(ready_r, 6) == b"ready\n"
        os.close(ready_r)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

        ledger = Ledger(config)
        counts.append(check_invariants(ledger))
        ledger.close()

    # The loop really was interrupted mid-stream, many times, with work between.
    assert counts[-1] > KILLS
    assert len(set(counts)) > KILLS // 2
