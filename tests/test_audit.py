"""The audit trail: recorded and read by case and by person, hash-chained by the database, tamper-evident,
one valid chain under concurrent writers, purged after the retention with an anchor to verify from."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import uuid

import psycopg
import pytest
from pydantic import SecretStr

from enrollment.settings import Settings, SettingsError
from starter.audit_commands import add_audit_commands
from starter.cases import CaseActionError
from store import audit
from store.audit import AuditEvent
from tests.support.databases import fresh_store


def event(case_id: str | None = None, actor: str = "r-01", **changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "actor": actor,
        "role": "reviewer",
        "district": "510104",
        "source": "10.1.2.3",
        "case_id": case_id,
        "action": "review",
        "outcome": "accepted",
        "detail": {"decision": "approve", "opinion_length": 4},
    }
    return AuditEvent.model_validate({**fields, **changes})


async def as_owner(url: str, *statements: str) -> None:
    """Run statements as the database superuser (the tests' URL), in one transaction."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for statement in statements:
            await conn.execute(statement)


async def test_events_are_read_back_by_case_and_by_person(store_pool):
    case_a, case_b = f"SC-A-{uuid.uuid4().hex[:8]}", f"SC-B-{uuid.uuid4().hex[:8]}"
    reviewer, staff = f"r-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    await audit.record(store_pool, event(case_a, reviewer, action="view", outcome="shown"))
    await audit.record(store_pool, event(case_a, staff, role="staff", action="register_offline"))
    await audit.record(store_pool, event(case_b, reviewer, detail={"意见": "同意入学", "materials": ["居民户口簿"]}))
    await audit.record(store_pool, event(case_a, reviewer, outcome="refused", detail={"reason": "wrong_district"}))

    on_a = await audit.events_for_case(store_pool, case_a)
    assert [(e.actor, e.action, e.outcome) for e in on_a] == [
        (reviewer, "view", "shown"),
        (staff, "register_offline", "accepted"),
        (reviewer, "review", "refused"),
    ]
    assert on_a[0].seq < on_a[1].seq < on_a[2].seq and on_a[2].detail == {"reason": "wrong_district"}
    assert [e.outcome for e in await audit.events_for_case(store_pool, case_a, limit=2)] == ["accepted", "refused"]

    by_reviewer = await audit.events_for_actor(store_pool, reviewer)
    assert [e.case_id for e in by_reviewer] == [case_a, case_b, case_a]
    assert by_reviewer[1].detail == {"意见": "同意入学", "materials": ["居民户口簿"]}
    now = dt.datetime.now(dt.UTC)
    assert await audit.events_for_actor(store_pool, reviewer, since=now + dt.timedelta(minutes=1)) == []
    assert await audit.events_for_actor(store_pool, reviewer, until=now - dt.timedelta(minutes=1)) == []
    window = await audit.events_for_actor(
        store_pool, reviewer, since=now - dt.timedelta(minutes=1), until=now + dt.timedelta(minutes=1), limit=1
    )
    assert [e.case_id for e in window] == [case_a], "the latest event of the window"


async def test_a_number_shaped_like_an_identity_or_phone_number_is_refused_and_not_repeated(store_pool):
    for detail in ({"note": "学生 51010420170301001X"}, {"contact": {"phones": ["13912345678"]}}):
        with pytest.raises(ValueError, match="no personal data") as refused:
            await audit.record(store_pool, event("SC-PII", detail=detail))
        assert "51010420170301001X" not in str(refused.value) and "13912345678" not in str(refused.value)
    with pytest.raises(ValueError, match=r"^actor: "):
        await audit.record(store_pool, event("SC-PII", actor="51010420170301001X"))
    # Token ids, timestamps and application ids are not numbers of that shape.
    await audit.record(store_pool, event("SC2027-000123", detail={"token": "a1391234567890b", "at_ms": 1735689600000}))


async def test_the_chain_is_computed_by_the_database_and_verifies_in_python(database_url):
    async with fresh_store(database_url) as (url, pool):
        assert await audit.verify_chain(pool) == audit.ChainReport(ok=True, checked=0)
        await audit.record(pool, event("SC-1", detail={"意见": "同意", "n": 1.50, "none": None, "nested": {"b": [1]}}))
        await audit.record(pool, event(None, "platform", role="client", district=None, source=None, detail={}))
        # A writer cannot choose its place in the chain or its hashes: the trigger replaces them.
        await as_owner(
            url,
            "INSERT INTO audit_events (seq, actor, role, action, outcome, prev_hash, hash)"
            " VALUES (1000, 'x', 'y', 'forge', 'tried', '\\x00', '\\x00')",
        )
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT seq, audit_canonical(e), prev_hash, hash, at, detail::text FROM audit_events e ORDER BY seq"
                )
            ).fetchall()
        assert [row[0] for row in rows] == [1, 2, 3]
        prev = audit.GENESIS
        for seq, in_database, prev_hash, hash_, _at, _detail in rows:
            events = await _raw(pool, seq)
            assert audit.canonical(*events) == bytes(in_database), "Python and SQL build the same canonical text"
            assert bytes(prev_hash) == prev and bytes(hash_) == audit.event_hash(prev, bytes(in_database))
            prev = bytes(hash_)
        assert await audit.verify_chain(pool) == audit.ChainReport(ok=True, checked=3, first_seq=1, last_seq=3)


