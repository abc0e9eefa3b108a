"""The device's MQTT link: store-and-forward of the outbox, HQ's commands, state.

The outbox table is the only queue. The link reads unsent events from it in
sending order (alarm, live location, money, ops, historical location; each lane
in ``seq`` order), publishes them at QoS 1 with up to ``broker.inflight``
unacknowledged at once, and marks an event sent only when its PUBACK arrives
(under MQTT 5, with a reason code below 128). After any disconnect it starts
again from the oldest unacknowledged event, with the same ids, so a copy HQ
already has is recognised and dropped.

Threads: the link thread does the work (reads the outbox, publishes, applies
commands, publishes state); a recorder thread marks acknowledged events sent,
so SQLite's commits overlap with publishing; paho's network thread only hands
what it hears to the link thread, so no paho callback ever publishes or
touches the store. Every connection gets a fresh paho client; a connection that
stops acknowledging (a dead network loop, a half-open socket) is torn down and
made again, with exponential backoff and jitter between attempts.

A location event that waited more than ``LIVE_LOC_S`` in the outbox is no
longer live: whenever the outbox is read from its head, such events are
rewritten in the store with ``historical: true`` and the lowest priority, so
they go after the money and are sent, and re-sent, with the same content.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import text

from kiosk import outbox
from kiosk.config import Config
from kiosk.errors import ServiceUnavailable
from kiosk.ledger import Ledger
from kiosk.sync.device_commands import CommandHandler
from kiosk.sync.protocol import Command, device_topic
from kiosk.sync.state import build_state, fingerprint, offline_state

log = logging.getLogger(__name__)

LIVE_LOC_S = 60.0  # a location older than this when sent is historical
CONNACK_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
STABLE_S = 30.0  # a connection that lasted this long resets the backoff
PRUNE_INTERVAL_S = 3600.0
REFUSED_RETRY_S = 30.0  # an event the broker refused is tried again after this
HANDOFF = 4  # events handed to paho, as a multiple of what it keeps on the wire
RESCAN_S = 2.0  # while draining, how often the outbox is read again from its head


class BrokerUnreachable(ServiceUnavailable):
    """The broker could not be reached, refused the login or did not answer."""

    code = "broker"


# --- connecting -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://host:port`` or ``mqtts://host:port`` (IPv6 hosts in brackets)."""
    match = re.fullmatch(r"(mqtts?)://(\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(\d+)", url)
    if match is None:
        raise BrokerUnreachable(
            f"broker.url {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT"
        )
    scheme, host, port = match.groups()
    return BrokerAddress(host.strip("[]"), int(port), scheme == "mqtts")


