"""A department that is down delays a family's verification; it does not send the family to the service point.

Days of waiting pass on the time-skipping test server: the case keeps asking a silent department for the
policy's patience, tells the applicant once, and only sends the family offline when the patience runs
out; ops can then have it ask again, and a family verified then goes on online.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.reverifications import ONE_RUN_AT_A_TIME
from enrollment.case import Reverification
from enrollment.oidc import IdentityProvider
from enrollment.policy import DEFAULT_POLICIES_DIR
from starter.reverify import Window, cases_in, reverify
from starter.signin import CLI_CLIENT
from tests.support.api import served_api
from tests.support.identity import cli_token, console_tokens
from tests.support.keys import LOOKUP_KEY
from tests.support.people import People, reviewer_of
from tests.support.processes import enroll_async, product_environment
from tests.support.stack import Stack, running_workers, settings_for

# A patience short enough that a test can skip past it in seconds, in a copy of the policies in force.
PATIENCE_HOURS = 3
T = TypeVar("T")


@pytest.fixture
def impatient_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, folder)
    for path in folder.glob("*.json"):
        city = json.loads(path.read_text(encoding="utf-8"))
        city["defaults"]["verification_patience"] = {"default_hours": 24, "hours": {"hukou": PATIENCE_HOURS}}
        path.write_text(json.dumps(city, ensure_ascii=False), encoding="utf-8")
    return folder


def notices(stack: Stack, application_id: str) -> list[str]:
    return [notice["body"]["kind"] for notice in stack.platform_record(application_id).get("notice", [])]


async def audit_seq(pool: AsyncConnectionPool) -> int:
    """Where the audit trail is now: it is append-only, so it keeps other tests' events of the same session."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events")).fetchone()
        return int(row[0]) if row else 0


async def audit_rows(pool: AsyncConnectionPool, actor: str, after: int) -> list[tuple[str, str]]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT action, outcome FROM audit_events WHERE actor = %s AND seq > %s ORDER BY seq", (actor, after)
        )
        return [(action, outcome) for action, outcome in await cursor.fetchall()]


async def skip_hours(stack: Stack, hours: float) -> None:
    """Move the test server's clock a minute at a time, so each retry on the way runs when it falls due."""
    for _ in range(int(hours * 60)):
        await stack.env.sleep(60)


async def while_skipping(stack: Stack, call: Awaitable[T]) -> T:
    """Await `call` while moving the clock five seconds at a time (a client's call does not move it)."""
    task = asyncio.ensure_future(call)
    while not task.done():
        await stack.env.sleep(5)
    return await task


async def test_a_two_hour_outage_during_a_batch_ends_with_the_families_verified_and_none_sent_offline(stack):
    # Pacing against the department's agreed rate is the verifier queue's, whatever the backlog:
    # tests/test_verifier_rate_limit.py measures it at the stand-ins.
    async with running_workers(stack, settings_for(stack.standins)):
        stack.set_faults("hukou", outage=True)
        batch = [stack.application("hukou_verified", index=i) for i in range(20, 23)]
        handles = [await stack.submit(application) for application in batch]
        delayed = await stack.wait_through_retries(handles, "verification_delayed", timeout=90)
        assert all(view.verifications.get("hukou") is None for view in delayed), "no outcome while it waits"

        await skip_hours(stack, 2)
        assert {(await stack.status(handle)).status for handle in handles} == {"verification_delayed"}
        stack.set_faults("hukou", outage=False)
        # Retries are at most three minutes apart: the department back, every case has its answer within them.
        views = await stack.wait_through_retries(handles, "awaiting_review", "awaiting_school_selection", timeout=90)

    for application, view in zip(batch, views, strict=True):
        assert view.verifications["hukou"].outcome == "matched", view.application_id
        kinds = notices(stack, application.application_id)
        assert kinds.count("verification_delayed") == 1 and "go_to_service_point" not in kinds, kinds
        steps = [entry.step for entry in view.timeline]
        assert steps.index("hukou_delayed") < steps.index("verification_delayed") < steps.index("hukou_verified")
    hukou = stack.stats()["hukou"]
    assert hukou["by_code"]["5030"] >= len(batch) * 10, "the cases kept asking through the outage"


async def test_an_outage_past_the_policys_patience_sends_the_family_offline_with_a_clear_notice(
    stack, impatient_policies
):
    async with running_workers(stack, settings_for(stack.standins, policies_dir=impatient_policies)):
        stack.set_faults("hukou", outage=True)
        application = stack.application("hukou_verified", index=26)
        handle = await stack.submit(application)
        await stack.wait_through_retries([handle], "verification_delayed")
        await skip_hours(stack, PATIENCE_HOURS + 0.5)
        view = await stack.wait_for(handle, "awaiting_offline_registration")

    hukou = view.verifications["hukou"]
    assert hukou.outcome == "unavailable" and f"no answer for {PATIENCE_HOURS} hours" in (hukou.reason or "")
    record = stack.platform_record(application.application_id)
    assert [notice["body"]["kind"] for notice in record["notice"]] == ["verification_delayed", "go_to_service_point"]
    offline = record["notice"][1]["body"]["message"]
    assert "公安户籍" in offline or "did not answer" in offline, offline
    # Retries backed off to three minutes: some tens of calls over the hours, not thousands.
    assert 20 <= stack.stats()["hukou"]["by_code"]["5030"] <= 4 * 60, stack.stats()["hukou"]


