"""``python -m faults [--short] [--only NAME...]``: run the fault families."""

from __future__ import annotations

import argparse
import importlib
import logging
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from faults import Context, FamilyResult
from faults.report import render, write

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
# Each family in the order it runs: its name and its module.
FAMILIES = {
    "kills": "faults.kills",
    "link": "faults.link",
    "printer": "faults.printer",
    "gps": "faults.gps",
    "disk": "faults.disk",
    "inputs": "faults.inputs",
}


def run_family(name: str, ctx: Context) -> FamilyResult:
    """Run one family; a part that is missing or a crash is reported, not raised."""
    module = importlib.import_module(FAMILIES[name])
    result = FamilyResult(name, module.TITLE)
    started = time.monotonic()
    try:
        module.run(ctx, result)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if type(exc).__name__ == "Skipped":
            result.skipped = reason
        else:
            log.error("family %s crashed:\n%s", name, traceback.format_exc())
            result.fail("the family ran to its end", f"{type(exc).__name__}: {reason}")
    result.duration_s = time.monotonic() - started
    log.info(
        "family %s: %s in %.0f s, %s",
        name,
        result.injections,
        result.duration_s,
        "skipped" if result.skipped else ("ok" if result.ok else "VIOLATED"),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short form (CI)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(FAMILIES),
        metavar="NAME",
        help=f"run only these families: {', '.join(FAMILIES)}",
    )
    parser.add_argument("--seed", type=int, default=None, help="repeat a run")
    parser.add_argument(
        "--report",
        type=Path,
        default=ROOT / "docs" / "RELIABILITY.md",
        help="where to write the report (default: docs/RELIABILITY.md)",
    )
    parser.add_argument("--notice", default="", help="a line for the report's top")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    seed = (
        args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    )
    names = [n for n in FAMILIES if not args.only or n in args.only]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = Context(short=args.short, workdir=workdir, rng=random.Random(seed))
        results = [run_family(name, ctx) for name in names]
    duration = time.monotonic() - started

    text = render(
        results, short=args.short, seed=seed, duration_s=duration, notice=args.notice
    )
    write(args.report, text)
    print(text)
    return 0 if all(r.ok or r.skipped for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
