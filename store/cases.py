"""Reading and writing cases, their events and their archive. Every write is idempotent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import Field

from enrollment import identity
from enrollment.application import Application
from enrollment.case import CaseSummary, CaseView, TimelineEntry
from enrollment.identity import LookupSecret
from enrollment.statuses import FINAL_STATUSES, CaseStatus


class CaseSnapshot(CaseSummary):
    """The case row as of `progress` timeline entries, with the entries not yet written.

    Identity numbers arrive in clear (they are in the case's history anyway) and
    are stored only as keyed hashes.
    """

    workflow_id: str
    progress: int
    student_id_number: str
    guardian_id_numbers: list[str]
    submitted_at: dt.datetime
    first_seq: int
    events: list[TimelineEntry]
    # What the review queue shows and filters on (CaseFile.queue_facts); defaults for a case of an
    # earlier release whose worker has not been replaced yet.
    status_since: dt.datetime | None = None
    verification_outcomes: dict[str, str] = Field(default_factory=dict)
    materials_count: int = 0
    reminded: bool = False
    escalated: bool = False
    claimed_by: str | None = None
    claimed_until: dt.datetime | None = None


# A case that ends without a place lets the child's one open application go; an approved one keeps it.
PLACE_FREED_BY: frozenset[CaseStatus] = FINAL_STATUSES - {"approved"}


def _hashed(number: str, lookup: LookupSecret) -> str:
    return identity.lookup_key(number, lookup.secret, lookup.profile)


async def save_progress(pool: AsyncConnectionPool, snapshot: CaseSnapshot, lookup: LookupSecret) -> None:
    async with pool.connection() as conn, conn.transaction():
        await _write_progress(conn, snapshot, lookup)


async def _write_progress(conn: AsyncConnection, snapshot: CaseSnapshot, lookup: LookupSecret) -> None:
    row = snapshot.model_dump(exclude={"events", "first_seq", "student_id_number", "guardian_id_numbers"})
    row["student_key"] = _hashed(snapshot.student_id_number, lookup)
    row["guardian_keys"] = [_hashed(number, lookup) for number in snapshot.guardian_id_numbers]
    entered = (entry.at for entry in reversed(snapshot.events) if entry.step == snapshot.status)
    row["status_since"] = snapshot.status_since or next(entered, snapshot.submitted_at)
    row["verification_outcomes"] = Jsonb(snapshot.verification_outcomes)
    await conn.execute(
        """
        INSERT INTO cases (application_id, workflow_id, status, progress, routing_phase, channel, stage,
                           registration_type, district_code, school_year, policy_version, student_key,
                           guardian_keys, auto_filled_count, platform_synced, submitted_at, updated_at,
                           status_since, verification_outcomes, materials_count, reminded, escalated,
                           claimed_by, claimed_until)
        VALUES (%(application_id)s, %(workflow_id)s, %(status)s, %(progress)s, %(routing_phase)s, %(channel)s,
                %(stage)s, %(registration_type)s, %(district_code)s, %(school_year)s, %(policy_version)s,
                %(student_key)s, %(guardian_keys)s, %(auto_filled_count)s, %(platform_synced)s,
                %(submitted_at)s, now(), %(status_since)s, %(verification_outcomes)s, %(materials_count)s,
                %(reminded)s, %(escalated)s, %(claimed_by)s, %(claimed_until)s)
        ON CONFLICT (application_id) DO UPDATE SET
            status = EXCLUDED.status, progress = EXCLUDED.progress, routing_phase = EXCLUDED.routing_phase,
            policy_version = EXCLUDED.policy_version, auto_filled_count = EXCLUDED.auto_filled_count,
            platform_synced = EXCLUDED.platform_synced, updated_at = now(),
            status_since = EXCLUDED.status_since, verification_outcomes = EXCLUDED.verification_outcomes,
            materials_count = EXCLUDED.materials_count, reminded = EXCLUDED.reminded,
            escalated = EXCLUDED.escalated, claimed_by = EXCLUDED.claimed_by,
            claimed_until = EXCLUDED.claimed_until
        WHERE cases.progress <= EXCLUDED.progress
        """,
        row,
    )
    async with conn.cursor() as cursor:
        await cursor.executemany(
            """
            INSERT INTO case_events (application_id, seq, at, step, actor, detail, credential)
            VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (application_id, seq) DO NOTHING
            """,
            [
                (
                    snapshot.application_id,
                    snapshot.first_seq + offset,
                    e.at,
                    e.step,
                    e.actor,
                    e.detail,
                    e.credential,
                )
                for offset, e in enumerate(snapshot.events)
            ],
        )
    if snapshot.status in PLACE_FREED_BY:
        # The family may apply again for this school year (store/intake.py holds the rule).
        await conn.execute("DELETE FROM open_applications WHERE application_id = %s", (snapshot.application_id,))


def archive_documents(application: Application, view: CaseView, lookup: LookupSecret) -> dict[str, dict[str, Any]]:
    """The acceptance (受理), review (审核) and result (结果) records of a finished case.

    Names stay (the bureau's archive is about these people); identity numbers
    and phones are kept only masked, with a keyed hash for look-ups.
    """

    def person_id(number: str) -> dict[str, str]:
        return {"id_masked": identity.mask(number), "id_key": _hashed(number, lookup)}

    student = application.student
    acceptance = {
        "application_id": application.application_id,
        "school_year": application.school_year,
        "stage": application.stage,
        "registration_type": application.registration_type,
        "channel": application.channel,
        "district_code": application.district_code,
        "routing_phase": view.routing_phase,
        "policy_version": view.policy_version,
        "accepted_at": view.timeline[0].at.isoformat() if view.timeline else None,
        "student": {
            "name": student.name,
            "gender": student.gender,
            "birth_date": student.birth_date.isoformat(),
            **person_id(student.id_number),
        },
        "guardians": [
            {
                "name": g.name,
                "relation": g.relation,
                "phone_masked": g.phone[:3] + "****" + g.phone[-4:],
                **person_id(g.id_number),
            }
            for g in application.guardians
        ],
        "eligibility_problems": view.eligibility_problems,
        "verifications": {name: report.model_dump() for name, report in view.verifications.items()},
        "auto_filled": view.auto_filled,
    }
    review = {
        "reviews": [r.model_dump(mode="json") for r in view.reviews],
        "materials": view.materials,
        "school_choice": view.school_choice.model_dump() if view.school_choice else None,
    }
    result = {
        "status": view.status,
        "decision": view.review.decision if view.review else None,
        "opinion": view.review.opinion if view.review else None,
        "decided_at": view.timeline[-1].at.isoformat() if view.timeline else None,
        "platform_synced": view.platform_synced,
    }
    return {"acceptance": acceptance, "review": review, "result": result}


async def archive(
    pool: AsyncConnectionPool,
    application_id: str,
    documents: dict[str, dict[str, Any]],
    last_progress: tuple[CaseSnapshot, LookupSecret] | None = None,
) -> None:
    """File a finished case's documents; with `last_progress`, its last steps in the same transaction, so the
    archive and the case row that says the result reached the platform appear together."""
    async with pool.connection() as conn, conn.transaction():
        if last_progress is not None:
            await _write_progress(conn, *last_progress)
        for kind, document in documents.items():
            await conn.execute(
                "INSERT INTO archive_documents (application_id, kind, document) VALUES (%s, %s, %s)"
                " ON CONFLICT (application_id, kind) DO NOTHING",
                (application_id, kind, Jsonb(document)),
            )


async def case_record(pool: AsyncConnectionPool, application_id: str) -> dict[str, Any] | None:
    """The case row, its events in order and its archive documents."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        case = await (
            await cursor.execute("SELECT * FROM cases WHERE application_id = %s", (application_id,))
        ).fetchone()
        if case is None:
            return None
        events = await (
            await cursor.execute(
                "SELECT seq, at, step, actor, detail, credential FROM case_events"
                " WHERE application_id = %s ORDER BY seq",
                (application_id,),
            )
        ).fetchall()
        documents = await (
            await cursor.execute(
                "SELECT kind, document, archived_at FROM archive_documents WHERE application_id = %s ORDER BY kind",
                (application_id,),
            )
        ).fetchall()
    return {"case": case, "events": events, "archive": documents}


async def list_cases(
    pool: AsyncConnectionPool, district_code: str, status: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    query = (
        "SELECT application_id, status, stage, registration_type, routing_phase, channel, school_year, updated_at"
        " FROM cases WHERE district_code = %s"
    )
    params: list[Any] = [district_code]
    if status:
        query += " AND status = %s"
        params.append(status)
    query += " ORDER BY updated_at DESC LIMIT %s"
    params.append(limit)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        return await (await cursor.execute(query, params)).fetchall()


async def unanswered_offline_cases(
    pool: AsyncConnectionPool, since: dt.datetime, until: dt.datetime, district_code: str | None = None
) -> list[str]:
    """Cases waiting for offline registration because a department did not answer between `since` and `until`
    (the function `offline_cases_of_outage`, store/migrations/0009, which the API may call but not read around).
    """
    query = "SELECT offline_cases_of_outage(%(since)s, %(until)s, %(district)s::text)"
    params = {"district": district_code, "since": since, "until": until}
    async with pool.connection() as conn, conn.cursor() as cursor:
        return [row[0] for row in await (await cursor.execute(query, params)).fetchall()]