async def test_a_wrong_answer_still_sends_the_family_offline_at_once(stack, workers):
    application = stack.application("verification_failed_mismatch", index=3)
    handle = await stack.submit(application)
    view = await stack.wait_for(handle, "awaiting_offline_registration")
    assert "verification_delayed" not in [entry.step for entry in view.timeline]
    assert notices(stack, application.application_id) == ["go_to_service_point"]


async def test_ops_re_verification_after_an_outage_brings_the_families_back_online(
    stack, impatient_policies, slow_clock_provider, database_url
):
    people = People(slow_clock_provider.base_url)
    settings = settings_for(
        stack.standins, policies_dir=impatient_policies, identity_issuer=slow_clock_provider.base_url
    )
    async with running_workers(stack, settings):
        other = await stack.submit(stack.application("verification_failed_mismatch", index=4))
        await stack.wait_for(other, "awaiting_offline_registration")
        outage_began = await stack.env.get_current_time()
        stack.set_faults("hukou", outage=True)
        batch = [stack.application("hukou_verified", index=i) for i in (12, 13)]
        handle, _ = handles = [await stack.submit(application) for application in batch]
        await stack.wait_through_retries(handles, "verification_delayed")
        await skip_hours(stack, PATIENCE_HOURS + 0.5)
        for each in handles:
            await stack.wait_for(each, "awaiting_offline_registration")
        window = Window(since=outage_began, until=await stack.env.get_current_time())
        assert await cases_in(stack.pool, window) == sorted(a.application_id for a in batch), "not the mismatch"
        earlier = Window(since=outage_began - timedelta(hours=2), until=outage_began)
        assert await cases_in(stack.pool, earlier) == []

        request = Reverification(requested_by="ops-1", reason="户籍系统 outage 08:00-12:00")
        # The case asks for its five minutes, which the test server skips only when told to.
        still_down = await while_skipping(stack, people.send(handle, request))
        assert still_down.accepted and still_down.status == "awaiting_offline_registration", still_down

        stack.set_faults("hukou", outage=False)
        refused = await people.send(other, request)
        assert not refused.accepted and "every department answered" in (refused.reason or ""), refused
        forged = request.model_copy(update={"requested_by": "r-510104-1"})
        impostor = await people.send(handle, forged)
        assert not impostor.accepted and "may not reverify" in (impostor.reason or ""), impostor

        # The command ops run, as they run it (signed in on the command line), with its output.
        temporal = stack.env.client.service_client.config.target_host
        environment = product_environment(
            temporal, stack.standins.base_url, database_url, ENROLL_IDENTITY_ISSUER=slow_clock_provider.base_url
        )
        ops = await cli_token(slow_clock_provider.base_url, "ops-1")
        command = ["reverify", "--from", window.since.isoformat(), "--to", window.until.isoformat(), "--rate", "4"]
        ran = await enroll_async(environment, *command, "--reason", request.reason, "--token", ops)
        assert ran.returncode == 0, ran.stderr
        printed = [json.loads(line) for line in ran.stdout.splitlines()]
        assert [(r["result"], r["status"]) for r in printed] == [("online", "awaiting_review")] * 2, printed
        assert "online 2; still_offline 0; refused 0; failed 0" in ran.stderr, ran.stderr
        prove = await people.prover_for(request)
        again = await reverify(stack.client, [a.application_id for a in batch], prove, request, 4)
        assert {r.result for r in again} == {"refused"}, "a case back online is not asked again"
        views = [await stack.status(each) for each in handles]

    for application, view in zip(batch, views, strict=True):
        assert view.verifications["hukou"].outcome == "matched"
        assert notices(stack, application.application_id)[-1] == "verified_after_outage"
    steps = [entry.step for entry in views[0].timeline]
    assert steps.count("reverification_requested") == 2 and "reverification_refused" in steps


