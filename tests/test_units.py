"""The systemd units, as install.sh lays them out, pass systemd's own checks.

Each unit is laid into a throw-away root by ``install.sh --prefix``, copied with
its ``/opt/kiosk`` paths pointing into that root (``systemd-analyze verify``
refuses an ``ExecStart`` that does not exist, and ``--root`` does not change
that), verified with no warning at all, and its hardening scored.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.test_install import copy_source_tree

UNITS = ("kiosk.service", "kiosk-agent.service", "kiosk-hq.service")

# The exposure score of `systemd-analyze security` (0 best, 10 worst), with a
# little room over what the units score today (1.7, 1.7 and 1.2).
MAX_EXPOSURE = {
    "kiosk.service": 2.0,
    "kiosk-agent.service": 2.0,
    "kiosk-hq.service": 1.5,
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections and their keys; a key that repeats keeps every value."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with every unit laid out and a stand-in program at ExecStart."""
    source = copy_source_tree(tmp_path_factory.mktemp("src"))
    prefix = tmp_path_factory.mktemp("root")
    for role in ("device", "hq"):
        subprocess.run(
            [
                "bash",
                source / "install.sh",
                "--prefix",
                prefix,
                "--no-venv",
                "--role",
                role,
            ],
            check=True,
            capture_output=True,
            text=True,
        )

    # The release laid out without its Python environment gets a stand-in
    # program, so that verify can check ExecStart names an executable.
    program = prefix / "opt/kiosk/current/venv/bin/kiosk"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return prefix


def pointed_into(prefix: Path, unit: str, workdir: Path) -> Path:
    """A copy of the installed unit whose program paths lead into the prefix."""
    text = (prefix / "etc/systemd/system" / unit).read_text()
    copy = workdir / unit
    copy.write_text(text.replace("/opt/kiosk/", f"{prefix}/opt/kiosk/"))
    return copy


def verify(analyze: str, unit: Path) -> str:
    """Runs `systemd-analyze verify`; returns everything it said."""
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    return f"{result.stdout}{result.stderr}".strip() + (
        f"\n(exit {result.returncode})" if result.returncode else ""
    )


@pytest.mark.parametrize("unit", UNITS)
def test_units_verify_without_a_warning(
    unit: str, laid_out: Path, tmp_path: Path
) -> None:
    """Each unit passes `systemd-analyze verify` with no output at all."""
    analyze = need_tool("systemd-analyze")
    copy = pointed_into(laid_out, unit, tmp_path)

    assert verify(analyze, copy) == ""


def test_units_verify_catches_a_misspelt_key(laid_out: Path, tmp_path: Path) -> None:
    """An unknown key is only a warning to systemd; the check still sees it."""
    analyze = need_tool("systemd-analyze")
    copy = pointed_into(laid_out, "kiosk-agent.service", tmp_path)
    copy.write_text(copy.read_text().replace("Restart=always", "Restrat=always"))

    assert "Unknown key 'Restrat'" in verify(analyze, copy)


@pytest.mark.parametrize("unit", UNITS)
def test_units_security_exposure_is_low(
    unit: str, laid_out: Path, tmp_path: Path
) -> None:
    """The hardening scores below the unit's threshold (printed for the record)."""
    analyze = need_tool("systemd-analyze")
    copy = pointed_into(laid_out, unit, tmp_path)

    result = subprocess.run(
        [analyze, "--offline=true", "security", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure = float(found.group(1))
    print(f"{unit}: exposure {exposure}")

    assert exposure <= MAX_EXPOSURE[unit]


def test_agent_unit_is_notify_with_watchdog(laid_out: Path) -> None:
    """The headless service tells systemd it is ready and feeds a watchdog."""
    unit = parse_unit((laid_out / "etc/systemd/system/kiosk-agent.service").read_text())
    service = unit["Service"]

    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["ExecStart"] == ["/opt/kiosk/venv/bin/kiosk agent"]
    assert "kiosk.service" in unit["Unit"]["Conflicts"][0].split()


def test_screen_unit_owns_tty1_and_always_restarts(laid_out: Path) -> None:
    """The service with the UI takes tty1 from getty and never stays down."""
    unit = parse_unit((laid_out / "etc/systemd/system/kiosk.service").read_text())
    service = unit["Service"]

    assert service["ExecStart"] == ["/opt/kiosk/venv/bin/kiosk run"]
    assert service["Restart"] == ["always"]
    assert service["TTYPath"] == ["/dev/tty1"]
    conflicts = unit["Unit"]["Conflicts"][0].split()
    assert "kiosk-agent.service" in conflicts
    assert "getty@tty1.service" in conflicts


@pytest.mark.parametrize("unit", UNITS)
def test_units_write_only_the_data_directory(unit: str, laid_out: Path) -> None:
    """Every unit sees the system read-only except /var/lib/kiosk, as user kiosk."""
    service = parse_unit((laid_out / "etc/systemd/system" / unit).read_text())[
        "Service"
    ]

    assert service["User"] == ["kiosk"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == ["/var/lib/kiosk"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["PrivateTmp"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]
