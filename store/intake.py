"""The intake's own records: who handed each application in, the one-open-application-per-child rule, request nonces.

The rule that a child holds at most one open application per school year is a
primary key here, so it holds under concurrent hand-ins through any channel.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class HandIn:
    application_id: str
    client_id: str
    district_code: str
    fingerprint: str


@dataclass(frozen=True)
class OpenApplication:
    application_id: str
    client_id: str


async def record_hand_in(pool: AsyncConnectionPool, hand_in: HandIn) -> HandIn:
    """Record who handed the application in, once; return the record as first written."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO hand_ins (application_id, client_id, district_code, fingerprint) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (application_id) DO NOTHING",
            (hand_in.application_id, hand_in.client_id, hand_in.district_code, hand_in.fingerprint),
        )
    first = await hand_in_of(pool, hand_in.application_id)
    assert first is not None, "the row was just written or was already there"
    return first


async def hand_in_of(pool: AsyncConnectionPool, application_id: str) -> HandIn | None:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT client_id, district_code, fingerprint FROM hand_ins WHERE application_id = %s",
                (application_id,),
            )
        ).fetchone()
    return None if row is None else HandIn(application_id, row[0], row[1], row[2])


async def open_application(
    pool: AsyncConnectionPool, student_key: str, school_year: int, application_id: str, client_id: str
) -> OpenApplication:
    """Hold the child's place for this application; return the application that holds it (this one, or an earlier)."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO open_applications (student_key, school_year, application_id, client_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (student_key, school_year, application_id, client_id),
        )
        row = await (
            await conn.execute(
                "SELECT application_id, client_id FROM open_applications WHERE student_key = %s AND school_year = %s",
                (student_key, school_year),
            )
        ).fetchone()
    if row is None:
        # The application id holds another child's place (a conflicting body): the case answers that.
        return OpenApplication(application_id, client_id)
    return OpenApplication(row[0], row[1])


async def release_place(pool: AsyncConnectionPool, application_id: str) -> None:
    """Let go of the child's place this application held (its case ended other than approved, or never began)."""
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM open_applications WHERE application_id = %s", (application_id,))


async def remember_nonce(pool: AsyncConnectionPool, client_id: str, nonce: str) -> bool:
    """True the first time a client's nonce is seen; False for a replay."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO api_nonces (client_id, nonce) VALUES (%s, %s) ON CONFLICT DO NOTHING", (client_id, nonce)
        )
        return cursor.rowcount == 1


async def forget_nonces_before(pool: AsyncConnectionPool, cutoff: dt.datetime) -> int:
    async with pool.connection() as conn:
        cursor = await conn.execute("DELETE FROM api_nonces WHERE seen_at < %s", (cutoff,))
        return cursor.rowcount
