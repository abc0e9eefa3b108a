"""The command line, with the service running (through its socket) and without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import kiosk, kiosk_json, start_agent, stop
from tests.factories import PIN, SUPERVISOR_PIN, make_document

ENV = {"KIOSK_PIN": PIN, "KIOSK_SUPERVISOR_PIN": SUPERVISOR_PIN}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f"[device]\nid = 'VAN-7'\ndata_dir = '{data}'\n"
        "[cash]\nmax_in_hand = 2000000\nmax_payment = 1500000\n"
    )
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(make_document(4)))
    done = kiosk("import", str(doc), config=config)
    assert done.returncode == 0, done.stderr
    assert "imported 4 assignments" in done.stdout
    return config, data


def test_collect_report_verify_without_service(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    code, paid = kiosk_json(
        "collect",
        "--contract",
        "K-0001",
        "--amount",
        "500.000",
        "--collector",
        "c1",
        config=config,
        env=ENV,
    )
    assert code == 0
    assert paid["receipt"] == "VAN-7-000001"
    assert paid["amount"] == 500_000 and paid["currency"] == "IDR"

    code, report = kiosk_json("report", "--collector", "c1", config=config, env=ENV)
    assert (code, report["collected"], report["expected"]) == (0, 500_000, 500_000)
    code, verified = kiosk_json("verify", config=config)
    assert code == 0 and verified["ok"]


def test_exit_codes_and_one_line_refusals(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    # 1: refused by a rule, with what to do.
    done = kiosk(
        "collect",
        "--contract",
        "K-0001",
        "--amount",
        "1600000",
        "--collector",
        "c1",
        config=config,
        env=ENV,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "single-payment limit" in done.stderr
    # 1: wrong PIN.
    done = kiosk(
        "collect",
        "--contract",
        "K-0001",
        "--amount",
        "5",
        "--collector",
        "c1",
        config=config,
        env={"KIOSK_PIN": "0000"},
    )
    assert done.returncode == 1 and "wrong PIN" in done.stderr
    # 2: bad input, JSON error form.
    code, error = kiosk_json(
        "collect",
        "--contract",
        "K-0001",
        "--amount",
        "1e5",
        "--collector",
        "c1",
        config=config,
        env=ENV,
    )
    assert code == 2 and error["error"]["code"] == "bad_amount"
    done = kiosk("collect", "--amount", "5", config=config, env=ENV)
    assert done.returncode == 2 and "--contract" in done.stderr
    # 3: broken configuration.
    done = kiosk("status", "--config", "/nonexistent/kiosk.toml")
    assert done.returncode == 3 and "looked at" in done.stderr
    # Global options after the command work as before it.
    assert kiosk("--json", "outbox", config=config).returncode == 0


def test_commands_act_through_the_running_service(setup: tuple[Path, Path]) -> None:
    config, data = setup
    agent = start_agent(config, data)
    try:
        _, first = kiosk_json("status", config=config)
        _, second = kiosk_json("status", config=config)
        # Both answered by the one service process: the same boot.
        assert first["boot"] == second["boot"]

        code, paid = kiosk_json(
            "collect",
            "--contract",
            "K-0002",
            "--amount",
            "250000",
            "--collector",
            "c1",
            config=config,
            env=ENV,
        )
        assert code == 0 and paid["receipt"] == "VAN-7-000001"
        code, error = kiosk_json(
            "collect",
            "--contract",
            "K-0002",
            "--amount",
            "1600000",
            "--collector",
            "c1",
            config=config,
            env=ENV,
        )
        assert code == 1 and error["error"]["code"] == "cash_limit"
        code, voided = kiosk_json(
            "void",
            paid["receipt"],
            "--reason",
            "test",
            "--supervisor",
            "s1",
            config=config,
            env=ENV,
        )
        assert code == 0 and voided["amount"] == 250_000
        assert (data / "kiosk.sock").stat().st_mode & 0o777 == 0o600
    finally:
        assert stop(agent) == 0
    assert not (data / "kiosk.sock").exists()

    # Without the service each command is its own start.
    _, third = kiosk_json("status", config=config)
    assert third["boot"] != first["boot"]
    assert third["cash_held"]["c1"] == 0


def test_collector_add_takes_pin_from_environment(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    done = kiosk(
        "collector",
        "add",
        "c7",
        "--name",
        "Dewi",
        config=config,
        env={"KIOSK_NEW_PIN": "246810"},
    )
    assert done.returncode == 0, done.stderr
    assert "246810" not in done.stdout + done.stderr
    done = kiosk(
        "day",
        "open",
        "--float",
        "100.000",
        "--collector",
        "c7",
        config=config,
        env={"KIOSK_PIN": "246810"},
    )
    assert done.returncode == 0 and "100.000" in done.stdout
    done = kiosk("collector", "add", "c8", "--name", "X", config=config)
    assert done.returncode == 2 and "KIOSK_NEW_PIN" in done.stderr
