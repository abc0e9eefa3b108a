"""The outbox: every event bound for HQ, written in the transaction that made it.

The store is the only queue. An event leaves the outbox when the broker has
acknowledged it; until then it is sent again after any disconnect, with the same
id, so HQ can drop the copy.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import Connection

from kiosk.journal import Entry
from kiosk.store import Store, sql

PROTOCOL_VERSION = 1

# Sending order when there is a backlog: lower goes first.
PRIORITY = {"alarm": 0, "loc": 1, "money": 2, "ops": 3, "loc_historical": 4}


def topic_for(device: str, lane: str, type_: str) -> str:
    if lane == "loc":
        return f"kiosk/v1/{device}/loc"
    return f"kiosk/v1/{device}/evt/{type_}"


def envelope(
    *,
    device: str,
    boot: str,
    lane: str,
    seq: int,
    type_: str,
    time_: str,
    collector: str | None,
    data: dict[str, Any],
    event_id: str | None = None,
    entry: Entry | None = None,
) -> dict[str, Any]:
    """The event envelope of the protocol; money events carry prev and hash."""
    message: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": event_id or str(uuid.uuid4()),
        "device": device,
        "boot": boot,
        "lane": lane,
        "seq": seq,
        "type": type_,
        "time": time_,
        "collector": collector,
        "data": data,
    }
    if entry is not None:
        message["prev"] = entry.prev
        message["hash"] = entry.hash
    return message


def _insert(
    conn: Connection, lane: str, message: dict[str, Any], topic: str, priority: int
) -> None:
    sql(
        conn,
        (
            "INSERT INTO outbox (id, lane, seq, priority, topic, payload, created_at) "
            "VALUES (:id, :lane, :seq, :priority, :topic, :payload, :created)"
        ),
        {
            "id": message["id"],
            "lane": lane,
            "seq": message["seq"],
            "priority": priority,
            "topic": topic,
            "payload": json.dumps(message, ensure_ascii=False, separators=(",", ":")),
            "created": time.time(),
        },
    )


def enqueue_money(conn: Connection, device: str, boot: str, entry: Entry) -> str:
    """Queue a journal entry on the money lane; its seq is the journal's."""
    message = envelope(
        device=device,
        boot=boot,
        lane="money",
        seq=entry.seq,
        type_=entry.type,
        time_=entry.time,
        collector=entry.collector,
        data=entry.data,
        entry=entry,
    )
    _insert(
        conn,
        "money",
        message,
        topic_for(device, "money", entry.type),
        PRIORITY["money"],
    )
    return str(message["id"])


def enqueue(
    conn: Connection,
    device: str,
    boot: str,
    lane: str,
    type_: str,
    time_: str,
    collector: str | None,
    data: dict[str, Any],
) -> str:
    """Queue an event on the alarm, ops or loc lane with the lane's next seq."""
    if lane == "money":
        raise ValueError("money events come from the journal: use enqueue_money")
    seq = Store.next_counter(conn, f"lane:{lane}")
    message = envelope(
        device=device,
        boot=boot,
        lane=lane,
        seq=seq,
        type_=type_,
        time_=time_,
        collector=collector,
        data=data,
    )
    _insert(conn, lane, message, topic_for(device, lane, type_), PRIORITY[lane])
    return str(message["id"])


def pending_summary(conn: Connection) -> dict[str, Any]:
    """Depth per lane and the age of the oldest unsent event."""
    rows = sql(
        conn,
        (
            "SELECT lane, count(*), min(created_at) FROM outbox "
            "WHERE sent_at IS NULL GROUP BY lane"
        ),
    ).all()
    now = time.time()
    lanes = {str(lane): int(count) for lane, count, _ in rows}
    oldest = min((float(first) for _, _, first in rows), default=None)
    money_oldest = next(
        (float(first) for lane, _, first in rows if lane == "money"), None
    )
    return {
        "depth": sum(lanes.values()),
        "lanes": lanes,
        "oldest_age_s": None if oldest is None else round(now - oldest),
        "oldest_money_age_s": None
        if money_oldest is None
        else round(now - money_oldest),
    }


def pending(
    conn: Connection, limit: int, after: tuple[int, str, int] | None = None
) -> list[Any]:
    """Unsent events in sending order: priority, then lane, then seq.

    ``after`` is the (priority, lane, seq) of the last event already handed to
    the link, so a drain can page forward without re-reading what is in flight.
    """
    if after is None:
        return list(
            sql(
                conn,
                (
                    "SELECT id, lane, seq, priority, topic, payload, created_at "
                    "FROM outbox WHERE sent_at IS NULL ORDER BY priority, lane, seq "
                    "LIMIT :n"
                ),
                {"n": limit},
            ).all()
        )
    return list(
        sql(
            conn,
            (
                "SELECT id, lane, seq, priority, topic, payload, created_at FROM outbox "
                "WHERE sent_at IS NULL AND (priority, lane, seq) > (:p, :l, :s) "
                "ORDER BY priority, lane, seq LIMIT :n"
            ),
            {"p": after[0], "l": after[1], "s": after[2], "n": limit},
        ).all()
    )


def mark_sent(conn: Connection, ids: list[str], when: float | None = None) -> None:
    """Record the broker's acknowledgement of these events, a batch at a time."""
    stamp = time.time() if when is None else when
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        conn.exec_driver_sql(
            f"UPDATE outbox SET sent_at=? WHERE sent_at IS NULL AND id IN ({marks})",
            (stamp, *chunk),
        )


def resend_from(conn: Connection, lane: str, seq: int) -> int:
    """HQ asked for a lane again from ``seq``: mark those events unsent."""
    result = sql(
        conn,
        (
            "UPDATE outbox SET sent_at=NULL WHERE lane=:l AND seq>=:s AND sent_at IS NOT NULL"
        ),
        {"l": lane, "s": seq},
    )
    return int(result.rowcount or 0)


def prune(conn: Connection, acked_seq: int, older_than: float) -> int:
    """Drop sent events HQ no longer needs.

    Money events go only once HQ's journal acknowledgement has passed them and
    the retention period has run; other lanes once sent and retained as long.
    """
    result = sql(
        conn,
        (
            "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < :t "
            "AND (lane != 'money' OR seq <= :a)"
        ),
        {"t": older_than, "a": acked_seq},
    )
    return int(result.rowcount or 0)


def enqueue_location(
    conn: Connection, device: str, point: dict[str, Any], tid: str
) -> str:
    """Queue a track point on the loc lane in OwnTracks form.

    The object is OwnTracks' ``location`` with three fields of ours: ``id`` (the
    event id, for HQ's duplicate check), ``seq`` (the lane's) and ``historical``,
    which the link sets when it sends a point from the backlog.
    """
    seq = Store.next_counter(conn, "lane:loc")
    message = {
        "_type": "location",
        "tst": point["tst"],
        "lat": point["lat"],
        "lon": point["lon"],
        "tid": tid,
        "id": str(uuid.uuid4()),
        "seq": seq,
        "historical": False,
    }
    for key in ("acc", "alt", "vel", "cog"):
        if point.get(key) is not None:
            message[key] = point[key]
    _insert(conn, "loc", message, topic_for(device, "loc", "loc"), PRIORITY["loc"])
    return str(message["id"])
