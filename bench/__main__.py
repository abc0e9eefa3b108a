"""Run every benchmark and write ``docs/PERFORMANCE.md`` from their results.

    python -m bench            # the full set (several minutes)
    python -m bench --quick    # smaller sizes, for a first look

Each benchmark runs in its own process and prints one JSON document; the raw
results are kept in ``bench/results/`` and the document is rewritten whole, so
the numbers in it always come from one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "PERFORMANCE.md"

# name, module, arguments (full), arguments (quick), what it compares
BENCHES = [
    (
        "payment",
        "bench.bench_payment",
        [],
        ["--stored", "10000"],
        "a durable payment against a plain sqlite3 insert with the same pragmas "
        "(goal: at most 3 times)",
    ),
    (
        "nmea",
        "bench.bench_nmea",
        [],
        [],
        "NMEA decoding against bare pynmea2 parsing (goal: at most 1.5 times; a 10 Hz "
        "stream under 2% of a core)",
    ),
    (
        "receipt",
        "bench.bench_receipt",
        [],
        [],
        "receipt bytes and render time, native QR against an image QR (goal: a 40-line "
        "receipt in at most 2,400 bytes)",
    ),
    (
        "drain",
        "bench.bench_drain",
        [],
        [],
        "outbox drain against a bare paho publish loop (goal: at least 0.7; 10,000 "
        "events in under 30 s)",
    ),
    (
        "hq",
        "bench.bench_hq",
        [],
        ["--no-postgres"],
        "HQ ingest per worker against a bare paho subscriber (goal: at least 0.5; two "
        "PostgreSQL workers at least 0.9 of one)",
    ),
    (
        "ui",
        "bench.bench_ui",
        [],
        ["--quick"],
        "UI start to first frame against a bare Textual app (goal: at most 1.5 times), "
        "filtering 5,000 assignments (under 50 ms), memory with a full store (under "
        "150 MB)",
    ),
]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, list) and value and isinstance(value[0], dict):
        rows = []
        for index, item in enumerate(value):
            rows += _flatten(item, f"{prefix}[{index}]")
        return rows
    return [(prefix, json.dumps(value))]


def run_one(module: str, args: list[str]) -> tuple[dict[str, Any] | None, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=3600,
    )
    took = time.monotonic() - started
    try:
        start = done.stdout.index("{")
        return json.loads(done.stdout[start:]), "", took
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return None, " / ".join(tail) or f"exit {done.returncode}", took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", nargs="*", help="names to run (default: all)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    sections = []
    for name, module, full, quick, what in BENCHES:
        if args.only and name not in args.only:
            continue
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        result, error, took = run_one(module, quick if args.quick else full)
        if result is not None:
            (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
            table = "\n".join(f"| `{k}` | {v} |" for k, v in _flatten(result))
            body = f"| figure | value |\n|---|---|\n{table}"
        else:
            body = f"Did not complete: {error}"
        sections.append(
            f"## {name}\n\n{what}.\n\n`python -m {module} {' '.join(quick if args.quick else full)}`"
            f" ({took:.0f} s)\n\n{body}\n"
        )

    header = (
        "# Performance\n\n"
        "Made by `python -m bench"
        + (" --quick" if args.quick else "")
        + "`; every figure below comes from one run on one machine, and each goal is "
        "a ratio against a baseline measured in the same run. Absolute figures are "
        "reported beside the ratios; they depend on the machine.\n\n"
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}\n"
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
    )
    DOC.write_text(header + "\n".join(sections))
    print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
