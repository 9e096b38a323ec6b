"""Replay: the current workflow code must reproduce the commands of histories already recorded.

Cases live for weeks, so a change to EnrollmentCase that running cases could
see must be wrapped in `workflow.patched` (README, "Changing the workflow").
The committed histories under tests/histories were recorded from each release
and cover every path; the fresh ones cover every path of today's code. Set
RECORD_HISTORIES=<release> (for example `v1.1`) to add the fresh run's
histories to the committed set as `<release>-<path>.json`; never delete older
ones while cases recorded by them may still be running.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowExecutionDescription, WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from enrollment import search_attributes as sa
from enrollment.case import (
    WORKFLOW_TYPE,
    CaseInput,
    CaseView,
    Claim,
    OfflineRegistration,
    Reassignment,
    Reverification,
    Review,
    SchoolSelection,
    Supplement,
    Withdrawal,
)
from enrollment.codec import WORKFLOW_ID as WORKFLOW_ID_METADATA
from tests.support.keys import TEST_CONVERTER
from tests.support.people import People, reviewer_of, staff_of
from tests.support.policies import district_policy
from tests.support.stack import running_workers, settings_for
from workers.build import workflow_runner
from workflows.enrollment_case import FEWER_STEPS_PATCH, EnrollmentCase

HISTORIES = Path(__file__).parent / "histories"
MESSAGES = {
    "hand_in",
    "review",
    "register_offline",
    "supplement",
    "withdraw",
    "select_school",
    "reverify",
    "claim",
    "reassign",
}


def replayer(workflow_class: type = EnrollmentCase, sandboxed: bool = True) -> Replayer:
    """A replayer running the workflow as the case worker does (workers/build.py): sandboxed, as in the tests,
    or not, as in production."""
    runner = workflow_runner(sandboxed)
    return Replayer(workflows=[workflow_class], data_converter=TEST_CONVERTER, workflow_runner=runner)


def _recorded_case_id(history: dict, default: str) -> str:
    """The case a history was recorded for: from 1.1 on, each payload is bound to it and opens for no other."""
    start = history["events"][0]["workflowExecutionStartedEventAttributes"]
    metadata = start["input"]["payloads"][0].get("metadata", {})
    bound = metadata.get(WORKFLOW_ID_METADATA)
    return base64.b64decode(bound).decode() if bound else default


def committed() -> list[WorkflowHistory]:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no recorded histories: run with RECORD_HISTORIES=<release>"
    histories = []
    for path in files:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        histories.append(WorkflowHistory.from_json(_recorded_case_id(recorded, path.stem), recorded))
    return histories


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "as-in-production"])
async def test_committed_histories_replay_without_nondeterminism(sandboxed):
    for history in committed():
        result = await replayer(sandboxed=sandboxed).replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{history.workflow_id}: {result.replay_failure}"


def test_committed_histories_take_every_message_and_refuse_some():
    accepted = {
        event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for history in committed()
        for event in history.events
        if event.HasField("workflow_execution_update_accepted_event_attributes")
    }
    assert accepted == MESSAGES


# Not sandboxed: the sandbox would re-import this test module, which is not workflow code.
@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class _UnversionedChange(EnrollmentCase):
    """Today's workflow with one new step and no `workflow.patched`: what the replay test exists to catch."""

    @workflow.run
    async def run(self, case: CaseInput) -> CaseView:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(case)


async def test_an_unversioned_change_fails_replay_of_every_committed_history():
    for history in committed():
        result = await replayer(_UnversionedChange).replay_workflow(history, raise_on_replay_failure=False)
        assert isinstance(result.replay_failure, workflow.NondeterminismError), history.workflow_id


def _review(application, decision: str, opinion: str = "同意", district: str | None = None) -> Review:
    district = district or application.district_code
    return Review(reviewer_id=reviewer_of(district), district_code=district, decision=decision, opinion=opinion)


