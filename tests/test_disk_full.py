"""A full data disk: payments are refused whole, and collecting resumes after.

The data folder sits on a 2 MiB tmpfs that the test mounts (it needs root) and
fills while a collector takes payments. The payment that finds the disk full is
refused with one line (``DiskFull``, exit 3 on the command line); nothing is
half-written: the journal verifies, receipt numbers have no gap, cash held
equals the ledger, and every payment has its outbox event and print job. Once
space is freed the next payment goes through with the next receipt number.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.directory import Actor
from kiosk.errors import DiskFull
from kiosk.ledger import Ledger
from tests.cli_helpers import kiosk_json
from tests.conftest import missing
from tests.factories import PIN, make_config, make_document

MESSAGE = (
    "the data disk is full: nothing was recorded; free space on the data "
    "partition and try again"
)
AMOUNT = 1_000
# Room left free before collecting: a few payments (each adds about 80 KiB of
# write-ahead log), not many.
HEADROOM = 512 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of our own, unmounted however the test ends."""
    if os.geteuid() != 0:
        missing("mounting a small tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk with one file, then give back ``leave`` bytes of it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        block = b"\0" * 65536
        while True:
            try:
                out.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    # Blocks of one page at the end, then single pages, take the last bytes.
    with open(filler, "ab", buffering=0) as out:
        while True:
            try:
                out.write(b"\0" * 4096)
            except OSError:
                break
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def books(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What the store holds, read without the product's code."""
    db = sqlite3.connect(f"file:{data_dir / 'kiosk.db'}?mode=ro", uri=True)
    try:
        return {
            "payments": db.execute(
                "SELECT receipt_no, seq, amount FROM payment ORDER BY receipt_no"
            ).fetchall(),
            "money_events": db.execute(
                "SELECT seq, topic FROM outbox WHERE lane='money' ORDER BY seq"
            ).fetchall(),
            "journal": db.execute(
                "SELECT seq, type FROM journal ORDER BY seq"
            ).fetchall(),
            "receipt_jobs": db.execute(
                "SELECT ref FROM printjob WHERE kind='receipt' ORDER BY id"
            ).fetchall(),
            "cash": db.execute(
                "SELECT name, value FROM counter WHERE name LIKE 'cash:%'"
            ).fetchall(),
            "movements": db.execute(
                "SELECT coalesce(sum(amount), 0) FROM cashmovement"
            ).fetchall(),
            "installments_paid": db.execute(
                "SELECT coalesce(sum(paid), 0) FROM installment"
            ).fetchall(),
        }
    finally:
        db.close()


def assert_whole(ledger: Ledger, data_dir: Path, receipts: list[str]) -> None:
    """Every payment taken is whole and in order; nothing else is there."""
    verified = ledger.verify()
    assert verified["ok"], verified["problems"]

    held = books(data_dir)
    numbers = [row[0] for row in held["payments"]]
    assert numbers == list(range(1, len(receipts) + 1))
    assert [ledger.receipt_name(n) for n in numbers] == receipts

    # Each payment's journal entry has its money event and its receipt job.
    payment_seqs = {row[1] for row in held["payments"]}
    journal = dict(held["journal"])
    events = dict(held["money_events"])
    assert all(journal[seq] == "payment" for seq in payment_seqs)
    assert set(events) == set(journal)
    assert all(events[seq].endswith("/evt/payment") for seq in payment_seqs)
    assert [row[0] for row in held["receipt_jobs"]] == receipts

    # The cash box holds exactly what was paid, and the contract knows it.
    total = sum(row[2] for row in held["payments"])
    assert held["cash"] == [("cash:c1", total)]
    assert held["movements"] == [(total,)]
    assert held["installments_paid"] == [(total,)]


@pytest.fixture
def collecting(small_disk: Path) -> Iterator[tuple[Ledger, Actor, Path]]:
    data_dir = small_disk / "data"
    ledger = Ledger(
        make_config(data_dir, cash={"max_in_hand": 10**12, "max_payment": 10**9})
    )
    ledger.import_document(make_document(1, installments=120, amount=10**6))
    yield ledger, ledger.authenticate("c1", PIN), data_dir
    ledger.close()


def test_full_disk_refuses_payment_whole_and_resumes(
    collecting: tuple[Ledger, Actor, Path], small_disk: Path
) -> None:
    """Collecting onto a filling disk: the first payment that does not fit is
    refused with one line, none is half-written, and freeing space resumes."""
    ledger, actor, data_dir = collecting
    filler = fill(small_disk, leave=HEADROOM)

    receipts: list[str] = []
    refused: DiskFull | None = None
    for _ in range(2000):
        try:
            receipts.append(ledger.collect(actor, "K-0001", AMOUNT)["receipt"])
        except DiskFull as exc:
            refused = exc
            break
    assert refused is not None, "the disk never filled"
    assert receipts, "the headroom should have held a few payments"
    assert str(refused) == MESSAGE and refused.exit_code == 3
    assert_whole(ledger, data_dir, receipts)

    # Trying again on the full disk changes nothing either.
    before = books(data_dir)
    for _ in range(3):
        with pytest.raises(DiskFull):
            ledger.collect(actor, "K-0001", AMOUNT)
    assert books(data_dir) == before

    filler.unlink()
    receipts.append(ledger.collect(actor, "K-0001", AMOUNT)["receipt"])
    assert_whole(ledger, data_dir, receipts)


def test_full_disk_on_the_command_line(
    collecting: tuple[Ledger, Actor, Path], small_disk: Path, tmp_path: Path
) -> None:
    """`kiosk collect` on a full disk exits 3 with the one line, not a claim
    that the database is damaged; after freeing space it collects again."""
    ledger, actor, data_dir = collecting
    first = ledger.collect(actor, "K-0001", AMOUNT)["receipt"]
    ledger.close()
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f"[device]\ndata_dir = '{data_dir}'\n"
        "[cash]\nmax_in_hand = 1000000000000\nmax_payment = 1000000000\n"
    )
    filler = fill(small_disk)
    args = ("collect", "--contract", "K-0001", "--amount", "1.000", "--collector", "c1")
    env = {"KIOSK_PIN": PIN}

    code, out = kiosk_json(*args, config=config, env=env)
    assert (code, out) == (3, {"error": {"code": "disk_full", "message": MESSAGE}})

    filler.unlink()
    code, out = kiosk_json(*args, config=config, env=env)
    assert code == 0, out
    reopened = Ledger(
        make_config(data_dir, cash={"max_in_hand": 10**12, "max_payment": 10**9})
    )
    try:
        assert_whole(reopened, data_dir, [first, out["receipt"]])
    finally:
        reopened.close()
    assert json.dumps(out["amount"]) == str(AMOUNT)
