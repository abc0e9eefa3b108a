"""The fault suite's short form: every family runs and every invariant holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faults import Context, FamilyResult
from faults.__main__ import FAMILIES, main, run_family
from tests.conftest import missing, need_tool

pytestmark = pytest.mark.integration

# The parts each family needs; in CI a missing one fails instead of skipping.
TOOLS = {
    "kills": ["mosquitto"],
    "link": ["mosquitto"],
    "gps": ["socat", "gpsd", "gpsfake"],
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_faults_short_form_holds_every_invariant(name: str, tmp_path: Path) -> None:
    """One family's short form injects its faults and every check held."""
    for tool in TOOLS.get(name, []):
        need_tool(tool)
    if name == "disk" and os.geteuid() != 0:
        missing("mounting a small tmpfs needs root")

    import random

    ctx = Context(short=True, workdir=tmp_path, rng=random.Random(20261204))
    result: FamilyResult = run_family(name, ctx)
    if result.skipped:
        missing(result.skipped)

    assert sum(result.injections.values()) > 0, "nothing was injected"
    failures = {n: o.failures[:3] for n, o in result.outcomes.items() if not o.held}
    assert not failures, failures
    assert result.ok


def test_faults_command_writes_the_report(tmp_path: Path) -> None:
    """`python -m faults --short --only inputs` writes a report naming each check."""
    report = tmp_path / "RELIABILITY.md"
    code = main(["--short", "--only", "inputs", "--report", str(report), "--seed", "1"])
    text = report.read_text()
    assert code == 0
    assert "| inputs | bad-input table rows |" in text
    assert "every case in tests/test_fuzz.py refused as it should be | 1 | held" in text
    assert "Form: short" in text and "seed 1" in text
