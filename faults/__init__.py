"""The fault suite: inject real faults into the product and check what survives.

``python -m faults`` runs each fault family against real parts (forked payers
killed with SIGKILL, a real Mosquitto, a TCP printer emulator, socat
pseudo-terminals, gpsd fed by gpsfake, a small tmpfs), counts every injection,
and after each family checks the same invariants on the device and, where HQ
takes part, at HQ. The run is written up in ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# The invariants every family is judged by, in the order the report lists them.
LOST = "no payment lost"
DUPLICATED = "none duplicated at HQ"
GAPS = "receipt numbers without gaps"
JOURNAL = "the journal verifies on the device"
JOURNAL_HQ = "the journal verifies at HQ"
CASH = "cash in hand equals the ledger"
LINKED = "every payment has its outbox event and its print job"
INVARIANTS = (LOST, DUPLICATED, GAPS, JOURNAL, JOURNAL_HQ, CASH, LINKED)


@dataclass
class Check:
    """One look at one invariant (or a family's own promise).

    Attributes:
        name: What was checked, one of ``INVARIANTS`` or a family's own sentence.
        held: Whether it held.
        detail: What was found when it did not, or what was counted when it did.
    """

    name: str
    held: bool
    detail: str = ""


@dataclass
class Outcome:
    """Every look at one check during a family: how often, and the failures."""

    name: str
    looks: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.looks > 0 and not self.failures


@dataclass
class FamilyResult:
    """What one fault family did and found.

    Attributes:
        name: The family's short name (``--only NAME``).
        title: A sentence saying what the family does.
        injections: How many times each kind of fault was injected.
        outcomes: Each check, by name, with every failure seen.
        skipped: Why the family did not run, when it did not.
        duration_s: Wall-clock seconds the family took.
        notes: Facts worth reporting that are not checks (counts, waits).
    """

    name: str
    title: str
    injections: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    skipped: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def inject(self, kind: str, times: int = 1) -> None:
        """Count ``times`` injections of one kind of fault."""
        self.injections[kind] = self.injections.get(kind, 0) + times

    def record(self, checks: list[Check]) -> None:
        """Add one round of checks; a failure keeps its detail for the report."""
        for check in checks:
            outcome = self.outcomes.setdefault(check.name, Outcome(check.name))
            outcome.looks += 1
            if not check.held:
                outcome.failures.append(check.detail)
                log.error("%s: %s violated: %s", self.name, check.name, check.detail)

    def fail(self, name: str, detail: str) -> None:
        """Record a promise that could not even be checked as broken."""
        self.record([Check(name, False, detail)])

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(o.held for o in self.outcomes.values())


@dataclass
class Context:
    """What every family is given.

    Attributes:
        short: Run the short form (CI) rather than the full one.
        workdir: A private folder for data, brokers and captures.
        rng: The run's random numbers (seeded, so a run can be repeated).
    """

    short: bool
    workdir: Path
    rng: random.Random

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scale(self, short: int, full: int) -> int:
        """How many of something this form does."""
        return short if self.short else full