def make_client(
    config: Config, client_id: str, *, userdata: Any = None, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client with the configured protocol, login and TLS; not connected."""
    broker = config.broker
    v5 = broker.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        # MQTT 3.1.1 keeps the session with clean_session False; MQTT 5 asks at
        # connect time (clean start off plus a session expiry).
        clean_session=None if v5 else False,
        userdata=userdata,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        reconnect_on_failure=False,
        manual_ack=manual_ack,
    )

    # The broker login is the device id unless the configuration names another.
    password = broker.password.get_secret_value() or None
    client.username_pw_set(broker.username or config.device.id, password)

    if parse_url(broker.url).tls:
        try:
            client.tls_set(
                ca_certs=str(broker.ca_file) if broker.ca_file else None,
                certfile=str(broker.cert_file) if broker.cert_file else None,
                keyfile=str(broker.key_file) if broker.key_file else None,
            )
        except (OSError, ValueError) as exc:
            # ssl.SSLError is an OSError: a missing or unreadable file, a key
            # that does not match its certificate.
            raise BrokerUnreachable(
                f"cannot set up TLS for the broker: {exc}; check broker.ca_file, "
                "broker.cert_file and broker.key_file"
            ) from None
    client.connect_timeout = CONNACK_TIMEOUT_S
    return client


def connect(client: mqtt.Client, config: Config, *, clean: bool) -> None:
    """Open the connection; raises BrokerUnreachable when the socket cannot."""
    broker = config.broker
    address = parse_url(broker.url)
    try:
        if broker.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0 if clean else broker.session_expiry_s
            client.connect(
                address.host,
                address.port,
                broker.keepalive_s,
                clean_start=clean,
                properties=properties,
            )
        else:
            client.connect(address.host, address.port, broker.keepalive_s)
    except (OSError, ValueError) as exc:
        raise BrokerUnreachable(
            f"cannot reach the broker at {broker.url}: {exc}; check broker.url, "
            "the network and the broker"
        ) from None


def stop_loop(client: mqtt.Client, timeout: float = 5.0) -> None:
    """Stop paho's network thread, giving up on it after ``timeout``."""
    stopper = threading.Thread(target=client.loop_stop, daemon=True)
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        log.warning("the MQTT network thread did not stop within %.0f s", timeout)


def _failed(reason_code: Any) -> bool:
    return bool(getattr(reason_code, "is_failure", False))


# --- the doctor's round trip ----------------------------------------------------


def broker_round_trip(config: Config, client_id: str, timeout: float = 10.0) -> float:
    """Seconds for a message to go to the broker and back on the device's ping topic.

    Connects under ``client_id``, which must not be the device's own (the
    broker would drop the running service's connection), with the device's
    login, subscribes to ``kiosk/v1/<device>/ping`` and publishes a nonce there.

    Raises:
        BrokerUnreachable: no broker configured, no connection, a refused
            login, or no answer within ``timeout``.
    """
    if client_id == config.device.id:
        raise ValueError("the round trip needs a client id other than the device's")
    if not config.broker.url:
        raise BrokerUnreachable("no broker configured (broker.url is empty)")

    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = make_client(config, client_id)
    client.on_connect = lambda _c, _u, _f, rc, _p: events.put(("connack", rc))
    client.on_subscribe = lambda _c, _u, _m, codes, _p: events.put(("suback", codes))
    client.on_message = lambda _c, _u, msg: events.put(("message", msg.payload))
    topic = device_topic(config.device.id, "ping")
    nonce = os.urandom(8).hex().encode()
    deadline = time.monotonic() + timeout

    def wait_for(kind: str, what: str) -> Any:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnreachable(
                    f"the broker at {config.broker.url} did not {what} within "
                    f"{timeout:g} s"
                )
            try:
                got, value = events.get(timeout=left)
            except queue.Empty:
                continue
            if got == kind:
                return value

    connect(client, config, clean=True)
    client.loop_start()
    try:
        reason = wait_for("connack", "accept the connection")
        if _failed(reason):
            raise BrokerUnreachable(
                f"the broker refused the connection: {reason}; check "
                "broker.username and broker.password"
            )
        client.subscribe(topic, qos=1)
        codes = wait_for("suback", "confirm the subscription")
        if any(_failed(code) for code in codes):
            raise BrokerUnreachable(f"the broker refused a subscription to {topic}")

        started = time.perf_counter()
        info = client.publish(topic, nonce, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerUnreachable(f"publish failed: {mqtt.error_string(info.rc)}")
        while wait_for("message", "send the ping back") != nonce:
            pass  # someone else's ping on the same topic
        return time.perf_counter() - started
    finally:
        client.disconnect()
        stop_loop(client)


# --- the link worker --------------------------------------------------------------


class _Inbox:
    """What paho's thread hands the link thread: a deque and a doorbell.

    Cheaper per item than ``queue.Queue``, which matters at one PUBACK per
    event; the link thread takes everything waiting at once.
    """

    def __init__(self) -> None:
        self._items: deque[tuple[Any, ...]] = deque()
        self._bell = threading.Event()

    def put(self, item: tuple[Any, ...]) -> None:
        self._items.append(item)
        self._bell.set()

    def take(self, timeout: float) -> list[tuple[Any, ...]]:
        """Everything waiting, after waiting up to ``timeout`` for something."""
        if not self._items:
            self._bell.wait(timeout)
        # Cleared before emptying: an item put meanwhile rings again.
        self._bell.clear()
        taken = []
        while self._items:
            taken.append(self._items.popleft())
        return taken


class _Recorder:
    """Marks acknowledged events sent, in a thread of its own.

    SQLite releases the interpreter while it writes, so the link keeps
    publishing while the previous batch of acknowledgements is committed.
    Until its batch is committed an event counts as pending here, and the link
    does not send it again.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._batches: queue.Queue[list[str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="kiosk-link-recorder", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread is None:
            return
        self._batches.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the outbox recorder did not stop within %.0f s", timeout)
        self._thread = None

    def record(self, ids: list[str]) -> None:
        with self._lock:
            self._pending.update(ids)
        self._batches.put(ids)

    @property
    def idle(self) -> bool:
        return self._batches.empty()

    def pending(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        running = True
        while running:
            try:
                batch = self._batches.get(timeout=1.0)
            except queue.Empty:
                continue
            if batch is None:
                break

            # Whatever queued up meanwhile goes in the same transaction.
            ids = list(batch)
            while True:
                try:
                    more = self._batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    running = False
                    break
                ids.extend(more)

            try:
                with self.ledger.store.write() as conn:
                    outbox.mark_sent(conn, ids)
            except Exception:
                log.exception(
                    "could not record %d acknowledged events as sent; they will "
                    "be sent again, with the same ids",
                    len(ids),
                )
            finally:
                with self._lock:
                    self._pending.difference_update(ids)


@dataclass(slots=True)
class _Flight:
    """One publish awaiting its PUBACK."""

    kind: str  # "event" | "state" | "ack" | "probe"
    event_id: str | None = None
    lane: str = ""
    seq: int = 0


class Link:
    """The broker link of a device: a worker the service starts and stops.

    Args:
        ledger: The device's ledger; its store holds the outbox.
        config: The configuration; the ledger's by default.
        on_status: Called with ``("link", text)`` when the link's state
            changes: ``connecting``, ``online``, ``offline: <reason>``,
            ``stopped``.
        on_command: Called with each applied HQ command and its result.
        extra_state: Returns ``printer``, ``gps`` and ``last_fix`` for the
            retained state message.
        backoff_s: The first and the longest wait between connection attempts.
        stall_timeout_s: How long publishes may go unacknowledged before the
            connection is judged dead; by default twice the keepalive.
        poll_s: How often the outbox is looked at when nothing wakes the link.
    """

    name = "link"

    def __init__(
        self,
        ledger: Ledger,
        config: Config | None = None,
        *,
        on_status: Callable[[str, str], None] | None = None,
        on_command: Callable[[Command, Any], None] | None = None,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        backoff_s: tuple[float, float] = (1.0, 60.0),
        stall_timeout_s: float | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self.ledger = ledger
        self.config = config or ledger.config
        self.device = self.config.device.id
        self.on_status = on_status
        self.extra_state = extra_state
        self.handler = CommandHandler(ledger, on_command=on_command)
        self.backoff_s = backoff_s
        broker = self.config.broker
        self.stall_timeout_s = stall_timeout_s or max(20.0, 2.0 * broker.keepalive_s)
        self.poll_s = poll_s
        self.state_topic = device_topic(self.device, "state")
        self.ack_topic = device_topic(self.device, "ack")
        self.ping_topic = device_topic(self.device, "ping")
        self.command_filter = device_topic(self.device, "cmd", "#")

        self._events = _Inbox()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_text = ""
        self._generation = 0
        self._client: mqtt.Client | None = None
        self._online = False
        self._recorder = _Recorder(ledger)
        self._reset_session()

    # --- life cycle ----------------------------------------------------------

    def start(self) -> None:
        """Start the link thread; returns at once, connecting in the background."""
        if not self.config.broker.url:
            self._status("off")
            log.info("no broker.url configured: events stay in the outbox")
            return
        address = parse_url(self.config.broker.url)
        if not address.tls:
            log.warning(
                "TLS is off for %s: the broker login and the feed cross the "
                "network in clear; use mqtts:// outside a test bench",
                self.config.broker.url,
            )
        self._stopping.clear()
        self._recorder.start()
        self._thread = threading.Thread(
            target=self._run, name="kiosk-link", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Say offline, disconnect and end the thread (within STOP_TIMEOUT_S)."""
        self._stopping.set()
        self._events.put((None, "wake"))
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("link thread did not stop within %.0f s", STOP_TIMEOUT_S)
            self._thread = None
        self._recorder.stop(STOP_TIMEOUT_S)
        self._status("stopped")

    def wake(self) -> None:
        """New events are in the outbox: look now rather than at the next poll."""
        self._events.put((None, "wake"))

    @property
    def online(self) -> bool:
        return self._online

    # --- reporting ------------------------------------------------------------

    def _status(self, value: str) -> None:
        if value == self._status_text:
            return
        self._status_text = value
        log.info("link %s", value)
        if self.on_status is not None:
            try:
                self.on_status("link", value)
            except Exception:
                log.exception("link status listener failed")

    # --- the thread -------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            reason = "stopped"
            try:
                reason = self._session()
            except BrokerUnreachable as exc:
                reason = exc.message
            except Exception as exc:
                log.exception("link session failed")
                reason = f"internal error ({type(exc).__name__})"
            finally:
                self._teardown()
            if self._stopping.is_set():
                break

            self._status(f"offline: {reason}")
            stable = self._was_online and time.monotonic() - started > STABLE_S
            attempt = 0 if stable else attempt + 1
            self._stopping.wait(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        first, longest = self.backoff_s
        ceiling = min(longest, first * 2 ** max(0, attempt - 1))
        # Full jitter in the upper half: a fleet that lost the broker at once
        # does not come back at once.
        return ceiling * random.uniform(0.5, 1.0)

    def _reset_session(self) -> None:
        self._inflight: dict[int, _Flight] = {}
        self._acked: list[str] = []
        self._held: dict[str, tuple[str, int, float]] = {}
        self._commands: list[tuple[str, bytes, int, int]] = []
        self._was_online = False
        self._ready = False
        self._window = self.config.broker.inflight
        now = time.monotonic()
        self._last_progress = now
        self._last_state_at = float("-inf")
        self._last_state_check = float("-inf")
        self._last_state_print: dict[str, Any] | None = None
        self._last_refill = float("-inf")
        self._last_rescan = float("-inf")
        self._cursor: tuple[int, str, int] | None = None
        self._last_prune = float("-inf")
        self._last_aging = float("-inf")
        self._held_notice = False

    def _session(self) -> str:
        """One connection, from CONNECT to its end; returns why it ended."""
        self._reset_session()
        self._generation += 1
        generation = self._generation
        # Said once per outage, not at every attempt.
        if not self._status_text.startswith("offline"):
            self._status("connecting")

        client = make_client(
            self.config, self.device, userdata=generation, manual_ack=True
        )
        will = offline_state(self.device, self.ledger.boot)
        client.will_set(self.state_topic, _encode(will), qos=1, retain=True)
        client.max_inflight_messages_set(self._window)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

        connect(client, self.config, clean=False)
        if client.loop_start() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return "the MQTT network thread could not start"
        ended = self._await_connack(generation)
        if ended:
            return ended

        while not self._stopping.is_set():
            ended = self._process_events(generation)
            if ended:
                return ended
            ended = self._housekeeping()
            if ended:
                return ended
            self._run_commands()
            if not self._refill():
                return "a publish failed; reconnecting"

        self._say_goodbye(generation)
        return "stopped"

    def _await_connack(self, generation: int) -> str:
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while time.monotonic() < deadline and not self._stopping.is_set():
            events = self._events.take(0.2)
            for index, event in enumerate(events):
                if event[0] != generation:
                    continue
                if event[1] == "disconnect":
                    return f"the broker closed the connection ({event[2]})"
                if event[1] != "connack":
                    continue
                ended = self._connected(event[2], event[3])
                # Commands kept by the session may follow in the same batch.
                for later in events[index + 1 :]:
                    ended = ended or self._handle(generation, later)
                return ended
        if self._stopping.is_set():
            return "stopped"
        return f"no answer from the broker within {CONNACK_TIMEOUT_S:.0f} s"

    def _connected(self, reason_code: Any, properties: Any) -> str:
        if _failed(reason_code):
            return f"the broker refused the connection: {reason_code}"
        client = self._client
        assert client is not None

        # Honour the broker's receive maximum: a client that sends more than
        # it allows is disconnected. The link's own window is what limits the
        # messages in flight; paho refuses a new limit once connected.
        receive_max = getattr(properties, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and receive_max > 0:
            self._window = min(self._window, receive_max)

        result, _mid = client.subscribe(self.command_filter, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return f"subscribe failed: {mqtt.error_string(result)}"
        self._ready = True
        self._was_online = True
        self._online = True
        if not self._publish_state(force=True):
            return "the state message could not be published"
        self._status("online")
        return ""

    def _teardown(self) -> None:
        client, self._client = self._client, None
        self._online = False
        self._ready = False
        if client is not None:
            try:
                self._flush()
            except Exception:
                log.exception("could not record acknowledged events")
            client.disconnect()
            stop_loop(client)
        # What was in flight stays unsent in the store and goes again next
        # time; held commands are redelivered by the broker, never acked.
        self._inflight.clear()
        self._commands.clear()

    def _say_goodbye(self, generation: int) -> None:
        """A clean stop: the full state with online false, then disconnect."""
        try:
            self._flush()
            self._recorder.wait_idle(2.0)
            self._publish_state(force=True, online=False)
        except Exception:
            log.exception("could not publish the offline state")
            return
        deadline = time.monotonic() + 2.0
        while self._inflight and time.monotonic() < deadline:
            if self._process_events(generation, wait=0.1):
                break
        self._flush()

    # --- paho's callbacks: they only queue -----------------------------------

    def _on_connect(self, _c: Any, gen: Any, _f: Any, rc: Any, props: Any) -> None:
        self._events.put((gen, "connack", rc, props))

    def _on_disconnect(self, _c: Any, gen: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._events.put((gen, "disconnect", rc))

    def _on_publish(self, _c: Any, gen: Any, mid: int, rc: Any, _p: Any) -> None:
        self._events.put((gen, "puback", mid, rc))

    def _on_subscribe(self, _c: Any, gen: Any, _m: int, codes: Any, _p: Any) -> None:
        self._events.put((gen, "suback", codes))

    def _on_message(self, _c: Any, gen: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put(
            (gen, "message", message.topic, message.payload, message.mid, message.qos)
        )

    # --- events -----------------------------------------------------------------

    def _process_events(self, generation: int, wait: float | None = None) -> str:
        """Handle what paho heard, waiting a little for the first of it."""
        if wait is None:
            wait = 0.01 if self._inflight else self.poll_s
        for event in self._events.take(wait):
            ended = self._handle(generation, event)
            if ended:
                return ended
        return ""

    def _handle(self, generation: int, event: tuple[Any, ...]) -> str:
        if event[0] is None:  # wake: read the store from the head, now
            self._last_refill = float("-inf")
            self._cursor = None
            return ""
        if event[0] != generation:
            return ""  # news from a connection already torn down
        kind = event[1]
        if kind == "puback":
            self._acknowledged(event[2], event[3])
        elif kind == "message":
            self._commands.append((event[2], event[3], event[4], event[5]))
        elif kind == "disconnect":
            return f"disconnected ({event[2]})"
        elif kind == "suback" and any(_failed(code) for code in event[2]):
            log.error(
                "the broker refused the subscription to %s: commands from HQ "
                "will not arrive; check the broker's ACL",
                self.command_filter,
            )
        return ""

    def _acknowledged(self, mid: int, reason_code: Any) -> None:
        flight = self._inflight.pop(mid, None)
        if flight is None:
            return
        self._last_progress = time.monotonic()
        if not _failed(reason_code):
            if flight.event_id is not None:
                self._acked.append(flight.event_id)
            return

        log.warning(
            "the broker refused %s %s (%s %s): %s; trying again in %.0f s",
            flight.kind,
            flight.event_id or "",
            flight.lane,
            flight.seq,
            reason_code,
            REFUSED_RETRY_S,
        )
        if flight.event_id is not None:
            retry_at = time.monotonic() + REFUSED_RETRY_S
            self._held[flight.event_id] = (flight.lane, flight.seq, retry_at)

    # --- the outbox ---------------------------------------------------------------

    def _flush(self, force: bool = True) -> None:
        """Hand the acknowledged events to the recorder to be marked sent.

        Unless forced, they wait while the recorder is busy, so that each of
        its transactions takes a good batch.
        """
        if not self._acked:
            return
        if force or self._recorder.idle or len(self._acked) >= self._window:
            self._recorder.record(self._acked)
            self._acked = []

    def _refill(self) -> bool:
        """Hand paho the next unsent events while the window has room.

        paho keeps ``broker.inflight`` on the wire; the link hands it up to
        ``HANDOFF`` times that, so the wire stays full while the link reads the
        next page.
        The store is read forward from the last event handed over; a rescan
        from the head every ``RESCAN_S`` (or on ``wake``) picks up events that
        sort earlier, such as a new alarm or events HQ asked for again.

        Returns False when a publish failed, which ends the connection.
        """
        if not self._ready:
            return True
        now = time.monotonic()
        room = HANDOFF * self._window - len(self._inflight)
        busy = bool(self._inflight)
        if busy and room < self._window // 2:
            return True
        if not busy and now - self._last_refill < self.poll_s:
            return True
        self._last_refill = now
        if room <= 0:
            return True

        rescan = self._cursor is None or not busy or now - self._last_rescan > RESCAN_S
        skip: set[str] = set()
        if rescan:
            self._last_rescan = now
            self._age_locations()
            for event_id, (_lane, _seq, retry_at) in list(self._held.items()):
                if now >= retry_at:
                    del self._held[event_id]
            skip = {f.event_id for f in self._inflight.values() if f.event_id}
            skip.update(self._acked, self._held, self._recorder.pending())
        held_money = min(
            (seq for lane, seq, _ in self._held.values() if lane == "money"),
            default=None,
        )

        with self.ledger.store.read() as conn:
            if rescan:
                rows = outbox.pending(conn, len(skip) + room)
            else:
                rows = outbox.pending(conn, room, after=self._cursor)
        for row in rows:
            if room <= 0:
                break
            if row.id in skip:
                continue
            # Money goes strictly in order: behind a refused entry, wait.
            if held_money is not None and row.lane == "money" and row.seq > held_money:
                continue
            flight = _Flight("event", row.id, row.lane, row.seq)
            if not self._publish(row.topic, row.payload.encode(), flight):
                return False
            key = (int(row.priority), str(row.lane), int(row.seq))
            self._cursor = key if self._cursor is None else max(self._cursor, key)
            room -= 1
        return True

    def _age_locations(self) -> None:
        """Turn locations that waited too long into historical ones, in the store."""
        now = time.monotonic()
        if now - self._last_aging < 1.0:
            return
        self._last_aging = now
        cutoff = time.time() - LIVE_LOC_S
        query = text(
            "SELECT id, payload FROM outbox WHERE sent_at IS NULL AND lane='loc' "
            "AND priority=:live AND created_at < :cutoff"
        )
        params = {"live": outbox.PRIORITY["loc"], "cutoff": cutoff}
        with self.ledger.store.read() as conn:
            stale = conn.execute(query, params).all()
        flying = {f.event_id for f in self._inflight.values()}
        stale = [row for row in stale if row.id not in flying]
        if not stale:
            return
        with self.ledger.store.write() as conn:
            for row in stale:
                payload = json.loads(row.payload)
                payload["historical"] = True
                conn.execute(
                    text(
                        "UPDATE outbox SET priority=:p, payload=:body "
                        "WHERE id=:id AND sent_at IS NULL"
                    ),
                    {
                        "p": outbox.PRIORITY["loc_historical"],
                        "body": _encode(payload).decode(),
                        "id": row.id,
                    },
                )
        log.debug("%d locations became historical", len(stale))

    def _publish(
        self, topic: str, payload: bytes, flight: _Flight, *, retain: bool = False
    ) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
        except ValueError as exc:
            # Only a malformed topic or an oversized payload gets here; sending
            # it again would fail the same way, so say so loudly.
            log.error("cannot publish %s to %s: %s", flight.kind, topic, exc)
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        if not self._inflight:
            self._last_progress = time.monotonic()
        self._inflight[info.mid] = flight
        return True

    # --- state, pruning and the health of the connection ------------------------

    def _housekeeping(self) -> str:
        self._flush(force=False)
        now = time.monotonic()

        if self._inflight and now - self._last_progress > self.stall_timeout_s:
            return (
                f"no acknowledgement from the broker for {self.stall_timeout_s:.0f} s"
            )
        # An idle connection is checked with a QoS 1 ping to the device's own
        # topic: a dead network loop or a half-open socket shows as a stall.
        idle_s = now - self._last_progress
        if not self._inflight and idle_s > self.config.broker.keepalive_s:
            probe = _Flight("probe")
            if not self._publish(self.ping_topic, b"{}", probe):
                return "a publish failed; reconnecting"

        if now - self._last_state_check >= 1.0:
            self._last_state_check = now
            if not self._publish_state():
                return "the state message could not be published"

        if now - self._last_prune >= PRUNE_INTERVAL_S:
            self._last_prune = now
            self._prune()
        return ""

    def _publish_state(self, *, force: bool = False, online: bool = True) -> bool:
        state = build_state(self.ledger, online=online, extra=self.extra_state)
        print_ = fingerprint(state)
        now = time.monotonic()
        due = now - self._last_state_at >= self.config.broker.state_interval_s
        if not force and not due and print_ == self._last_state_print:
            return True
        self._last_state_at = now
        self._last_state_print = print_
        return self._publish(
            self.state_topic, _encode(state), _Flight("state"), retain=True
        )

    def _prune(self) -> None:
        ack = self.ledger.status()["journal_ack"]
        acked_seq = int(ack["seq"]) if ack else 0
        older_than = time.time() - self.config.broker.retention_days * 86400
        with self.ledger.store.write() as conn:
            removed = outbox.prune(conn, acked_seq, older_than)
        if removed:
            log.info("pruned %d sent events from the outbox", removed)

    # --- commands -------------------------------------------------------------------

    def _run_commands(self) -> None:
        if not self._commands or self._client is None:
            return
        if not self.handler.ready():
            if not self._held_notice:
                self._held_notice = True
                log.warning(
                    "%d command(s) from HQ wait until the clock is trusted",
                    len(self._commands),
                )
            return
        self._held_notice = False

        pending, self._commands = self._commands, []
        for index, (topic, payload, mid, qos) in enumerate(pending):
            handled = self.handler.handle(topic, payload)
            if not self._publish(self.ack_topic, _encode(handled.ack), _Flight("ack")):
                # The connection is going; the broker redelivers the rest.
                self._commands = pending[index + 1 :]
                return
            # Only now is the broker told the command was taken, so a crash
            # before this point has it delivered again.
            if qos > 0 and self._client.ack(mid, qos) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("could not acknowledge command %s to the broker", mid)
            if handled.command is not None and handled.command.name in (
                "journal_ack",
                "resync",
            ):
                self._last_prune = float("-inf")
                self._last_refill = float("-inf")
                self._cursor = None


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
