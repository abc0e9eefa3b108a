"""Bad input of every kind: refused with one line that names what was wrong.

Each table row is one bad configuration file, assignment document, typed amount,
NMEA line or HQ command. A refusal must name the key, path or value at fault,
fit on one line, carry the right exit code or error type, and leave the store
exactly as it was: the same journal, outbox, payments, print jobs and counters.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kiosk.cli import main
from kiosk.config import load_config
from kiosk.errors import ConfigError, DocumentError
from kiosk.hardware.gps.nmea import NmeaDecoder, nmea_checksum
from kiosk.ledger import Ledger
from kiosk.sync.device_commands import CommandHandler
from kiosk.sync.protocol import build_command, command_topic, sign
from tests.cli_helpers import kiosk
from tests.factories import PIN, make_config, make_document
from tests.test_device_commands import POLICY as VALID_POLICY

log = logging.getLogger(__name__)

DEVICE = "KIOSK-01"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DATE = "2026-12-04"

# Everything a refused input could have touched. The nonce table is left out on
# purpose: a command refused while being applied has used up its nonce.
TABLES = (
    "meta",
    "counter",
    "collector",
    "customer",
    "contract",
    "installment",
    "assignment",
    "visit",
    "payment",
    "allocation",
    "businessday",
    "cashmovement",
    "policy",
    "journal",
    "outbox",
    "printjob",
    "message",
)


def store_snapshot(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables that matter, read without the product's code."""
    db = sqlite3.connect(f"file:{data_dir / 'kiosk.db'}?mode=ro", uri=True)
    try:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in TABLES
        }
    finally:
        db.close()


def run_cli(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, Any]]:
    """Run the command line in this process with --json; the code and the object."""
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


def assert_one_line(message: str) -> None:
    assert message.strip(), "an empty message says nothing"
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message, message


@dataclass(frozen=True)
class Device:
    """A device with data in its store, for inputs that must not change it."""

    config: Path
    data_dir: Path
    key_file: Path


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Device:
    root = tmp_path_factory.mktemp("device")
    data_dir = root / "data"
    key_file = root / "device.key"
    key_file.write_text(KEY.hex())
    config = root / "kiosk.toml"
    config.write_text(
        f"[device]\nid = '{DEVICE}'\ndata_dir = '{data_dir}'\n"
        f"[security]\nkey_file = '{key_file}'\n"
    )

    # One payment already on the books, so "unchanged" means something.
    ledger = Ledger(load_config(config))
    try:
        ledger.import_document(make_document(3, date=DATE))
        ledger.collect(ledger.authenticate("c1", PIN), "K-0001", 100_000)
    finally:
        ledger.close()
    return Device(config, data_dir, key_file)


@pytest.fixture
def pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_PIN", PIN)


# --- configuration files ------------------------------------------------------