def _patches(history: WorkflowHistory) -> list[str]:
    return [
        json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


def _first_step_upserts(history: WorkflowHistory) -> list[set[str]]:
    """The search attributes each upsert of the case's first workflow task set."""
    first_task_done = next(e.event_id for e in history.events if e.HasField("workflow_task_completed_event_attributes"))
    upserts = []
    for event in history.events:
        if event.event_id > first_task_done and event.HasField("workflow_task_scheduled_event_attributes"):
            break
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            upserts.append(set(fields))
    return upserts


def _assert_fewer_steps(name: str, history: WorkflowHistory, described: WorkflowExecutionDescription, view: CaseView):
    """Release 1.4: whatever messages a case takes, one patch marker. What the case is came with its start, so
    its first step upserts only its routing phase with its first status (a case that is not eligible tells the
    platform first: its routing phase goes before that call). Visibility ends showing the case as it ended."""
    assert _patches(history) == [FEWER_STEPS_PATCH], name
    started = history.events[0].workflow_execution_started_event_attributes.search_attributes.indexed_fields
    assert set(started) == {key.name for key in sa.ALL} - {sa.ROUTING_PHASE.name}, name
    own = {"RoutingPhase"} if name == "not_eligible" else {"CaseStatus", "RoutingPhase"}
    assert _first_step_upserts(history) == [{"TemporalChangeVersion"}, own], name
    shown = described.typed_search_attributes
    assert (shown.get(sa.CASE_STATUS), shown.get(sa.ROUTING_PHASE)) == (view.status, view.routing_phase), name
    assert (shown.get(sa.DISTRICT_CODE), shown.get(sa.SCHOOL_YEAR)) == (view.district_code, view.school_year), name


async def _record(stack, handles: dict[str, WorkflowHandle]) -> None:
    for name, handle in handles.items():
        view = await stack.result(handle)
        history = await handle.fetch_history()
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{name}: {result.replay_failure}"
        _assert_fewer_steps(name, history, await handle.describe(), view)
        if os.environ.get("RECORD_HISTORIES"):
            (HISTORIES / f"{os.environ['RECORD_HISTORIES']}-{name}.json").write_text(
                history.to_json(), encoding="utf-8"
            )


async def test_every_path_of_the_current_code_replays(stack, slow_clock_provider):
    people = People(slow_clock_provider.base_url)
    async with running_workers(stack, settings_for(stack.standins, identity_issuer=slow_clock_provider.base_url)):
        await _every_path(stack, people)


async def _every_path(stack, people: People) -> None:
    handles: dict[str, WorkflowHandle] = {}

    approved = stack.application("hukou_verified", index=14)
    handles["approved"] = handle = await stack.submit(approved)
    await stack.wait_for(handle, "awaiting_review")
    other = "510105" if approved.district_code != "510105" else "510104"
    assert not (await people.send(handle, _review(approved, "approve", district=other))).accepted
    assert (await people.send(handle, _review(approved, "approve"))).accepted

    handles["not_eligible"] = await stack.submit(stack.application("not_eligible_age", index=2))

    offline = stack.application("verification_failed_mismatch", index=1)
    handles["offline_supplement_rejected"] = handle = await stack.submit(offline)
    await stack.wait_for(handle, "awaiting_offline_registration")
    registration = OfflineRegistration(
        staff_id=staff_of(offline.district_code), district_code=offline.district_code, materials=["户口簿"]
    )
    assert (await people.send(handle, registration)).status == "awaiting_review"
    assert (await people.send(handle, _review(offline, "request_supplement", "补充居住证明"))).accepted
    assert (await people.send(handle, Supplement(materials=["居住证明"]))).accepted
    assert (await people.send(handle, _review(offline, "reject", "不符合条件"))).accepted

    chooser = stack.application("without_school_choice", index=3)
    handles["school_selected_escalated_approved"] = handle = await stack.submit(chooser)
    await stack.wait_for(handle, "awaiting_school_selection")
    zone = district_policy(chooser.district_code).zones[0]
    school = next(s for s in zone.schools if chooser.stage in s.stages)
    bad = SchoolSelection(zone_id="XX-Z09", school_id="XX-Z09-P01")
    assert not (await people.send(handle, bad)).accepted
    good = SchoolSelection(zone_id=zone.zone_id, school_id=school.school_id)
    assert (await people.send(handle, good)).status == "awaiting_review"
    deadlines = district_policy(chooser.district_code).deadlines
    await stack.env.sleep(timedelta(days=deadlines.review_escalation_days, hours=1))
    await stack.wait_for_step(handle, "review_escalated")
    assert (await people.send(handle, _review(chooser, "approve"))).accepted

    withdrawn = stack.application("without_school_choice", index=4)
    handles["withdrawn"] = handle = await stack.submit(withdrawn)
    await stack.wait_for(handle, "awaiting_school_selection")
    assert (await people.send(handle, Withdrawal(reason="搬家"))).accepted

    handles["expired"] = await stack.submit(stack.application("verification_failed_not_found", index=3))

    # Hukou down past the policy's patience: delayed, then offline, then verified again when ops ask.
    stack.set_faults("hukou", outage=True)
    delayed = stack.application("hukou_verified", index=17)
    handles["delayed_offline_reverified"] = handle = await stack.submit(delayed)
    await stack.wait_through_retries([handle], "verification_delayed")
    patience = district_policy(delayed.district_code).verification_patience.of("hukou")
    await stack.env.sleep(patience + timedelta(hours=1))
    await stack.wait_for(handle, "awaiting_offline_registration")
    stack.set_faults("hukou", outage=False)
    assert (await people.send(handle, Reverification(requested_by="ops-1"))).status == "awaiting_review"
    assert (await people.send(handle, _review(delayed, "approve"))).accepted

    # A reviewer holds the case, lets it go, takes it again; the supervisor gives it to another, who decides (1.3).
    index = next(
        i for i, a in enumerate(stack.population.by_scenario("hukou_verified")) if a["district_code"] == "510104"
    )
    claimed = stack.application("hukou_verified", index=index)
    handles["claimed_reassigned_approved"] = handle = await stack.submit(claimed)
    await stack.wait_for(handle, "awaiting_review")
    claim = Claim(action="claim", reviewer_id="r-510104-1", district_code="510104")
    assert (await people.send(handle, claim)).accepted
    assert (await people.send(handle, claim.model_copy(update={"action": "release"}))).accepted
    assert (await people.send(handle, claim)).accepted
    to_second = Reassignment(supervisor_id="sup-510104-1", district_code="510104", assignee="r-510104-2")
    assert (await people.send(handle, to_second)).accepted
    second = Review(reviewer_id="r-510104-2", district_code="510104", decision="approve", opinion="同意")
    assert (await people.send(handle, second)).accepted
    await _record(stack, handles)


async def test_the_phase_two_path_replays(stack):
    async with running_workers(stack, settings_for(stack.standins, routing_phase="phase_two")):
        application = stack.application("hukou_verified", index=16)
        handle = await stack.submit(application)
        await stack.wait_for(handle, "awaiting_review")
        assert (await stack.people.send(handle, _review(application, "approve"))).accepted
        await _record(stack, {"phase_two_approved": handle})
