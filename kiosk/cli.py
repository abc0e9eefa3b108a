"""``kiosk``: the command line, every UI action's scriptable twin.

Exit codes: 0 done, 1 refused by a rule, 2 bad input, 3 a broken configuration,
store or device. With ``--json`` success prints one JSON object and a failure
prints ``{"error": {"code": ..., "message": ...}}``. While the service runs, the
ledger commands act through its socket so they get its fix, printer and link.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from kiosk import __version__
from kiosk.config import Config, load_config
from kiosk.control import ControlClient
from kiosk.errors import BadInput, KioskError
from kiosk.money import format_money

log = logging.getLogger(__name__)

# Ledger operations that go through the service's socket when it runs.
LEDGER_OPS = {
    "collector add": "collector_add",
    "import": "import",
    "day open": "day_open",
    "collect": "collect",
    "visit": "visit",
    "deposit": "deposit",
    "void": "void",
    "report": "report",
    "reprint": "reprint",
    "status": "status",
    "verify": "verify",
    "outbox": "outbox",
    "today": "today",
}


DEMO_HELP = """\
The whole product on a throw-away data directory, with no hardware.

It sets up, in a new folder under the system's temporary directory (removed at
the end unless --keep is given; nothing is written to /etc or /var):
  - device DEMO-01, IDR, Indonesian number format, English screens;
  - 40 fictional customers around Bandung, assigned for today to collectors
    c1 (PIN 1234) and c2 (PIN 2345), with supervisor s1 (PIN 9999);
  - a replay of a GPS drive past those customers, five times faster;
  - a receipt printer writing each receipt to receipts/ as .bin and .txt;
  - when Mosquitto is installed, its own broker on a free loopback port and an
    HQ service beside it; otherwise the device works offline.
It makes a few scripted payments and a visit, then shows the collector UI
(or, with --headless or without a terminal, prints a summary and exits)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as exit 2 with one line, JSON when asked."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        where = self.prog.removeprefix("kiosk").strip()
        raise BadInput(f"{where}: {message}" if where else message)


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Global options are accepted before or after the command: the top level
    # sets defaults, subcommands only override when given.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default=default, help="configuration file")
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print one JSON object",
    )
    parser.add_argument(
        "--collector", default=default, help="the acting collector (PIN: KIOSK_PIN)"
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log to standard error",
    )


