"""At volume, as a newcomer would drive it: 500 customers imported, 1,000
payments from a script through the service's socket and 100 more as separate
command-line calls; the X report adds up to the unit and the journal verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.control import ControlClient
from tests.cli_helpers import kiosk, kiosk_json, start_agent, stop
from tests.factories import PIN, make_document

ENV = {"KIOSK_PIN": PIN}


@pytest.mark.slow
def test_thousand_payments_through_socket_and_hundred_cli_calls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f"[device]\nid = 'VOL-1'\ndata_dir = '{data}'\n"
        "[cash]\nmax_in_hand = 100000000000\nmax_payment = 100000000\n"
    )
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(make_document(500, installments=6, amount=2_000_000)))
    done = kiosk("import", str(doc), config=config)
    assert done.returncode == 0 and "500 customers" in done.stdout, done.stderr

    agent = start_agent(config, data)
    expected = 0
    try:
        with ControlClient(data / "kiosk.sock") as client:
            auth = {"collector": "c1", "pin": PIN}
            for n in range(1000):
                amount = 10_000 + (n * 7919) % 90_000
                result = client.call(
                    "collect",
                    {"contract": f"K-{n % 500 + 1:04d}", "amount": amount},
                    auth,
                )
                assert result["receipt"] == f"VOL-1-{n + 1:06d}"
                expected += amount

        for n in range(100):
            amount = 1_000 + n
            code, result = kiosk_json(
                "collect", "--contract", f"K-{n + 1:04d}", "--amount", str(amount),
                "--collector", "c1", config=config, env=ENV,
            )
            assert code == 0, result
            expected += amount

        code, report = kiosk_json("report", "--collector", "c1", config=config, env=ENV)
        assert code == 0
        assert report["payments"] == 1100
        assert report["collected"] == expected
        assert report["expected"] == expected == report["held"]
    finally:
        stop(agent)

    code, verified = kiosk_json("verify", config=config)
    assert code == 0 and verified["ok"]
    assert verified["entries"] == 1 + 1100  # the day's opening, then each payment
