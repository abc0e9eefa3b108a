"""The scriptable twins of every UI action, as named operations.

The command line runs them on the store directly when no service is up, and the
service runs the very same functions for requests on its local socket, so a
scripted payment gets the same rules either way. Arguments and results are plain
JSON values; amounts are integers in minor units or text typed by the locale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.directory import Actor
from kiosk.errors import BadInput, NotAllowed
from kiosk.ledger import Ledger

log = logging.getLogger(__name__)

Handler = Callable[[Ledger, dict[str, Any], dict[str, Any]], Any]
OPERATIONS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS[name] = handler
        return handler

    return register


def _actor(ledger: Ledger, auth: dict[str, Any]) -> Actor:
    collector = auth.get("collector")
    if not collector:
        raise BadInput("this needs the acting collector: --collector ID")
    return ledger.authenticate(str(collector), str(auth.get("pin") or ""))


def _supervisor(ledger: Ledger, auth: dict[str, Any]) -> Actor:
    supervisor = auth.get("supervisor")
    if not supervisor:
        raise BadInput("this needs a supervisor: --supervisor ID")
    actor = ledger.authenticate(str(supervisor), str(auth.get("supervisor_pin") or ""))
    if not actor.is_supervisor:
        raise NotAllowed(f"{supervisor} is not a supervisor")
    return actor


@operation("collector_add")
def _collector_add(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    pin = str(auth.get("new_pin") or "")
    ledger.add_collector(args["id"], args["name"], args.get("role") or "collector", pin)
    return {"collector": args["id"], "role": args.get("role") or "collector"}


@operation("import")
def _import(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    if "document" in args:
        return ledger.import_document(args["document"])
    path = Path(args["file"])
    limit = ledger.config.security.max_assignment_bytes
    try:
        if path.stat().st_size > limit:
            raise BadInput(f"{path} is larger than {limit} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    return ledger.import_document(raw)


@operation("day_open")
def _day_open(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.open_day(_actor(ledger, auth), args.get("float") or 0)


@operation("collect")
def _collect(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    actor = _actor(ledger, auth)
    override = None
    if auth.get("supervisor"):
        reason = args.get("override_reason")
        if not reason:
            raise BadInput("a supervisor override needs --override-reason")
        override = ledger.supervisor_override(
            str(auth["supervisor"]), str(auth.get("supervisor_pin") or ""), reason
        )
    elif args.get("override_reason"):
        raise BadInput("--override-reason goes with --supervisor")
    return ledger.collect(
        actor,
        args["contract"],
        args["amount"],
        reason=args.get("reason"),
        override=override,
    )


@operation("visit")
def _visit(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.visit(
        _actor(ledger, auth),
        args["contract"],
        args["outcome"],
        promise_date=args.get("promise_date"),
        promise_amount=args.get("promise_amount"),
        note=args.get("note") or "",
    )


@operation("deposit")
def _deposit(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.deposit(_actor(ledger, auth), args["amount"], args.get("ref") or "")


@operation("void")
def _void(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.void(
        args["receipt"], args.get("reason") or "", _supervisor(ledger, auth)
    )


@operation("report")
def _report(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    if args.get("all"):
        if args.get("close"):
            raise BadInput(
                "--all shows every collector's X report; close one at a time"
            )
        return {"collectors": ledger.report_all(), "currency": ledger.currency}
    return ledger.report(
        _actor(ledger, auth),
        close=bool(args.get("close")),
        counted=args.get("counted"),
        print_it=bool(args.get("print")),
    )


@operation("reprint")
def _reprint(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.reprint(args["receipt"])


@operation("status")
def _status(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.status()


@operation("verify")
def _verify(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.verify()


@operation("outbox")
def _outbox(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return ledger.outbox_summary()


@operation("today")
def _today(ledger: Ledger, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    return {"assignments": ledger.today(args.get("collector"), args.get("date"))}


def run(ledger: Ledger, op: str, args: dict[str, Any], auth: dict[str, Any]) -> Any:
    """Run one named operation; raises KioskError subclasses on refusal."""
    handler = OPERATIONS.get(op)
    if handler is None:
        raise BadInput(f"unknown operation {op!r}")
    try:
        return handler(ledger, args, auth)
    except KeyError as exc:
        raise BadInput(f"{op}: missing argument {exc.args[0]}") from None
