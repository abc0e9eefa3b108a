"""Family 6: the bad-input table and the fuzzers, run by pytest as subprocesses.

Each table row and each generated example is one injection of bad input; the
family holds when every case was refused as it should be.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

from faults import Check, Context, FamilyResult
from tests.conftest import ROOT

log = logging.getLogger(__name__)

TITLE = "the bad-input table and the fuzzers"
SUITES = {
    "bad-input table rows": "tests/test_bad_input.py",
    "fuzz examples": "tests/test_fuzz.py",
}


def run(ctx: Context, result: FamilyResult) -> None:
    for kind, path in SUITES.items():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--hypothesis-show-statistics",
                path,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        out = done.stdout
        counts = {
            word: int(number)
            for number, word in re.findall(
                r"(\d+) (passed|failed|error|errors|skipped)", out
            )
        }
        examples = sum(
            int(a) + int(b)
            for a, b in re.findall(
                r"(\d+) passing examples, (\d+) failing examples", out
            )
        )
        cases = counts.get("passed", 0) + counts.get("failed", 0)
        if kind == "fuzz examples":
            result.inject(kind, examples)
            result.notes.append(f"{path}: {cases} fuzz tests, {examples} examples")
        else:
            result.inject(kind, cases)
            result.notes.append(f"{path}: {cases} cases")
        bad = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
        tail = " ".join(out.strip().splitlines()[-1:])
        result.record(
            [
                Check(
                    f"every case in {path} refused as it should be",
                    done.returncode == 0 and not bad and cases > 0,
                    tail,
                )
            ]
        )
