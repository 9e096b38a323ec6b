"""Several reviewers of one district: a case is held by one at a time, by the case itself, for a lease."""

from __future__ import annotations

from datetime import timedelta

from enrollment.case import Claim, Reassignment, Review
from store import cases as store
from tests.support.people import People
from tests.support.policies import district_policy
from tests.support.stack import running_workers, settings_for
from tests.support.waiting import wait_until

DISTRICT = "510104"
FIRST, SECOND = "r-510104-1", "r-510104-2"
SUPERVISOR = "sup-510104-1"


def claim(reviewer: str, action: str = "claim") -> Claim:
    return Claim.model_validate({"action": action, "reviewer_id": reviewer, "district_code": DISTRICT})


def approve(reviewer: str) -> Review:
    return Review(reviewer_id=reviewer, district_code=DISTRICT, decision="approve", opinion="同意入学")


async def test_one_reviewer_holds_a_case_until_they_decide_release_it_or_the_lease_lapses(
    stack, population, slow_clock_provider
):
    people = People(slow_clock_provider.base_url)
    index = next(i for i, a in enumerate(population.by_scenario("hukou_verified")) if a["district_code"] == DISTRICT)
    async with running_workers(stack, settings_for(stack.standins, identity_issuer=slow_clock_provider.base_url)):
        handle = await stack.submit(stack.application("hukou_verified", index=index))
        await stack.wait_for(handle, "awaiting_review")

        assert (await people.send(handle, claim(FIRST))).accepted
        taken = await people.send(handle, claim(SECOND))
        assert not taken.accepted and (taken.reason or "").startswith(f"claimed by {FIRST} until"), taken
        decided = await people.send(handle, approve(SECOND))
        assert not decided.accepted and f"claimed by {FIRST}" in (decided.reason or ""), decided
        not_theirs = await people.send(handle, claim(SECOND, "release"))
        assert not not_theirs.accepted, "only the holder lets a case go"
        view = await stack.status(handle)
        assert view.claim is not None and view.claim.holder == FIRST and view.status == "awaiting_review"
        # The queue (the case store's row) shows who holds it.
        row = await wait_until(
            lambda: store.case_record(stack.pool, view.application_id),
            until=lambda record: record is not None and record["case"]["claimed_by"] == FIRST,
            timeout=20,
            interval=0.1,
            message="the holder in the case store",
        )
        assert row is not None and row["case"]["claimed_until"] == view.claim.until

        # The holder leaves without a word: past the policy's lease, another reviewer takes the case.
        lease = district_policy(DISTRICT).claim_lease_hours
        await stack.env.sleep(timedelta(hours=lease, minutes=1))
        assert (await people.send(handle, claim(SECOND))).accepted
        assert not (await people.send(handle, approve(FIRST))).accepted
        assert (await people.send(handle, claim(SECOND, "release"))).accepted
        assert (await people.send(handle, claim(FIRST))).accepted
        assert (await people.send(handle, approve(FIRST))).accepted
        final = await stack.result(handle)

    assert final.status == "approved" and [r.reviewer_id for r in final.reviews] == [FIRST]
    assert final.claim is None, "a decision lets the case go"

    assert final.claim is None, "a decision lets the case go"
    steps = [entry.step for entry in final.timeline]
    assert steps.count("claimed") == 3 and steps.count("released") == 1
    assert steps.count("claim_refused") == 2 and steps.count("review_refused") == 2


async def test_a_supervisor_reassigns_a_held_case_and_nobody_else_may(stack, population, people):
    index = next(i for i, a in enumerate(population.by_scenario("hukou_verified")) if a["district_code"] == DISTRICT)
    async with running_workers(stack, settings_for(stack.standins)):
        handle = await stack.submit(stack.application("hukou_verified", index=index))
        await stack.wait_for(handle, "awaiting_review")
        assert (await people.send(handle, claim(FIRST))).accepted

        to_second = Reassignment(supervisor_id=SUPERVISOR, district_code=DISTRICT, assignee=SECOND)
        as_reviewer = await people.send(handle, to_second.model_copy(update={"supervisor_id": FIRST}))
        assert not as_reviewer.accepted and "may not reassign" in (as_reviewer.reason or ""), as_reviewer
        elsewhere = Reassignment(supervisor_id="sup-510106-1", district_code="510106", assignee=SECOND)
        assert not (await people.send(handle, elsewhere)).accepted, "a supervisor of another district"

        assert (await people.send(handle, to_second)).accepted
        view = await stack.status(handle)
        assert view.claim is not None and view.claim.holder == SECOND
        assert not (await people.send(handle, approve(FIRST))).accepted
        assert (await people.send(handle, approve(SECOND))).accepted
        final = await stack.result(handle)

    assert [r.reviewer_id for r in final.reviews] == [SECOND]
    steps = [entry.step for entry in final.timeline]
    assert steps.count("reassigned") == 1 and steps.count("reassignment_refused") == 2
