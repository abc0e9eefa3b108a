"""install.sh, run into a throw-away root, and the files it lays.

Every run uses ``--prefix`` (the system steps are skipped) on a copy of the
source tree, so that a test can change the source to stage an upgrade. The
broker configuration is checked on a real Mosquitto with real TLS.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import ROOT, free_port, missing, need_tool

SOURCE_PARTS = ("install.sh", "pyproject.toml", "kiosk", "config", "systemd", "docs")

# Used only while the shared example configuration is not in the tree yet;
# test_example_configuration_ships says so (and fails in CI).
STAND_IN_EXAMPLE = '[device]\nid = "KIOSK-01"\n\n[gps]\nsource = "gpsd:127.0.0.1"\n'


def copy_source_tree(dest: Path) -> Path:
    """A copy of the parts of the source tree that install.sh reads."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in SOURCE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, dest / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy2(source, dest / part)
    example = dest / "config/kiosk.example.toml"
    if not example.exists():
        example.write_text(STAND_IN_EXAMPLE)
    return dest


def run_install(
    source: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs the source tree's install.sh; fails the test on an unexpected exit."""
    result = subprocess.run(
        ["bash", str(source / "install.sh"), *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path, dir_mtimes: bool = True) -> dict[str, tuple[object, ...]]:
    """Every path under root with its kind, mode, mtime and content or target.

    Without dir_mtimes a folder's mtime is left out: it moves when something
    is made and removed in it again.
    """
    tree: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        name = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            tree[name] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            tree[name] = ("dir", info.st_mode, info.st_mtime_ns if dir_mtimes else 0)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[name] = ("file", info.st_mode, info.st_mtime_ns, digest)
    return tree


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_source_tree(tmp_path / "src")


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def live_release(prefix: Path) -> str:
    return os.readlink(prefix / "opt/kiosk/current").removeprefix("releases/")


def stage_upgrade(source: Path, note: str) -> None:
    """Changes the program in the source tree, as a new release would."""
    init = source / "kiosk/__init__.py"
    init.write_text(init.read_text() + f"# {note}\n")


def test_install_lays_out_a_device(source: Path, prefix: Path) -> None:
    """A device gets its config, data dir, release, units, rules and GPS clock."""
    result = run_install(source, "--prefix", str(prefix), "--no-venv")

    assert "done" in result.stdout
    assert (prefix / "etc/kiosk/kiosk.toml").read_text() == (
        source / "config/kiosk.example.toml"
    ).read_text()
    assert stat.S_IMODE((prefix / "etc/kiosk/kiosk.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE((prefix / "etc/kiosk").stat().st_mode) == 0o750
    assert stat.S_IMODE((prefix / "var/lib/kiosk").stat().st_mode) == 0o700
    for unit in ("kiosk.service", "kiosk-agent.service"):
        assert (prefix / "etc/systemd/system" / unit).read_bytes() == (
            source / "systemd" / unit
        ).read_bytes()
    assert not (prefix / "etc/systemd/system/kiosk-hq.service").exists()
    assert (prefix / "etc/udev/rules.d/99-kiosk.rules").is_file()
    assert (prefix / "opt/kiosk/releases" / live_release(prefix) / ".complete").exists()
    assert os.readlink(prefix / "opt/kiosk/venv") == "current/venv"
    assert os.readlink(prefix / "usr/local/bin/kiosk") == "/opt/kiosk/venv/bin/kiosk"


def test_install_adds_gps_clock_only_with_gpsd(source: Path, prefix: Path) -> None:
    """chrony gets gpsd's SHM clock while the GPS source is gpsd, and loses it after."""
    defaults = prefix / "etc/default/gpsd"
    defaults.parent.mkdir(parents=True)
    defaults.write_text('START_DAEMON="true"\nDEVICES=""\nGPSD_OPTIONS=""\n')
    chrony = prefix / "etc/chrony/conf.d/kiosk-gpsd.conf"
    config = prefix / "etc/kiosk/kiosk.toml"

    config.parent.mkdir(parents=True)
    config.write_text('[gps]\nsource = "gpsd:127.0.0.1:2947"\n')
    run_install(source, "--prefix", str(prefix), "--no-venv")
    assert "refclock SHM 0" in chrony.read_text()
    assert 'DEVICES="/dev/kiosk-gps"' in defaults.read_text()
    assert 'GPSD_OPTIONS="-n"' in defaults.read_text()

    config.write_text('[gps]\nsource = "serial:/dev/kiosk-gps?baud=9600"\n')
    run_install(source, "--prefix", str(prefix), "--no-venv")
    assert not chrony.exists()


def test_second_run_changes_nothing(source: Path, prefix: Path) -> None:
    """Run again on the same source, no path, mode, mtime or byte changes."""
    run_install(source, "--prefix", str(prefix), "--no-venv")
    before = snapshot(prefix)

    # Any rewrite within the same clock tick would keep the mtime; wait past it.
    time.sleep(0.05)
    result = run_install(source, "--prefix", str(prefix), "--no-venv")

    assert snapshot(prefix) == before
    assert "nothing changed" in result.stdout


def test_second_run_changes_nothing_for_hq(source: Path, prefix: Path) -> None:
    """The HQ layout is as stable, broker files included."""
    certs = prefix / "etc/mosquitto/certs"
    certs.mkdir(parents=True)
    (certs / "server.crt").write_text("certificate\n")
    (certs / "server.key").write_text("key\n")
    run_install(source, "--prefix", str(prefix), "--no-venv", "--role", "hq")
    before = snapshot(prefix)

    time.sleep(0.05)
    run_install(source, "--prefix", str(prefix), "--no-venv", "--role", "hq")

    assert snapshot(prefix) == before
    assert (prefix / "etc/systemd/system/kiosk-hq.service").is_file()
    assert (prefix / "etc/mosquitto/conf.d/kiosk.conf").is_file()
    assert (prefix / "etc/mosquitto/kiosk.acl").is_file()
    assert (prefix / "etc/mosquitto/kiosk.passwd").read_text() == ""
    assert not (prefix / "etc/udev/rules.d/99-kiosk.rules").exists()


def test_hq_without_certificates_leaves_the_broker_alone(
    source: Path, prefix: Path
) -> None:
    """With no server certificate the listener is not added, and the run says why."""
    result = run_install(source, "--prefix", str(prefix), "--no-venv", "--role", "hq")

    assert not (prefix / "etc/mosquitto/conf.d/kiosk.conf").exists()
    assert "/etc/mosquitto/certs" in result.stderr


def test_edited_configuration_survives_upgrade(source: Path, prefix: Path) -> None:
    """An edited kiosk.toml and device key stay as they are through an upgrade."""
    key = source.parent / "device.key"
    key.write_text("ab" * 32 + "\n")
    run_install(source, "--prefix", str(prefix), "--no-venv", "--key-file", str(key))
    config = prefix / "etc/kiosk/kiosk.toml"
    config.write_text('[device]\nid = "KIOSK-017"\n')
    assert stat.S_IMODE((prefix / "etc/kiosk/device.key").stat().st_mode) == 0o640

    stage_upgrade(source, "next release")
    (source / "config/kiosk.example.toml").write_text("[device]\nid = 'CHANGED'\n")
    run_install(source, "--prefix", str(prefix), "--no-venv", "--key-file", str(key))

    assert config.read_text() == '[device]\nid = "KIOSK-017"\n'
    assert (prefix / "etc/kiosk/device.key").read_text() == "ab" * 32 + "\n"


def test_a_different_key_is_refused(source: Path, prefix: Path) -> None:
    """A device keeps its key: a second, different key file is refused."""
    first, second = source.parent / "first.key", source.parent / "second.key"
    first.write_text("ab" * 32 + "\n")
    second.write_text("cd" * 32 + "\n")
    run_install(source, "--prefix", str(prefix), "--no-venv", "--key-file", str(first))

    result = run_install(
        source, "--prefix", str(prefix), "--no-venv", "--key-file", str(second),
        check=False,
    )  # fmt: skip

    assert result.returncode == 2
    assert "different key" in result.stderr
    assert (prefix / "etc/kiosk/device.key").read_text() == "ab" * 32 + "\n"


def test_a_malformed_key_is_refused(source: Path, prefix: Path) -> None:
    key = source.parent / "device.key"
    key.write_text("not a key\n")

    result = run_install(
        source, "--prefix", str(prefix), "--no-venv", "--key-file", str(key),
        check=False,
    )  # fmt: skip

    assert result.returncode == 2
    assert "64 hex digits" in result.stderr
    assert not (prefix / "etc/kiosk/device.key").exists()


def make_database(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY)")
        db.executemany(
            "INSERT INTO journal (seq) VALUES (?)", [(n,) for n in range(1, rows + 1)]
        )
    db.close()


def test_upgrade_backs_up_the_database_and_keeps_one_previous_release(
    source: Path, prefix: Path
) -> None:
    """Each upgrade copies kiosk.db first; the release before stays for roll-back."""
    run_install(source, "--prefix", str(prefix), "--no-venv")
    first = live_release(prefix)
    make_database(prefix / "var/lib/kiosk/kiosk.db", rows=3)

    stage_upgrade(source, "second")
    run_install(source, "--prefix", str(prefix), "--no-venv")
    second = live_release(prefix)

    assert second != first
    assert os.readlink(prefix / "opt/kiosk/previous") == f"releases/{first}"
    backups = list(
        (prefix / "var/lib/kiosk/backups").glob(f"kiosk-*-before-{first}.db")
    )
    assert len(backups) == 1
    assert re.fullmatch(r"kiosk-\d{8}T\d{6}Z-before-.+\.db", backups[0].name)
    with sqlite3.connect(backups[0]) as copy:
        assert copy.execute("SELECT count(*) FROM journal").fetchone() == (3,)
    copy.close()

    stage_upgrade(source, "third")
    run_install(source, "--prefix", str(prefix), "--no-venv")

    releases = {p.name for p in (prefix / "opt/kiosk/releases").iterdir()}
    assert releases == {second, live_release(prefix)}


def test_failed_step_leaves_the_live_release(source: Path, prefix: Path) -> None:
    """A step that fails mid-upgrade leaves the old release live and no debris."""
    run_install(source, "--prefix", str(prefix), "--no-venv")
    first = live_release(prefix)
    before = snapshot(prefix, dir_mtimes=False)

    # A `cp` that fails while the new release is being copied together.
    shims = source.parent / "shims"
    shims.mkdir()
    real_cp = shutil.which("cp")
    (shims / "cp").write_text(
        "#!/bin/sh\n"
        'case "$*" in *install.sh*/share/*) echo "cp: disk full" >&2; exit 1;; esac\n'
        f'exec {real_cp} "$@"\n'
    )
    (shims / "cp").chmod(0o755)
    stage_upgrade(source, "broken")
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}

    result = run_install(source, "--prefix", str(prefix), "--no-venv", env=env,
                         check=False)  # fmt: skip

    assert result.returncode == 1
    assert "previous installation" in result.stderr
    assert live_release(prefix) == first
    assert snapshot(prefix, dir_mtimes=False) == before


def test_uninstall_keeps_configuration_and_data(source: Path, prefix: Path) -> None:
    """--uninstall removes program, units and rules; config and data stay."""
    run_install(source, "--prefix", str(prefix), "--no-venv")
    make_database(prefix / "var/lib/kiosk/kiosk.db", rows=1)
    config = prefix / "etc/kiosk/kiosk.toml"
    config.write_text('[device]\nid = "KIOSK-017"\n')

    result = run_install(source, "--prefix", str(prefix), "--uninstall")

    assert not (prefix / "opt/kiosk").exists()
    assert not (prefix / "usr/local/bin/kiosk").exists()
    assert not list((prefix / "etc/systemd/system").iterdir())
    assert not (prefix / "etc/udev/rules.d/99-kiosk.rules").exists()
    assert config.read_text() == '[device]\nid = "KIOSK-017"\n'
    assert (prefix / "var/lib/kiosk/kiosk.db").is_file()
    assert "kept the configuration" in result.stdout


def test_help_lists_every_option(source: Path) -> None:
    result = run_install(source, "--help")

    for option in ("--role", "--prefix", "--no-venv", "--no-start", "--key-file",
                   "--uninstall", "--headless"):  # fmt: skip
        assert option in result.stdout


def test_unknown_option_is_refused(source: Path) -> None:
    result = run_install(source, "--frobnicate", check=False)

    assert result.returncode == 2
    assert "unknown option '--frobnicate'" in result.stderr


def test_not_root_is_told_to_use_root() -> None:
    """Without --prefix the installer needs root and says so."""
    # The script goes in on stdin, so the unprivileged user needs no access
    # to the checkout.
    command = ["bash", "-s"]
    if os.geteuid() == 0:
        setpriv = need_tool("setpriv")
        command = [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *command,
        ]

    result = subprocess.run(
        command,
        input=(ROOT / "install.sh").read_text(),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )

    assert result.returncode == 3
    assert "run as root" in result.stderr


def test_shellcheck_is_clean() -> None:
    shellcheck = need_tool("shellcheck")

    result = subprocess.run(
        [shellcheck, str(ROOT / "install.sh")], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout


def test_example_configuration_ships() -> None:
    """The installer lays config/kiosk.example.toml; the tree must carry it."""
    if not (ROOT / "config/kiosk.example.toml").is_file():
        missing("config/kiosk.example.toml is not in the source tree")


# ---------------------------------------------------------------------------
# udev rules

RULES = ROOT / "config/udev/99-kiosk.rules"


def test_udev_rules_name_the_known_models() -> None:
    """Each listed USB id gets a role, and each role a stable name."""
    text = RULES.read_text()
    roles = dict(
        (f"{vendor}:{product}", role)
        for vendor, product, role in re.findall(
            r'ATTRS\{idVendor\}=="(\w{4})", ATTRS\{idProduct\}=="(\w{4})", '
            r'ENV\{KIOSK_ROLE\}="(\w+)"',
            text,
        )
    )

    assert roles["1546:01a7"] == roles["1546:01a8"] == roles["067b:2303"] == "gps"
    assert roles["04b8:0202"] == roles["1a86:7523"] == "printer"
    assert 'SYMLINK+="kiosk-gps"' in text
    assert 'SYMLINK+="kiosk-printer"' in text


def test_udev_accepts_the_rules(tmp_path: Path) -> None:
    """udev reads the rules without a complaint (and does complain about a bad key)."""
    udevadm = need_tool("udevadm")
    unshare = need_tool("unshare")
    if os.geteuid() != 0:
        missing("reading udev rules in a private mount namespace needs root")
    bad = tmp_path / "98-bad.rules"
    bad.write_text('FOO{bar}=="x", SYMLINK+="y"\n')

    # The rules are read from a private copy of /etc/udev/rules.d that only
    # this command sees; the machine's own rules are not touched.
    script = (
        "mount -t tmpfs none /etc/udev/rules.d && "
        f"cp {RULES} {bad} /etc/udev/rules.d/ && "
        "udevadm test --action=add /sys/class/tty/ttyS0 2>&1"
    )
    result = subprocess.run(
        [unshare, "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(udevadm).parent}:{os.environ['PATH']}"},
    )
    if "Reading rules file: /etc/udev/rules.d/99-kiosk.rules" not in result.stdout:
        missing(f"udevadm test could not run here: {result.stdout[-300:]}")

    complaints = [line for line in result.stdout.splitlines() if "99-kiosk" in line]
    assert complaints == ["Reading rules file: /etc/udev/rules.d/99-kiosk.rules"]
    assert "98-bad.rules:1 Invalid key 'FOO'" in result.stdout


# ---------------------------------------------------------------------------
# The production broker configuration, on a real Mosquitto with real TLS

BROKER = ROOT / "config/mosquitto"
PASSWORDS = {"hq": "hq-secret", "KIOSK-01": "one-secret", "KIOSK-02": "two-secret"}
WAIT_S = 10


def make_certificates(folder: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    openssl = need_tool("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=kiosk test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
        "-out", "server.crt")  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Mosquitto running config/mosquitto as laid out, on a loopback port."""
    mosquitto = need_tool("mosquitto")
    mosquitto_passwd = need_tool("mosquitto_passwd")
    make_certificates(tmp_path)
    port = free_port()

    passwd = tmp_path / "kiosk.passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run(
            [mosquitto_passwd, "-b", str(passwd), user, password],
            check=True,
            capture_output=True,
        )
    shutil.copy(BROKER / "kiosk.acl", tmp_path / "kiosk.acl")

    # The shipped file with only its paths and port moved into the test's
    # folder, included from a main file like Debian's.
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    text = (BROKER / "kiosk.conf").read_text()
    text = text.replace("/etc/mosquitto/certs/", f"{tmp_path}/")
    text = text.replace("/etc/mosquitto/", f"{tmp_path}/")
    text = text.replace("listener 8883", f"listener {port} 127.0.0.1")
    (conf_d / "kiosk.conf").write_text(text)
    log = tmp_path / "mosquitto.log"
    main = tmp_path / "mosquitto.conf"
    main.write_text(
        f"user root\npersistence false\nlog_dest file {log}\ninclude_dir {conf_d}\n"
    )

    process = subprocess.Popen([mosquitto, "-c", str(main)])
    try:
        for _ in range(200):
            if process.poll() is not None or "running" in (
                log.read_text() if log.exists() else ""
            ):
                break
            time.sleep(0.02)
        if process.poll() is not None:
            pytest.fail(f"mosquitto did not start: {log.read_text()}")
        yield port, tmp_path / "ca.crt"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Peer:
    """One MQTT 5 client, logged in as a user, recording what it gets."""

    def __init__(self, port: int, ca: Path, user: str, password: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.connect_reason: ReasonCode | None = None
        self.acks: dict[int, list[ReasonCode]] = {}
        self.acked = threading.Condition()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{user}-test",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(user, password)
        client.tls_set(ca_certs=str(ca))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        self.client = client
        client.connect("127.0.0.1", port)
        client.loop_start()
        assert self.connected.wait(WAIT_S), f"{user}: no CONNACK"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        self.connect_reason = reason
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.messages.put((message.topic, message.payload))

    def _ack(self, mid: int, reasons: list[ReasonCode]) -> None:
        with self.acked:
            self.acks[mid] = reasons
            self.acked.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:  # fmt: skip
        self._ack(mid, list(reasons))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        self._ack(mid, [reason])

    def _wait_ack(self, mid: int) -> ReasonCode:
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, WAIT_S)
            return self.acks[mid][0]

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        return self._wait_ack(info.mid)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(broker: tuple[int, Path]) -> Iterator[dict[str, Peer]]:
    port, ca = broker
    made = {
        user: Peer(port, ca, user, password) for user, password in PASSWORDS.items()
    }
    yield made
    for peer in made.values():
        peer.close()


@pytest.mark.integration
def test_broker_device_writes_only_under_its_own_id(peers: dict[str, Peer]) -> None:
    """A device's events reach HQ; its publishes for another device are refused."""
    hq, device = peers["hq"], peers["KIOSK-01"]
    assert not hq.subscribe("kiosk/v1/#").is_failure

    refused = [
        device.publish("kiosk/v1/KIOSK-02/evt/payment", b"forged"),
        device.publish("kiosk/v1/KIOSK-01/cmd/unlock", b"self-made command"),
        device.publish("kiosk/v1/other", b"outside its tree"),
    ]
    assert device.publish("kiosk/v1/KIOSK-01/evt/payment", b"real").value == 0

    # QoS 1 from one publisher keeps its order: once the real event is in,
    # the refused ones would already have arrived.
    assert hq.next_message() == ("kiosk/v1/KIOSK-01/evt/payment", b"real")
    assert [reason.value for reason in refused] == [135, 135, 135]
    assert hq.messages.empty()


@pytest.mark.integration
def test_broker_device_reads_only_its_own_commands(peers: dict[str, Peer]) -> None:
    """HQ's command reaches its device only; another device hears nothing of it."""
    hq, device, other = peers["hq"], peers["KIOSK-01"], peers["KIOSK-02"]
    assert not hq.subscribe("kiosk/v1/#").is_failure
    assert not device.subscribe("kiosk/v1/KIOSK-01/cmd/#").is_failure

    # Mosquitto grants any subscription and filters on delivery by the ACL.
    for topic in ("kiosk/v1/KIOSK-01/#", "kiosk/v1/KIOSK-02/cmd/#"):
        assert not other.subscribe(topic).is_failure
    assert device.publish("kiosk/v1/KIOSK-01/evt/payment", b"event").value == 0
    assert hq.next_message() == ("kiosk/v1/KIOSK-01/evt/payment", b"event")
    assert hq.publish("kiosk/v1/KIOSK-01/cmd/lock", b"for one").value == 0
    assert hq.publish("kiosk/v1/KIOSK-02/cmd/lock", b"for two").value == 0

    assert device.next_message() == ("kiosk/v1/KIOSK-01/cmd/lock", b"for one")
    # The broker hands out each publish before taking the next, and HQ's two
    # commands keep their order: the first thing the other device gets is its
    # own command, so neither the event nor the first command reached it.
    assert other.next_message() == ("kiosk/v1/KIOSK-02/cmd/lock", b"for two")
    assert other.messages.empty()
    assert hq.publish("kiosk/v1/KIOSK-01/evt/payment", b"forged").value == 135


@pytest.mark.integration
def test_broker_device_pings_itself(peers: dict[str, Peer]) -> None:
    """The doctor's round trip: a device reads back its own ping."""
    device = peers["KIOSK-01"]

    assert not device.subscribe("kiosk/v1/KIOSK-01/ping").is_failure
    assert device.publish("kiosk/v1/KIOSK-01/ping", b"1").value == 0

    assert device.next_message() == ("kiosk/v1/KIOSK-01/ping", b"1")


@pytest.mark.integration
def test_broker_refuses_a_wrong_password(broker: tuple[int, Path]) -> None:
    port, ca = broker

    peer = Peer(port, ca, "KIOSK-01", "guessed")
    peer.close()

    assert peer.connect_reason is not None
    assert peer.connect_reason.is_failure
