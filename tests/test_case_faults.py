"""Departments and the platform failing: retried within budget, routed when it runs out, never doubled."""

import asyncio

import pytest
from temporalio.testing import ActivityEnvironment

from activities.platform import PlatformActivities, PlatformMessage
from starter import hand_in
from starter.intake import Intake, submit_one
from tests.support.keys import LOOKUP_KEY
from tests.support.people import review_by
from tests.support.stack import running_workers, settings_for
from workers.build import new_http_client


async def test_transient_errors_and_timeouts_are_retried_until_the_answer_comes(stack, workers):
    for service in ("hukou", "property"):
        stack.set_faults(service, error_rate=0.3, timeout_rate=0.1, timeout_seconds=3, seed=7)
    application = stack.application("hukou_verified", index=8)
    handle = await stack.submit(application)
    [view] = await stack.wait_through_retries([handle], "awaiting_review")

    assert {v: r.outcome for v, r in view.verifications.items()} == stack.expectation(application)["expected_outcomes"]
    stats = stack.stats()
    assert stats["hukou"]["total"] >= 1 and stats["hukou"]["by_code"].get("0000") == 1
    assert stats["property"]["by_code"].get("0000", 0) >= 1


async def test_a_department_down_for_a_while_is_waited_for(stack, workers):
    stack.set_faults("hukou", outage=True)
    application = stack.application("hukou_verified", index=9)
    handle = await stack.submit(application)
    await stack.wait_for_answers("hukou", "5030", 2)
    assert (await stack.status(handle)).status == "verifying"
    stack.set_faults("hukou", outage=False)

    view = await stack.wait_for(handle, "awaiting_review", timeout=60)
    assert view.verifications["hukou"].outcome == "matched"


async def test_a_platform_outage_delays_the_result_but_delivers_it_exactly_once(stack, workers):
    application = stack.application("hukou_verified", index=11)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")
    async with stack.platform_down():
        receipt = await stack.people.send(
            handle,
            review_by(application.district_code, "approve", "同意"),
        )
        assert receipt.accepted, receipt
        await stack.wait_for_answers("platform", "5030", 2)
        assert not (await stack.status(handle)).platform_synced
    result = await stack.result(handle)
    assert result.platform_synced
    record = stack.platform_record(application.application_id)
    assert len(record["result"]) == 1 and record["duplicates_refused"] == 0


async def test_a_result_sent_twice_is_recorded_once_at_the_platform(stack):
    settings = settings_for(stack.standins)
    message = PlatformMessage(
        application_id="SC2027-IDEMPOTENT", idempotency_key="SC2027-IDEMPOTENT/result", body={"status": "approved"}
    )
    async with new_http_client(settings) as http:
        platform = PlatformActivities(http, settings.platform_url)
        first = await ActivityEnvironment().run(platform.sync_result, message)
        second = await ActivityEnvironment().run(platform.sync_result, message)
    assert not first.duplicate and second.duplicate and first.receipt_id == second.receipt_id
    record = stack.platform_record("SC2027-IDEMPOTENT")
    assert len(record["result"]) == 1 and record["duplicates_refused"] == 1


async def test_the_same_application_submitted_twice_makes_one_case(stack, workers):
    application = stack.application("not_eligible_age", index=1)
    intake = Intake(stack.client, stack.pool, LOOKUP_KEY, "tests")
    concurrent = await asyncio.gather(*(submit_one(intake, application) for _ in range(10)))
    assert sorted(r.result for r in concurrent) == ["duplicate"] * 9 + ["started"]
    duplicate = next(r for r in concurrent if r.result == "duplicate")
    assert duplicate.errors == [f"application_id: {application.application_id} already has a case"]

    handle = stack.client.get_workflow_handle(concurrent[0].workflow_id)
    await stack.result(handle)
    later = await submit_one(intake, application)
    assert later.result == "duplicate", "a finished case still owns its application id"


async def test_a_batch_under_every_department_fault_ends_right_with_one_result_each(stack, workers):
    """30% 5xx and 10% timeouts on every verifier, property down for a while, the platform down for a while."""
    for service in ("hukou", "residence_permit", "social_insurance"):
        stack.set_faults(service, error_rate=0.3, timeout_rate=0.1, timeout_seconds=3, seed=11)
    stack.set_faults("property", outage=True)
    stack.set_faults("platform", error_rate=0.3, seed=5)
    batch = [stack.application("hukou_verified", index=i) for i in range(19, 27)]
    batch += [stack.application("non_hukou_verified", index=i) for i in range(12, 20)]
    batch += [stack.application("verification_failed_mismatch", index=i) for i in range(4, 7)]
    handles = [await stack.submit(application) for application in batch]

    await stack.wait_for_answers("property", "5030", 3, timeout=60)
    stack.set_faults("property", outage=False)
    views = await stack.wait_through_retries(handles, "awaiting_review", "awaiting_offline_registration", timeout=120)
    for application, view in zip(batch, views, strict=False):
        expected = stack.expectation(application)["expected_outcomes"]
        assert {v: r.outcome for v, r in view.verifications.items()} == expected, application.application_id
    async with stack.platform_down():
        for application, view in zip(batch, views, strict=False):
            if view.status == "awaiting_review":
                receipt = await stack.people.send(
                    handles[batch.index(application)],
                    review_by(application.district_code, "approve", "同意"),
                )
                assert receipt.accepted, (application.application_id, receipt)
        await stack.wait_for_answers("platform", "5030", 3)
        for application, view in zip(batch, views, strict=False):
            if view.status == "awaiting_review":
                await stack.wait_for(handles[batch.index(application)], "approved")
    finals = [await stack.result(handle) for handle in handles]

    stats = stack.stats()
    injected = sum(stats[s]["by_code"].get(code, 0) for s in stats for code in ("5000", "5030", "5040"))
    assert injected >= 20, stats
    for application, final in zip(batch, finals, strict=False):
        record = stack.platform_record(application.application_id)
        assert len(record["result"]) == 1, (application.application_id, record["result"])
        assert final.platform_synced
    print(f"\nbatch under faults: {len(batch)} cases, {injected} failed calls injected, 0 lost, 0 duplicate results")


async def test_a_case_whose_workers_are_down_is_a_try_again_and_keeps_the_childs_place(stack, monkeypatch):
    """No worker runs: the hand-in cannot get the case's answer, says so, and the same request later gets it."""
    monkeypatch.setattr(hand_in, "ANSWER_WITHIN_SECONDS", 1)
    application = stack.application("hukou_verified", index=9)
    with pytest.raises(hand_in.IntakeUnavailable):
        await hand_in.hand_in(stack.client, stack.pool, LOOKUP_KEY, application, "tests")
    same_child = application.model_copy(update={"application_id": application.application_id + "B"})
    refused = await hand_in.hand_in(stack.client, stack.pool, LOOKUP_KEY, same_child, "tests")
    assert refused.outcome == "child_has_open_application", "the place stays with the case that was started"

    async with running_workers(stack, settings_for(stack.standins)):
        answered = await hand_in.hand_in(stack.client, stack.pool, LOOKUP_KEY, application, "tests")
    # The first request reached the case and counts as its hand-in: this one is the same application again.
    assert answered.outcome == "again" and answered.answer is not None and answered.answer.eligible
