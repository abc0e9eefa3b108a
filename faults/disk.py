"""Family 5: the data disk full (a small tmpfs; needs root).

Payments go onto a small tmpfs (4 MiB short, 16 MiB full) that is filled until one is refused; the books
are checked, space is freed and collecting resumes, again and again.
"""

from __future__ import annotations

import logging
import os
import subprocess

from faults import Check, Context, FamilyResult
from faults.invariants import device_checks
from faults.parts import contract, prepare, write_config
from kiosk.errors import DiskFull
from kiosk.ledger import Ledger
from tests.conftest import missing
from tests.factories import PIN
from tests.test_disk_full import fill

log = logging.getLogger(__name__)

TITLE = "a full data disk (a small tmpfs filled to the last page)"
REFUSED = "a payment on a full disk is refused whole"
RESUMES = "collecting resumes once space is freed"


def run(ctx: Context, result: FamilyResult) -> None:
    if os.geteuid() != 0:
        missing("mounting a small tmpfs needs root")
    disk = ctx.folder("disk")
    # The books grow with every round: room for them, plus the filler's share.
    size = f"size={ctx.scale(4, 16)}m,mode=0700"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        config = prepare(write_config(disk))
        ledger = Ledger(config, check=False)
        actor = ledger.authenticate("c1", PIN)
        acked: set[str] = set()
        try:
            for n in range(ctx.scale(3, 20)):
                filler = fill(disk, leave=ctx.rng.randint(64, 512) * 1024)
                refused = False
                for _ in range(5000):
                    try:
                        acked.add(ledger.collect(actor, contract(n), 1000)["receipt"])
                    except DiskFull:
                        refused = True
                        break
                result.inject("data disk filled until a payment was refused")
                result.record([Check(REFUSED, refused, "the disk never filled")])
                result.record(device_checks(config, acked))
                filler.unlink()
                try:
                    acked.add(ledger.collect(actor, contract(n), 1000)["receipt"])
                    result.record([Check(RESUMES, True)])
                except Exception as exc:
                    result.record(
                        [Check(RESUMES, False, f"{type(exc).__name__}: {exc}")]
                    )
        finally:
            ledger.close()
        result.record(device_checks(config, acked))
        result.notes.append(f"{len(acked)} payments recorded between the refusals")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
