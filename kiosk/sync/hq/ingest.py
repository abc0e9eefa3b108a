"""``kiosk hq serve``: one feed from every device, checked and stored.

A paho-mqtt 2.x client subscribes to every device's events, locations, state
and command answers. Its callbacks only hand messages to a queue; one writer
thread stores them in batches (one transaction each) and only then
acknowledges them to the broker, so a message is never acknowledged before it
is safe in the database. After each batch the writer checks the journal chain
of the devices it touched (see ``chain``) and sends what that asks for: a
``resync`` for a gap that stayed, a ``journal_ack`` for the newest verified
entry at most once a second per device.

With ``[hq] share_group`` set, events and answers are taken through an MQTT
shared subscription (``$share/<group>/...``), so several workers, each with its
own client id, split the feed between them. State messages are retained and a
shared subscription gets no retained messages, so every worker reads all of
them; applying one twice does no harm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import case, update

from kiosk.config import Config
from kiosk.errors import KioskError, StoreError
from kiosk.sync.hq.broker import connect_async, make_client
from kiosk.sync.hq.chain import ChainCheck, ChainChecker, devices_needing_check
from kiosk.sync.hq.commands import KeyRing, publish_command
from kiosk.sync.hq.store import HqStore, devices, dumps, events
from kiosk.sync.protocol import ROOT, parse_topic
from kiosk.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

LANES = {"money", "alarm", "ops", "loc"}
HEX64 = re.compile(r"[0-9a-f]{64}")
# Commands HQ sends by itself stay valid this long at the broker.
AUTO_COMMAND_EXPIRY_S = 3600
MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float


def subscriptions(share_group: str) -> list[tuple[str, int]]:
    """The topic filters HQ takes, shared when a group is configured."""
    shared = f"$share/{share_group}/" if share_group else ""
    return [
        (f"{shared}{ROOT}/+/evt/#", 1),
        (f"{shared}{ROOT}/+/loc", 1),
        (f"{ROOT}/+/state", 1),
        (f"{shared}{ROOT}/+/ack", 1),
    ]


def _text(value: Any, name: str, limit: int = 64) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{name} must be a string of 1 to {limit} characters")
    return value


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("seq must be a positive integer")
    return value


def event_row(device: str, obj: Any, now: float) -> dict[str, Any]:
    """The stored row of an ``evt/<type>`` envelope; ValueError when malformed."""
    if not isinstance(obj, dict):
        raise ValueError("an event is a JSON object")
    claimed = obj.get("device")
    if claimed != device:
        raise ValueError(f"event names device {claimed!r} on {device}'s topic")
    lane = obj.get("lane")
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise ValueError("data must be an object")
    collector = obj.get("collector")
    if collector is not None:
        collector = _text(collector, "collector")

    row = {
        "id": _text(obj.get("id"), "id"),
        "device": device,
        "lane": lane,
        "seq": _seq(obj.get("seq")),
        "type": _text(obj.get("type"), "type", 40),
        "time": _text(obj.get("time"), "time", 32),
        "collector": collector,
        "boot": obj.get("boot") if isinstance(obj.get("boot"), str) else None,
        "prev": None,
        "hash": None,
        "ref": None,
        "data": dumps(data),
        "received_at": now,
        "status": "stored",
        "problem": None,
    }
    if lane == "money":
        for name in ("prev", "hash"):
            value = obj.get(name)
            if not isinstance(value, str) or not HEX64.fullmatch(value):
                raise ValueError(f"a money event needs {name} as 64 hex digits")
            row[name] = value
        receipt = data.get("receipt")
        row["ref"] = (
            receipt if isinstance(receipt, str) and len(receipt) <= 64 else None
        )
        row["status"] = "pending"
    return row


def location_row(device: str, obj: Any, now: float) -> dict[str, Any]:
    """The stored row of an OwnTracks location; ValueError when malformed."""
    if not isinstance(obj, dict) or obj.get("_type") != "location":
        raise ValueError("a location is an OwnTracks object with _type location")
    tst = obj.get("tst")
    if isinstance(tst, bool) or not isinstance(tst, int | float):
        raise ValueError("a location needs tst (epoch seconds)")
    seq = _seq(obj.get("seq"))
    event_id = obj.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 64:
        # Without an id, the same point sent twice still gets one id.
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{device}/loc/{seq}/{tst}"))
    return {
        "id": event_id,
        "device": device,
        "lane": "loc",
        "seq": seq,
        "type": "location",
        "time": rfc3339(datetime.fromtimestamp(tst, UTC)),
        "collector": None,
        "boot": None,
        "prev": None,
        "hash": None,
        "ref": None,
        "data": dumps(obj),
        "received_at": now,
        "status": "stored",
        "problem": None,
    }


def state_values(obj: Any, now: float) -> dict[str, Any]:
    """Device columns from a retained state message; ValueError when malformed.

    Only what the message holds is taken. An offline message (the last will)
    was written when the device connected, so its journal figures are old and
    are not taken.
    """
    if not isinstance(obj, dict):
        raise ValueError("a state message is a JSON object")
    values: dict[str, Any] = {"state": dumps(obj), "state_at": now}
    online = obj.get("online")
    if isinstance(online, bool):
        values["online"] = online
    if isinstance(obj.get("boot"), str):
        values["boot"] = obj["boot"][:64]
    if isinstance(obj.get("version"), str):
        values["version"] = obj["version"][:40]
    if online is False:
        return values

    if isinstance(obj.get("cash_held"), dict):
        values["reported_cash"] = dumps(obj["cash_held"])
    # The outbox figures come flat (outbox_depth) or as an outbox object.
    found = obj.get("outbox")
    outbox: dict[str, Any] = found if isinstance(found, dict) else {}
    depth = obj.get("outbox_depth", outbox.get("depth"))
    if isinstance(depth, int) and not isinstance(depth, bool):
        values["outbox_depth"] = depth
    age = obj.get("outbox_oldest_age_s", outbox.get("oldest_age_s"))
    values["outbox_oldest_age_s"] = float(age) if isinstance(age, int | float) else None
    trust = obj.get("time") if isinstance(obj.get("time"), dict) else None
    trust = trust or obj.get("time_trust")
    if trust is not None:
        values["time_trust"] = dumps(trust)
    fix = next((obj[k] for k in ("last_fix", "fix", "gps") if k in obj), None)
    if fix is not None:
        values["last_fix"] = dumps(fix)

    journal = obj.get("journal")
    if isinstance(journal, dict) and isinstance(journal.get("seq"), int):
        values["state_seq"] = journal["seq"]
        if isinstance(journal.get("hash"), str):
            values["state_hash"] = journal["hash"][:64]
    made = next(
        (obj[k] for k in ("time", "at", "sent_at") if isinstance(obj.get(k), str)),
        None,
    )
    if made is not None:
        with contextlib.suppress(ValueError):
            values["state_time"] = rfc3339(parse_rfc3339(made))
    return values


class Ingest:
    """The HQ worker: subscribe, store in batches, check chains, answer devices.

    Args:
        config: The configuration (``[broker]`` and ``[hq]``).
        store: HQ's database.
        client_id: This worker's MQTT client id; each worker needs its own.
        keys: Device keys; read from ``[hq] keys_dir`` when not given.
        batch_max: The most messages stored in one transaction.
        tick_s: How often gaps and delayed acknowledgements are looked at.
    """

    def __init__(
        self,
        config: Config,
        store: HqStore,
        *,
        client_id: str | None = None,
        keys: KeyRing | None = None,
        batch_max: int = 2000,
        tick_s: float = 0.25,
    ) -> None:
        self.config = config
        self.store = store
        self.client_id = client_id or config.hq.client_id
        self.keys = keys or KeyRing(config.hq.keys_dir)
        self.batch_max = batch_max
        self.tick_s = tick_s
        self.checker = ChainChecker(store, resync_wait_s=config.hq.resync_wait_s)
        self.stats = {"received": 0, "stored": 0, "rejected": 0, "batches": 0}

        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._stop = threading.Event()
        self._generation = 0
        self._writer: threading.Thread | None = None
        self._complaints: dict[str, float] = {}
        self._recheck: set[str] = set()

        self.client = make_client(
            config, self.client_id, manual_ack=True, persistent=True
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background) and start the writer thread."""
        log.info(
            "HQ worker %s: connecting to %s%s",
            self.client_id,
            self.config.broker.url,
            f" (shared group {self.config.hq.share_group})"
            if self.config.hq.share_group
            else "",
        )
        self._stop.clear()
        self._writer = threading.Thread(
            target=self._write_loop, name=f"hq-writer-{self.client_id}", daemon=True
        )
        self._writer.start()
        connect_async(self.client, self.config, persistent=True)
        self.client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store what has arrived, then disconnect. Safe to call twice."""
        self._stop.set()
        if self._writer is not None:
            self._writer.join(timeout_s)
            self._writer = None
        self.client.disconnect()
        self.client.loop_stop()
        log.info("HQ worker %s stopped: %s", self.client_id, self.stats)

    def __enter__(self) -> Ingest:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the subscriptions are in place."""
        return self.subscribed.wait(timeout_s)

    def idle(self) -> bool:
        """Nothing is waiting to be stored."""
        return self._queue.unfinished_tasks == 0

    # --- paho callbacks: hand over, never block ------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any = None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused HQ worker %s: %s", self.client_id, reason)
            return
        self._generation += 1
        self.connected.set()
        log.info(
            "HQ worker %s connected (session present: %s)",
            self.client_id,
            getattr(flags, "session_present", "?"),
        )
        result, _ = client.subscribe(subscriptions(self.config.hq.share_group))
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribe failed: %s", mqtt.error_string(result))

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("HQ worker %s lost the broker: %s", self.client_id, reason)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any = None
    ) -> None:
        refused = [c for c in codes if getattr(c, "is_failure", False)]
        if refused:
            log.error("broker refused HQ's subscriptions: %s", refused)
        else:
            log.info("HQ worker %s subscribed", self.client_id)
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._queue.put(
            Incoming(
                message.topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                self._generation,
                time.time(),
            )
        )

    # --- the writer ----------------------------------------------------------

    def _write_loop(self) -> None:
        next_tick = time.monotonic()
        backoff = 0.5
        batch: list[Incoming] = []
        while True:
            if not batch:
                batch = self._take()
            if not batch and self._stop.is_set():
                return
            try:
                if batch:
                    touched = self._store_batch(batch)
                    self._finish(batch)
                    batch = []
                    self._check_all(touched)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_s
                    self._check_all(
                        self._recheck | set(devices_needing_check(self.store))
                    )
                backoff = 0.5
            except KioskError as exc:
                # The database is away: keep the batch (it is not acknowledged
                # to the broker either) and try again.
                log.error("HQ worker %s: %s; retrying", self.client_id, exc)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 10.0)
            except Exception:
                # A fault in this program, not in the database: the batch is
                # left unacknowledged, so the broker offers it again after the
                # next reconnect, and the worker carries on with the rest.
                log.exception(
                    "HQ worker %s: batch of %d not stored", self.client_id, len(batch)
                )
                self._finish(batch)
                batch = []

    def _finish(self, batch: list[Incoming]) -> None:
        for _ in batch:
            self._queue.task_done()

    def _check_all(self, touched: set[str]) -> None:
        """Check each device's chain; one that fails is tried again next tick."""
        for device in sorted(touched):
            try:
                self._check(device)
            except KioskError as exc:
                log.error("%s: chain check failed: %s", device, exc)
                self._recheck.add(device)
            else:
                self._recheck.discard(device)

    def _take(self) -> list[Incoming]:
        try:
            first = self._queue.get(timeout=self.tick_s)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _complain(self, what: str, detail: str) -> None:
        self.stats["rejected"] += 1
        now = time.monotonic()
        if now - self._complaints.get(what, -1e9) >= 60:
            self._complaints[what] = now
            log.warning("rejected %s: %s", what, detail)

    def _store_batch(self, batch: list[Incoming]) -> set[str]:
        """Store a batch in one transaction, then acknowledge it.

        Returns:
            The devices whose chain the batch may have moved.
        """
        now = time.time()
        rows: dict[str, dict[str, Any]] = {}
        states: list[tuple[str, dict[str, Any]]] = []
        acks: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()

        for message in batch:
            try:
                device, kind, _name = parse_topic(message.topic)
                if len(message.payload) > MAX_PAYLOAD:
                    raise ValueError(f"{len(message.payload)} bytes is too large")
                obj = json.loads(message.payload)
                if kind == "evt":
                    row = event_row(device, obj, now)
                    rows.setdefault(row["id"], row)
                elif kind == "loc":
                    row = location_row(device, obj, now)
                    rows.setdefault(row["id"], row)
                elif kind == "state":
                    states.append((device, state_values(obj, now)))
                elif kind == "ack":
                    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                        raise ValueError("an ack needs the command id")
                    acks.append((device, obj))
                else:
                    continue
                seen.add(device)
            except (ValueError, UnicodeDecodeError) as exc:
                self._complain(message.topic, str(exc))

        with self.store.begin() as conn:
            for device in sorted(seen):
                self.store.touch_device(conn, device, now)
            stored = self.store.insert_ignore(conn, events, list(rows.values()))
            self._note_rows(conn, rows.values())
            for device, values in states:
                conn.execute(
                    update(devices).where(devices.c.id == device).values(**values)
                )
            for device, ack in acks:
                if not self.store.record_ack(
                    conn,
                    device,
                    ack["id"],
                    bool(ack.get("ok")),
                    str(ack.get("reason") or ""),
                    now,
                ):
                    log.debug("answer from %s to unknown command %s", device, ack["id"])

        # Only now is the batch safe: tell the broker. An id from before a
        # reconnect means nothing to the new session, which sends it again.
        for message in batch:
            if message.qos and message.generation == self._generation:
                self.client.ack(message.mid, message.qos)

        self.stats["received"] += len(batch)
        self.stats["stored"] += stored
        self.stats["batches"] += 1
        money = {r["device"] for r in rows.values() if r["lane"] == "money"}
        return money | {d for d, v in states if "state_seq" in v}

    def _note_rows(self, conn: Any, rows: Any) -> None:
        """Per-device figures and alarms from the events of a batch."""
        last_seq: dict[str, int] = {}
        last_loc: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row["lane"] == "money":
                last_seq[row["device"]] = max(
                    last_seq.get(row["device"], 0), row["seq"]
                )
            elif row["lane"] == "loc":
                point = json.loads(row["data"])
                if not point.get("historical"):
                    last_loc[row["device"]] = {
                        k: point.get(k) for k in ("lat", "lon", "acc", "tst")
                    }
            elif row["lane"] == "alarm":
                self.store.raise_alarm(
                    conn,
                    row["device"],
                    row["type"],
                    f"{row['type']} at {row['time']}"
                    + (f" by {row['collector']}" if row["collector"] else "")
                    + f": {row['data']}",
                    key=f"{row['device']}:event:{row['id']}",
                    seq=row["seq"],
                    event_id=row["id"],
                )
        for device, seq in last_seq.items():
            conn.execute(
                update(devices)
                .where(devices.c.id == device)
                .values(
                    last_seq=case(
                        (devices.c.last_seq.is_(None), seq),
                        (devices.c.last_seq < seq, seq),
                        else_=devices.c.last_seq,
                    )
                )
            )
        for device, point in last_loc.items():
            conn.execute(
                update(devices)
                .where(devices.c.id == device)
                .values(last_location=dumps(point))
            )

    # --- chains and the commands they call for -------------------------------

    def _check(self, device: str) -> ChainCheck:
        key = self.keys.get(device)
        result = self.checker.check(device, time.time(), can_send=key is not None)
        if key is None:
            return result
        if result.send_resync is not None:
            log.warning(
                "%s: journal entry %d is missing; asking the device to send again",
                device,
                result.send_resync,
            )
            self._send(
                key, device, "resync", {"lane": "money", "seq": result.send_resync}
            )
        if result.send_ack is not None:
            seq, digest = result.send_ack
            self._send(key, device, "journal_ack", {"seq": seq, "hash": digest})
        return result

    def _send(self, key: bytes, device: str, name: str, body: Any) -> None:
        try:
            publish_command(
                self.client,
                self.store,
                key,
                device,
                name,
                body,
                expires_in_s=AUTO_COMMAND_EXPIRY_S,
                sent_by=self.client_id,
            )
        except StoreError as exc:
            log.error("command %s to %s not sent: %s", name, device, exc)


def serve(config: Config, *, client_id: str, stop: threading.Event) -> int:
    """Run one HQ worker until ``stop`` is set; the exit code."""
    store = HqStore(config.hq.db_url)
    ingest = Ingest(config, store, client_id=client_id)
    ingest.start()
    try:
        stop.wait()
    finally:
        ingest.stop()
        store.close()
    return 0
