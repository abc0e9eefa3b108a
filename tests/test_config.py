"""Configuration: a bad file stops start-up with one line naming key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.errors import ConfigError
from tests.conftest import ROOT


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(body)
    return path


def test_examples_load_and_document_every_key() -> None:
    from kiosk.config import Config

    vehicle = load_config(ROOT / "config" / "kiosk.example.toml")
    branch = load_config(ROOT / "config" / "branch.example.toml")
    assert vehicle.device.mode == "vehicle" and branch.device.mode == "branch"
    text = (ROOT / "config" / "kiosk.example.toml").read_text()
    for section, model in Config.model_fields.items():
        if section == "source":
            continue
        assert f"[{section}]" in text
        annotation = model.annotation
        for key in annotation.model_fields:  # type: ignore[union-attr]
            assert f"{key} =" in text, f"{section}.{key} is not documented"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "[cash]\nmax_in_hand = 'lots'\n",
            "cash.max_in_hand = 'lots': expected an integer",
        ),
        ("[cash]\nmax_in_hand = 1.5\n", "cash.max_in_hand = 1.5: expected an integer"),
        ("[cash]\nmax_payment = -1\n", "cash.max_payment = -1"),
        ("[device]\nmode = 'boat'\n", "device.mode = 'boat'"),
        ("[device]\nid = 'has space'\n", "device.id = 'has space'"),
        ("[device]\ntimezone = 'Mars/Olympus'\n", "IANA time zone"),
        ("[device]\ncurrency = 'rupiah'\n", "three-letter"),
        ("[printer]\ncolumns = 40\n", "printer.columns = 40"),
        ("[location]\noutside = 'shout'\n", "location.outside = 'shout'"),
        ("[broker]\nurl = 'http://x'\n", "broker.url = 'http://x'"),
        ("[cash]\nmax_in_hnad = 5\n", "cash.max_in_hnad: unknown key"),
        ("[cash\n", "not valid TOML"),
    ],
)
def test_bad_values_name_key_value_and_expectation(
    tmp_path: Path, body: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body))
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_missing_file_says_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="looked at --config, then KIOSK_CONFIG"):
        load_config(tmp_path / "nope.toml")


def test_env_variable_is_used_and_relative_paths_follow_the_file(
    tmp_path: Path, monkeypatch
) -> None:
    path = write(tmp_path, "[device]\ndata_dir = 'data'\n")
    monkeypatch.setenv("KIOSK_CONFIG", str(path))
    config = load_config()
    assert config.data_dir == tmp_path / "data"


def test_bad_key_file_is_named(tmp_path: Path) -> None:
    key = tmp_path / "device.key"
    key.write_text("not hex")
    config = load_config(write(tmp_path, f"[security]\nkey_file = '{key}'\n"))
    with pytest.raises(ConfigError, match="64 hex digits"):
        config.device_key()
