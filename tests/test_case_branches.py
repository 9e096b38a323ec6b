"""Every branch of the scheme's flow and every refusal, on the time-skipping test server."""

from datetime import timedelta

import pytest

from enrollment.case import (
    OfflineRegistration,
    Review,
    SchoolSelection,
    Supplement,
    Withdrawal,
)
from standins.identity_provider.grants import Lifetimes
from standins.identity_provider.runner import start_in_thread as start_identity_provider
from tests.support.people import People, reviewer_of, staff_of
from tests.support.policies import district_policy
from tests.support.stack import running_workers, settings_for


def review(application, decision="approve", opinion="同意入学", district=None, reviewer=None):
    district = district or application.district_code
    return Review(
        reviewer_id=reviewer or reviewer_of(district), district_code=district, decision=decision, opinion=opinion
    )


def steps(view) -> list[str]:
    return [entry.step for entry in view.timeline]


async def test_not_eligible_case_ends_with_reasons_and_the_applicant_is_told_online(stack, workers):
    application = stack.application("not_eligible_age")
    handle = await stack.submit(application)
    result = await stack.result(handle)

    assert result.status == "not_eligible"
    assert result.eligibility_problems and result.eligibility_problems[0].startswith("student.birth_date:")
    assert (
        all(report.outcome == "not_required" for report in result.verifications.values()) or result.verifications == {}
    )
    record = stack.platform_record(application.application_id)
    assert [notice["body"]["kind"] for notice in record["notice"]] == ["not_eligible"]
    assert result.eligibility_problems[0] in record["notice"][0]["body"]["message"]
    assert [entry["body"]["status"] for entry in record["result"]] == ["not_eligible"]
    assert stack.stats()["hukou"]["total"] == 0, "no department is asked about an ineligible case"


@pytest.mark.parametrize("scenario", ["verification_failed_not_found", "verification_failed_mismatch"])
async def test_failed_verification_sends_the_applicant_to_the_service_point(stack, workers, scenario):
    application = stack.application(scenario)
    handle = await stack.submit(application)
    view = await stack.wait_for_step(handle, "applicant_notified:go_to_service_point")
    assert view.status == "awaiting_offline_registration"

    expected = stack.expectation(application)["expected_outcomes"]
    assert {v: r.outcome for v, r in view.verifications.items()} == expected
    failed = [r for r in view.verifications.values() if r.outcome in ("mismatch", "not_found")]
    assert failed and all(r.reason for r in failed)
    record = stack.platform_record(application.application_id)
    assert [notice["body"]["kind"] for notice in record["notice"]] == ["go_to_service_point"]

    other_district = "510703" if application.district_code != "510703" else "510104"
    receipt = await stack.people.send(
        handle,
        OfflineRegistration(staff_id=staff_of(other_district), district_code=other_district, materials=["户口簿"]),
    )
    assert not receipt.accepted
    assert receipt.reason == "proof: signed for a person of another district than the case's"
    view = await stack.status(handle)
    assert steps(view)[-1] == "offline_registration_refused" and view.timeline[-1].detail == receipt.reason
    assert view.status == "awaiting_offline_registration" and view.materials == []

    zone = district_policy(application.district_code).zones[0]
    school = next(s for s in zone.schools if application.stage in s.stages)
    receipt = await stack.people.send(
        handle,
        OfflineRegistration(
            staff_id=staff_of(application.district_code),
            district_code=application.district_code,
            materials=["居民户口簿", "居住证明"],
            school_choice=SchoolSelection(zone_id=zone.zone_id, school_id=school.school_id),
        ),
    )
    assert receipt.accepted and receipt.status == "awaiting_review"
    view = await stack.status(handle)
    assert view.materials == ["居民户口簿", "居住证明"]
    assert view.school_choice.school_id == school.school_id
    assert (await stack.people.send(handle, review(application))).accepted
    assert (await stack.result(handle)).status == "approved"


async def test_service_point_case_goes_straight_to_review(stack, workers):
    application = stack.application("service_point")
    handle = await stack.submit(application)
    view = await stack.wait_for(handle, "awaiting_review")
    assert "awaiting_offline_registration" not in steps(view)
    assert view.channel == "service_point"


async def test_verified_case_without_a_school_waits_for_a_valid_choice(stack, workers):
    application = stack.application("without_school_choice")
    handle = await stack.submit(application)
    view = await stack.wait_for_step(handle, "applicant_notified:choose_school")
    assert view.status == "awaiting_school_selection" and view.school_choice is None
    assert "choose_school" in [n["body"]["kind"] for n in stack.platform_record(application.application_id)["notice"]]

    receipt = await stack.people.send(handle, SchoolSelection(zone_id="XX-Z09", school_id="XX-Z09-P01"))
    assert not receipt.accepted and "zone_id: XX-Z09 is not an enrollment zone" in receipt.reason
    policy = district_policy(application.district_code)
    wrong_stage = next(s for z in policy.zones for s in z.schools if application.stage not in s.stages)
    wrong_zone = next(z for z in policy.zones if wrong_stage in z.schools)
    receipt = await stack.people.send(
        handle, SchoolSelection(zone_id=wrong_zone.zone_id, school_id=wrong_stage.school_id)
    )
    assert not receipt.accepted and f"does not enrol the {application.stage} stage" in receipt.reason
    view = await stack.status(handle)
    assert view.school_choice is None and steps(view).count("school_selection_refused") == 2

    good = next(s for z in policy.zones for s in z.schools if application.stage in s.stages)
    good_zone = next(z for z in policy.zones if good in z.schools)
    choice = SchoolSelection(zone_id=good_zone.zone_id, school_id=good.school_id)
    receipt = await stack.people.send(handle, choice)
    assert receipt.accepted and receipt.reason is None and receipt.status == "awaiting_review"
    assert (await stack.status(handle)).school_choice.school_id == good.school_id

    receipt = await stack.people.send(handle, choice)
    assert not receipt.accepted and receipt.reason == "case is awaiting_review, not awaiting_school_selection"