# (name, TOML text, what the one line must contain). {data} is the data folder
# of the device above, so a file that got through would act on its store.
CONFIGS: list[tuple[str, str, tuple[str, ...]]] = [
    ("id_not_text", "[device]\nid = 5\n", ("device.id", "5", "string")),
    ("id_slash", "[device]\nid = 'A/B'\n", ("device.id", "'A/B'", "MQTT topic")),
    (
        "id_rtl_override",
        "[device]\nid = 'KIOSK\u202e01'\n",
        ("device.id", "\\u202e", "letters, digits"),
    ),
    ("unknown_key", "[device]\ncolour = 'red'\n", ("device.colour", "unknown key")),
    ("unknown_section", "[printr]\ncolumns = 32\n", ("printr", "unknown key")),
    ("bad_mode", "[device]\nmode = 'boat'\n", ("device.mode", "'boat'", "vehicle")),
    ("bad_locale", "[device]\nlocale = 'de'\n", ("device.locale", "'de'", "'id'")),
    (
        "bad_currency",
        "[device]\ncurrency = 'rupiah'\n",
        ("device.currency", "'rupiah'", "ISO 4217"),
    ),
    (
        "bad_exponent",
        "[device]\ncurrency_exponent = 9\n",
        ("device.currency_exponent", "9", "less than or equal to 4"),
    ),
    (
        "negative_amount",
        "[cash]\nmax_in_hand = -5\n",
        ("cash.max_in_hand", "-5", "greater than or equal to 0"),
    ),
    (
        "float_amount",
        "[cash]\nmax_payment = 1000000.5\n",
        ("cash.max_payment", "1000000.5", "integer in minor units"),
    ),
    (
        "text_amount",
        "[cash]\ndaily_cap = '1000000'\n",
        ("cash.daily_cap", "'1000000'", "integer in minor units"),
    ),
    (
        "bool_amount",
        "[cash]\nmax_payment = true\n",
        ("cash.max_payment", "True", "integer in minor units"),
    ),
    (
        "huge_amount",
        "[cash]\nmax_in_hand = 9223372036854775807\n",
        ("cash.max_in_hand", "9223372036854775807", "less than 1000000000000000"),
    ),
    (
        "huger_amount",
        "[cash]\nmax_in_hand = 99999999999999999999\n",
        ("cash.max_in_hand", "99999999999999999999", "less than"),
    ),
    (
        "warn_ratio_nan",
        "[cash]\nwarn_ratio = nan\n",
        ("cash.warn_ratio", "nan"),
    ),
    (
        "bad_timezone",
        "[device]\ntimezone = 'Mars/Olympus'\n",
        ("device.timezone", "'Mars/Olympus'", "IANA time zone"),
    ),
    (
        "timezone_path",
        "[device]\ntimezone = '../../etc/passwd'\n",
        ("device.timezone", "IANA time zone"),
    ),
    (
        "bad_url_scheme",
        "[broker]\nurl = 'http://127.0.0.1:1883'\n",
        ("broker.url", "'http://127.0.0.1:1883'", "mqtt://HOST:PORT"),
    ),
    (
        "url_without_port",
        "[broker]\nurl = 'mqtt://127.0.0.1'\n",
        ("broker.url", "mqtt://HOST:PORT"),
    ),
    (
        "bad_columns",
        "[printer]\ncolumns = 40\n",
        ("printer.columns", "40", "32, 42 or 48"),
    ),
    (
        "bad_action",
        "[location]\noutside = 'maybe'\n",
        ("location.outside", "'maybe'", "'require_reason'"),
    ),
    ("zero_radius", "[location]\nradius_m = 0\n", ("location.radius_m", "0")),
    (
        "section_not_table",
        "cash = 5\n",
        ("cash", "5", "valid dictionary"),
    ),
    ("not_toml", "this is = = not toml\n", ("not valid TOML", "line 1")),
    (
        "duplicate_key",
        "[cash]\nmax_in_hand = 1\nmax_in_hand = 2\n",
        ("not valid TOML", "line 3"),
    ),
    ("nul_byte", '[device]\nname = "a\x00b"\n', ("not valid TOML", "x00")),
    (
        "fixed_gps_not_numbers",
        "[gps]\nsource = 'fixed:abc'\n",
        ("gps.source", "'fixed:abc'", "fixed:LAT,LON"),
    ),
    (
        "fixed_gps_out_of_range",
        "[gps]\nsource = 'fixed:95,200'\n",
        ("gps.source", "out of range"),
    ),
    (
        "key_file_missing",
        "[security]\nkey_file = '{data}/../no-such.key'\n",
        ("security.key_file", "no-such.key", "No such file"),
    ),
    (
        "key_file_short",
        "[security]\nkey_file = '{short_key}'\n",
        ("security.key_file", "64 hex digits"),
    ),
    (
        "key_file_folder",
        "[security]\nkey_file = '{data}'\n",
        ("security.key_file", "Is a directory"),
    ),
]


def _config_text(device: Device, body: str, folder: Path) -> str:
    short_key = folder / "short.key"
    short_key.write_text("abcd")
    body = body.replace("{data}", str(device.data_dir)).replace(
        "{short_key}", str(short_key)
    )

    # Every file points at the device's data and key. The device table goes
    # last, so that a top-level key of a broken file stays at the top level.
    head = (
        f"[device]\nid = '{DEVICE}'\ndata_dir = '{device.data_dir}'\n"
        if not body.startswith("[device]\n")
        else ""
    )
    if body.startswith("[device]\n"):
        body = body + f"data_dir = '{device.data_dir}'\n"
    if "[security]" not in body:
        body = body + f"\n[security]\nkey_file = '{device.key_file}'\n"
    return body + "\n" + head


@pytest.mark.parametrize(
    ("body", "expected"),
    [pytest.param(body, expected, id=name) for name, body, expected in CONFIGS],
)
def test_bad_config_stops_with_one_line(
    device: Device,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pin: None,
    body: str,
    expected: tuple[str, ...],
) -> None:
    """A bad configuration stops the command with exit 3 and one line naming
    the key, the value and what was expected; the store is not touched."""
    path = tmp_path / "kiosk.toml"
    path.write_text(_config_text(device, body, tmp_path), encoding="utf-8")
    before = store_snapshot(device.data_dir)

    code, out = run_cli(
        capsys,
        "collect",
        "--contract",
        "K-0002",
        "--amount",
        "1000",
        "--collector",
        "c1",
        "--config",
        str(path),
    )

    assert code == 3, out
    assert out["error"]["code"] == "config"
    message = out["error"]["message"]
    assert_one_line(message)
    for part in expected:
        assert part in message, (part, message)
    assert store_snapshot(device.data_dir) == before


