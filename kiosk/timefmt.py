"""Times as the journal and the wire write them: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_rfc3339(value: str) -> datetime:
    """Read an RFC 3339 time; a naive time is refused, not guessed."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no offset")
    return moment.astimezone(UTC)