async def test_reviews_that_break_a_rule_are_refused_recorded_and_change_nothing(stack, workers):
    application = stack.application("hukou_verified", index=2)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")

    other = "510105" if application.district_code != "510105" else "510104"
    # A reviewer of another district, signed in and proving the message as themself.
    receipts = [
        await stack.people.send(handle, review(application, district=other)),
        await stack.people.send(handle, review(application, decision="maybe")),
        await stack.people.send(handle, review(application, opinion="   ")),
    ]
    assert [(r.accepted, r.reason.split(":")[0], r.status) for r in receipts] == [
        (False, "proof", "awaiting_review"),
        (False, "decision", "awaiting_review"),
        (False, "opinion", "awaiting_review"),
    ]
    assert receipts[0].reason == "proof: signed for a person of another district than the case's"
    view = await stack.status(handle)
    refusals = [entry for entry in view.timeline if entry.step == "review_refused"]
    assert [r.detail for r in refusals] == [r.reason for r in receipts]
    assert refusals[0].actor == f"unverified reviewer:{reviewer_of(other)}"
    assert refusals[1].actor == f"reviewer:{reviewer_of(application.district_code)}" and refusals[1].credential
    assert view.status == "awaiting_review" and view.review is None and view.reviews == []


async def test_a_review_before_the_case_awaits_review_is_refused(stack, workers):
    application = stack.application("without_school_choice", index=1)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_school_selection")
    receipt = await stack.people.send(handle, review(application))
    assert not receipt.accepted and receipt.reason == "case is awaiting_school_selection, not awaiting_review"
    view = await stack.status(handle)
    assert view.status == "awaiting_school_selection" and view.review is None
    assert [e.detail for e in view.timeline if e.step == "review_refused"] == [receipt.reason]


async def test_supplement_requested_then_supplied_then_rejected(stack, workers):
    application = stack.application("hukou_verified", index=3)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")
    early = await stack.people.send(handle, Supplement(materials=["早到的材料"]))
    assert not early.accepted and early.reason == "case is awaiting_review, not awaiting_supplement"

    receipt = await stack.people.send(
        handle, review(application, decision="request_supplement", opinion="请补充房产证明")
    )
    assert receipt.accepted and receipt.status == "awaiting_supplement"
    await stack.wait_for_step(handle, "applicant_notified:supplement_requested")
    notices = stack.platform_record(application.application_id)["notice"]
    assert notices[-1]["body"]["kind"] == "supplement_requested" and "请补充房产证明" in notices[-1]["body"]["message"]

    receipt = await stack.people.send(handle, Supplement(materials=["不动产权证书"], note="已补充"))
    assert receipt.accepted and receipt.status == "awaiting_review"
    assert (await stack.status(handle)).materials == ["不动产权证书"]
    receipt = await stack.people.send(handle, review(application, decision="reject", opinion="不符合片区政策"))
    assert receipt.accepted, receipt
    result = await stack.result(handle)
    assert result.status == "rejected"
    assert [r.decision for r in result.reviews] == ["request_supplement", "reject"]
    assert steps(result).count("awaiting_review") == 2


@pytest.fixture
def slow_clock_provider(tmp_path):
    """A provider whose proofs outlive the weeks a test skips: it signs by the wall clock while the case
    checks by the test server's, which `env.sleep(days=60)` moves 60 days ahead of it."""
    with start_identity_provider(tmp_path / "identity", lifetimes=Lifetimes(proof=120 * 86400)) as provider:
        yield provider


async def test_review_reminder_then_escalation_while_the_case_keeps_waiting(stack, slow_clock_provider):
    people = People(slow_clock_provider.base_url)
    settings = settings_for(stack.standins, identity_issuer=slow_clock_provider.base_url)
    application = stack.application("hukou_verified", index=4)
    deadlines = district_policy(application.district_code).deadlines
    async with running_workers(stack, settings):
        handle = await stack.submit(application)
        await stack.wait_for(handle, "awaiting_review")

        await stack.env.sleep(timedelta(days=deadlines.review_reminder_days, hours=1))
        view = await stack.wait_for_step(handle, "review_reminder")
        assert "review_escalated" not in steps(view) and view.status == "awaiting_review"

        await stack.env.sleep(timedelta(days=deadlines.review_escalation_days - deadlines.review_reminder_days))
        view = await stack.wait_for_step(handle, "review_escalated")
        assert view.status == "awaiting_review"

        await stack.env.sleep(timedelta(days=60))
        assert (await stack.status(handle)).status == "awaiting_review", "a review wait has no expiry"
        assert (await people.send(handle, review(application))).accepted
        assert (await stack.result(handle)).status == "approved"


