"""The case store and archive in PostgreSQL: every step once, no identity number in clear."""

import datetime as dt

import psycopg
import pytest

from enrollment.case import OfflineRegistration, TimelineEntry
from enrollment.statuses import CaseStatus
from store import cases
from store.cases import CaseSnapshot
from store.database import migrate, migrations
from tests.support.keys import LOOKUP_KEY
from tests.support.people import review_by, staff_of
from tests.support.waiting import wait_until


async def test_migrations_are_recorded_and_applied_once(store_pool, database_url):
    assert await migrate(database_url) == [], "the pool already migrated this database"
    async with store_pool.connection() as conn:
        rows = await (await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")).fetchall()
    assert rows == [(version, name) for version, name, _ in migrations()]


async def all_text(pool, application_id: str) -> str:
    async with pool.connection() as conn:
        rows = []
        for table in ("cases", "case_events", "archive_documents"):
            rows += await (
                await conn.execute(f"SELECT t::text FROM {table} t WHERE application_id = %s", (application_id,))
            ).fetchall()
    return "\n".join(row[0] for row in rows)


async def test_a_finished_case_has_every_step_once_and_its_three_archive_documents(stack, workers):
    application = stack.application("verification_failed_not_found", index=4)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_offline_registration")
    district = application.district_code
    receipt = await stack.people.send(
        handle, OfflineRegistration(staff_id=staff_of(district), district_code=district, materials=["居民户口簿"])
    )
    assert receipt.accepted, receipt
    await stack.wait_for(handle, "awaiting_review")
    # A reviewer of another district: refused, and the refusal is one of the case's steps in the store too.
    other = "510105" if district != "510105" else "510104"
    receipt = await stack.people.send(handle, review_by(other, "approve", "同意"))
    assert not receipt.accepted, receipt
    await stack.wait_for_step(handle, "review_refused")
    receipt = await stack.people.send(
        handle,
        review_by(district, "approve", "同意入学"),
    )
    assert receipt.accepted, receipt
    final = await stack.result(handle)

    record = await cases.case_record(stack.pool, application.application_id)
    assert record is not None, "the finished case is not in the store"
    assert record["case"]["status"] == "approved" and record["case"]["platform_synced"]
    assert record["case"]["progress"] == len(final.timeline)
    assert [e["seq"] for e in record["events"]] == list(range(len(final.timeline)))
    assert [(e["step"], e["actor"]) for e in record["events"]] == [(e.step, e.actor) for e in final.timeline]
    assert [d["kind"] for d in record["archive"]] == ["acceptance", "result", "review"]
    documents = {d["kind"]: d["document"] for d in record["archive"]}
    assert documents["acceptance"]["student"]["name"] == application.student.name
    assert documents["acceptance"]["student"]["id_masked"].endswith(application.student.id_number[-1])
    assert documents["review"]["materials"] == ["居民户口簿"]
    assert documents["result"] == {
        **documents["result"],
        "status": "approved",
        "decision": "approve",
        "opinion": "同意入学",
    }

    text = await all_text(stack.pool, application.application_id)
    for person in [application.student, *application.guardians]:
        assert person.id_number not in text
    for guardian in application.guardians:
        assert guardian.phone not in text


async def test_a_refused_message_reaches_the_store_while_the_case_waits(stack, workers):
    application = stack.application("hukou_verified", index=16)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")
    receipt = await stack.people.send(
        handle,
        review_by(application.district_code, "maybe", "?"),
    )
    assert not receipt.accepted and receipt.reason.startswith("decision:"), receipt
    record = await wait_until(
        lambda: cases.case_record(stack.pool, application.application_id),
        until=lambda record: record is not None and any(e["step"] == "review_refused" for e in record["events"]),
        timeout=10,
        interval=0.05,
        message="the refusal written to the store while the case waited",
        describe=lambda record: None if record is None else [e["step"] for e in record["events"]],
    )
    assert record is not None
    assert record["case"]["status"] == "awaiting_review"


def snapshot(status: CaseStatus, progress: int, first_seq: int, steps: list[str]) -> CaseSnapshot:
    at = dt.datetime(2027, 5, 6, 9, 0, tzinfo=dt.UTC)
    return CaseSnapshot(
        application_id="SC2027-STORE01",
        workflow_id="case-SC2027-STORE01",
        status=status,
        progress=progress,
        routing_phase="phase_one",
        channel="enrollment_system",
        stage="primary",
        registration_type="hukou",
        district_code="510104",
        school_year=2027,
        policy_version="510100@2027.1",
        student_id_number="11010519491231002X",
        guardian_id_numbers=["11010519491231002X"],
        auto_filled_count=0,
        platform_synced=False,
        submitted_at=at,
        first_seq=first_seq,
        events=[TimelineEntry(at=at, step=step, actor="system") for step in steps],
    )


async def test_writes_are_idempotent_and_an_older_snapshot_never_wins(store_pool):
    await cases.save_progress(
        store_pool, snapshot("verifying", 3, 0, ["submitted", "accepted", "verifying"]), LOOKUP_KEY
    )
    newer = snapshot("awaiting_review", 5, 3, ["hukou_verified", "awaiting_review"])
    await cases.save_progress(store_pool, newer, LOOKUP_KEY)
    await cases.save_progress(store_pool, newer, LOOKUP_KEY)  # a retried activity
    await cases.save_progress(
        store_pool, snapshot("verifying", 3, 0, ["submitted", "accepted", "verifying"]), LOOKUP_KEY
    )  # late
    record = await cases.case_record(store_pool, "SC2027-STORE01")
    assert record is not None, "the case is not in the store"
    assert record["case"]["status"] == "awaiting_review"
    assert [e["step"] for e in record["events"]] == [
        "submitted",
        "accepted",
        "verifying",
        "hukou_verified",
        "awaiting_review",
    ]
    assert "11010519491231002X" not in await all_text(store_pool, "SC2027-STORE01")

    listed = await cases.list_cases(store_pool, "510104", "awaiting_review")
    assert "SC2027-STORE01" in [row["application_id"] for row in listed]


async def test_the_event_log_is_append_only(store_pool):
    await cases.save_progress(
        store_pool, snapshot("verifying", 3, 0, ["submitted", "accepted", "verifying"]), LOOKUP_KEY
    )
    async with store_pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("UPDATE case_events SET step = 'forged' WHERE application_id = 'SC2027-STORE01'")


async def test_the_last_steps_and_the_archive_land_together_once(store_pool):
    app_id = "SC2027-STORE02"

    def of_this_case(status: CaseStatus, progress: int, first_seq: int, steps: list[str]) -> CaseSnapshot:
        return snapshot(status, progress, first_seq, steps).model_copy(
            update={"application_id": app_id, "workflow_id": f"case-{app_id}"}
        )

    first = of_this_case("approved", 3, 0, ["submitted", "accepted", "approved"])
    await cases.save_progress(store_pool, first, LOOKUP_KEY)
    last = of_this_case("approved", 4, 3, ["result_synced_to_platform"]).model_copy(update={"platform_synced": True})
    # A document that cannot be stored (a NUL character) fails the archive step: nothing of it is written.
    with pytest.raises(psycopg.DataError):
        await cases.archive(store_pool, app_id, {"result": {"status": "\x00"}}, (last, LOOKUP_KEY))
    record = await cases.case_record(store_pool, app_id)
    assert record is not None and not record["case"]["platform_synced"] and len(record["events"]) == 3
    assert record["archive"] == []
    documents = {"result": {"status": "approved"}}
    await cases.archive(store_pool, app_id, documents, (last, LOOKUP_KEY))
    await cases.archive(store_pool, app_id, documents, (last, LOOKUP_KEY))  # a retried step
    record = await cases.case_record(store_pool, app_id)
    assert record is not None and record["case"]["platform_synced"] and record["case"]["progress"] == 4
    assert [e["step"] for e in record["events"]] == ["submitted", "accepted", "approved", "result_synced_to_platform"]
    assert [d["kind"] for d in record["archive"]] == ["result"]