async def _raw(pool, seq: int) -> tuple:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT seq, at, actor, role, district, source, case_id, action, outcome, detail::text"
                " FROM audit_events WHERE seq = %s",
                (seq,),
            )
        ).fetchone()
    assert row is not None
    return row


async def test_no_one_may_rewrite_the_trail_not_even_its_owner(database_url):
    async with fresh_store(database_url) as (url, pool):
        await audit.record(pool, event("SC-1"))
        for statement in (
            "UPDATE audit_events SET outcome = 'refused'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "UPDATE audit_anchors SET seq = 0",
            "DELETE FROM audit_anchors",
            "TRUNCATE audit_anchors",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await as_owner(url, statement)
        # The purge's own way in is not a session setting anyone may set.
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await as_owner(
                url,
                "GRANT DELETE ON audit_events TO enroll_auditor",  # a mistaken grant, rolled back with the refusal
                "SET ROLE enroll_auditor",
                "SET enroll.audit_purge = 'on'",
                "DELETE FROM audit_events",
            )
        assert (await audit.verify_chain(pool)).ok


@pytest.mark.parametrize(
    ("tampering", "broken", "reason"),
    [
        ('UPDATE audit_events SET detail = \'{"decision": "reject"}\' WHERE seq = 3', 3, "altered"),
        ("UPDATE audit_events SET at = at - interval '1 day' WHERE seq = 2", 2, "altered"),
        ("DELETE FROM audit_events WHERE seq = 3", 4, "removed"),
        ("DELETE FROM audit_events WHERE seq = 1", 2, "removed"),
        ("DELETE FROM audit_events WHERE seq >= 4", 5, "from the end"),
    ],
    ids=["detail altered", "time altered", "middle event deleted", "first event deleted", "last events deleted"],
)
async def test_tampering_by_the_superuser_is_found_and_named(database_url, tampering, broken, reason):
    async with fresh_store(database_url) as (url, pool):
        for n in range(5):
            await audit.record(pool, event(f"SC-{n}"))
        assert (await audit.verify_chain(pool)).ok
        await as_owner(
            url,
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
            tampering,
            "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only",
        )
        report = await audit.verify_chain(pool)
        assert not report.ok and report.broken_seq == broken, report
        assert reason in (report.reason or "")


async def test_an_event_with_its_hash_recomputed_still_breaks_the_link_after_it(database_url):
    async with fresh_store(database_url) as (url, pool):
        for n in range(3):
            await audit.record(pool, event(f"SC-{n}"))
        # Rewrite event 2 and give it a hash that matches its new fields.
        await as_owner(
            url,
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
            "UPDATE audit_events SET outcome = 'refused' WHERE seq = 2",
            "UPDATE audit_events e SET hash = sha256(e.prev_hash || audit_canonical(e)) WHERE seq = 2",
        )
        report = await audit.verify_chain(pool)
        assert (report.ok, report.broken_seq) == (False, 3), report


async def test_concurrent_writers_make_one_valid_chain(database_url):
    async with fresh_store(database_url, max_size=20) as (_url, pool):

        async def writer(n: int) -> None:
            for i in range(5):
                await audit.record(pool, event(f"SC-{n}", f"r-{n}", detail={"i": i}))

        await asyncio.gather(*(writer(n) for n in range(20)))
        report = await audit.verify_chain(pool)
        assert report.ok and report.checked == 100, report
        for n in (0, 19):
            assert [e.detail["i"] for e in await audit.events_for_actor(pool, f"r-{n}")] == [0, 1, 2, 3, 4]


async def test_a_repeatable_read_writer_cannot_fork_the_chain(database_url):
    async with fresh_store(database_url) as (url, pool):
        await audit.record(pool, event("SC-1"))
        async with await psycopg.AsyncConnection.connect(url) as late:
            await late.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await late.execute("SELECT count(*) FROM audit_events")  # its snapshot, before the next event
            await audit.record(pool, event("SC-2"))
            with pytest.raises(psycopg.errors.SerializationFailure):
                await audit.record(late, event("SC-3"))
        assert (await audit.verify_chain(pool)).checked == 2


async def test_the_purge_keeps_the_retention_and_leaves_a_verifiable_chain_from_its_anchor(database_url):
    async with fresh_store(database_url) as (url, pool):
        now = dt.datetime.now(dt.UTC)
        ages = [400, 300, 200, 10, 190, 1]  # days; the owner may set `at`, as an import would
        await as_owner(
            url,
            *(
                "INSERT INTO audit_events (at, actor, role, case_id, action, outcome) VALUES"
                f" ('{(now - dt.timedelta(days=age)).isoformat()}', 'r-01', 'reviewer', 'SC-{age}', 'view', 'ok')"
                for age in ages
            ),
        )
        result = await audit.purge(pool, 183)
        # The prefix older than 183 days goes; the 190-day-old event waits behind a newer one.
        assert (result.purged, result.anchor_seq) == (3, 3)
        remaining = await audit.events_for_actor(pool, "r-01")
        assert [e.case_id for e in remaining] == ["SC-190", "SC-10", "SC-1"], "by time"
        async with pool.connection() as conn:
            anchors = await (await conn.execute("SELECT seq, purged, retention_days FROM audit_anchors")).fetchall()
        assert anchors == [(3, 3, 183)]
        async with pool.connection() as conn:
            said = await (
                await conn.execute("SELECT actor = session_user, detail FROM audit_events WHERE action = 'audit_purge'")
            ).fetchall()
        assert said == [(True, {"anchor_seq": 3, "purged": 3, "retention_days": 183})], "the purge is in the trail"
        report = await audit.verify_chain(pool)
        assert report == audit.ChainReport(ok=True, checked=4, anchor_seq=3, first_seq=4, last_seq=7), report

        assert (await audit.purge(pool, 365)).purged == 0, "nothing left is older than a year"
        await audit.record(pool, event("SC-after"))
        assert (await audit.verify_chain(pool)).ok

        # The first event after the anchor is checked against it.
        await as_owner(
            url,
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
            "DELETE FROM audit_events WHERE seq = 4",
        )
        report = await audit.verify_chain(pool)
        assert (report.ok, report.broken_seq) == (False, 5) and "anchor" in (report.reason or ""), report


async def test_a_retention_under_six_months_is_refused(database_url):
    async with fresh_store(database_url) as (url, pool):
        with pytest.raises(ValueError, match="at least 183 days"):
            await audit.purge(pool, 182)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least 183 days"):
            await as_owner(url, "SELECT audit_purge(30)")
    assert Settings().audit_retention_days == 183
    for wrong in ("90", "half a year", "-1"):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ENROLL_AUDIT_RETENTION_DAYS", wrong)
            with pytest.raises(SettingsError, match=r"ENROLL_AUDIT_RETENTION_DAYS: .*at least 183") as refused:
                Settings.from_env()
        assert wrong not in str(refused.value)


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+Z? \[(debug|info|warning|error)")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="enroll")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What a command printed, without the log lines of the identity provider this process also runs."""
    lines = capsys.readouterr().out.splitlines(keepends=True)
    return "".join(line for line in lines if not LOG_LINE.match(line))


async def test_the_audit_commands_print_tables_and_json(database_url, capsys, people):
    async with fresh_store(database_url) as (url, pool):
        await audit.record(pool, event("SC2027-000001", "r-01", detail={"意见": "同意"}))
        await audit.record(pool, event("SC2027-000001", "s-02", role="staff", action="register_offline"))
        settings = Settings().model_copy(update={"database_url": SecretStr(url)})
        auditor = await people.access_token("audit-1")
        reviewer = await people.access_token("r-510104-1")
        for command in (("case", "SC2027-000001"), ("person", "s-02"), ("verify",)):
            args = parse("audit", *command, "--token", reviewer)
            with pytest.raises(CaseActionError, match="a reviewer cannot do this"):
                await args.handler(args, settings)

        args = parse("audit", "case", "SC2027-000001", "--token", auditor)
        assert await args.handler(args, settings) == 0
        table = printed(capsys).splitlines()
        assert table[0].split() == [
            c.upper()
            for c in ("seq", "at", "actor", "role", "district", "case_id", "action", "outcome", "source", "detail")
        ]
        assert "r-01" in table[1] and '{"意见":"同意"}' in table[1] and table[-1] == "(2 rows)"

        china_today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
        args = parse(
            "audit",
            "person",
            "s-02",
            "--json",
            "--since",
            str(china_today),
            "--until",
            str(china_today),
            "--token",
            auditor,
        )
        assert await args.handler(args, settings) == 0
        lines = [json.loads(line) for line in printed(capsys).splitlines()]
        assert [(e["actor"], e["action"], e["case_id"]) for e in lines] == [
            ("s-02", "register_offline", "SC2027-000001")
        ]
        args = parse(
            "audit", "person", "s-02", "--json", "--until", str(china_today - dt.timedelta(days=1)), "--token", auditor
        )
        assert await args.handler(args, settings) == 0
        assert printed(capsys) == ""

        args = parse("audit", "verify", "--json", "--token", auditor)
        assert await args.handler(args, settings) == 0
        assert json.loads(printed(capsys))["ok"] is True

        args = parse("audit", "purge", "--retention-days", "100")
        with pytest.raises(ValueError, match="at least 183"):
            await args.handler(args, settings)
        args = parse("audit", "purge", "--json")
        assert await args.handler(args, settings) == 0
        assert json.loads(printed(capsys)) == {"retention_days": 183, "purged": 0, "anchor_seq": None}

        await as_owner(
            url,
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
            "DELETE FROM audit_events WHERE seq = 1",
        )
        args = parse("audit", "verify", "--token", auditor)
        assert await args.handler(args, settings) == 1
        assert "broken_seq: 2" in printed(capsys)
