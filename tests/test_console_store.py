"""The console's sessions and pending sign-ins in PostgreSQL, as the console's own least-privilege role
uses them (0006_console_sessions.sql): found by the hash of their id, ended with their tokens wiped,
and the applicant's second factor checked without the console ever reading the identity hashes."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from console.sessions import csrf_token, id_hash
from enrollment import identity
from store import cases, console_reads, console_sessions, roles
from store.cases import CaseSnapshot
from store.console_sessions import Tokens
from store.database import open_pool
from tests.support.databases import fresh_store
from tests.support.keys import LOOKUP_KEY

CASE_ID = "SC2027-SESS01"
STUDENT = "11010519491231002X"
NOW = dt.datetime(2027, 5, 6, 9, 0, tzinfo=dt.UTC)


def tokens(n: int) -> Tokens:
    expiry = NOW + dt.timedelta(minutes=10)
    return Tokens(access_token=f"access-{n}", refresh_token=f"refresh-{n}", id_token=f"id-{n}", access_expires=expiry)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool of the console's role on a fresh migrated database with one case (written as its owner)."""
    async with fresh_store(database_url) as (url, owner):
        urls = await roles.service_urls(url)
        snapshot = CaseSnapshot.model_validate(
            {
                "application_id": CASE_ID,
                "workflow_id": f"case-{CASE_ID}",
                "status": "awaiting_review",
                "progress": 1,
                "routing_phase": "phase_one",
                "channel": "enrollment_system",
                "stage": "primary",
                "registration_type": "hukou",
                "district_code": "510104",
                "school_year": 2027,
                "policy_version": "510100@2027.1",
                "student_id_number": STUDENT,
                "guardian_id_numbers": [],
                "auto_filled_count": 0,
                "platform_synced": False,
                "submitted_at": NOW,
                "first_seq": 0,
                "events": [],
            }
        )
        await cases.save_progress(owner, snapshot, LOOKUP_KEY)
        console = await open_pool(urls["console"], max_size=2)
        try:
            yield console
        finally:
            await console.close()


def test_the_cookie_id_is_neither_the_key_nor_the_csrf_token():
    assert id_hash("abc") != id_hash("abd") and len(id_hash("abc")) == 32
    assert csrf_token("abc") != id_hash("abc").hex()[:32] and "abc" not in csrf_token("abc")


async def test_a_session_lives_is_refreshed_and_ends_with_its_tokens_wiped(pool):
    key = id_hash("session-one")
    who = {"subject": "r-510104-1", "role": "reviewer", "district": "510104", "provider_sid": "sid-1"}
    expires = NOW + dt.timedelta(minutes=30)
    await console_sessions.start(pool, key, **who, tokens=tokens(1), now=NOW, expires=expires)
    found = await console_sessions.find(pool, key)
    assert found is not None and found.access_token == "access-1" and found.last_checked == NOW
    assert "access-1" not in repr(found) and "refresh-1" not in repr(found), "tokens stay out of logs"

    later = NOW + dt.timedelta(minutes=5)
    await console_sessions.touch(pool, key, later + dt.timedelta(minutes=30))
    async with pool.connection() as conn, conn.transaction():
        locked = await console_sessions.find(conn, key, for_update=True)
        assert locked is not None and locked.last_checked == NOW, "a request alone does not count as a check"
        await console_sessions.renew(conn, key, "reviewer", "510104", tokens(2), later)
    renewed = await console_sessions.find(pool, key)
    assert renewed is not None and (renewed.access_token, renewed.refresh_token) == ("access-2", "refresh-2")
    assert renewed.last_checked == later and renewed.expires == later + dt.timedelta(minutes=30)

    assert await console_sessions.end(pool, key, "signed_out", later)
    assert not await console_sessions.end(pool, key, "expired", later), "ends once"
    ended = await console_sessions.find(pool, key)
    assert ended is not None and ended.end_reason == "signed_out"
    assert (ended.access_token, ended.refresh_token, ended.id_token) == (None, None, None)


async def test_lapsed_sessions_are_ended_by_the_next_sign_in(pool):
    who = {"subject": "s-510104-1", "role": "staff", "district": "510104", "provider_sid": "sid-2"}
    await console_sessions.start(pool, id_hash("old"), **who, tokens=tokens(3), now=NOW, expires=NOW)
    lapsed = await console_sessions.end_lapsed(pool, NOW + dt.timedelta(seconds=1))
    assert [(s.subject, s.end_reason, s.access_token) for s in lapsed] == [("s-510104-1", "lapsed", None)]
    assert await console_sessions.end_lapsed(pool, NOW + dt.timedelta(seconds=1)) == []


async def test_a_pending_sign_in_is_taken_once_and_only_in_time(pool):
    await console_sessions.put_sign_in(pool, id_hash("pending"), {"next": "/queue"}, 60)
    assert await console_sessions.take_sign_in(pool, id_hash("pending")) == {"next": "/queue"}
    assert await console_sessions.take_sign_in(pool, id_hash("pending")) is None, "used once"
    await console_sessions.put_sign_in(pool, id_hash("stale"), {"next": ""}, 0)
    assert await console_sessions.take_sign_in(pool, id_hash("stale")) is None, "expired"


async def test_the_console_checks_the_second_factor_without_reading_the_hashes(pool):
    key = identity.lookup_key(STUDENT, LOOKUP_KEY.secret, LOOKUP_KEY.profile)
    assert await console_reads.student_matches(pool, CASE_ID, key)
    assert not await console_reads.student_matches(pool, CASE_ID, "0" * 64)
    assert not await console_reads.student_matches(pool, "SC2027-NONE", key)
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SELECT student_key FROM cases")
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("DELETE FROM console_sessions")
