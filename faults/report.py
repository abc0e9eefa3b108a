"""Writing a run up as ``docs/RELIABILITY.md``."""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
from pathlib import Path

from faults import INVARIANTS, FamilyResult

log = logging.getLogger(__name__)


def machine() -> str:
    """A line saying where the run happened."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.node() or 'unknown host'}: {platform.system()} "
        f"{platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def render(
    results: list[FamilyResult],
    *,
    short: bool,
    seed: int,
    duration_s: float,
    notice: str = "",
) -> str:
    """The document for one run."""
    form = "short" if short else "full"
    total = sum(sum(r.injections.values()) for r in results)
    verdict = (
        "every invariant held"
        if all(r.ok or r.skipped for r in results)
        else ("SOME INVARIANTS WERE VIOLATED")
    )
    lines = ["# Reliability", ""]
    if notice:
        lines += [f"> {notice}", ""]
    lines += [
        "Written by `python -m faults` from its last run; do not edit by hand.",
        "Each fault family injects real faults into the product running on real",
        "parts, then checks the same invariants on the device and, where HQ takes",
        "part, at HQ.",
        "",
        f"- Form: {form} (`python -m faults{' --short' if short else ''}`), seed {seed}",
        f"- When: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Duration: {duration_s:.0f} s",
        f"- Machine: {machine()}",
        f"- Faults injected: {total}; result: {verdict}",
        "",
        "## Faults injected",
        "",
        "| family | fault | times |",
        "|---|---|---|",
    ]
    for result in results:
        if result.skipped:
            lines.append(f"| {result.name} | skipped: {result.skipped} | 0 |")
        for kind, times in result.injections.items():
            lines.append(f"| {result.name} | {kind} | {times} |")

    lines += ["", "## What was found after", ""]
    for result in results:
        lines += [f"### {result.name}: {result.title}", ""]
        if result.skipped:
            lines += [f"Skipped: {result.skipped}.", ""]
            continue
        lines += [f"{result.duration_s:.0f} s.", ""]
        lines += ["| check | looks | result |", "|---|---|---|"]
        ordered = [n for n in INVARIANTS if n in result.outcomes] + [
            n for n in result.outcomes if n not in INVARIANTS
        ]
        for name in ordered:
            outcome = result.outcomes[name]
            if outcome.held:
                verdict_text = "held"
            else:
                first = outcome.failures[0] if outcome.failures else "never checked"
                verdict_text = (
                    f"violated {len(outcome.failures)} times; first: {first}"
                ).replace("|", "/")
            lines.append(f"| {name} | {outcome.looks} | {verdict_text} |")
        for note in result.notes:
            lines.append(f"\n- {note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    log.info("wrote %s", path)
