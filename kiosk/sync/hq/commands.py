"""Device keys at HQ, and signed commands sent down to devices.

Each device has one key, 32 random bytes kept as 64 hex digits in
``keys_dir/<device>.key``. It signs the commands HQ sends the device and checks
the receipt codes the device prints. ``add_device`` makes it; the device gets a
copy at install time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from kiosk.config import Config, read_key_file
from kiosk.errors import (
    BadInput,
    ConfigError,
    NotFound,
    Refused,
    ServiceUnavailable,
)
from kiosk.sync.hq.broker import connect_blocking, make_client
from kiosk.sync.hq.store import HqStore
from kiosk.sync.protocol import build_command, command_topic, device_topic

log = logging.getLogger(__name__)

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
RESERVED_IDS = {"hq"}


def check_device_id(device: str) -> str:
    if not DEVICE_ID.fullmatch(device):
        raise BadInput(
            f"device id {device!r}: expected 1-32 letters, digits, '-' or '_'"
        )
    if device.lower() in RESERVED_IDS:
        raise BadInput(f"device id {device!r} is reserved for HQ's own broker login")
    return device


class KeyRing:
    """The device keys in ``keys_dir``, read once each.

    Args:
        keys_dir: The folder of ``<device>.key`` files.
    """

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = Path(keys_dir)
        self._keys: dict[str, bytes | None] = {}
        self._lock = threading.Lock()

    def path(self, device: str) -> Path:
        return self.keys_dir / f"{check_device_id(device)}.key"

    def get(self, device: str) -> bytes | None:
        """The device's key, or None (logged once) when HQ has none for it."""
        with self._lock:
            if device in self._keys:
                return self._keys[device]
        try:
            path = self.path(device)
        except BadInput:
            key = None
        else:
            try:
                key = read_key_file(path) if path.exists() else None
            except ConfigError as exc:
                log.error("key for %s unusable: %s", device, exc)
                key = None
        if key is None:
            log.warning(
                "no key for device %s in %s: HQ cannot send it commands or check "
                "its receipts (kiosk hq add-device %s)",
                device,
                self.keys_dir,
                device,
            )
        with self._lock:
            self._keys[device] = key
        return key

    def require(self, device: str) -> bytes:
        """The device's key; NotFound when HQ has none."""
        path = self.path(device)
        if not path.exists():
            raise NotFound(
                f"HQ has no key for device {device} ({path}); register it with "
                f"`kiosk hq add-device {device}`"
            )
        return read_key_file(path)


def add_device(keys_dir: Path, device: str) -> dict[str, Any]:
    """Make a new device's key file (mode 0600); never overwrite one.

    Returns:
        Where the key is, and the install and broker-login steps that follow.

    Raises:
        Refused: The device already has a key.
        ConfigError: The keys folder cannot be written.
    """
    check_device_id(device)
    path = Path(keys_dir) / f"{device}.key"
    try:
        Path(keys_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Refused(
            f"device {device} already has a key at {path}; to replace it, revoke "
            "the old one first (see 'Revoking a device' in docs/DEPLOYMENT.md)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"hq.keys_dir: cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(os.urandom(32).hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())

    log.info("key made for device %s at %s", device, path)
    return {
        "device": device,
        "key_file": str(path),
        "install": f"sudo ./install.sh --role device --key-file {path}",
        "broker_login": f"mosquitto_passwd /etc/mosquitto/kiosk.passwd {device}",
        "broker_reload": "systemctl reload mosquitto",
    }


def publish_command(
    client: mqtt.Client,
    store: HqStore,
    key: bytes,
    device: str,
    name: str,
    body: Any,
    *,
    expires_in_s: int,
    sent_by: str,
) -> tuple[dict[str, Any], mqtt.MQTTMessageInfo]:
    """Sign a command, record it, and publish it QoS 1 on its topic."""
    command = build_command(key, device, name, body, expires_in_s=expires_in_s)
    with store.begin() as conn:
        store.record_command(conn, command, sent_by)
    payload = json.dumps(command, ensure_ascii=False, separators=(",", ":"))
    info = client.publish(command_topic(device, name), payload.encode("utf-8"), qos=1)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        log.warning(
            "command %s to %s not queued: %s", name, device, mqtt.error_string(info.rc)
        )
    return command, info


def read_body(source: str, stdin: Any) -> Any:
    """A command body from a JSON file, or from stdin for ``-``."""
    try:
        text = stdin.read() if source == "-" else Path(source).read_text("utf-8")
    except OSError as exc:
        raise BadInput(f"--body: cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"--body: {source} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInput(f"--body: {source} is not JSON: {exc}") from None


def send_command(
    config: Config,
    store: HqStore,
    device: str,
    name: str,
    body: Any,
    *,
    expires_in_s: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Send one signed command and wait for the device's answer.

    Returns:
        The command's id and the device's ``ack``.

    Raises:
        NotFound: HQ has no key for the device.
        Refused: The device refused the command (the reason is its answer).
        ServiceUnavailable: No broker, or no answer within ``timeout_s``.
    """
    check_device_id(device)
    key = KeyRing(config.hq.keys_dir).require(device)
    client_id = f"{config.hq.client_id}-send-{uuid.uuid4().hex[:8]}"
    answers: dict[str, dict[str, Any]] = {}
    answered = threading.Condition()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            ack = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(ack, dict) and isinstance(ack.get("id"), str):
            with answered:
                answers[ack["id"]] = ack
                answered.notify_all()

    client = make_client(config, client_id)
    client.on_message = on_message
    deadline = time.monotonic() + timeout_s
    connect_blocking(client, config, timeout_s=max(timeout_s, 1.0))
    try:
        # Listen for the answer before asking, so a quick one is not missed.
        subscribed = threading.Event()
        client.on_subscribe = lambda *_a: subscribed.set()
        client.subscribe(device_topic(device, "ack"), qos=1)
        if not subscribed.wait(max(deadline - time.monotonic(), 0.1)):
            raise ServiceUnavailable(
                f"the broker at {config.broker.url} did not confirm the subscription"
            )

        command, info = publish_command(
            client,
            store,
            key,
            device,
            name,
            body,
            expires_in_s=expires_in_s,
            sent_by=client_id,
        )
        info.wait_for_publish(max(deadline - time.monotonic(), 0.1))
        if not info.is_published():
            raise ServiceUnavailable(
                f"the broker at {config.broker.url} did not take the command"
            )

        with answered:
            answered.wait_for(
                lambda: command["id"] in answers,
                max(deadline - time.monotonic(), 0.0),
            )
            ack = answers.get(command["id"])
    finally:
        client.disconnect()
        client.loop_stop()

    if ack is None:
        raise ServiceUnavailable(
            f"no answer from {device} within {timeout_s:g} s; command {command['id']} "
            f"waits at the broker until {command['expires']} (the device may be "
            "offline: see `kiosk hq devices`)"
        )
    ok = bool(ack.get("ok"))
    reason = str(ack.get("reason") or "")
    with store.begin() as conn:
        store.record_ack(conn, device, command["id"], ok, reason, time.time())
    if not ok:
        raise Refused(f"{device} refused {name} ({command['id']}): {reason}")
    return {
        "device": device,
        "command": name,
        "id": command["id"],
        "ok": True,
        "expires": command["expires"],
    }
