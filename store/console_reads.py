"""What the review console reads from the case store: the district's review queue, a case's archive card,
and whether a student is the case's.

The console shows the card beside the case's own view, so a reviewer sees whether the
store has caught up with the case and which documents were filed when it ended. The
applicant's result lookup asks whether the identity number typed is the student's.
"""

from __future__ import annotations

import datetime as dt

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from enrollment.statuses import PASSED_OUTCOMES


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


class QueueFilters(BaseModel):
    """A reviewer's filters on the district's queue; None leaves a filter off."""

    stage: str | None = None
    registration_type: str | None = None
    channel: str | None = None
    routing_phase: str | None = None
    # verifier -> the outcome it must have had (e.g. {"hukou": "matched"})
    outcomes: dict[str, str] = {}
    min_days_waiting: float | None = None
    reminded: bool | None = None
    escalated: bool | None = None
    application_id: str | None = None
    # The keyed hash of a student's or guardian's identity number (never the number itself).
    person_key: str | None = None
    # Only cases whose every verification matched or was not required (what a bulk approval takes).
    clean: bool = False
    # "unassigned": nobody holds the case; anything else: the reviewer whose hold it is.
    held_by: str | None = None


class QueueRow(BaseModel):
    application_id: str
    stage: str
    registration_type: str
    routing_phase: str | None
    channel: str
    status_since: dt.datetime
    verification_outcomes: dict[str, str]
    auto_filled_count: int
    materials_count: int
    reminded: bool
    escalated: bool
    claimed_by: str | None
    claimed_until: dt.datetime | None


class QueuePage(BaseModel):
    rows: list[QueueRow]
    total: int
    # When the store last heard from any of the district's cases at this step: how fresh the page is.
    as_of: dt.datetime | None


SORTS = {"oldest": "status_since ASC, application_id ASC", "newest": "status_since DESC, application_id DESC"}


async def queue_page(
    pool: AsyncConnectionPool,
    district_code: str,
    status: str,
    filters: QueueFilters,
    sort: str = "oldest",
    page: int = 1,
    page_size: int = 50,
) -> QueuePage:
    """One page of a district's cases at `status`, filtered and sorted, from the case store (one indexed query).

    The queue is the case store's row, which the case writes at each step; `as_of` says how recent it is.
    """
    where = ["district_code = %(district)s", "status = %(status)s"]
    params: dict[str, object] = {"district": district_code, "status": status}
    for column in ("stage", "registration_type", "channel", "routing_phase", "reminded", "escalated"):
        value = getattr(filters, column)
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if filters.outcomes:
        where.append("verification_outcomes @> %(outcomes)s")
        params["outcomes"] = Jsonb(filters.outcomes)
    if filters.min_days_waiting is not None:
        where.append("status_since <= now() - make_interval(secs => %(waiting)s)")
        params["waiting"] = filters.min_days_waiting * 86400
    if filters.application_id:
        where.append("application_id = %(application_id)s")
        params["application_id"] = filters.application_id
    if filters.person_key:
        where.append("application_id IN (SELECT district_cases_of_person(%(district)s, %(person_key)s))")
        params["person_key"] = filters.person_key
    if filters.held_by == "unassigned":
        where.append("(claimed_by IS NULL OR claimed_until <= now())")
    elif filters.held_by is not None:
        where.append("claimed_by = %(held_by)s AND claimed_until > now()")
        params["held_by"] = filters.held_by
    if filters.clean:
        where.append(
            "verification_outcomes <> '{}' AND NOT EXISTS (SELECT FROM jsonb_each_text(verification_outcomes) AS o"
            " WHERE o.value <> ALL (%(passed)s))"
        )
        params["passed"] = sorted(PASSED_OUTCOMES)
    condition = " AND ".join(where)
    params |= {"limit": page_size, "offset": (max(page, 1) - 1) * page_size}
    query = (
        "SELECT application_id, stage, registration_type, routing_phase, channel, status_since,"
        " verification_outcomes, auto_filled_count, materials_count, reminded, escalated, claimed_by, claimed_until"
        f" FROM cases WHERE {condition} ORDER BY {SORTS[sort]} LIMIT %(limit)s OFFSET %(offset)s"
    )
    summary = f"SELECT count(*), max(updated_at) FROM cases WHERE {condition}"
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = await (await cursor.execute(query, params)).fetchall()
        counted = await (await cursor.execute(summary, params)).fetchone()
    assert counted is not None, "an aggregate has one row"
    return QueuePage(rows=[QueueRow(**row) for row in rows], total=counted["count"], as_of=counted["max"])


class DistrictOverview(BaseModel):
    """A district's backlog as its supervisor sees it."""

    by_status: dict[str, int]
    # Cases awaiting review by how long they have waited against the policy: within the reminder,
    # past the reminder, past the escalation.
    review_age: dict[str, int]
    reminded: int
    escalated: int
    supplements_outstanding: int
    # (reviewer, China calendar day, decisions) for the last `days` days.
    decisions: list[tuple[str, dt.date, int]]


async def district_overview(
    pool: AsyncConnectionPool, district_code: str, reminder_days: float, escalation_days: float, days: int = 7
) -> DistrictOverview:
    params = {"district": district_code, "reminder": reminder_days * 86400, "escalation": escalation_days * 86400}
    async with pool.connection() as conn:
        statuses = await (
            await conn.execute(
                "SELECT status, count(*) FROM cases WHERE district_code = %(district)s GROUP BY status", params
            )
        ).fetchall()
        age = await (
            await conn.execute(
                "SELECT count(*) FILTER (WHERE status_since > now() - make_interval(secs => %(reminder)s)),"
                " count(*) FILTER (WHERE status_since <= now() - make_interval(secs => %(reminder)s)"
                "   AND status_since > now() - make_interval(secs => %(escalation)s)),"
                " count(*) FILTER (WHERE status_since <= now() - make_interval(secs => %(escalation)s)),"
                " count(*) FILTER (WHERE reminded), count(*) FILTER (WHERE escalated)"
                " FROM cases WHERE district_code = %(district)s AND status = 'awaiting_review'",
                params,
            )
        ).fetchone()
        decisions = await (
            await conn.execute(
                "SELECT split_part(e.actor, ':', 2), (e.at AT TIME ZONE 'Asia/Shanghai')::date, count(*)"
                " FROM case_events e JOIN cases c ON c.application_id = e.application_id"
                " WHERE c.district_code = %(district)s AND e.step LIKE 'reviewed:%%'"
                "   AND e.at >= now() - make_interval(days => %(days)s)"
                " GROUP BY 1, 2 ORDER BY 2, 1",
                params | {"days": days},
            )
        ).fetchall()
    assert age is not None, "an aggregate has one row"
    by_status = {status: count for status, count in statuses}
    return DistrictOverview(
        by_status=by_status,
        review_age={"within_reminder": age[0], "past_reminder": age[1], "past_escalation": age[2]},
        reminded=age[3],
        escalated=age[4],
        supplements_outstanding=by_status.get("awaiting_supplement", 0),
        decisions=[(reviewer, day, count) for reviewer, day, count in decisions],
    )
