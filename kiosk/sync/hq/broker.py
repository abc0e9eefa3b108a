"""HQ's MQTT clients: built from ``[broker]`` with HQ's own client ids.

paho-mqtt 2.x with the version 2 callback signatures. MQTT 5 by default, 3.1.1
when ``broker.protocol`` says so; TLS for ``mqtts://`` URLs with the configured
CA and client certificate.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.config import Config
from kiosk.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

_URL = re.compile(r"(mqtts?)://(\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(\d+)")


def parse_url(url: str) -> tuple[str, int, bool]:
    """``mqtt(s)://HOST:PORT`` as (host, port, tls); IPv6 hosts in brackets."""
    match = _URL.fullmatch(url)
    if match is None:
        raise ConfigError(
            f"broker.url = {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT"
        )
    scheme, host, port = match.groups()
    return host.strip("[]"), int(port), scheme == "mqtts"


def make_client(
    config: Config,
    client_id: str,
    *,
    manual_ack: bool = False,
    persistent: bool = False,
) -> mqtt.Client:
    """A configured, unconnected client.

    Args:
        config: The configuration; ``[broker]`` gives the login and TLS.
        client_id: HQ's client id for this connection (never a device's).
        manual_ack: Acknowledge received messages only when ``ack()`` is called.
        persistent: Keep the session (and messages for it) across disconnects.
    """
    if not config.broker.url:
        raise ConfigError("broker.url is empty: HQ needs the broker to talk to devices")
    _, _, tls = parse_url(config.broker.url)
    v5 = config.broker.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    if config.broker.username:
        client.username_pw_set(
            config.broker.username, config.broker.password.get_secret_value() or None
        )
    if tls:
        client.tls_set(
            ca_certs=str(config.broker.ca_file) if config.broker.ca_file else None,
            certfile=str(config.broker.cert_file) if config.broker.cert_file else None,
            keyfile=str(config.broker.key_file) if config.broker.key_file else None,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_async(client: mqtt.Client, config: Config, *, persistent: bool) -> None:
    """Start connecting in the background; paho reconnects by itself after."""
    host, port, _ = parse_url(config.broker.url)
    kwargs: dict[str, Any] = {"keepalive": config.broker.keepalive_s}
    if config.broker.protocol == "5":
        kwargs["clean_start"] = not persistent
        if persistent:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = config.broker.session_expiry_s
            kwargs["properties"] = props
    client.connect_async(host, port, **kwargs)


def connect_blocking(
    client: mqtt.Client, config: Config, *, timeout_s: float
) -> threading.Event:
    """Connect a short-lived client and start its loop; wait for CONNACK.

    Returns:
        An event set while connected (cleared on disconnect).

    Raises:
        ServiceUnavailable: The broker did not accept the connection in time.
    """
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(
        _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None
    ) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        else:
            connected.set()

    def on_disconnect(
        _c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any = None
    ) -> None:
        connected.clear()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    connect_async(client, config, persistent=False)
    client.loop_start()
    if not connected.wait(timeout_s):
        client.loop_stop()
        why = refused[0] if refused else "no answer"
        raise ServiceUnavailable(
            f"cannot reach the broker at {config.broker.url} ({why}); check "
            "[broker] url and login and that the broker is running"
        )
    return connected
