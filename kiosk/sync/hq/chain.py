"""The journal chain check, run against HQ's database rather than a worker's memory.

Money events arrive on the money lane with ``prev`` and ``hash``. A worker stores
them as ``pending``; this check then walks a device's pending entries in ``seq``
order from the last verified one. An entry is verified when its ``prev`` is the
hash verified before it and its ``hash`` matches its content. A missing entry is a
gap: the check waits ``resync_wait_s`` for it (the broker may deliver out of
order, or another worker may hold it) and then asks the device to send the lane
again from there. An entry that fails is marked tampered and raises an alarm;
the chain stops there until someone looks.

Because the walk reads the database, two workers on a shared subscription that
each see only part of a device's events still verify the whole chain: whichever
checks last finds every entry. The chain row is locked while it is walked, so
the two never move it on at the same time.

The same pass keeps HQ's cash view (cash held per collector, read from each
verified money event) and compares the device's reported journal end with what
HQ verified, which catches a journal whose tail was deleted on the device.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, func, select, update

from kiosk.journal import entry_hash
from kiosk.sync.hq.store import HqStore, cash, chains, devices, events
from kiosk.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

WALK_BATCH = 2000
# A resync that brought nothing is asked again after this many waits.
RESYNC_RETRY_WAITS = 10


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What one pass over a device's chain found, and what to send the device.

    Attributes:
        device: The device id.
        verified_seq: The last entry verified, 0 for none.
        verified_hash: Its hash (64 zeros for none).
        advanced: Entries verified in this pass.
        problem: Why the chain is broken, when it is.
        gap_seq: The first missing entry, when later ones are waiting.
        send_ack: ``(seq, hash)`` to acknowledge to the device now.
        send_resync: The ``seq`` to ask the device to send again from.
    """

    device: str
    verified_seq: int
    verified_hash: str
    advanced: int = 0
    problem: str | None = None
    gap_seq: int | None = None
    send_ack: tuple[int, str] | None = None
    send_resync: int | None = None


def held_after(type_: str, data: dict[str, Any], before: int | None) -> int | None:
    """Cash a collector holds after a money event, or None if it moves none.

    Payments and deposits carry the figure; a day opens at its opening cash; a
    void takes its amount back; a closed day ends at the count (the cash held
    plus the variance found).
    """
    if type_ in ("payment", "deposit"):
        return int(data["held_after"])
    if type_ == "day_open":
        return int(data["opening"])
    if type_ == "void":
        return (before or 0) - int(data["amount"])
    if type_ == "day_close":
        return int(data["held"]) + int(data.get("variance") or 0)
    return None