def test_config_not_utf8_is_named(
    device: Device, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not UTF-8 is refused as such, not with a traceback."""
    path = tmp_path / "kiosk.toml"
    path.write_bytes(
        f"[device]\ndata_dir = '{device.data_dir}'\nname = '".encode() + b"\xff\xfe'\n"
    )
    before = store_snapshot(device.data_dir)
    code, out = run_cli(capsys, "status", "--config", str(path))
    assert (code, out["error"]["code"]) == (3, "config")
    assert "utf-8" in out["error"]["message"] and str(path) in out["error"]["message"]
    assert_one_line(out["error"]["message"])
    assert store_snapshot(device.data_dir) == before


def test_config_error_through_the_real_command(device: Device, tmp_path: Path) -> None:
    """The installed command prints the same refusal as one line on stderr."""
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f"[device]\ndata_dir = '{device.data_dir}'\n[cash]\nmax_in_hand = 1.5\n"
    )
    done = kiosk("status", config=path)
    assert done.returncode == 3
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kiosk: config error: ")
    assert "cash.max_in_hand = 1.5: expected an integer in minor units" in lines[0]


def test_config_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file is a truncated one (a full disk, a failed copy): running on
    built-in defaults would act as another device on another data folder."""
    path = tmp_path / "kiosk.toml"
    path.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(path)


def test_config_cross_check_names_keys_without_the_whole_file(tmp_path: Path) -> None:
    """max_payment above max_in_hand names both keys and nothing else: the whole
    file in the message would also print the broker password."""
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f"[device]\ndata_dir = '{tmp_path / 'data'}'\n"
        "[cash]\nmax_in_hand = 100\nmax_payment = 1000\n"
        "[broker]\npassword = 'hunter2-secret'\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.message
    assert "cash.max_payment is larger than cash.max_in_hand" in message
    assert "hunter2-secret" not in message
    assert "{" not in message


# --- assignment documents ----------------------------------------------------


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(doc: dict[str, Any]) -> Any:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return doc

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    def change(doc: dict[str, Any]) -> Any:
        del doc[key]
        return doc

    return change


def _encoded(text: Callable[[str], bytes]) -> Callable[[dict[str, Any]], Any]:
    def change(doc: dict[str, Any]) -> Any:
        return text(json.dumps(doc, ensure_ascii=False))

    return change


# (name, how the good document is spoiled, the path or words the message leads
# with, what else it must say).
DOCUMENTS: list[tuple[str, Callable[[dict[str, Any]], Any], str, str]] = [
    ("as_of_missing", _drop("as_of"), "as_of: missing", "0 for a new device"),
    ("as_of_text", _set(("as_of",), "0"), "as_of:", "valid integer"),
    ("as_of_negative", _set(("as_of",), -1), "as_of:", "greater than or equal to 0"),
    ("as_of_float", _set(("as_of",), 0.0), "as_of:", "valid integer"),
    ("as_of_huge", _set(("as_of",), 10**30), "as_of:", "less than or equal"),
    ("mode_unknown", _set(("mode",), "merge"), "mode:", "'replace' or 'upsert'"),
    (
        "due_feb_30",
        _set(("contracts", 1, "installments", 2, "due"), "2026-02-30"),
        "contracts[1].installments[2].due:",
        "YYYY-MM-DD that exists",
    ),
    (
        "date_slashes",
        _set(("assignments", 0, "date"), "04/12/2026"),
        "assignments[0].date:",
        "YYYY-MM-DD",
    ),
    (
        "date_iso_week",
        _set(("assignments", 0, "date"), "2026-W49-5"),
        "assignments[0].date:",
        "YYYY-MM-DD",
    ),
    (
        "date_full_width_digits",
        _set(("assignments", 0, "date"), "\uff12\uff10\uff12\uff16-12-04"),
        "assignments[0].date:",
        "YYYY-MM-DD",
    ),
    (
        "amount_negative",
        _set(("contracts", 0, "installments", 0, "amount"), -500),
        "contracts[0].installments[0].amount:",
        "greater than 0",
    ),
    (
        "amount_float",
        _set(("contracts", 0, "installments", 0, "amount"), 500000.0),
        "contracts[0].installments[0].amount:",
        "valid integer",
    ),
    (
        "amount_text",
        _set(("contracts", 0, "installments", 0, "amount"), "500000"),
        "contracts[0].installments[0].amount:",
        "valid integer",
    ),
    (
        "amount_huge",
        _set(("contracts", 0, "installments", 0, "amount"), 10**20),
        "contracts[0].installments[0].amount:",
        "less than 1000000000000000",
    ),
    (
        "paid_over_amount",
        _set(("contracts", 0, "installments", 1, "paid"), 600_000),
        "contracts[0].installments:",
        "installment 2: paid is more than the amount",
    ),
    (
        "installment_numbers_repeat",
        _set(("contracts", 0, "installments", 1, "no"), 1),
        "contracts[0].installments:",
        "numbers repeat",
    ),
    (
        "dangling_customer",
        _set(("contracts", 2, "customer"), "CU-9999"),
        "contracts[2].customer:",
        "'CU-9999' is not among the document's customers",
    ),
    (
        "dangling_contract",
        _set(("assignments", 1, "contract"), "K-9999"),
        "assignments[1].contract:",
        "not among the document's contracts",
    ),
    (
        "dangling_collector",
        _set(("assignments", 1, "collector"), "c9"),
        "assignments[1].collector:",
        "not among the document's collectors",
    ),
    (
        "duplicate_assignment",
        _set(("assignments", 1, "id"), "A-0001"),
        "assignments[1].id:",
        "repeats an earlier record",
    ),
    (
        "id_rtl_override",
        _set(("customers", 0, "id"), "CU-\u202e1000"),
        "customers[0].id:",
        "'\\u202e' is not allowed in an id",
    ),
    (
        "id_zero_width_space",
        _set(("assignments", 0, "id"), "A-00\u200b01"),
        "assignments[0].id:",
        "'\\u200b' is not allowed in an id",
    ),
    (
        "id_byte_order_mark",
        _set(("collectors", 0, "id"), "\ufeffc1"),
        "collectors[0].id:",
        "not allowed in an id",
    ),
    (
        "id_full_width",
        _set(("assignments", 2, "id"), "\uff21-0003"),
        "assignments[2].id:",
        "write it as 'A-0003'",
    ),
    (
        "id_blank",
        _set(("assignments", 2, "id"), " "),
        "assignments[2].id:",
        "no spaces",
    ),
    (
        "name_line_break",
        _set(("customers", 1, "name"), "Budi\nSantoso"),
        "customers[1].name:",
        "control characters",
    ),
    (
        "address_rtl_override",
        _set(("customers", 1, "address"), "Jl. \u202eMerdeka"),
        "customers[1].address:",
        "text-direction overrides",
    ),
    (
        "lone_surrogate",
        _set(("customers", 2, "name"), "Siti \ud800"),
        "customers[2].name:",
        "lone surrogate",
    ),
    (
        "latitude_out_of_range",
        _set(("customers", 0, "lat"), 91),
        "customers[0].lat:",
        "less than or equal to 90",
    ),
    (
        "latitude_nan",
        _encoded(lambda text: text.replace('"lat": -6.9147', '"lat": NaN').encode()),
        "customers[0].lat:",
        "finite number",
    ),
    (
        "currency_of_another_device",
        _set(("contracts", 0, "currency"), "USD"),
        "contracts[0].currency:",
        "this device collects IDR",
    ),
    (
        "pin_in_clear",
        _set(("collectors", 0, "pin_hash"), "1234"),
        "collectors[0].pin_hash:",
        "PHC string",
    ),
    ("not_an_object", lambda doc: [doc], "assignment document", "JSON object"),
    (
        "not_json",
        lambda doc: b"{not json",
        "assignment document is not valid JSON",
        "line 1",
    ),
    (
        "not_utf8",
        _encoded(lambda text: text.replace("Budi", "B\xfcdi").encode("latin-1")),
        "assignment document is not UTF-8",
        "byte",
    ),
    (
        "utf16",
        _encoded(lambda text: text.encode("utf-16")),
        "assignment document is not UTF-8",
        "byte 0",
    ),
    (
        "number_of_thousands_of_digits",
        _encoded(
            lambda text: text.replace('"as_of": 0', '"as_of": ' + "9" * 5000).encode()
        ),
        "assignment document is not valid JSON",
        "thousands of digits",
    ),
    (
        "nested_too_deeply",
        lambda doc: b'{"as_of": 0, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "assignment document is not valid JSON",
        "nested too deeply",
    ),
]


@pytest.fixture(scope="module")
def ledger(device: Device) -> Iterator[Ledger]:
    opened = Ledger(load_config(device.config))
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("spoil", "lead", "detail"),
    [pytest.param(*row[1:], id=row[0]) for row in DOCUMENTS],
)
def test_bad_document_is_refused_whole(
    device: Device,
    ledger: Ledger,
    spoil: Callable[[dict[str, Any]], Any],
    lead: str,
    detail: str,
) -> None:
    """A bad record is refused with its path, and nothing of the document lands."""
    document = spoil(copy.deepcopy(make_document(3, date=DATE, mode="upsert")))
    before = store_snapshot(device.data_dir)

    with pytest.raises(DocumentError) as caught:
        ledger.import_document(document)

    message = caught.value.message
    assert_one_line(message)
    assert message.startswith(lead), message
    assert detail in message, message
    assert caught.value.exit_code == 2
    assert store_snapshot(device.data_dir) == before


