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


# The goals, where each figure sits in its benchmark's results, and, when the
# goal is missed, what this project knows of the cause.
GOALS = [
    (
        "payment",
        "ratio_p50",
        "<=",
        3.0,
        "payment p50 / plain insert p50",
        "a payment is one fsync plus about 1 ms of Python and twenty statements; on a "
        "fast disk the fsync is short and the ratio grows (an SD card's slow fsync "
        "brings it down)",
    ),
    (
        "nmea",
        "ratio_to_bare",
        "<=",
        1.5,
        "decoder cost / bare pynmea2.parse",
        "the checksum, address and plausibility checks on top of pynmea2",
    ),
    ("nmea", "cpu_share_10hz_percent", "<=", 2.0, "CPU % of a 10 Hz stream", ""),
    ("receipt", "native_qr.bytes", "<=", 2400, "bytes, native QR receipt", ""),
    (
        "receipt",
        "image_qr.bytes",
        "<=",
        2400,
        "bytes, image QR receipt (fallback)",
        "an image QR is ~3,000 bytes by itself; it is only the fallback for "
        "firmware without the QR command",
    ),
    (
        "drain",
        "runs[1].ratio",
        ">=",
        0.7,
        "drain / bare paho at 10,000",
        "each event is waited on for its PUBACK and recorded in SQLite while paho, "
        "the recorder and Mosquitto share two cores and the interpreter lock",
    ),
    ("drain", "runs[1].drain_s", "<=", 30.0, "seconds to drain 10,000", ""),
    ("hq", "sqlite[1].ratio", ">=", 0.5, "HQ ingest / bare subscriber at 10,000", ""),
    (
        "hq",
        "postgresql.speedup",
        ">=",
        0.9,
        "two PostgreSQL workers together / one",
        "the broker, PostgreSQL, the publisher and both workers share two cores",
    ),
    (
        "ui",
        "start.ratio",
        "<=",
        1.5,
        "UI start to first frame / bare Textual",
        "SQLAlchemy, sqlmodel and pydantic are imported and the store opened before "
        "the first frame; drawing sign-in before building the service would fix it",
    ),
    ("ui", "filter_ms.median", "<=", 50.0, "ms to filter 5,000 assignments", ""),
    ("ui", "memory_mb", "<=", 150.0, "MB with the full store", ""),
]


def _lookup(result: Any, path: str) -> Any:
    for part in path.replace("]", "").replace("[", ".").split("."):
        result = result[int(part)] if isinstance(result, list) else result[part]
    return result


def _goals_table(results: dict[str, Any]) -> str:
    rows = ["| goal | measured | met | when missed, the cause |", "|---|---|---|---|"]
    for name, path, op, goal, what, cause in GOALS:
        if name not in results:
            continue
        try:
            value = _lookup(results[name], path)
        except (KeyError, IndexError, TypeError):
            rows.append(f"| {what} {op} {goal} | not measured | - | |")
            continue
        met = value <= goal if op == "<=" else value >= goal
        rows.append(
            f"| {what} {op} {goal} | {value} | {'yes' if met else 'no'} | "
            f"{'' if met else cause} |"
        )
    return "\n".join(rows)


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


def _section(name: str, module: str, what: str, saved: dict[str, Any] | None) -> str:
    if saved is None:
        return f"## {name}\n\n{what}.\n\nNot run.\n"
    meta = saved.get("_run", {})
    command = f"python -m {module} {' '.join(meta.get('args', []))}".strip()
    if "error" in meta:
        body = f"Did not complete: {meta['error']}"
    else:
        figures = {k: v for k, v in saved.items() if k != "_run"}
        table = "\n".join(f"| `{k}` | {v} |" for k, v in _flatten(figures))
        body = f"| figure | value |\n|---|---|\n{table}"
    return f"## {name}\n\n{what}.\n\n`{command}` ({meta.get('took_s', 0):.0f} s)\n\n{body}\n"


def write_document(quick: bool) -> None:
    """Rewrite docs/PERFORMANCE.md from the results kept in bench/results/."""
    saved: dict[str, Any] = {}
    for name, *_ in BENCHES:
        path = RESULTS / f"{name}.json"
        if path.exists():
            saved[name] = json.loads(path.read_text())
    results = {k: v for k, v in saved.items() if "error" not in v.get("_run", {})}
    sections = [
        _section(name, module, what, saved.get(name))
        for name, module, _, _, what in BENCHES
    ]
    header = (
        "# Performance\n\n"
        "Made by `python -m bench"
        + (" --quick" if quick else "")
        + "`; every figure below comes from one run on one machine, and each goal is "
        "a ratio against a baseline measured in the same run. Absolute figures are "
        "reported beside the ratios; they depend on the machine.\n\n"
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}\n"
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
    )
    goals = f"## Goals\n\n{_goals_table(results)}\n\n"
    DOC.write_text(header + goals + "\n".join(sections))
    print(f"wrote {DOC}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", nargs="*", help="names to run (default: all)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the document from the kept results",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    for name, module, full, quick, _what in [] if args.report_only else BENCHES:
        if args.only and name not in args.only:
            continue
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        arguments = quick if args.quick else full
        result, error, took = run_one(module, arguments)
        saved = result or {}
        saved["_run"] = {"args": arguments, "took_s": round(took, 1)}
        if error:
            saved["_run"]["error"] = error
        (RESULTS / f"{name}.json").write_text(json.dumps(saved, indent=2) + "\n")

    write_document(args.quick)


if __name__ == "__main__":
    main()