async def test_ops_re_verify_through_the_api_with_progress_a_result_per_case_and_only_as_ops(
    stack, impatient_policies, slow_clock_provider, database_url
):
    issuer = slow_clock_provider.base_url
    settings = settings_for(stack.standins, policies_dir=impatient_policies, identity_issuer=issuer)
    temporal = stack.env.client.service_client.config.target_host
    async with (
        running_workers(stack, settings),
        served_api(temporal, database_url, [], LOOKUP_KEY, issuer=issuer) as api,
        httpx.AsyncClient(base_url=api.base_url, timeout=60) as http,
    ):
        trail_before = await audit_seq(stack.pool)
        outage_began = await stack.env.get_current_time()
        stack.set_faults("hukou", outage=True)
        batch = [stack.application("hukou_verified", index=i) for i in (14, 15)]
        handles = [await stack.submit(application) for application in batch]
        await stack.wait_through_retries(handles, "verification_delayed")
        await skip_hours(stack, PATIENCE_HOURS + 0.5)
        for each in handles:
            await stack.wait_for(each, "awaiting_offline_registration")
        stack.set_faults("hukou", outage=False)
        order = {
            "from": outage_began.isoformat(),
            "to": (await stack.env.get_current_time()).isoformat(),
            "per_second": 4,
            "reason": "户籍系统 outage",
        }

        async def post(body: dict[str, object], token: str | None) -> httpx.Response:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return await http.post("/v1/reverifications", json=body, headers=headers)

        ops = await cli_token(issuer, "ops-1")
        # Who may: nobody anonymous, no reviewer, and not an ops token the API cannot act for (the console's).
        assert (await post(order, None)).status_code == 401
        reviewer = await cli_token(issuer, reviewer_of(batch[0].district_code))
        as_reviewer = await post(order, reviewer)
        assert as_reviewer.status_code == 403 and "reviewer may not" in as_reviewer.json()["errors"][0]
        console_ops = (await console_tokens(issuer, "ops-1"))["access_token"]
        from_the_console = await post(order, console_ops)
        assert from_the_console.status_code == 403 and "enroll login" in from_the_console.json()["errors"][0]
        # Bad orders name the field and the rule, and send nothing.
        for wrong, field in (
            ({"to": order["from"]}, "to: must be later than from"),
            ({"from": "2027-06-01T08:00"}, "from"),
            ({"per_second": 100}, "per_second"),
            ({"unexpected": 1}, "unexpected"),
        ):
            refused = await post(order | wrong, ops)
            assert refused.status_code == 422 and field in " ".join(refused.json()["errors"]), refused.text

        # A revoked sign-in still has a valid signature: the API asks the provider, and refuses it.
        revoked = await cli_token(issuer, "ops-1")
        await IdentityProvider(issuer).revoke(revoked, CLI_CLIENT)
        after_revocation = await post(order, revoked)
        assert after_revocation.status_code == 403 and "ended" in after_revocation.json()["errors"][0]
        # One run at a time, across every API replica: while another holds the run, a second is refused.
        async with await AsyncConnection.connect(database_url, autocommit=True) as other_replica:
            await other_replica.execute("SELECT pg_advisory_lock(%s)", (ONE_RUN_AT_A_TIME,))
            assert (await post(order, ops)).status_code == 409

        listed = [json.loads(line) for line in (await post(order | {"dry_run": True}, ops)).text.splitlines()]
        assert [line.get("application_id") for line in listed[1:-1]] == sorted(a.application_id for a in batch)
        assert {(await stack.status(each)).status for each in handles} == {"awaiting_offline_registration"}

        async with http.stream(
            "POST", "/v1/reverifications", json=order, headers={"authorization": f"Bearer {ops}"}
        ) as streamed:
            assert streamed.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(line) async for line in streamed.aiter_lines() if line]
        again = [json.loads(line) for line in (await post(order, ops)).text.splitlines()]
        views = [await stack.status(each) for each in handles]

    window = {"from": order["from"], "to": order["to"], "district_code": None}
    assert lines[0] == {"event": "selected", "cases": 2, "more_remain": False, "dry_run": False, **window}
    assert [(line["result"], line["status"], line["done"]) for line in lines[1:3]] == [
        ("online", "awaiting_review", 1),
        ("online", "awaiting_review", 2),
    ], lines
    assert lines[-1] == {"event": "done", "counts": {"online": 2, "still_offline": 0, "refused": 0, "failed": 0}}
    assert again[0]["cases"] == 0, "a case back online is not selected again"
    for application, view in zip(batch, views, strict=True):
        assert view.verifications["hukou"].outcome == "matched"
        assert notices(stack, application.application_id)[-1] == "verified_after_outage"
        requested = [entry for entry in view.timeline if entry.step == "reverification_requested"]
        assert [entry.actor for entry in requested] == ["ops:ops-1"], requested
    trail = await audit_rows(stack.pool, "ops-1", trail_before)
    assert ("reverify_requested", "dry_run") in trail and ("reverify_requested", "started") in trail
    assert trail.count(("reverify", "online")) == 2


def test_the_window_must_be_zoned_and_forward():
    with pytest.raises(ValueError, match="from, to: give a time zone"):
        Window(since=datetime(2027, 6, 1, 8), until=datetime(2027, 6, 1, 12))
    with pytest.raises(ValueError, match="to: must be later than from"):
        Window(since=datetime(2027, 6, 1, 8, tzinfo=UTC), until=datetime(2027, 6, 1, 8, tzinfo=UTC))
