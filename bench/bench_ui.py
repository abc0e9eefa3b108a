"""The screen's start-up, filter latency and memory on a big store.

- start: process start to the first frame of ``kiosk run`` (the sign-in
  screen over a started service) against a bare Textual app in the same run;
  the goal is a ratio of at most 1.5.
- filter: filtering, sorting and rebuilding the round's table as the collector
  types, over 5,000 assignments; the goal is under 50 ms per keystroke. The
  time until Pilot finds the app idle again is reported beside it; it holds
  Pilot's own waiting and a second rebuild from the field's change event, so
  it is an upper bound, not the latency a person sees.
- memory: the peak resident size of the screen with 10,000 customers, 5,000
  assignments and 100,000 payments in the store, signed in and showing the
  round and one customer; the goal is under 150 MB.

The big store is made once through the ledger (import, then one ``collect``
per payment) and kept in the system's temporary folder for the next run.
Run ``python -m bench.bench_ui`` (``--quick`` for a smaller store); it prints
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"start_ratio": 1.5, "filter_ms": 50.0, "memory_mb": 150.0}
STARTS = 5
TYPED = ("s", "si", "sit", "siti", "", "k-01", "k-012", "merdeka no. 12", "")


def store_config(data: Path) -> Any:
    from tests.factories import make_config

    return make_config(
        data,
        device={"timezone": "UTC", "language": "en"},
        cash={"max_in_hand": 0, "max_payment": 0},
        location={"outside": "allow", "no_fix": "allow"},
        gps={"source": "fixed:-6.9147,107.6098"},
    )


def make_store(data: Path, customers: int, assignments: int, payments: int) -> float:
    """Fill a store through the ledger; the seconds it took (0 when cached).

    An interrupted fill goes on where it stopped: every payment is 1,000 and
    nothing is deposited, so the cash held counts the payments made.
    """
    from kiosk.ledger import Ledger
    from tests.factories import PIN, make_document

    done = data / "complete"
    if done.exists():
        return 0.0
    started = time.perf_counter()
    data.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(store_config(data))
    if len(ledger.today("c1")) != assignments:
        doc = make_document(customers, date=datetime.now(UTC).date().isoformat())
        doc["assignments"] = doc["assignments"][:assignments]
        ledger.import_document(doc)
    actor = ledger.authenticate("c1", PIN)
    for n in range(ledger.held_by("c1") // 1000, payments):
        ledger.collect(actor, f"K-{n % customers + 1:04d}", 1000)
    ledger.close()
    done.write_text("ok")
    return time.perf_counter() - started


# --- children: each measurement in a fresh process ------------------------------


def child_start(kind: str, data: str) -> None:
    """Run an app until its first frame is drawn, then exit."""
    if kind == "bare":
        from textual.app import App, ComposeResult
        from textual.widgets import Static

        class Bare(App[None]):
            def compose(self) -> ComposeResult:
                yield Static("hello")

            def on_mount(self) -> None:
                self.call_after_refresh(self.exit)

        Bare().run(headless=True)
        return

    from kiosk.service import Service
    from kiosk.ui.app import KioskApp
    from kiosk.ui.screens.signin import SignInScreen

    class Timed(KioskApp):
        def on_ready(self) -> None:
            self.set_interval(0.002, self._drawn)

        def _drawn(self) -> None:
            if isinstance(self.screen, SignInScreen) and self.screen.is_mounted:
                self.call_after_refresh(self.exit)

    Timed(Service(store_config(Path(data)))).run(headless=True)


def child_memory(data: str) -> None:
    """Sign in, show the round and a customer; print the peak RSS and the
    filter timings as JSON."""
    from kiosk.service import Service
    from kiosk.ui.app import KioskApp
    from kiosk.ui.screens.customer import CustomerScreen
    from kiosk.ui.screens.today import TodayScreen
    from tests.factories import PIN

    result: dict[str, Any] = {}

    async def main() -> None:
        app = KioskApp(Service(store_config(Path(data))), cursor_blink=False)
        async with app.run_test(size=(80, 24)) as pilot:

            async def settle() -> None:
                for _ in range(3):
                    await app.workers.wait_for_complete()
                    await pilot.pause()

            await settle()
            await pilot.press(*"c1", "enter", *PIN, "enter")
            await settle()
            screen = app.screen
            assert isinstance(screen, TodayScreen), screen
            result["assignments"] = len(screen.rows)

            # Each keystroke: filter, sort and rebuild the table (what the
            # screen does on every change), then until Pilot sees the app
            # idle again with the frame drawn, which adds Pilot's own wait.
            field = screen.query_one("#filter")
            rebuild, to_idle = [], []
            for typed in TYPED:
                field.value = typed  # type: ignore[attr-defined]
                started = time.perf_counter()
                screen.show()
                rebuild.append((time.perf_counter() - started) * 1000)
                await pilot.pause()
                to_idle.append((time.perf_counter() - started) * 1000)
            result["filter_ms"] = {
                "median": round(statistics.median(rebuild), 1),
                "max": round(max(rebuild), 1),
                "to_idle_median": round(statistics.median(to_idle), 1),
                "samples": len(rebuild),
            }

            await pilot.press("enter")
            await settle()
            assert isinstance(app.screen, CustomerScreen)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["memory_mb"] = round(peak_kb / 1024, 1)

    asyncio.run(main())
    print(json.dumps(result))


# --- the parent -------------------------------------------------------------------


def run_child(*args: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_ui", "--child", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return time.perf_counter() - started, done.stdout


def measure(quick: bool) -> dict[str, Any]:
    sizes = (
        {"customers": 1000, "assignments": 500, "payments": 2000}
        if quick
        else {"customers": 10_000, "assignments": 5_000, "payments": 100_000}
    )
    cache = Path(tempfile.gettempdir()) / (
        "kiosk-bench-ui-{customers}-{assignments}-{payments}".format(**sizes)
    )
    generated_s = make_store(cache, **sizes)

    with tempfile.TemporaryDirectory() as small:
        make_store(Path(small), 20, 20, 0)
        bare = [run_child("start", "bare", small)[0] for _ in range(STARTS)]
        kiosk = [run_child("start", "kiosk", small)[0] for _ in range(STARTS)]
    start = {
        "bare_s": round(statistics.median(bare), 3),
        "kiosk_s": round(statistics.median(kiosk), 3),
    }
    start["ratio"] = round(start["kiosk_s"] / start["bare_s"], 2)

    _, out = run_child("memory", str(cache))
    big = json.loads(out.strip().splitlines()[-1])
    return {
        "store": {**sizes, "generated_s": round(generated_s, 1), "path": str(cache)},
        "start": start,
        "filter_ms": big["filter_ms"],
        "assignments_shown": big["assignments"],
        "memory_mb": big["memory_mb"],
        "goals": GOALS,
        "met": {
            "start_ratio": start["ratio"] <= GOALS["start_ratio"],
            "filter_ms": big["filter_ms"]["max"] < GOALS["filter_ms"],
            "memory_mb": big["memory_mb"] < GOALS["memory_mb"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small store")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.child:
        if args.child[0] == "start":
            child_start(args.child[1], args.child[2])
        else:
            child_memory(args.child[1])
        return 0
    print(json.dumps(measure(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
