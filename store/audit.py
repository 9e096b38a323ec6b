"""The audit trail in PostgreSQL: who did what, on which case, from where, and how it ended.

Events are append-only and hash-chained by the database itself (store/migrations/0004_audit.sql):
a trigger numbers each event under the chain's lock and sets its prev_hash and hash, so a writer
can neither forge nor reorder the chain, and `verify_chain` recomputes every hash here to find the
first event that was altered, removed or slipped in. A retention purge deletes the oldest events and
leaves an anchor the rest of the chain is verified from.

No personal data in an event: actors are account subjects (r-01) or client ids, never names; the
case is its application id; `detail` holds what was done (a decision, a status, a reason code),
never names, identity numbers, phones or addresses. That is the caller's duty; `record` refuses a
text that has the shape of an identity or mobile number, as a last guard.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, JsonValue

# Six months, the least the trail is kept; ENROLL_AUDIT_RETENTION_DAYS may keep it longer.
MINIMUM_RETENTION_DAYS = 183
# The prev_hash of the first event ever.
GENESIS = bytes(32)
_CANONICAL_VERSION = "audit-v1"
# An identity number (17 digits and a check character) or a mainland mobile number, standing alone.
_PERSONAL_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{17}[0-9Xx]|1[3-9][0-9]{9})(?![0-9A-Za-z])")
_COLUMNS = "seq, at, actor, role, district, source, case_id, action, outcome, detail::text, prev_hash, hash"


class AuditEvent(BaseModel):
    """One thing a person or system did. `detail` must hold no personal data (see the module's docstring)."""

    model_config = ConfigDict(frozen=True)

    actor: str = Field(min_length=1, description="the account subject or client id, never a name")
    role: str = Field(min_length=1)
    district: str | None = None
    source: str | None = Field(None, description="the client's network address")
    case_id: str | None = Field(None, description="the application id")
    action: str = Field(min_length=1)
    outcome: str = Field(min_length=1)
    detail: dict[str, JsonValue] = Field(default_factory=dict)


class RecordedAuditEvent(AuditEvent):
    """An event as the trail holds it: its place in the chain and when it was recorded."""

    seq: int
    at: dt.datetime


class ChainReport(BaseModel):
    """What `verify_chain` found: intact, or the first event (`broken_seq`) where the chain breaks and why."""

    ok: bool
    checked: int
    anchor_seq: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    broken_seq: int | None = None
    reason: str | None = None


class PurgeResult(BaseModel):
    """Events up to `anchor_seq` were deleted (None: none was old enough)."""

    retention_days: int
    purged: int
    anchor_seq: int | None


def canonical(
    seq: int,
    at: dt.datetime,
    actor: str,
    role: str,
    district: str | None,
    source: str | None,
    case_id: str | None,
    action: str,
    outcome: str,
    detail_text: str,
) -> bytes:
    """The bytes an event's hash covers, as the database's audit_canonical() builds them.

    Each field is `|` then `-` for NULL or its UTF-8 length, `:` and the text; `at` in UTC to the
    microsecond, `detail` as PostgreSQL prints the jsonb.
    """
    fields = (
        str(seq),
        at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        actor,
        role,
        district,
        source,
        case_id,
        action,
        outcome,
        detail_text,
    )
    text = _CANONICAL_VERSION + "".join("|-" if f is None else f"|{len(f.encode())}:{f}" for f in fields)
    return text.encode()


def event_hash(prev_hash: bytes, canonical_bytes: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical_bytes).digest()


def _refuse_personal_numbers(event: AuditEvent) -> None:
    """A ValueError naming the field (never the value) that holds an identity or mobile number's shape."""

    def texts(value: Any, path: str) -> list[tuple[str, str]]:
        if isinstance(value, str):
            return [(path, value)]
        if isinstance(value, Mapping):
            return [found for key, item in value.items() for found in texts(item, f"{path}.{key}")]
        if isinstance(value, list):
            return [found for i, item in enumerate(value) for found in texts(item, f"{path}[{i}]")]
        return []

    fields = event.model_dump(exclude={"detail"})
    candidates = [(name, value) for name, value in fields.items() if isinstance(value, str)]
    candidates += texts(event.detail, "detail")
    for path, text in candidates:
        if _PERSONAL_NUMBER.search(text):
            raise ValueError(f"{path}: looks like an identity or phone number; the audit trail holds no personal data")


_INSERT = (
    "INSERT INTO audit_events (actor, role, district, source, case_id, action, outcome, detail)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


async def record(target: AsyncConnectionPool | AsyncConnection[Any], event: AuditEvent) -> None:
    """Append an event to the trail.

    Given a connection, in its current transaction (the event stands or falls with the action, and
    other writers wait for that transaction: keep it short); given a pool, in a transaction of its own.
    """
    _refuse_personal_numbers(event)
    params = (
        event.actor,
        event.role,
        event.district,
        event.source,
        event.case_id,
        event.action,
        event.outcome,
        Jsonb(event.detail),
    )
    if isinstance(target, AsyncConnection):
        await target.execute(_INSERT, params)
        return
    async with target.connection() as conn:
        await conn.execute(_INSERT, params)


def _recorded(row: tuple[Any, ...]) -> RecordedAuditEvent:
    seq, at, actor, role, district, source, case_id, action, outcome, detail_text = row[:10]
    return RecordedAuditEvent(
        seq=seq,
        at=at,
        actor=actor,
        role=role,
        district=district,
        source=source,
        case_id=case_id,
        action=action,
        outcome=outcome,
        detail=json.loads(detail_text),
    )


async def events_for_case(pool: AsyncConnectionPool, application_id: str, limit: int = 200) -> list[RecordedAuditEvent]:
    """The case's latest `limit` events, oldest first."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                f"SELECT {_COLUMNS} FROM audit_events WHERE case_id = %s ORDER BY seq DESC LIMIT %s",
                (application_id, limit),
            )
        ).fetchall()
    return [_recorded(row) for row in reversed(rows)]


async def events_for_actor(
    pool: AsyncConnectionPool,
    actor: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 200,
) -> list[RecordedAuditEvent]:
    """What one person (account subject) or system did from `since` (inclusive) to `until` (exclusive):
    the latest `limit` events of that span, oldest first."""
    query = f"SELECT {_COLUMNS} FROM audit_events WHERE actor = %s"
    params: list[Any] = [actor]
    if since is not None:
        query += " AND at >= %s"
        params.append(since)
    if until is not None:
        query += " AND at < %s"
        params.append(until)
    query += " ORDER BY at DESC, seq DESC LIMIT %s"
    params.append(limit)
    async with pool.connection() as conn:
        rows = await (await conn.execute(query, params)).fetchall()
    return [_recorded(row) for row in reversed(rows)]


async def verify_chain(pool: AsyncConnectionPool, batch: int = 2000) -> ChainReport:
    """Recompute every event's hash from its fields, from the latest anchor (or the start) to the chain's head.

    Reads one snapshot (events appended meanwhile are left for the next run). The first break is
    reported: an event whose fields no longer give its hash (altered), one whose prev_hash is not
    the hash before it (an event before it removed, or it slipped in), or a head past the last event
    (events removed from the end).
    """
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        anchor = await (await conn.execute("SELECT seq, hash FROM audit_anchors ORDER BY seq DESC LIMIT 1")).fetchone()
        head = await (await conn.execute("SELECT seq, hash FROM audit_chain_head")).fetchone()
        anchor_seq: int | None = anchor[0] if anchor else None
        prev: bytes = bytes(anchor[1]) if anchor else GENESIS
        last_seq: int | None = anchor_seq
        first_seq: int | None = None
        checked = 0

        def broken(seq: int | None, reason: str) -> ChainReport:
            return ChainReport(
                ok=False,
                checked=checked,
                anchor_seq=anchor_seq,
                first_seq=first_seq,
                last_seq=last_seq,
                broken_seq=seq,
                reason=reason,
            )

        async with conn.cursor(name="audit_chain_walk") as cursor:
            cursor.itersize = batch
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM audit_events WHERE seq > %s ORDER BY seq",
                (anchor_seq if anchor_seq is not None else -1,),
            )
            async for row in cursor:
                seq = row[0]
                stored_prev, stored_hash = bytes(row[10]), bytes(row[11])
                if stored_prev != prev:
                    before = f"event {last_seq}" if last_seq is not None else "the start of the chain"
                    if anchor_seq is not None and last_seq == anchor_seq:
                        before = f"the anchor at {anchor_seq}"
                    return broken(seq, f"prev_hash does not match the hash of {before}: an event was removed or added")
                if event_hash(prev, canonical(*row[:10])) != stored_hash:
                    return broken(seq, "hash does not match the event's fields: the event was altered")
                prev, last_seq, checked = stored_hash, seq, checked + 1
                first_seq = seq if first_seq is None else first_seq
        if head is None:
            return broken(None, "the chain head is missing")
        head_seq, head_hash = head[0], bytes(head[1])
        if head_seq != last_seq or head_hash != prev:
            return broken(
                head_seq if head_seq is not None else last_seq,
                f"the chain head is at event {head_seq} but the last event linked is {last_seq}: events were removed"
                " from the end",
            )
    return ChainReport(ok=True, checked=checked, anchor_seq=anchor_seq, first_seq=first_seq, last_seq=last_seq)


def check_retention(days: int) -> int:
    if days < MINIMUM_RETENTION_DAYS:
        raise ValueError(f"audit retention must be at least {MINIMUM_RETENTION_DAYS} days (six months), not {days}")
    return days


async def purge(pool: AsyncConnectionPool, retention_days: int) -> PurgeResult:
    """Delete the events older than `retention_days` (at least 183) and leave an anchor; the database's owner only.

    The database refuses less than 183 days too, and appends an `audit_purge` event saying what went.
    """
    check_retention(retention_days)
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT anchor_seq, purged FROM audit_purge(%s)", (retention_days,))).fetchone()
    assert row is not None, "audit_purge returns one row"
    return PurgeResult(retention_days=retention_days, anchor_seq=row[0], purged=row[1])