def build_parser() -> Parser:
    parser = Parser(
        prog="kiosk", description="Field kiosk for loan and leasing collectors."
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    _globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        kw.setdefault("description", help_text)
        p = sub.add_parser(name, help=help_text, **kw)
        _globals(p, top=False)
        return p

    command("run", "the service with the collector UI on this terminal")
    command("agent", "the service without a screen (systemd's kiosk-agent)")
    demo = command(
        "demo",
        "a self-contained demo on a temporary data directory",
        description=DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--headless", action="store_true", help="run the script only")
    demo.add_argument("--keep", action="store_true", help="keep the data directory")

    col = command("collector", "manage collectors")
    col_sub = col.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    add = col_sub.add_parser(
        "add", help="add or reset a collector (PIN: KIOSK_NEW_PIN)"
    )
    _globals(add, top=False)
    add.add_argument("id")
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=["collector", "supervisor"], default="collector")

    imp = command("import", "apply an assignment document (JSON)")
    imp.add_argument("file")

    day = command("day", "the acting collector's business day")
    day_sub = day.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    day_open = day_sub.add_parser("open", help="open the day with an optional float")
    _globals(day_open, top=False)
    day_open.add_argument("--float", dest="float_amount", default="0")

    collect = command("collect", "take a payment and print its receipt")
    collect.add_argument("--contract", required=True)
    collect.add_argument("--amount", required=True)
    collect.add_argument("--reason", help="answers the location policy")
    collect.add_argument(
        "--supervisor", help="overrides a limit (PIN: KIOSK_SUPERVISOR_PIN)"
    )
    collect.add_argument("--override-reason")

    visit = command("visit", "record a visit without payment")
    visit.add_argument("--contract", required=True)
    visit.add_argument(
        "--outcome",
        required=True,
        choices=["promise", "not_home", "refused", "not_found"],
    )
    visit.add_argument("--promise-date")
    visit.add_argument("--promise-amount")
    visit.add_argument("--note", default="")

    deposit = command("deposit", "hand in cash")
    deposit.add_argument("--amount", required=True)
    deposit.add_argument("--ref", required=True)

    void = command("void", "void a receipt (supervisor)")
    void.add_argument("receipt")
    void.add_argument("--reason", required=True)
    void.add_argument("--supervisor", required=True)

    report = command("report", "X report, or Z with --close")
    report.add_argument("--close", action="store_true")
    report.add_argument("--counted")
    report.add_argument("--print", dest="print_it", action="store_true")
    report.add_argument(
        "--all", action="store_true", help="every collector of the device"
    )

    reprint = command("reprint", "print a copy of a receipt")
    reprint.add_argument("receipt")
    command("status", "the device's state")
    command("verify", "check the journal chain")
    command("outbox", "events waiting for HQ")
    today = command("today", "the day's assignments")
    today.add_argument("--date")

    gps = command("gps", "print fixes from the GPS")
    gps.add_argument("--source", help="a GPS connection string (default: the config's)")
    gps.add_argument("--count", type=int, help="stop after this many fixes")
    command("doctor", "check configuration, store, time, GPS, printer, broker")

    hq = command("hq", "the HQ side")
    hq_sub = hq.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    for name, text in (
        ("serve", "ingest every device's feed"),
        ("add-device", "make a device key"),
        ("send", "send a signed command to a device"),
        ("devices", "who is online and holds how much"),
        ("events", "events received"),
        ("verify-receipt", "check a receipt's QR code"),
    ):
        p = hq_sub.add_parser(name, help=text, description=text)
        _globals(p, top=False)
        if name == "serve":
            p.add_argument(
                "--worker",
                help="this worker's name in a shared group (appended to hq.client_id)",
            )
        elif name == "add-device":
            p.add_argument("device")
        elif name == "send":
            p.add_argument("device")
            p.add_argument("name")
            p.add_argument("--body", required=True, help="a file, or - for stdin")
            p.add_argument("--expires-in", type=int, default=24 * 3600)
            p.add_argument("--timeout", type=float, default=30.0)
        elif name == "events":
            p.add_argument("--device")
            p.add_argument("--since")
            p.add_argument("--type")
            p.add_argument("--limit", type=int, default=100)
        elif name == "verify-receipt":
            p.add_argument("text")
    return parser


def _pin(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value is not None:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise BadInput(f"no PIN: set {env} or run on a terminal to be asked")


def _request(
    args: argparse.Namespace, key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operation's arguments and the PINs it needs, read from the environment."""
    auth: dict[str, Any] = {}
    needs_actor = key in {"day open", "collect", "visit", "deposit"} or (
        key == "report" and not args.all
    )
    if needs_actor:
        if not args.collector:
            raise BadInput(f"{key} needs the acting collector: --collector ID")
        auth["collector"] = args.collector
        auth["pin"] = _pin("KIOSK_PIN", f"PIN for {args.collector}: ")
    supervisor = getattr(args, "supervisor", None)
    if supervisor:
        auth["supervisor"] = supervisor
        auth["supervisor_pin"] = _pin("KIOSK_SUPERVISOR_PIN", f"PIN for {supervisor}: ")

    request: dict[str, Any]
    if key == "collector add":
        pin = os.environ.get("KIOSK_NEW_PIN")
        if pin is None:
            if not (sys.stdin and sys.stdin.isatty()):
                raise BadInput("no PIN: set KIOSK_NEW_PIN or run on a terminal")
            pin = getpass.getpass(f"new PIN for {args.id}: ")
            if getpass.getpass("again: ") != pin:
                raise BadInput("the two PINs differ")
        auth["new_pin"] = pin
        request = {"id": args.id, "name": args.name, "role": args.role}
    elif key == "import":
        request = {"file": os.path.abspath(args.file)}
    elif key == "day open":
        request = {"float": args.float_amount}
    elif key == "collect":
        request = {
            "contract": args.contract,
            "amount": args.amount,
            "reason": args.reason,
            "override_reason": args.override_reason,
        }
    elif key == "visit":
        request = {
            "contract": args.contract,
            "outcome": args.outcome,
            "promise_date": args.promise_date,
            "promise_amount": args.promise_amount,
            "note": args.note,
        }
    elif key == "deposit":
        request = {"amount": args.amount, "ref": args.ref}
    elif key == "void":
        request = {"receipt": args.receipt, "reason": args.reason}
    elif key == "report":
        request = {
            "close": args.close,
            "counted": args.counted,
            "print": args.print_it,
            "all": args.all,
        }
    elif key == "reprint":
        request = {"receipt": args.receipt}
    elif key == "today":
        request = {"collector": args.collector, "date": args.date}
    else:
        request = {}
    return request, auth


def _run_ledger_op(
    config: Config, op: str, request: dict[str, Any], auth: dict[str, Any]
) -> Any:
    client = ControlClient.connect_if_running(config.data_dir)
    if client is not None:
        with client:
            return client.call(op, request, auth)

    # No service: act on the store directly. There is no live fix (the no-fix
    # policy applies, or a branch's fixed place) and printing and sending wait
    # for the service's next start.
    from kiosk import commands
    from kiosk.ledger import Ledger

    ledger = Ledger(config, check=op in ("verify", "status"))
    try:
        return commands.run(ledger, op, request, auth)
    finally:
        ledger.close()


def _human(key: str, result: Any, config: Config | None) -> str:
    """A short human summary of a result."""
    if config is not None:
        exp, locale = config.device.exponent, config.device.locale

        def money(value: int) -> str:
            return format_money(value, config.device.currency, exp, locale)
    else:  # pragma: no cover

        def money(value: int) -> str:
            return str(value)

    if key == "collect":
        lines = [
            f"receipt {result['receipt']}: {money(result['amount'])} on "
            f"{result['contract']}; balance {money(result['balance'])}; "
            f"cash held {money(result['held'])}"
        ]
        lines += [f"warning: {w}" for w in result.get("warnings", [])]
        return "\n".join(lines)
    if key == "deposit":
        return (
            f"deposited {money(result['amount'])} (ref {result['ref']}); "
            f"cash held {money(result['held_after'])}"
        )
    if key == "void":
        return f"receipt {result['receipt']} void: {money(result['amount'])} reversed"
    if key == "day open":
        return f"day opened with {money(result['opening'])}"
    if key == "visit":
        return f"visit recorded: {result['outcome']} on {result['contract']}"
    if key == "report" and "collectors" not in result:
        lines = [
            f"{'Z' if result['kind'] == 'z_report' else 'X'} report, {result['collector']}, "
            f"day {result['date']}",
            f"  opening     {money(result['opening'])}",
            f"  collected   {money(result['collected'])} ({result['payments']} payments)",
            f"  voided      {money(result['voided'])} ({result['voids']})",
            f"  deposited   {money(result['deposited'])} ({result['deposits']})",
            f"  expected    {money(result['expected'])}",
        ]
        if result.get("counted") is not None:
            lines.append(f"  counted     {money(result['counted'])}")
            lines.append(f"  variance    {money(result['variance'])}")
        return "\n".join(lines)
    if key == "verify":
        if result["ok"]:
            return f"journal verified: {result['entries']} entries, last {result['last_seq']}"
        return "journal check FAILED: " + "; ".join(result["problems"])
    if key == "import":
        return (
            f"imported {result['assignments']} assignments, {result['customers']} "
            f"customers, {result['contracts']} contracts ({result['mode']})"
        )
    if key == "collector add":
        return f"collector {result['collector']} saved ({result['role']})"
    if key == "reprint":
        return f"copy {result['copy']} of {result['receipt']} queued"
    return json.dumps(result, indent=2, ensure_ascii=False)


def _gps(config: Config, args: argparse.Namespace) -> int:
    """Fixes from the running service when it holds the device, else the source."""
    source = args.source or config.gps.source
    if not source:
        raise BadInput("no GPS source: give --source or set gps.source")
    client = ControlClient.connect_if_running(config.data_dir)
    if client is not None:
        with client:
            state = client.call("service_status", {}, {})
            if state.get("gps_source") == source:
                return _gps_from_service(client, args)
    from kiosk.hardware.gps.cli import run_gps

    return run_gps(source, args.json, sys.stdout, args.count)


def _gps_from_service(client: ControlClient, args: argparse.Namespace) -> int:
    import time

    shown, last = 0, None
    while args.count is None or shown < args.count:
        state = client.call("service_status", {}, {})
        fix = state.get("fix")
        if fix and fix != last and fix.get("age_s", 99) < 2:
            last = fix
            shown += 1
            if args.json:
                print(
                    json.dumps(
                        {
                            k: fix[k]
                            for k in ("lat", "lon", "time", "mode", "sats", "acc")
                        }
                    )
                )
            else:
                print(
                    f"{fix['time']}  {fix['lat']:.6f} {fix['lon']:.6f}  "
                    f"mode {fix['mode']}  {fix['sats']} sats  ±{fix['acc']} m"
                )
            sys.stdout.flush()
        time.sleep(0.5)
    return 0


def _command_key(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if action else str(args.command)


def _setup_logging(verbose: bool, command: str | None) -> None:
    # A service logs its life for the journal; a one-shot command says only its
    # one line, unless asked for more.
    if verbose or command in ("agent", "run", "hq"):
        level = logging.INFO
    elif command == "demo":
        level = logging.WARNING
    else:
        level = logging.ERROR
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def dispatch(args: argparse.Namespace) -> tuple[str, Any, Config | None]:
    key = _command_key(args)
    if args.command is None:
        raise BadInput("no command given; see kiosk --help")
    if key in ("collector", "day", "hq"):
        raise BadInput(f"kiosk {key} needs an action; see kiosk {key} --help")

    if args.command == "demo":
        from kiosk.demo import run_demo

        return key, run_demo(args), None
    if args.command == "hq":
        from kiosk.sync.hq_cli import run_hq

        return key, run_hq(args), None
    config = load_config(args.config)
    if args.command == "agent":
        from kiosk.service import run_agent

        return key, run_agent(config), config
    if args.command == "run":
        from kiosk.ui.app import run_ui

        return key, run_ui(config), config
    if args.command == "gps":
        from kiosk.hardware.gps.cli import run_gps

        code = run_gps(
            args.source or config.gps.source, args.json, sys.stdout, args.count
        )
        return key, code, config
    if args.command == "doctor":
        from kiosk.doctor import run_doctor

        return key, run_doctor(config, as_json=args.json), config

    op = LEDGER_OPS[key]
    request, auth = _request(args, key)
    return key, _run_ledger_op(config, op, request, auth), config


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.verbose, args.command)
        key, result, config = dispatch(args)
    except KioskError as exc:
        if as_json:
            print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        else:
            print(f"kiosk: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130

    if key in ("run", "agent", "gps", "doctor", "demo") or isinstance(result, int):
        return int(result or 0)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(_human(key, result, config))
    if key == "verify" and not result["ok"]:
        return 3  # a store whose journal does not verify is a broken store
    return 0


if __name__ == "__main__":
    sys.exit(main())
