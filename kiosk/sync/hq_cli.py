"""``kiosk hq ...``: the HQ side of the command line.

``serve`` returns an exit code. The other actions return one JSON object with
``--json``; without it they print a few lines for a person and return 0.
Refusals, bad input and a broken configuration or database are raised as
``kiosk.errors`` exceptions, which the command line turns into exit codes 1, 2
and 3.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from kiosk.config import Config, load_config
from kiosk.errors import BadInput
from kiosk.sync.hq.commands import KeyRing, add_device, read_body, send_command
from kiosk.sync.hq.store import HqStore

log = logging.getLogger(__name__)

# Workers sharing one configuration tell themselves apart by this suffix.
WORKER_ENV = "KIOSK_HQ_WORKER"


def worker_client_id(config: Config, worker: str | None = None) -> str:
    suffix = (worker or os.environ.get(WORKER_ENV, "")).strip()
    return f"{config.hq.client_id}-{suffix}" if suffix else config.hq.client_id


def run_hq(args: argparse.Namespace) -> int | dict[str, Any]:
    """Run one ``kiosk hq`` action."""
    config = load_config(args.config)
    action = args.action

    if action == "serve":
        return _serve(config, getattr(args, "worker", None))
    if action == "add-device":
        result = add_device(config.hq.keys_dir, args.device)
        return _done(args, result, _added_text(result))

    store = HqStore(config.hq.db_url)
    try:
        if action == "send":
            body = read_body(args.body, sys.stdin)
            if args.expires_in < 1:
                raise BadInput("--expires-in must be at least 1 second")
            result = send_command(
                config,
                store,
                args.device,
                args.name,
                body,
                expires_in_s=args.expires_in,
                timeout_s=args.timeout,
            )
            text = f"{result['device']} applied {result['command']} ({result['id']})"
            return _done(args, result, text)

        from kiosk.sync.hq import views

        keys = KeyRing(config.hq.keys_dir)
        if action == "devices":
            result = views.list_devices(store, keys)
            return _done(args, result, _devices_text(result))
        if action == "events":
            result = views.list_events(
                store,
                device=args.device,
                since=args.since,
                type_=args.type,
                limit=args.limit,
            )
            return _done(args, result, _events_text(result))
        if action == "verify-receipt":
            result = views.verify_receipt(store, keys, args.text)
            text = (
                f"genuine: receipt {result['receipt']} of {result['device']}, "
                f"{result['amount']} {result['currency']} at {result['time']} "
                f"(journal entry {result['seq']}, {result['chain']})"
            )
            return _done(args, result, text)
    finally:
        store.close()
    raise BadInput(f"unknown hq action {action!r}; see kiosk hq --help")


def _done(args: argparse.Namespace, result: dict[str, Any], text: str) -> Any:
    if getattr(args, "json", False):
        return result
    print(text)
    return 0


def _serve(config: Config, worker: str | None) -> int:
    from kiosk.sync.hq.ingest import serve

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return serve(
        config,
        client_id=worker_client_id(config, worker),
        stop=stop,
    )


def _added_text(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"key for {result['device']} written to {result['key_file']} (mode 0600)",
            "install it on the device (copy the file over SSH, then):",
            f"  {result['install']}",
            "create the device's broker login (it asks for the password):",
            f"  {result['broker_login']}",
            f"  {result['broker_reload']}",
        ]
    )


def _devices_text(result: dict[str, Any]) -> str:
    lines = []
    for d in result["devices"]:
        state = {True: "online", False: "offline", None: "?"}[d["online"]]
        cash = ", ".join(f"{c} {v}" for c, v in sorted(d["cash_held"].items()))
        lines.append(
            f"{d['device']}: {state}, seen {d['last_seen_age_s']} s ago, journal "
            f"{d['verified_seq']} verified of {d['last_seq'] or 0} received, "
            f"outbox {d['outbox_depth'] if d['outbox_depth'] is not None else '?'}"
            + (f", cash {cash}" if cash else "")
            + ("" if d["has_key"] else ", NO KEY")
        )
        for alarm in d["alarms"]:
            lines.append(f"  ALARM {alarm['kind']}: {alarm['message']}")
    return "\n".join(lines) if lines else "no devices yet"


def _events_text(result: dict[str, Any]) -> str:
    lines = []
    for e in result["events"]:
        data = e["data"]
        money = (
            f" {data['amount']} {data.get('currency', '')}"
            if isinstance(data.get("amount"), int)
            else ""
        )
        ref = f" {data['receipt']}" if isinstance(data.get("receipt"), str) else ""
        lines.append(
            f"{e['time']} {e['device']} {e['lane']}#{e['seq']} {e['type']}"
            f"{ref}{money} {e['collector'] or '-'} [{e['status']}]"
        )
    chain = result.get("chain")
    if chain:
        lines.append(
            f"journal verified to {chain['verified_seq']} ({chain['verified_hash']})"
            + (f"; BROKEN: {chain['problem']}" if chain["problem"] else "")
        )
    return "\n".join(lines) if lines else "no events"