def test_bad_document_file_through_the_command_line(
    device: Device, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kiosk import` of a bad file exits 2 with the record's path."""
    document = make_document(3, date=DATE)
    document["contracts"][1]["installments"][2]["due"] = "2026-02-30"
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    before = store_snapshot(device.data_dir)

    code, out = run_cli(capsys, "import", str(path), "--config", str(device.config))

    assert (code, out["error"]["code"]) == (2, "bad_document")
    assert out["error"]["message"].startswith("contracts[1].installments[2].due: ")
    assert store_snapshot(device.data_dir) == before


# --- amounts typed on the command line ---------------------------------------

# (what was typed, what the one line must say). The device is IDR (no decimals)
# in the id locale: '.' groups thousands, ',' starts decimals.
AMOUNTS: list[tuple[str, str]] = [
    ("1e5", "exponent forms are not accepted"),
    ("e", "exponent forms are not accepted"),
    ("-5", "is negative"),
    ("\u22125", "is negative"),
    ("+5", "leave out the '+' sign"),
    ("1..5", "grouped in threes"),
    ("1.50", "grouped in threes"),
    ("0x10", "'x' is not a digit or separator"),
    ("1_000", "'_' is not a digit or separator"),
    ("\u221e", "is not a digit or separator"),
    ("NaN", "'N' is not a digit or separator"),
    ("inf", "'i' is not a digit or separator"),
    ("9" * 400, "is too large"),
    ("1.000.000.000.000.000", "is too large"),
    ("   ", "amount is empty"),
    ("", "amount is empty"),
    ("0", "is zero"),
    ("1.500,5", "this currency has no decimals"),
    ("1,000", "this currency has no decimals"),
    ("1.000,", "nothing after the decimal separator"),
    (",5", "no digits before the decimal separator"),
    ("5 000", "' ' is not a digit or separator"),
    ("5\u200b", "'\\u200b' is not a digit or separator"),
    ("\u202e005", "'\\u202e' is not a digit or separator"),
    ("\u00b2", "is not a decimal digit"),
    ("\u00bd", "is not a digit or separator"),
]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [pytest.param(t, e, id=f"amount{n}") for n, (t, e) in enumerate(AMOUNTS)],
)
def test_bad_amount_is_refused(
    device: Device,
    capsys: pytest.CaptureFixture[str],
    pin: None,
    typed: str,
    expected: str,
) -> None:
    """A typed amount that is not plainly one number exits 2 with the reason."""
    before = store_snapshot(device.data_dir)

    code, out = run_cli(
        capsys,
        "collect",
        "--contract",
        "K-0002",
        f"--amount={typed}",
        "--collector",
        "c1",
        "--config",
        str(device.config),
    )

    assert (code, out["error"]["code"]) == (2, "bad_amount"), out
    assert_one_line(out["error"]["message"])
    assert expected in out["error"]["message"]
    assert store_snapshot(device.data_dir) == before


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("deposit", "--amount=1e3", "--ref", "BANK-1"), id="deposit"),
        pytest.param(("day", "open", "--float=-1"), id="float"),
        pytest.param(("report", "--close", "--counted=1,5"), id="counted"),
    ],
)
def test_bad_amount_in_other_commands(
    device: Device,
    capsys: pytest.CaptureFixture[str],
    pin: None,
    argv: tuple[str, ...],
) -> None:
    """Deposits, floats and counted cash read amounts by the same rules."""
    before = store_snapshot(device.data_dir)
    code, out = run_cli(
        capsys, *argv, "--collector", "c1", "--config", str(device.config)
    )
    assert (code, out["error"]["code"]) == (2, "bad_amount"), out
    assert store_snapshot(device.data_dir) == before


def test_amount_in_other_scripts_reads_as_its_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pin: None
) -> None:
    """Arabic-Indic and full-width digits have one meaning and are read as it:
    an input method may send them (decided: accepted, not refused)."""
    data_dir = tmp_path / "data"
    ledger = Ledger(make_config(data_dir))
    ledger.import_document(make_document(1, date=DATE))
    ledger.close()
    config = tmp_path / "kiosk.toml"
    config.write_text(f"[device]\ndata_dir = '{data_dir}'\n")

    for typed, value in (("\u0665\u0660\u0660", 500), ("\uff11\uff10", 10)):
        code, out = run_cli(
            capsys,
            "collect",
            "--contract",
            "K-0001",
            "--amount",
            typed,
            "--collector",
            "c1",
            "--config",
            str(config),
        )
        assert (code, out["amount"]) == (0, value), out


def test_bad_amount_through_the_real_command(device: Device) -> None:
    """The installed command: exit 2, one line on stderr, nothing on stdout."""
    before = store_snapshot(device.data_dir)
    done = kiosk(
        "collect",
        "--contract",
        "K-0002",
        "--amount",
        "1e5",
        "--collector",
        "c1",
        config=device.config,
        env={"KIOSK_PIN": PIN},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "kiosk: amount '1e5': exponent forms are not accepted"
    ]
    assert store_snapshot(device.data_dir) == before


# --- NMEA lines ---------------------------------------------------------------


def nmea(body: str) -> str:
    return f"${body}*{nmea_checksum(body):02X}"


RMC = "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
GGA = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
KINDS = ("other", "ignored", "malformed", "bad_checksum", "sentences")

# (line, the one counter it belongs to, whether it may give a position).
NMEA_LINES: list[tuple[str | bytes, str]] = [
    (b"", "other"),
    (b"\xff\xfe\x00\x01garbage", "other"),
    ("# a comment", "other"),
    ('{"class":"TPV","mode":3}', "other"),
    (nmea(RMC)[:-2] + "00", "bad_checksum"),
    (
        f"${RMC.replace('4807.038', '48ZZ.038')}*{nmea_checksum(RMC):02X}",
        "bad_checksum",
    ),
    ("$" + RMC + "\u00e9*00", "bad_checksum"),
    ("$" + RMC[:30], "malformed"),
    ("$" + RMC + "*ZZ", "malformed"),
    ("$GPRMC", "malformed"),
    ("$GPRMC*", "malformed"),
    (nmea("GPGSV,3,1,11,03,03,111,00"), "ignored"),
    (nmea("PGRME,15.0,M,45.0,M,25.0,M"), "ignored"),
    (nmea(RMC.replace("4807.038", "9907.038")), "sentences"),
    (nmea(RMC.replace("123519", "256199")), "sentences"),
    (nmea(RMC.replace("230394", "320394")), "sentences"),
    (nmea(RMC.replace("4807.038", "-4807.038")), "sentences"),
    (nmea(RMC.replace(",N,", ",Q,")), "sentences"),
    (nmea(RMC.replace("4807.038", "48 07.038")), "sentences"),
    (nmea(GGA.replace("0.9,545.4", "nan,inf")), "sentences"),
    (nmea(GGA.replace("0.9", "1e999")), "sentences"),
    (nmea(GGA.replace(",1,08,", ",9,08,")), "sentences"),
    (nmea("GPGGA," + "9" * 5000), "sentences"),
    (nmea("GPRMC" + "," * 200), "sentences"),
    (nmea("GPZDA,201530.00,99,99,99999,00,00"), "sentences"),
    (nmea("GPGST,172814.0,0.006,0.023,0.020,273.6,0.023,0.020,-1e400"), "sentences"),
    (nmea(RMC.replace("4807.038,N,01131.000", "0000.000,N,00000.000")), "sentences"),
]

# Lines that are not sentences of any kind but are counted as good sentences of
# a kind the decoder skips; the fix to the decoder is listed in the report.
NMEA_MISCOUNTED: list[tuple[str | bytes, str]] = [
    ("$", "malformed"),
    ("$GP", "malformed"),
    ("$\x00\x00\x00", "malformed"),
    ("$GP,00,0.0,,M,,M,,*5D", "malformed"),
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _decode_one(line: str | bytes) -> tuple[NmeaDecoder, list[str]]:
    """Feed one line and end the stream; the decoder and its debug messages."""
    records = _Records()
    logger = logging.getLogger("kiosk.hardware.gps.nmea")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        decoder = NmeaDecoder()
        decoder.feed(line)
        decoder.flush()
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return decoder, [r.getMessage() for r in records.records]


def _check_counted(line: str | bytes, kind: str) -> None:
    decoder, messages = _decode_one(line)
    counts = {name: getattr(decoder.stats, name) for name in KINDS}
    assert decoder.stats.lines == 1
    assert counts == {name: int(name == kind) for name in KINDS}, counts

    # The decoder's last-resort guard must not have been needed: an exception
    # caught there would count the line a second time.
    assert not [m for m in messages if m.startswith("unreadable NMEA line")], messages


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        pytest.param(line, kind, id=f"nmea{n}")
        for n, (line, kind) in enumerate(NMEA_LINES)
    ],
)
def test_bad_nmea_line_is_counted_as_its_kind(line: str | bytes, kind: str) -> None:
    """A bad NMEA line never raises and is counted once, as the right kind."""
    _check_counted(line, kind)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        pytest.param(line, kind, id=f"address{n}")
        for n, (line, kind) in enumerate(NMEA_MISCOUNTED)
    ],
)
def test_broken_nmea_address_is_malformed(line: str | bytes, kind: str) -> None:
    """A '$' with no sentence address after it is a broken sentence."""
    _check_counted(line, kind)


def test_bad_nmea_lines_leave_no_position() -> None:
    """None of the bad lines gives a position, except the valid-looking ones."""
    decoder = NmeaDecoder()
    fixes = [decoder.feed(line) for line, kind in NMEA_LINES if kind != "sentences"]
    fixes.append(decoder.flush())
    assert not [f for f in fixes if f is not None and f.has_position]


# --- commands from HQ --------------------------------------------------------

# The policy the command tests use, as a newer version than any installed.
POLICY: dict[str, Any] = {**VALID_POLICY, "version": 50}


def signed(name: str, body: Any, **changes: Any) -> dict[str, Any]:
    """A command signed with the device's key after the changes are made."""
    command = build_command(KEY, DEVICE, name, body)
    command.update(changes)
    command["sig"] = sign(KEY, command)
    return command


def raw(command: dict[str, Any]) -> bytes:
    return json.dumps(command).encode()


def _replayed(handler: CommandHandler) -> bytes:
    # The first copy is applied before the snapshot; only the second is judged.
    payload = raw(signed("message", {"text": "first copy"}))
    assert handler.handle(command_topic(DEVICE, "message"), payload).ok
    return payload


def _expired(handler: CommandHandler) -> bytes:
    issued = datetime.now(UTC) - timedelta(hours=2)
    return raw(
        build_command(KEY, DEVICE, "lock", {"reason": "x"}, expires_in_s=60, now=issued)
    )


def _tampered(handler: CommandHandler) -> bytes:
    command = build_command(KEY, DEVICE, "policy", POLICY)
    command["body"] = {**POLICY, "version": 51}
    return raw(command)


# (name, topic's command name, payload or a function making it, words of the
# reason in the ack).
COMMANDS: list[tuple[str, str, bytes | Callable[[CommandHandler], bytes], str]] = [
    ("not_json", "lock", b"{lock", "malformed JSON"),
    ("not_utf8", "lock", b'{"id": "\xff"}', "malformed JSON"),
    ("not_object", "lock", b"[1, 2]", "a command is a JSON object"),
    ("empty", "lock", b"", "malformed JSON"),
    (
        "nested_too_deeply",
        "lock",
        b'{"id": "x", "body": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        "nested too deeply",
    ),
    (
        "unsigned",
        "lock",
        raw(
            {
                k: v
                for k, v in build_command(KEY, DEVICE, "lock", {"reason": "x"}).items()
                if k != "sig"
            }
        ),
        "missing fields: sig",
    ),
    (
        "forged",
        "lock",
        raw(build_command(OTHER_KEY, DEVICE, "lock", {"reason": "stolen"})),
        "bad signature",
    ),
    ("tampered", "policy", _tampered, "bad signature"),
    ("replayed", "message", _replayed, "replayed: nonce"),
    ("expired", "lock", _expired, "expired at "),
    (
        "misaddressed",
        "lock",
        raw(build_command(KEY, "KIOSK-02", "lock", {"reason": "x"})),
        "for device 'KIOSK-02', not 'KIOSK-01'",
    ),
    (
        "zero_width_device",
        "lock",
        raw(signed("lock", {"reason": "x"}, device=DEVICE + "\u200b")),
        "for device 'KIOSK-01\\u200b'",
    ),
    (
        "wrong_topic",
        "unlock",
        raw(signed("lock", {"reason": "x"})),
        "arrived on the topic for 'unlock'",
    ),
    (
        "oversized",
        "message",
        raw(signed("message", {"text": "x" * 70_000})),
        "over the 65536 limit",
    ),
    (
        "unknown_field",
        "lock",
        raw(signed("lock", {"reason": "x"}, extra=1)),
        "unknown fields: extra",
    ),
    (
        "version_float",
        "lock",
        raw(signed("lock", {"reason": "x"}, v=1.0)),
        "unsupported protocol version 1.0",
    ),
    (
        "version_true",
        "lock",
        raw(signed("lock", {"reason": "x"}, v=True)),
        "unsupported protocol version True",
    ),
    (
        "id_not_text",
        "lock",
        raw(signed("lock", {"reason": "x"}, id=7)),
        "id must be a string",
    ),
    (
        "id_too_long",
        "lock",
        raw(signed("lock", {"reason": "x"}, id="x" * 65)),
        "id must be 1 to 64",
    ),
    (
        "expiry_overflows",
        "lock",
        raw(signed("lock", {"reason": "x"}, expires="9999-12-31T23:59:59-05:00")),
        "RFC 3339",
    ),
    (
        "expiry_without_offset",
        "lock",
        raw(signed("lock", {"reason": "x"}, expires="2999-01-01T00:00:00")),
        "RFC 3339",
    ),
    (
        "nonce_short",
        "lock",
        raw(signed("lock", {"reason": "x"}, nonce="abc")),
        "nonce must be 8 to 64",
    ),
    (
        "body_not_object",
        "policy",
        raw(signed("policy", [1, 2])),
        "the body of policy must be a JSON object",
    ),
    (
        "policy_version_text",
        "policy",
        raw(signed("policy", {**POLICY, "version": "60"})),
        "policy version: Input should be a valid integer",
    ),
    (
        "policy_version_huge",
        "policy",
        raw(signed("policy", {**POLICY, "version": 10**30})),
        "policy version: Input should be less than or equal to",
    ),
    (
        "policy_amount_huge",
        "policy",
        raw(
            signed(
                "policy", {**POLICY, "cash": {**POLICY["cash"], "max_in_hand": 10**20}}
            )
        ),
        "policy cash.max_in_hand: Input should be less than 1000000000000000",
    ),
    (
        "policy_amount_float",
        "policy",
        raw(
            signed("policy", {**POLICY, "cash": {**POLICY["cash"], "max_payment": 1.5}})
        ),
        "policy cash.max_payment",
    ),
    (
        "resync_seq_huge",
        "resync",
        raw(signed("resync", {"lane": "money", "seq": 10**30})),
        "resync needs",
    ),
    (
        "journal_ack_seq_huge",
        "journal_ack",
        raw(signed("journal_ack", {"seq": 10**30, "hash": "a" * 64})),
        "journal_ack needs",
    ),
    (
        "lock_reason_escape_codes",
        "lock",
        raw(signed("lock", {"reason": "\x1b[2J wiped"})),
        "lock needs a reason the collector can read",
    ),
    (
        "lock_reason_rtl_override",
        "lock",
        raw(signed("lock", {"reason": "\u202edekcol"})),
        "lock needs a reason the collector can read",
    ),
    (
        "assignments_as_of_huge",
        "assignments",
        raw(signed("assignments", {**make_document(2, date=DATE), "as_of": 10**30})),
        "as_of: Input should be less than or equal to",
    ),
    (
        "assignments_zero_width_id",
        "assignments",
        raw(
            signed(
                "assignments",
                _set(("contracts", 0, "id"), "K-00\u200b01")(
                    make_document(2, date=DATE)
                ),
            )
        ),
        "contracts[0].id:",
    ),
]


@pytest.fixture
def handler(ledger: Ledger) -> CommandHandler:
    return CommandHandler(ledger, key=KEY)


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [pytest.param(*row[1:], id=row[0]) for row in COMMANDS],
)
def test_bad_command_is_refused_with_reason(
    device: Device,
    handler: CommandHandler,
    name: str,
    payload: bytes | Callable[[CommandHandler], bytes],
    reason: str,
) -> None:
    """A bad command is acked as refused with its reason and changes nothing."""
    data = payload(handler) if callable(payload) else payload
    before = store_snapshot(device.data_dir)

    handled = handler.handle(command_topic(DEVICE, name), data)

    assert handled.ok is False
    assert reason in handled.ack["reason"], handled.ack
    assert_one_line(handled.ack["reason"])
    # A refusal caused by the command is never reported as the device's fault.
    assert "could not apply it" not in handled.ack["reason"]
    assert store_snapshot(device.data_dir) == before