@pytest.mark.parametrize(
    ("scenario", "waiting", "deadline_field"),
    [
        ("verification_failed_not_found", "awaiting_offline_registration", "offline_registration_days"),
        ("without_school_choice", "awaiting_school_selection", "school_selection_days"),
    ],
)
async def test_a_wait_past_its_policy_deadline_expires_the_case(stack, workers, scenario, waiting, deadline_field):
    application = stack.application(scenario, index=1 if scenario == "verification_failed_not_found" else 2)
    handle = await stack.submit(application)
    await stack.wait_for(handle, waiting)
    days = getattr(district_policy(application.district_code).deadlines, deadline_field)

    await stack.env.sleep(timedelta(days=days) - timedelta(hours=1))
    assert (await stack.status(handle)).status == waiting

    result = await stack.result(handle)
    assert result.status == "expired"
    assert f"{waiting} for {days:g} days" in next(e.detail for e in result.timeline if e.step == "deadline_passed")
    assert [r["body"]["status"] for r in stack.platform_record(application.application_id)["result"]] == ["expired"]


async def test_a_supplement_not_delivered_in_time_expires_the_case(stack, workers):
    application = stack.application("hukou_verified", index=5)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")
    receipt = await stack.people.send(handle, review(application, decision="request_supplement", opinion="请补充材料"))
    assert receipt.accepted, receipt
    await stack.wait_for(handle, "awaiting_supplement")
    assert (await stack.result(handle)).status == "expired"


async def test_withdrawal_before_the_decision_ends_the_case_and_tells_the_platform(stack, workers):
    application = stack.application("hukou_verified", index=6)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")
    receipt = await stack.people.send(handle, Withdrawal(reason="已选择民办学校"))
    assert receipt.accepted
    result = await stack.result(handle)
    assert result.status == "withdrawn"
    results = stack.platform_record(application.application_id)["result"]
    assert [r["body"]["status"] for r in results] == ["withdrawn"] and results[0]["body"]["opinion"] == "已选择民办学校"


async def test_withdrawal_after_a_decision_is_refused(stack, workers):
    application = stack.application("hukou_verified", index=7)
    async with stack.platform_down():
        handle = await stack.submit(application)
        await stack.wait_for(handle, "awaiting_review")
        receipt = await stack.people.send(handle, review(application))
        assert receipt.accepted and receipt.status == "approved"
        receipt = await stack.people.send(handle, Withdrawal(reason="改主意了"))
        assert not receipt.accepted and receipt.reason == "case is already approved"
        assert steps(await stack.status(handle))[-1] == "withdrawal_refused"
    result = await stack.result(handle)
    assert result.status == "approved" and result.platform_synced


async def test_a_supplement_sent_while_the_applicant_is_being_notified_is_kept(stack, workers):
    application = stack.application("hukou_verified", index=15)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_review")
    async with stack.platform_down():
        receipt = await stack.people.send(
            handle, review(application, decision="request_supplement", opinion="请补充社保证明")
        )
        assert receipt.accepted, receipt
        await stack.wait_for(handle, "awaiting_supplement")
        receipt = await stack.people.send(handle, Supplement(materials=["社保缴费证明"]))
        assert receipt.accepted
    view = await stack.wait_for(handle, "awaiting_review")
    assert view.materials == ["社保缴费证明"]


async def test_offline_registration_without_a_school_goes_straight_to_review(stack, workers):
    application = stack.application("verification_failed_mismatch", index=2)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_offline_registration")
    receipt = await stack.people.send(
        handle,
        OfflineRegistration(
            staff_id=staff_of(application.district_code),
            district_code=application.district_code,
            materials=["居民户口簿"],
        ),
    )
    assert receipt.accepted, receipt
    view = await stack.wait_for(handle, "awaiting_review")
    assert "awaiting_school_selection" not in steps(view)


async def test_after_a_withdrawal_no_message_is_taken(stack, workers):
    application = stack.application("without_school_choice", index=5)
    handle = await stack.submit(application)
    await stack.wait_for(handle, "awaiting_school_selection")
    async with stack.platform_down():
        assert (await stack.people.send(handle, Withdrawal(reason="不读了"))).accepted
        await stack.wait_for(handle, "withdrawn")
        zone = district_policy(application.district_code).zones[0]
        school = next(s for s in zone.schools if application.stage in s.stages)
        choice = SchoolSelection(zone_id=zone.zone_id, school_id=school.school_id)
        receipt = await stack.people.send(handle, choice)
        assert not receipt.accepted and receipt.reason == "the applicant has withdrawn the application"
    result = await stack.result(handle)
    assert result.status == "withdrawn" and result.school_choice is None
