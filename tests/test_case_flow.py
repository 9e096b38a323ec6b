"""A case from submission to the platform result, in both routing phases."""

from enrollment.case import Review
from enrollment.verifiers import REGISTRY
from tests.support.people import review_by, reviewer_of
from tests.support.stack import running_workers, settings_for
from workflows.enrollment_case import EnrollmentCase


async def test_verified_hukou_case_is_approved_and_synced_once_in_phase_one(stack, workers):
    application = stack.application("hukou_verified")
    handle = await stack.submit(application)

    view = await stack.wait_for(handle, "awaiting_review")
    expected = stack.expectation(application)["expected_outcomes"]
    assert {v: r.outcome for v, r in view.verifications.items()} == expected
    required = [v for v, outcome in expected.items() if outcome != "not_required"]
    assert view.auto_filled_count == sum(len(REGISTRY[v].elements) for v in required)
    assert set(view.auto_filled.values()) >= {"public_security.hukou"}
    assert view.routing_phase == "phase_one" and view.channel == application.channel

    reviewer = reviewer_of(application.district_code)
    receipt = await stack.people.send(
        handle,
        Review(
            reviewer_id=reviewer,
            district_code=application.district_code,
            decision="approve",
            opinion="材料齐全，同意入学",
        ),
    )
    assert receipt.accepted, receipt
    result = await stack.result(handle)
    assert result.status == "approved" and result.platform_synced
    assert result.review.opinion == "材料齐全，同意入学" and result.review.reviewer_id == reviewer

    record = stack.platform_record(application.application_id)
    assert [entry["body"]["status"] for entry in record["result"]] == ["approved"]
    assert record["acceptance"] == [] and record["dispatch"] == [] and record["status"] == []
    steps = [entry.step for entry in result.timeline]
    assert steps[:3] == ["submitted", "accepted", "verifying"]
    assert steps[-3:] == ["reviewed:approve", "approved", "result_synced_to_platform"]


async def test_phase_two_pushes_each_status_and_sends_the_result_once(stack):
    """The platform handed the case in; its answer was the acknowledgement, so no acceptance call goes back."""
    async with running_workers(stack, settings_for(stack.standins, routing_phase="phase_two")):
        application = stack.application("non_hukou_verified", channel="platform")
        handle = await stack.submit(application)
        await stack.wait_for(handle, "awaiting_review")
        receipt = await stack.people.send(
            handle,
            review_by(application.district_code, "reject", "学位已满"),
        )
        assert receipt.accepted, receipt
        result = await stack.result(handle)

    assert result.status == "rejected" and result.routing_phase == "phase_two"
    record = stack.platform_record(application.application_id)
    assert record["acceptance"] == [] and record["dispatch"] == []
    assert [entry["body"]["status"] for entry in record["status"]] == ["verifying", "awaiting_review", "rejected"]
    assert [entry["body"]["sequence"] for entry in record["status"]] == [1, 2, 3]
    assert len(record["result"]) == 1 and record["result"][0]["body"]["opinion"] == "学位已满"
    assert record["duplicates_refused"] == 0


async def test_a_case_keeps_the_phase_it_started_with_across_a_cut_over(stack):
    """Workers redeployed with phase two mid-case: the case still finishes on phase one."""
    application = stack.application("hukou_verified", index=1)
    # No workflow cache, so the redeployed worker picks the case up at once rather than after the
    # old worker's sticky queue times out.
    async with running_workers(stack, settings_for(stack.standins, routing_phase="phase_one"), max_cached_workflows=0):
        handle = await stack.submit(application)
        await stack.wait_for(handle, "awaiting_review")
    async with running_workers(stack, settings_for(stack.standins, routing_phase="phase_two")):
        receipt = await stack.people.send(
            handle,
            review_by(application.district_code, "approve", "同意"),
        )
        assert receipt.accepted, receipt
        result = await stack.result(handle)
    assert result.routing_phase == "phase_one"
    record = stack.platform_record(application.application_id)
    assert record["acceptance"] == [] and record["status"] == [] and len(record["result"]) == 1


async def test_the_reviewer_sees_the_filled_elements_with_their_values_and_sources(stack, workers):
    application = stack.application("hukou_verified", index=27)
    handle = await stack.submit(application)
    view = await stack.wait_for(handle, "awaiting_review")
    elements = await handle.query(EnrollmentCase.filled_elements)
    assert len(elements) == view.auto_filled_count
    by_name = {e.element: e for e in elements}
    assert by_name["student_name"].value == application.student.name
    assert by_name["student_name"].source == "public_security.hukou"
    assert by_name["birth_date"].value == application.student.birth_date.isoformat()
