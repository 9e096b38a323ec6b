"""Least-privilege roles: each service connects as a LOGIN member of its group role, does its real work,
and cannot rewrite the event log, the archive or the audit trail, nor drop or create tables. The log,
archive and trail refuse rewriting even a role granted it by mistake, and even their owner."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool
from temporalio.common import MetricMeter

from enrollment.case import TimelineEntry
from store import audit, cases, console_reads, intake, roles
from store.audit import AuditEvent
from store.cases import CaseSnapshot
from store.database import open_pool
from tests.support.databases import fresh_store
from tests.support.keys import LOOKUP_KEY
from workers.metrics import BacklogReporter

APPEND_ONLY = ("case_events", "archive_documents", "audit_events")
# A statement that would rewrite each append-only table, whatever its rows.
REWRITES = {
    "case_events": ("TRUNCATE case_events", "UPDATE case_events SET step = 'forged'", "DELETE FROM case_events"),
    "archive_documents": (
        "TRUNCATE archive_documents",
        "UPDATE archive_documents SET document = '{}'",
        "DELETE FROM archive_documents",
    ),
    "audit_events": ("TRUNCATE audit_events", "UPDATE audit_events SET outcome = 'x'", "DELETE FROM audit_events"),
}
CASE_ID = "SC2027-ROLES01"


class Store:
    """A migrated throw-away database, its owner's URL and pool, and every service's URL (a LOGIN member)."""

    def __init__(self, owner_url: str, owner: AsyncConnectionPool, urls: dict[str, str]):
        self.owner_url, self.owner, self.urls = owner_url, owner, urls

    @contextlib.asynccontextmanager
    async def pool(self, service: str) -> AsyncIterator[AsyncConnectionPool]:
        # open_pool checks the migrations as the service: it may read schema_migrations, not create tables.
        pool = await open_pool(self.urls[service], max_size=2)
        try:
            yield pool
        finally:
            await pool.close()

    async def connect(self, service: str) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(self.urls[service], autocommit=True)


@pytest.fixture(scope="module")
async def store(database_url: str) -> AsyncIterator[Store]:
    async with fresh_store(database_url) as (url, owner):
        # Passwords as a deployment sets them (the embedded server's trust authentication ignores them).
        passwords = {service: secrets.token_hex(16) for service in roles.SERVICES}
        urls = await roles.service_urls(url, passwords)
        assert await roles.service_urls(url, passwords) == urls, "idempotent"
        yield Store(url, owner, {str(service): service_url for service, service_url in urls.items()})


def snapshot(status: str, progress: int, first_seq: int, steps: list[str]) -> CaseSnapshot:
    at = dt.datetime(2027, 5, 6, 9, 0, tzinfo=dt.UTC)
    return CaseSnapshot.model_validate(
        {
            "application_id": CASE_ID,
            "workflow_id": f"case-{CASE_ID}",
            "status": status,
            "progress": progress,
            "routing_phase": "phase_one",
            "channel": "enrollment_system",
            "stage": "primary",
            "registration_type": "hukou",
            "district_code": "510104",
            "school_year": 2027,
            "policy_version": "510100@2027.1",
            "student_id_number": "11010519491231002X",
            "guardian_id_numbers": ["11010519491231002X"],
            "auto_filled_count": 0,
            "platform_synced": False,
            "submitted_at": at,
            "first_seq": first_seq,
            "events": [TimelineEntry(at=at, step=step, actor="system") for step in steps],
        }
    )


async def refused(conn: psycopg.AsyncConnection, statement: str) -> str:
    """The SQLSTATE a statement is refused with (its own transaction, rolled back)."""
    with pytest.raises(psycopg.Error) as error:
        async with conn.transaction():
            await conn.execute(statement)
    assert error.value.sqlstate is not None
    return error.value.sqlstate


def test_login_urls_keep_the_server_and_replace_the_user():
    assert (
        roles.login_url("postgresql://postgres:@/postgres?host=/tmp/pg", "worker")
        == "postgresql://enroll_worker_login@/postgres?host=/tmp/pg"
    )
    assert (
        roles.login_url("postgresql://owner:s3cret@db:5432/enrollment?sslmode=require&user=x", "api", "p@ss/word")
        == "postgresql://enroll_api_login:p%40ss%2Fword@db:5432/enrollment?sslmode=require"
    )
    keywords = roles.login_url("host=db dbname=enrollment user=owner password=s3cret", "auditor", login="audit-7")
    assert conninfo_to_dict(keywords) == {"host": "db", "dbname": "enrollment", "user": "audit-7"}
    with pytest.raises(ValueError, match="not one of worker, console, api, auditor"):
        roles.login_url("postgresql://db/enrollment", "ops")


async def test_a_superuser_is_never_made_a_service_login(store):
    async with store.owner.connection() as conn:
        row = await (await conn.execute("SELECT current_user")).fetchone()
    assert row is not None
    with pytest.raises(ValueError, match="more rights than a service needs"):
        await roles.ensure_login_role(store.owner_url, "console", login=row[0])
    with pytest.raises(ValueError, match="not one of"):
        await roles.ensure_login_role(store.owner_url, "ops")


# Each service's real work first, so the tables hold rows for the refusals below.


async def test_the_worker_saves_progress_archives_and_reports_the_backlog(store):
    await write_a_case_as_the_worker(store)
    record = await cases.case_record(store.owner, CASE_ID)
    assert record is not None and record["case"]["status"] == "withdrawn"
    assert [e["seq"] for e in record["events"]] == [0, 1, 2, 3, 4]
    assert [d["kind"] for d in record["archive"]] == ["acceptance", "result", "review"]


async def write_a_case_as_the_worker(store: Store) -> None:
    """What a case worker writes for a case that ends withdrawn (idempotent, as its activities are)."""
    async with store.pool("worker") as pool:
        await cases.save_progress(pool, snapshot("verifying", 3, 0, ["submitted", "accepted", "verifying"]), LOOKUP_KEY)
        later = snapshot("withdrawn", 5, 3, ["awaiting_review", "withdrawn"])
        await cases.save_progress(pool, later, LOOKUP_KEY)
        await cases.save_progress(pool, later, LOOKUP_KEY)  # a retried activity
        await cases.save_progress(pool, snapshot("verifying", 3, 0, ["submitted", "accepted", "verifying"]), LOOKUP_KEY)
        documents: dict[str, dict[str, Any]] = {
            "acceptance": {"student": {"name": "张三"}},
            "review": {},
            "result": {"status": "withdrawn"},
        }
        await cases.archive(pool, CASE_ID, documents)
        await cases.archive(pool, CASE_ID, documents)
        await BacklogReporter(pool, MetricMeter.noop).report_once()


async def test_the_api_hands_in_holds_places_and_remembers_nonces(store):
    async with store.pool("api") as pool:
        first = await intake.record_hand_in(pool, intake.HandIn("SC2027-ROLES02", "platform", "510104", "f1"))
        assert await intake.record_hand_in(pool, intake.HandIn("SC2027-ROLES02", "other", "510104", "f2")) == first
        assert await intake.hand_in_of(pool, "SC2027-ROLES02") == first
        held = await intake.open_application(pool, "student-key", 2027, "SC2027-ROLES02", "platform")
        assert held.application_id == "SC2027-ROLES02"
        await intake.release_place(pool, "SC2027-ROLES02")
        assert await intake.remember_nonce(pool, "platform", "n-1") is True
        assert await intake.remember_nonce(pool, "platform", "n-1") is False
        assert await intake.forget_nonces_before(pool, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)) == 1
        await audit.record(pool, AuditEvent(actor="platform", role="client", action="hand_in", outcome="accepted"))
        # Ops' re-verification through the API names the cases an outage sent offline, and nothing more.
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        assert await cases.unanswered_offline_cases(pool, since, dt.datetime.now(dt.UTC)) == []


async def test_the_console_reads_the_archive_card_and_writes_the_audit_trail(store):
    await write_a_case_as_the_worker(store)
    async with store.pool("console") as pool:
        card = await console_reads.archive_card(pool, CASE_ID)
        assert card is not None and card.status == "withdrawn" and card.steps == 5
        assert [d.kind for d in card.documents] == ["acceptance", "result", "review"]
        assert await console_reads.archive_card(pool, "SC2027-NONE") is None
        await audit.record(
            pool,
            AuditEvent(actor="r-01", role="reviewer", district="510104", case_id=CASE_ID, action="view", outcome="ok"),
        )


async def test_the_auditor_reads_and_verifies_the_trail_and_the_owner_purges(store):
    await audit.record(store.owner, AuditEvent(actor="r-02", role="reviewer", case_id=CASE_ID, action="x", outcome="y"))
    async with store.pool("auditor") as pool:
        assert [e.actor for e in await audit.events_for_case(pool, CASE_ID)][-1] == "r-02"
        assert [e.action for e in await audit.events_for_actor(pool, "r-02")] == ["x"]
        assert (await audit.verify_chain(pool)).ok
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await audit.purge(pool, 365)
    assert (await audit.purge(store.owner, 365)).purged == 0


# What no service may do.


@pytest.mark.parametrize("service", roles.SERVICES)
async def test_no_service_may_truncate_update_or_delete_the_log_the_archive_or_the_trail(store, service):
    async with await store.connect(service) as conn:
        states = {statement: await refused(conn, statement) for table in APPEND_ONLY for statement in REWRITES[table]}
    assert states == dict.fromkeys(states, "42501"), "insufficient_privilege for every one"


@pytest.mark.parametrize("service", roles.SERVICES)
async def test_no_service_may_drop_alter_or_create_tables(store, service):
    async with await store.connect(service) as conn:
        for table in (*APPEND_ONLY, "cases", "audit_anchors", "audit_chain_head", "schema_migrations"):
            assert await refused(conn, f"DROP TABLE {table}") == "42501", table  # must be owner
        assert await refused(conn, "ALTER TABLE case_events DISABLE TRIGGER case_events_append_only") == "42501"
        assert await refused(conn, "CREATE TABLE mine (id int)") == "42501"
        assert await refused(conn, "DELETE FROM schema_migrations") == "42501"


@pytest.mark.parametrize(
    ("service", "statement"),
    [
        ("worker", "SELECT * FROM audit_events"),
        ("worker", "INSERT INTO audit_events (actor, role, action, outcome) VALUES ('w', 'w', 'w', 'w')"),
        ("worker", "UPDATE cases SET student_key = 'other', district_code = '510105'"),
        ("worker", "DELETE FROM cases"),
        ("worker", "SELECT * FROM hand_ins"),
        ("worker", "INSERT INTO api_nonces (client_id, nonce) VALUES ('c', 'n')"),
        ("console", "SELECT document FROM archive_documents"),
        ("console", "SELECT student_key, guardian_keys FROM cases"),
        ("console", "SELECT detail FROM case_events"),
        ("console", "SELECT * FROM audit_events"),
        ("console", "UPDATE cases SET status = 'approved'"),
        ("console", "INSERT INTO case_events (application_id, seq, at, step, actor) VALUES ('a', 99, now(), 's', 'a')"),
        ("console", "INSERT INTO audit_events (seq, actor, role, action, outcome) VALUES (1, 'a', 'b', 'c', 'd')"),
        ("api", "SELECT * FROM cases"),
        ("api", "SELECT detail FROM case_events"),
        ("console", "SELECT offline_cases_of_outage(now() - interval '1 day', now(), NULL)"),
        ("worker", "SELECT offline_cases_of_outage(now() - interval '1 day', now(), NULL)"),
        ("api", "SELECT * FROM audit_events"),
        ("api", "INSERT INTO case_events (application_id, seq, at, step, actor) VALUES ('a', 99, now(), 's', 'a')"),
        ("api", "INSERT INTO audit_events (at, actor, role, action, outcome) VALUES (now(), 'a', 'b', 'c', 'd')"),
        ("api", "UPDATE hand_ins SET fingerprint = 'other'"),
        ("auditor", "INSERT INTO audit_events (actor, role, action, outcome) VALUES ('a', 'b', 'c', 'd')"),
        ("auditor", "SELECT * FROM cases"),
        ("auditor", "SELECT audit_purge(365)"),
        ("auditor", "UPDATE audit_chain_head SET seq = 0"),
    ],
)
async def test_each_service_is_refused_what_it_does_not_need(store, service, statement):
    async with await store.connect(service) as conn:
        assert await refused(conn, statement) == "42501"


async def test_a_mistaken_grant_still_cannot_rewrite_the_log_the_archive_or_the_trail(store):
    await write_a_case_as_the_worker(store)
    await audit.record(store.owner, AuditEvent(actor="r-03", role="reviewer", action="view", outcome="ok"))
    async with await psycopg.AsyncConnection.connect(store.owner_url) as conn, conn.transaction(force_rollback=True):
        await conn.execute(
            "GRANT UPDATE, DELETE, TRUNCATE ON case_events, archive_documents, audit_events TO enroll_worker"
        )
        await conn.execute(f"SET LOCAL ROLE {roles.login_role('worker')}")
        for table in APPEND_ONLY:
            for statement in REWRITES[table]:
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    async with conn.transaction():
                        await conn.execute(statement)


async def test_even_the_owner_cannot_rewrite_the_event_log_without_disabling_its_trigger(store):
    await write_a_case_as_the_worker(store)
    async with await psycopg.AsyncConnection.connect(store.owner_url) as conn, conn.transaction(force_rollback=True):
        for statement in (
            f"UPDATE case_events SET step = 'forged' WHERE application_id = '{CASE_ID}'",
            f"DELETE FROM case_events WHERE application_id = '{CASE_ID}'",
            f"UPDATE archive_documents SET document = '{{}}' WHERE application_id = '{CASE_ID}'",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                async with conn.transaction():
                    await conn.execute(statement)
        # Only by first turning the trigger off, as the owner, on purpose (rolled back here).
        await conn.execute("ALTER TABLE case_events DISABLE TRIGGER case_events_append_only")
        forged = await conn.execute(f"UPDATE case_events SET step = 'forged' WHERE application_id = '{CASE_ID}'")
        assert forged.rowcount == 5


async def test_only_the_owner_owns_the_tables(store):
    async with store.owner.connection() as conn:
        owners = await (
            await conn.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'S', 'v', 'm')"
            )
        ).fetchall()
        current = await (await conn.execute("SELECT current_user")).fetchone()
    assert owners == [current], "the migrating role owns every table and sequence"
    async with await store.connect("auditor") as conn:
        login = await (
            await conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        ).fetchone()
    assert login == (False, False, False)
