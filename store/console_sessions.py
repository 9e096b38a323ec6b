"""The review console's sessions and pending sign-ins in PostgreSQL (0006_console_sessions.sql).

Rows are keyed by the SHA-256 of the random id the browser's cookie holds (the console hashes it),
so this table alone never signs anyone in. The console decides what a session may do and when it
ends (console/sessions.py); this module only reads and writes the rows.

Functions that change a session take a connection, so that the console can read the row
`FOR UPDATE`, refresh the tokens at the provider and write them back in one transaction: two
requests of one session never both use its refresh token, which the provider would take for theft.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field

Target = AsyncConnectionPool | AsyncConnection[Any]
_COLUMNS = (
    "id_hash, subject, role, district, provider_sid, access_token, refresh_token, id_token, access_expires,"
    " created, expires, last_checked, ended_at, end_reason"
)


class Tokens(BaseModel):
    """What the provider issued for a session; kept out of repr, so a logged row shows none of them."""

    model_config = ConfigDict(frozen=True)

    access_token: str = Field(repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    id_token: str | None = Field(default=None, repr=False)
    access_expires: dt.datetime


class StoredSession(BaseModel):
    model_config = ConfigDict(frozen=True)

    id_hash: bytes
    subject: str
    role: str
    district: str | None
    provider_sid: str
    access_token: str | None = Field(repr=False)
    refresh_token: str | None = Field(repr=False)
    id_token: str | None = Field(repr=False)
    access_expires: dt.datetime
    created: dt.datetime
    expires: dt.datetime
    last_checked: dt.datetime
    ended_at: dt.datetime | None
    end_reason: str | None


async def _execute(target: Target, query: str, params: tuple[Any, ...]) -> None:
    if isinstance(target, AsyncConnection):
        await target.execute(query, params)
        return
    async with target.connection() as conn:
        await conn.execute(query, params)


async def start(
    pool: AsyncConnectionPool,
    id_hash: bytes,
    *,
    subject: str,
    role: str,
    district: str | None,
    provider_sid: str,
    tokens: Tokens,
    now: dt.datetime,
    expires: dt.datetime,
) -> None:
    """A new session, its tokens confirmed by the provider `now`."""
    await _execute(
        pool,
        f"INSERT INTO console_sessions ({_COLUMNS})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL)",
        (
            id_hash,
            subject,
            role,
            district,
            provider_sid,
            tokens.access_token,
            tokens.refresh_token,
            tokens.id_token,
            tokens.access_expires,
            now,
            expires,
            now,
        ),
    )


async def find(target: Target, id_hash: bytes, *, for_update: bool = False) -> StoredSession | None:
    """The session, ended or not; `for_update` locks its row until the connection's transaction ends."""
    query = f"SELECT {_COLUMNS} FROM console_sessions WHERE id_hash = %s" + (" FOR UPDATE" if for_update else "")
    if isinstance(target, AsyncConnection):
        async with target.cursor(row_factory=class_row(StoredSession)) as cursor:
            return await (await cursor.execute(query, (id_hash,))).fetchone()
    async with target.connection() as conn, conn.cursor(row_factory=class_row(StoredSession)) as cursor:
        return await (await cursor.execute(query, (id_hash,))).fetchone()


async def renew(
    conn: AsyncConnection[Any], id_hash: bytes, role: str, district: str | None, tokens: Tokens, now: dt.datetime
) -> None:
    """The tokens a refresh gave, with the role and district they now carry; checked at the provider `now`."""
    await conn.execute(
        "UPDATE console_sessions SET role = %s, district = %s, access_token = %s, refresh_token = %s,"
        " id_token = coalesce(%s, id_token), access_expires = %s, last_checked = %s"
        " WHERE id_hash = %s AND ended_at IS NULL",
        (
            role,
            district,
            tokens.access_token,
            tokens.refresh_token,
            tokens.id_token,
            tokens.access_expires,
            now,
            id_hash,
        ),
    )


async def touch(pool: AsyncConnectionPool, id_hash: bytes, expires: dt.datetime) -> None:
    """A request came: the idle deadline moves to `expires`."""
    await _execute(
        pool, "UPDATE console_sessions SET expires = %s WHERE id_hash = %s AND ended_at IS NULL", (expires, id_hash)
    )


async def confirmed(conn: AsyncConnection[Any], id_hash: bytes, now: dt.datetime) -> None:
    """The provider said `now` that the session's tokens are still active."""
    await conn.execute(
        "UPDATE console_sessions SET last_checked = %s WHERE id_hash = %s AND ended_at IS NULL", (now, id_hash)
    )


async def end(target: Target, id_hash: bytes, reason: str, now: dt.datetime) -> bool:
    """End the session and wipe its tokens; False when it had already ended."""
    query = (
        "UPDATE console_sessions SET ended_at = %s, end_reason = %s, access_token = NULL, refresh_token = NULL,"
        " id_token = NULL WHERE id_hash = %s AND ended_at IS NULL RETURNING 1"
    )
    if isinstance(target, AsyncConnection):
        return await (await target.execute(query, (now, reason, id_hash))).fetchone() is not None
    async with target.connection() as conn:
        return await (await conn.execute(query, (now, reason, id_hash))).fetchone() is not None


async def end_lapsed(pool: AsyncConnectionPool, now: dt.datetime) -> list[StoredSession]:
    """End the sessions whose time ran out while nobody used them; what they were, for the audit trail."""
    async with pool.connection() as conn, conn.cursor(row_factory=class_row(StoredSession)) as cursor:
        await cursor.execute(
            "UPDATE console_sessions SET ended_at = expires, end_reason = 'lapsed', access_token = NULL,"
            " refresh_token = NULL, id_token = NULL WHERE ended_at IS NULL AND expires <= %s"
            f" RETURNING {_COLUMNS}",
            (now,),
        )
        return await cursor.fetchall()


async def put_sign_in(pool: AsyncConnectionPool, id_hash: bytes, pending: dict[str, Any], seconds: int) -> None:
    """Keep a sign-in's pending state for `seconds` (the database's clock); unfinished ones are dropped meanwhile."""
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM console_sign_ins WHERE expires <= now()")
        await conn.execute(
            "INSERT INTO console_sign_ins (id_hash, pending, expires)"
            " VALUES (%s, %s, now() + make_interval(secs => %s))",
            (id_hash, Jsonb(pending), seconds),
        )


async def take_sign_in(pool: AsyncConnectionPool, id_hash: bytes) -> dict[str, Any] | None:
    """The pending state of a sign-in that has not expired, removed so it serves one callback only."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "DELETE FROM console_sign_ins WHERE id_hash = %s RETURNING pending, expires > now()", (id_hash,)
            )
        ).fetchone()
    if row is None or not row[1]:
        return None
    pending: dict[str, Any] = row[0]
    return pending