def _normal_time(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError:
        return None


class ChainChecker:
    """Walks device chains in HQ's database.

    Args:
        store: HQ's database.
        resync_wait_s: How long a gap may stay before a resync is sent.
        ack_interval_s: The least time between two journal_acks to one device.
    """

    def __init__(
        self, store: HqStore, *, resync_wait_s: float, ack_interval_s: float = 1.0
    ) -> None:
        self.store = store
        self.resync_wait_s = resync_wait_s
        self.ack_interval_s = ack_interval_s

    def check(self, device: str, now: float, *, can_send: bool = True) -> ChainCheck:
        """Verify what is pending for one device and decide what to send.

        Args:
            device: The device id.
            now: Wall-clock time (epoch seconds) for gap and ack timing.
            can_send: HQ has the device's key; without it nothing is sent.
        """
        with self.store.begin() as conn:
            self.store.ensure_chain(conn, device)
            row = conn.execute(
                select(chains).where(chains.c.device == device).with_for_update()
            ).one()
            chain = dict(row._mapping)
            result = self._walk(conn, device, chain)
            self._check_tail(conn, device, chain)
            sends = self._decide(chain, result, now, can_send)
            conn.execute(
                update(chains).where(chains.c.device == device).values(**chain)
            )
        if result.advanced:
            log.debug(
                "%s: journal verified to %d (+%d)",
                device,
                chain["verified_seq"],
                result.advanced,
            )
        return ChainCheck(
            device,
            chain["verified_seq"],
            chain["verified_hash"],
            result.advanced,
            chain["problem"],
            chain["gap_seq"],
            *sends,
        )

    # --- the walk ----------------------------------------------------------

    def _walk(self, conn: Connection, device: str, chain: dict[str, Any]) -> _Walk:
        walk = _Walk()
        if chain["broken_seq"] is not None:
            return walk
        held = self.store.cash_view(conn, device)
        moved: dict[str, int] = {}

        pending = (
            events.c.device == device,
            events.c.lane == "money",
            events.c.status == "pending",
        )
        columns = (
            events.c.id,
            events.c.seq,
            events.c.prev,
            events.c.hash,
            events.c.type,
            events.c.time,
            events.c.collector,
            events.c.data,
        )
        while True:
            expected = chain["verified_seq"] + 1

            # Entries at or before the verified end are second versions.
            for row in conn.execute(
                select(*columns).where(*pending, events.c.seq < expected)
            ).all():
                self._conflict(conn, device, row)

            # Behind a gap the same entries wait through many passes: look at
            # where the pending run starts before reading any of it.
            first = conn.execute(
                select(func.min(events.c.seq)).where(*pending)
            ).scalar()
            if first is None:
                break
            if first > expected:
                chain["gap"] = expected
                break

            rows = conn.execute(
                select(*columns)
                .where(*pending, events.c.seq < expected + WALK_BATCH)
                .order_by(events.c.seq, events.c.received_at)
            ).all()
            stop = self._walk_rows(conn, device, chain, rows, walk, held, moved)

            # One statement per chunk: a device back from days offline brings
            # thousands of entries, and a round trip each would dominate.
            for start in range(0, len(walk.verified), 500):
                chunk = walk.verified[start : start + 500]
                conn.execute(
                    update(events)
                    .where(events.c.id.in_(chunk))
                    .values(status="verified")
                )
            walk.verified.clear()
            if stop:
                break

        for collector, seq in moved.items():
            self.store.upsert(
                conn,
                cash,
                {
                    "device": device,
                    "collector": collector,
                    "held": held[collector],
                    "currency": walk.currency.get(collector),
                    "seq": seq,
                },
                ("device", "collector"),
            )
        return walk

    def _walk_rows(
        self,
        conn: Connection,
        device: str,
        chain: dict[str, Any],
        rows: Sequence[Any],
        walk: _Walk,
        held: dict[str, int],
        moved: dict[str, int],
    ) -> bool:
        """Advance over rows; True when the walk must stop (a gap or a break)."""
        for seq, group_iter in groupby(rows, key=lambda r: int(r.seq)):
            group = list(group_iter)
            expected = chain["verified_seq"] + 1

            # Another version of an entry already verified: the device's history
            # changed under HQ, or someone is sending in its name.
            if seq < expected:
                for other in group:
                    self._conflict(conn, device, other)
                continue
            if seq > expected:
                chain["gap"] = expected
                return True

            found = next(
                ((r, d) for r in group if (d := self._genuine(r, chain)) is not None),
                None,
            )
            if found is None:
                self._tampered(conn, device, chain, group[0])
                return True

            match, data = found
            if match.collector is not None:
                before = held.get(match.collector)
                try:
                    after = held_after(match.type, data, before)
                except (KeyError, TypeError, ValueError):
                    log.warning(
                        "%s: entry %d (%s) has no readable cash figures",
                        device,
                        seq,
                        match.type,
                    )
                    after = None
                if after is not None:
                    held[match.collector] = after
                    moved[match.collector] = seq
                    if isinstance(data.get("currency"), str):
                        walk.currency[match.collector] = data["currency"]

            walk.verified.append(match.id)
            chain["verified_seq"] = seq
            chain["verified_hash"] = match.hash
            chain["verified_time"] = match.time
            walk.advanced += 1
            for other in group:
                if other.id != match.id:
                    self._conflict(conn, device, other)
        return False

    @staticmethod
    def _genuine(row: Any, chain: dict[str, Any]) -> Any:
        """The entry's data when it follows the chain and matches its hash."""
        if row.prev != chain["verified_hash"]:
            return None
        try:
            data = json.loads(row.data)
        except ValueError:
            return None
        digest = entry_hash(
            int(row.seq), row.prev, row.type, row.time, row.collector, data
        )
        return data if digest == row.hash else None

    def _tampered(
        self, conn: Connection, device: str, chain: dict[str, Any], row: Any
    ) -> None:
        seq = int(row.seq)
        if row.prev != chain["verified_hash"]:
            problem = (
                f"entry {seq} ({row.type} at {row.time}) does not follow entry "
                f"{seq - 1}: its prev hash differs from the one HQ verified, so an "
                "entry was edited, deleted or reordered"
            )
        else:
            problem = (
                f"entry {seq} ({row.type} at {row.time}) was edited: its hash does "
                "not match its content"
            )
        conn.execute(
            update(events)
            .where(events.c.id == row.id)
            .values(status="tampered", problem=problem)
        )
        chain["broken_seq"] = seq
        chain["problem"] = problem
        self.store.raise_alarm(
            conn,
            device,
            "journal_tampered",
            problem,
            key=f"{device}:tampered:{seq}",
            seq=seq,
            event_id=row.id,
        )

    def _conflict(self, conn: Connection, device: str, row: Any) -> None:
        problem = (
            f"entry {row.seq} arrived a second time with other content "
            f"(event {row.id}); HQ keeps the version it verified"
        )
        conn.execute(
            update(events)
            .where(events.c.id == row.id)
            .values(status="conflict", problem=problem)
        )
        self.store.raise_alarm(
            conn,
            device,
            "journal_conflict",
            problem,
            key=f"{device}:conflict:{row.id}",
            seq=int(row.seq),
            event_id=row.id,
        )

    # --- a deleted tail ------------------------------------------------------

    def _check_tail(self, conn: Connection, device: str, chain: dict[str, Any]) -> None:
        """Flag a device whose own journal now ends before what HQ verified.

        A state message may be older than the newest events (two workers, or a
        retained message read late), so it counts only when it was made after
        the first entry it is missing: the device had that entry and lost it.
        """
        state = conn.execute(
            select(devices.c.state_seq, devices.c.state_time, devices.c.boot).where(
                devices.c.id == device
            )
        ).first()
        if state is None or state.state_seq is None:
            return
        state_seq = int(state.state_seq)
        if state_seq >= chain["verified_seq"]:
            return

        missing_time = conn.execute(
            select(events.c.time).where(
                events.c.device == device,
                events.c.lane == "money",
                events.c.status == "verified",
                events.c.seq == state_seq + 1,
            )
        ).scalar()
        state_time = _normal_time(state.state_time)
        missing = _normal_time(missing_time)
        if state_time is not None and missing is not None and state_time <= missing:
            return

        self.store.raise_alarm(
            conn,
            device,
            "journal_truncated",
            f"the device reports its journal ends at entry {state_seq}, but HQ "
            f"verified entries up to {chain['verified_seq']}: entries after "
            f"{state_seq} were deleted on the device",
            key=f"{device}:truncated:{state_seq}:{state.boot}",
            seq=state_seq + 1,
        )

    # --- what to send ------------------------------------------------------

    def _decide(
        self, chain: dict[str, Any], walk: _Walk, now: float, can_send: bool
    ) -> tuple[tuple[int, str] | None, int | None]:
        gap = chain.pop("gap", None)
        if gap != chain["gap_seq"]:
            chain["gap_seq"] = gap
            chain["gap_since"] = now if gap is not None else None
        if not can_send:
            return None, None

        resync = None
        if gap is not None and now - chain["gap_since"] >= self.resync_wait_s:
            retry = RESYNC_RETRY_WAITS * self.resync_wait_s
            if (
                chain["resync_seq"] != gap
                or now - (chain["resync_sent_at"] or 0) >= retry
            ):
                resync = gap
                chain["resync_seq"] = gap
                chain["resync_sent_at"] = now

        ack = None
        if (
            chain["verified_seq"] > chain["ack_seq"]
            and now - chain["ack_sent_at"] >= self.ack_interval_s
        ):
            ack = (chain["verified_seq"], chain["verified_hash"])
            chain["ack_seq"] = chain["verified_seq"]
            chain["ack_sent_at"] = now
        return ack, resync


class _Walk:
    """What one walk verified."""

    def __init__(self) -> None:
        self.advanced = 0
        self.verified: list[str] = []
        self.currency: dict[str, str] = {}


def devices_needing_check(store: HqStore) -> list[str]:
    """Devices with an unsent acknowledgement or an open gap."""
    with store.begin() as conn:
        rows = conn.execute(
            select(chains.c.device).where(
                chains.c.broken_seq.is_(None),
                (chains.c.verified_seq > chains.c.ack_seq)
                | chains.c.gap_seq.is_not(None),
            )
        ).all()
    return [str(r[0]) for r in rows]
