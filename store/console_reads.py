"""What the review console reads from the case store: a case's archive card, and whether a student is the case's.

The console shows the card beside the case's own view, so a reviewer sees whether the
store has caught up with the case and which documents were filed when it ended. The
applicant's result lookup asks whether the identity number typed is the student's.
"""

from __future__ import annotations

import datetime as dt

from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel


class FiledDocument(BaseModel):
    kind: str
    archived_at: dt.datetime


class ArchiveCard(BaseModel):
    """The case's row as stored, how many timeline steps the store holds, and the archived documents."""

    status: str
    updated_at: dt.datetime
    steps: int
    documents: list[FiledDocument]


async def archive_card(pool: AsyncConnectionPool, application_id: str) -> ArchiveCard | None:
    """The case's archive card, or None when the store has no row for it yet."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT status, updated_at FROM cases WHERE application_id = %s", (application_id,))
        ).fetchone()
        if row is None:
            return None
        documents = await (
            await conn.execute(
                "SELECT kind, archived_at FROM archive_documents WHERE application_id = %s ORDER BY kind",
                (application_id,),
            )
        ).fetchall()
        steps = await (
            await conn.execute("SELECT count(*) FROM case_events WHERE application_id = %s", (application_id,))
        ).fetchone()
    return ArchiveCard(
        status=row[0],
        updated_at=row[1],
        steps=steps[0] if steps else 0,
        documents=[FiledDocument(kind=kind, archived_at=at) for kind, at in documents],
    )


async def student_matches(pool: AsyncConnectionPool, application_id: str, student_key: str) -> bool:
    """Whether the case's student has the identity number whose keyed hash is `student_key`.

    Asked through a function (0006_console_sessions.sql): the console may not read the hashes themselves.
    """
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT case_student_matches(%s, %s)", (application_id, student_key))
        ).fetchone()
    return bool(row and row[0])
