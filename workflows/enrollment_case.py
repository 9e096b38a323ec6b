"""One enrollment application (教育入学"一件事"), from intake to the result on the platform.

The run method reads as the scheme's flow: accept the case, check the
acceptance conditions, verify the family with the four departments, route it
(online, to the service point, or to school selection), have the local bureau
review it, and feed the result back to the platform (一体反馈).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Callable

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.archive import ArchiveActivities, ArchiveRequest
    from activities.intake import IntakeActivities
    from activities.natural_resources import NaturalResourcesActivities
    from activities.platform import PlatformActivities, PlatformMessage
    from activities.public_security import PublicSecurityActivities
    from activities.social_insurance import SocialInsuranceActivities
    from enrollment import search_attributes as sa
    from enrollment.application import SchoolChoice
    from enrollment.case import (
        DECISIONS,
        FINAL_STATES,
        VERIFICATION_TASK_QUEUE,
        verifier_task_queue,
        WORKFLOW_TYPE,
        CaseInput,
        CaseSetupRequest,
        CaseState,
        CaseStatusView,
        FilledElement,
        OfflineRegistrationSignal,
        ReviewRecord,
        ReviewSignal,
        SchoolSelection,
        SupplementSignal,
        TimelineEntry,
        VerifierReport,
        WithdrawSignal,
    )
    from enrollment.policy import VERIFIERS, DistrictPolicy, Verifier, eligibility_problems
    from enrollment.verification import SOURCES, Person, VerificationRequest, VerificationResult
    from store.cases import CaseSnapshot

# A verifier gets a bounded budget: past it the case goes to the service point
# instead of waiting on a department that is down.
VERIFICATION_BUDGET = timedelta(minutes=5)
VERIFICATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# The platform must always receive what the case owes it, so these retry until accepted.
PLATFORM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5)
)

VERIFIER_ACTIVITIES = {
    "hukou": PublicSecurityActivities.verify_hukou,
    "residence_permit": PublicSecurityActivities.verify_residence_permit,
    "social_insurance": SocialInsuranceActivities.verify_social_insurance,
    "property": NaturalResourcesActivities.verify_property,
}
VERIFIER_TITLES = {
    "hukou": "hukou verification",
    "residence_permit": "residence permit verification",
    "social_insurance": "social insurance verification",
    "property": "property verification",
}
MAX_OPINION_LENGTH = 2000

# Behaviour changes that running cases must not see on replay (workflow.patched).
PATCH_OFFLINE_REGISTRATION_TO_REVIEW = "offline-registration-goes-to-review"
PATCH_WITHDRAWAL_AT_ACCEPTANCE = "withdrawal-during-acceptance-ends-case"
PATCH_RECHECK_SCHOOL_CHOICE = "application-school-choice-checked-against-policy"
PATCH_CASE_STORE = "case-store-and-archive"
PATCH_LOCAL_BOOKKEEPING = "policy-and-store-steps-as-local-activities"
PATCH_VERIFIER_QUEUES = "task-queue-per-verifier"
# Store writes retry like platform calls: the archive must end up complete.
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1))


@workflow.defn(name=WORKFLOW_TYPE)
class EnrollmentCase:
    @workflow.init
    def __init__(self, case: CaseInput) -> None:
        self._application = case.application
        self._status: CaseState = "submitted"
        self._phase: str | None = None
        self._policy: DistrictPolicy | None = None
        self._problems: list[str] = []
        self._verifications: dict[Verifier, VerifierReport] = {}
        self._element_sources: dict[str, str] = {}
        self._element_values: dict[str, str] = {}
        self._school_choice: SchoolChoice | None = case.application.school_choice
        self._materials: list[str] = []
        self._reviews: list[ReviewRecord] = []
        self._decision: ReviewRecord | None = None
        self._offline_registered = False
        self._supplemented = False
        self._withdrawal: WithdrawSignal | None = None
        self._platform_synced = False
        self._timeline: list[TimelineEntry] = []
        self._entered_at = workflow.now()
        self._keeps_store = False
        self._bookkeeping_locally = False
        self._queue_per_verifier = False
        self._stored = 0
        self._status_pushes = 0
        self._notices = 0

    # The flow.

    @workflow.run
    async def run(self, case: CaseInput) -> CaseStatusView:
        app = self._application
        # Decided once, at the start: cases begun before the store existed never write to it.
        self._keeps_store = workflow.patched(PATCH_CASE_STORE)
        # Loading the policy and writing the case store are the case's own bookkeeping, done in
        # milliseconds by the case worker itself: as local activities they cost the server no
        # task of their own, only a marker in the history.
        self._bookkeeping_locally = workflow.patched(PATCH_LOCAL_BOOKKEEPING)
        self._queue_per_verifier = workflow.patched(PATCH_VERIFIER_QUEUES)
        self._record("submitted", f"applicant via {app.channel}")
        workflow.upsert_search_attributes(
            [
                sa.CASE_STATUS.value_set(self._status),
                sa.ENROLL_STAGE.value_set(app.stage),
                sa.REGISTRATION_TYPE.value_set(app.registration_type),
                sa.DISTRICT_CODE.value_set(app.district_code),
                sa.INTAKE_CHANNEL.value_set(app.channel),
                sa.SCHOOL_YEAR.value_set(app.school_year),
            ]
        )
        await self._accept()
        if self._withdrawal is not None and workflow.patched(PATCH_WITHDRAWAL_AT_ACCEPTANCE):
            return await self._finish("withdrawn")

        self._problems = self._acceptance_problems()
        if self._problems:
            await self._notify("not_eligible", "不符合申请条件: " + "; ".join(self._problems))
            return await self._finish("not_eligible", "; ".join(self._problems))

        await self._verify_family()
        if self._withdrawal is None:
            outcome = await self._route()
            if outcome is None:
                outcome = await self._review()
        else:
            outcome = "withdrawn"
        return await self._finish(outcome)

    async def _accept(self) -> None:
        """Capture the policy and routing phase; in phase two, confirm the platform's acceptance (受理)."""
        setup = await self._bookkeeping(
            IntakeActivities.load_case_setup,
            CaseSetupRequest(district_code=self._application.district_code, received_at=workflow.info().start_time),
            "load district policy",
            retry_policy=None,
        )
        self._policy = setup.policy
        self._phase = setup.routing_phase
        workflow.upsert_search_attributes([sa.ROUTING_PHASE.value_set(self._phase)])
        self._record("accepted", "enrollment_system", f"{self._phase}, policy {self._policy.version if self._policy else 'none'}")
        if self._phase == "phase_two":
            app_id = self._application.application_id
            await self._to_platform(
                PlatformActivities.acknowledge_acceptance,
                "platform acceptance acknowledgement",
                f"{app_id}/acceptance",
                {"accepted_at": workflow.now().isoformat(), "channel": self._application.channel},
            )
            await self._to_platform(
                PlatformActivities.confirm_dispatch,
                "dispatch to enrollment system",
                f"{app_id}/dispatch",
                {"received_by": "enrollment_system", "district_code": self._application.district_code},
            )
            self._record("dispatched_to_enrollment_system", "platform")

    def _acceptance_problems(self) -> list[str]:
        if self._policy is None:
            return [f"district_code: no enrollment policy for district {self._application.district_code}"]
        return eligibility_problems(self._application, self._policy)

    async def _verify_family(self) -> None:
        """Ask the departments this case's policy requires, all at once."""
        await self._enter("verifying", "system")
        required = self._policy.required_verifications(self._application.registration_type)
        for verifier in VERIFIERS:
            if verifier not in required:
                self._verifications[verifier] = VerifierReport(outcome="not_required")
        await asyncio.gather(*(self._verify(verifier) for verifier in required))

    async def _verify(self, verifier: Verifier) -> None:
        app = self._application
        request = VerificationRequest(
            application_id=app.application_id,
            verifier=verifier,
            registration_type=app.registration_type,
            district_code=app.district_code,
            city_code=self._policy.city_code,
            min_social_insurance_months=self._policy.registration_types[app.registration_type].min_social_insurance_months,
            student=Person(name=app.student.name, id_number=app.student.id_number),
            guardians=[Person(name=g.name, id_number=g.id_number) for g in app.guardians],
        )
        try:
            result: VerificationResult = await workflow.execute_activity(
                VERIFIER_ACTIVITIES[verifier],
                request,
                task_queue=verifier_task_queue(verifier) if self._queue_per_verifier else VERIFICATION_TASK_QUEUE,
                schedule_to_close_timeout=VERIFICATION_BUDGET,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=VERIFICATION_RETRY,
                summary=VERIFIER_TITLES[verifier],
            )
        except ActivityError as err:
            cause = err.cause.message if err.cause is not None else str(err)
            report = VerifierReport(outcome="unavailable", reason=f"no answer within the retry budget: {cause}")
        else:
            report = VerifierReport(outcome=result.outcome, reason=result.reason, elements=sorted(result.elements))
            self._element_sources.update({element: SOURCES[verifier] for element in result.elements})
            self._element_values.update(result.elements)
        self._verifications[verifier] = report
        workflow.metric_meter().create_counter("enrollment_verifier_outcomes", "verification outcomes").add(
            1, {"verifier": verifier, "outcome": report.outcome}
        )
        self._record(f"{verifier}_verified", SOURCES[verifier], report.outcome + (f": {report.reason}" if report.reason else ""))

    async def _route(self) -> CaseState | None:
        """Send the case offline or to school selection; a final state if it ends while waiting."""
        deadlines = self._policy.deadlines
        verified = all(report.outcome in ("matched", "not_required") for report in self._verifications.values())
        if self._application.channel == "service_point":
            # Registered at the service point with paper materials: straight to review.
            return None
        if not verified:
            await self._enter("awaiting_offline_registration", "system")
            await self._notify(
                "go_to_service_point",
                "符合申请条件但核验未通过: please register at your local education bureau's enrollment service point",
            )
            if not await self._wait_for(lambda: self._offline_registered, deadlines.offline_registration_days):
                return "expired"
            if workflow.patched(PATCH_OFFLINE_REGISTRATION_TO_REVIEW):
                # Staff registered the case with its materials: the bureau reviews it as it stands.
                return "withdrawn" if self._withdrawal is not None else None
        self._drop_school_choice_the_district_does_not_offer()
        if self._withdrawal is None and self._school_choice is None:
            await self._enter("awaiting_school_selection", "system")
            await self._notify("choose_school", "核验通过: please choose your enrollment zone and school")
            if not await self._wait_for(lambda: self._school_choice is not None, deadlines.school_selection_days):
                return "expired"
        return "withdrawn" if self._withdrawal is not None else None

    def _drop_school_choice_the_district_does_not_offer(self) -> None:
        """An application from another intake path may name a school the policy does not offer: ask again."""
        if self._school_choice is None or not workflow.patched(PATCH_RECHECK_SCHOOL_CHOICE):
            return
        choice = self._school_choice
        problem = self._policy.school_choice_problem(self._application.stage, choice.zone_id, choice.school_id)
        if problem:
            self._record("school_choice_refused", "system", problem)
            self._school_choice = None

    async def _review(self) -> CaseState:
        """The local bureau reviews until it approves or rejects; a supplement request loops back."""
        while True:
            await self._enter("awaiting_review", "system")
            await self._await_decision()
            if self._withdrawal is not None:
                return "withdrawn"
            decision, self._decision = self._decision, None
            self._reviews.append(decision)
            if decision.decision == "approve":
                return "approved"
            if decision.decision == "reject":
                return "rejected"
            # Cleared before the status changes, so a supplement sent while the applicant is
            # being notified is kept.
            self._supplemented = False
            await self._enter("awaiting_supplement", f"reviewer:{decision.reviewer_id}", decision.opinion)
            await self._notify("supplement_requested", f"需补充材料: {decision.opinion}")
            if not await self._wait_for(lambda: self._supplemented, self._policy.deadlines.supplement_days):
                return "expired"
            if self._withdrawal is not None:
                return "withdrawn"

    async def _await_decision(self) -> None:
        """Wait for the reviewer without a deadline, recording a reminder and then an escalation when overdue."""
        deadlines = self._policy.deadlines
        decided = lambda: self._decision is not None or self._withdrawal is not None  # noqa: E731
        for days, step in (
            (deadlines.review_reminder_days, "review_reminder"),
            (deadlines.review_escalation_days, "review_escalated"),
        ):
            if await self._wait_until(decided, self._entered_at + timedelta(days=days)):
                return
            self._record(step, "system", f"no decision after {days:g} days")
        await self._wait_until(decided, None)

    async def _finish(self, outcome: CaseState, detail: str | None = None) -> CaseStatusView:
        """End the case and feed the result back to the platform (办结), exactly once."""
        review = self._reviews[-1] if self._reviews and outcome in ("approved", "rejected") else None
        if review is not None:
            detail = review.opinion
        elif outcome == "withdrawn":
            detail = self._withdrawal.reason or None
        await self._enter(outcome, self._actor_for(outcome, review), detail)
        app = self._application
        await self._to_platform(
            PlatformActivities.sync_result,
            "platform result sync",
            f"{app.application_id}/result/{outcome}",
            {
                "status": outcome,
                "decision": review.decision if review else None,
                "opinion": review.opinion if review else detail,
                "reviewer_id": review.reviewer_id if review else None,
                "decided_at": workflow.now().isoformat(),
                "district_code": app.district_code,
                "routing_phase": self._phase,
                "policy_version": self._policy.version if self._policy else None,
                "school_choice": self._school_choice.model_dump() if self._school_choice else None,
            },
        )
        self._platform_synced = True
        self._record("result_synced_to_platform", "enrollment_system")
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._save_progress()
        if self._keeps_store:
            await self._bookkeeping(
                ArchiveActivities.archive_case,
                ArchiveRequest(application=self._application, view=self._view()),
                "archive acceptance, review and result",
            )
        return self._view()

    def _actor_for(self, outcome: CaseState, review: ReviewRecord | None) -> str:
        if review is not None:
            return f"reviewer:{review.reviewer_id}"
        if outcome == "withdrawn":
            return self._withdrawal.requested_by
        return "system"

    # Steps shared by the flow.

    async def _enter(self, status: CaseState, actor: str, detail: str | None = None) -> None:
        """Change status; deadlines run from this moment, not from when the platform hears of it."""
        self._status = status
        self._entered_at = workflow.now()
        self._record(status, actor, detail)
        workflow.metric_meter().create_counter("enrollment_case_transitions", "cases entering a status").add(
            1, {"status": status, "routing_phase": self._phase or "pending"}
        )
        workflow.upsert_search_attributes([sa.CASE_STATUS.value_set(status)])
        workflow.set_current_details(self._current_details())
        await self._save_progress()
        if self._phase == "phase_two":
            self._status_pushes += 1
            await self._to_platform(
                PlatformActivities.push_status,
                f"platform status push: {status}",
                f"{self._application.application_id}/status/{self._status_pushes}-{status}",
                {"status": status, "sequence": self._status_pushes, "at": workflow.now().isoformat()},
            )

    async def _save_progress(self) -> None:
        """Write the case row and the timeline entries the store has not seen yet."""
        if not self._keeps_store or self._stored == len(self._timeline):
            return
        app = self._application
        upto = len(self._timeline)
        await self._bookkeeping(
            ArchiveActivities.record_progress,
            CaseSnapshot(
                **self._key_fields(),
                workflow_id=workflow.info().workflow_id,
                progress=upto,
                student_id_number=app.student.id_number,
                guardian_id_numbers=[g.id_number for g in app.guardians],
                submitted_at=self._timeline[0].at,
                first_seq=self._stored,
                events=self._timeline[self._stored : upto],
            ),
            f"case store: {self._status}",
        )
        self._stored = max(self._stored, upto)

    async def _bookkeeping(self, activity: Callable, arg, summary: str, retry_policy: RetryPolicy | None = STORE_RETRY):
        """Run one of the case's own steps: locally for new cases, as before for cases begun earlier."""
        run = workflow.execute_local_activity_method if self._bookkeeping_locally else workflow.execute_activity_method
        return await run(activity, arg, start_to_close_timeout=timedelta(seconds=30), retry_policy=retry_policy, summary=summary)

    async def _notify(self, kind: str, message: str) -> None:
        self._notices += 1
        await self._to_platform(
            PlatformActivities.notify_applicant,
            f"applicant notice: {kind}",
            f"{self._application.application_id}/notice/{self._notices}-{kind}",
            {"kind": kind, "message": message, "status": self._status},
        )
        self._record(f"applicant_notified:{kind}", "enrollment_system")

    async def _to_platform(self, activity: Callable, summary: str, idempotency_key: str, body: dict) -> None:
        await workflow.execute_activity_method(
            activity,
            PlatformMessage(application_id=self._application.application_id, idempotency_key=idempotency_key, body=body),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PLATFORM_RETRY,
            summary=summary,
        )

    async def _wait_until(self, condition: Callable[[], bool], deadline: datetime | None) -> bool:
        """True when the condition holds before the deadline (None: no deadline), False when the deadline comes first.

        While waiting, steps that messages add to the timeline (a refused review,
        say) are written to the store as they happen, not weeks later.
        """
        unsaved = lambda: self._keeps_store and self._stored < len(self._timeline)  # noqa: E731
        while True:
            remaining = None if deadline is None else deadline - workflow.now()
            if remaining is not None and remaining <= timedelta(0):
                return condition()
            try:
                await workflow.wait_condition(lambda: condition() or unsaved(), timeout=remaining)
            except asyncio.TimeoutError:
                return False
            if condition():
                return True
            await self._save_progress()

    async def _wait_for(self, condition: Callable[[], bool], days: float) -> bool:
        """Wait for a person's step or a withdrawal; False when the policy's deadline passes first."""
        met = await self._wait_until(lambda: condition() or self._withdrawal is not None, self._entered_at + timedelta(days=days))
        if not met:
            self._record("deadline_passed", "system", f"{self._status} for {days:g} days")
        return met

    def _record(self, step: str, actor: str, detail: str | None = None, credential: str | None = None) -> None:
        self._timeline.append(TimelineEntry(at=workflow.now(), step=step, actor=actor, detail=detail, credential=credential))

    def _refuse(self, what: str, actor: str, reason: str, credential: str | None = None) -> None:
        """A refused message changes nothing but is kept in the timeline, for the audit trail."""
        workflow.logger.info("Refused %s: %s", what, reason)
        self._record(f"{what}_refused", actor, reason, credential)

    def _current_details(self) -> str:
        app = self._application
        return (
            f"**{self._status}** · {app.stage} · {app.registration_type} · district {app.district_code} · "
            f"{self._phase or 'phase pending'} · via {app.channel}"
        )

    # Messages from people.

    def _not_accepting(self, awaited: CaseState, already_received: bool) -> str | None:
        """Why the case cannot take a message meant for the `awaited` step now, or None if it can."""
        if self._withdrawal is not None:
            return "the applicant has withdrawn the application"
        if self._status != awaited:
            return f"case is {self._status}, not {awaited}"
        if already_received:
            return f"this {awaited.removeprefix('awaiting_').replace('_', ' ')} has already been received"
        return None

    @workflow.signal(name="review")
    def review(self, signal: ReviewSignal) -> None:
        actor = f"reviewer:{signal.reviewer_id}"
        if refusal := self._not_accepting("awaiting_review", self._decision is not None):
            return self._refuse("review", actor, refusal, signal.credential)
        if signal.district_code != self._application.district_code:
            return self._refuse(
                "review", actor, f"district_code: a reviewer of {signal.district_code} cannot review a case of {self._application.district_code}",
                signal.credential,
            )
        if signal.decision not in DECISIONS:
            return self._refuse("review", actor, f"decision: must be one of {', '.join(DECISIONS)}", signal.credential)
        opinion = signal.opinion.strip()
        if not opinion or len(opinion) > MAX_OPINION_LENGTH:
            return self._refuse(
                "review", actor, f"opinion: a handling opinion (办理意见) of 1 to {MAX_OPINION_LENGTH} characters is required", signal.credential
            )
        self._decision = ReviewRecord(
            reviewer_id=signal.reviewer_id,
            district_code=signal.district_code,
            decision=signal.decision,
            opinion=opinion,
            at=workflow.now(),
        )
        self._record(f"reviewed:{signal.decision}", actor, opinion, signal.credential)

    @workflow.signal(name="register_offline")
    def register_offline(self, signal: OfflineRegistrationSignal) -> None:
        actor = f"staff:{signal.staff_id}"
        if refusal := self._not_accepting("awaiting_offline_registration", self._offline_registered):
            return self._refuse("offline_registration", actor, refusal, signal.credential)
        if signal.district_code != self._application.district_code:
            return self._refuse(
                "offline_registration",
                actor,
                f"district_code: a service point of {signal.district_code} cannot register a case of {self._application.district_code}",
                signal.credential,
            )
        if signal.school_choice is not None:
            choice = signal.school_choice
            if problem := self._policy.school_choice_problem(self._application.stage, choice.zone_id, choice.school_id):
                return self._refuse("offline_registration", actor, problem, signal.credential)
            self._school_choice = SchoolChoice(zone_id=choice.zone_id, school_id=choice.school_id)
        self._materials.extend(signal.materials)
        self._offline_registered = True
        self._record(
            "registered_offline", actor, f"{len(signal.materials)} materials" + (f"; {signal.note}" if signal.note else ""), signal.credential
        )

    @workflow.signal(name="supplement")
    def supplement(self, signal: SupplementSignal) -> None:
        if refusal := self._not_accepting("awaiting_supplement", self._supplemented):
            return self._refuse("supplement", signal.submitted_by, refusal)
        if not signal.materials and not signal.note.strip():
            return self._refuse("supplement", signal.submitted_by, "materials: a supplement needs materials or a note")
        self._materials.extend(signal.materials)
        self._supplemented = True
        self._record("supplemented", signal.submitted_by, f"{len(signal.materials)} materials")

    @workflow.signal(name="withdraw")
    def withdraw(self, signal: WithdrawSignal) -> None:
        if self._status in FINAL_STATES or self._withdrawal is not None:
            return self._refuse("withdrawal", signal.requested_by, f"case is already {self._status}")
        if self._problems:
            return self._refuse("withdrawal", signal.requested_by, "the application does not meet the acceptance conditions and is being closed")
        if self._decision is not None and self._decision.decision != "request_supplement":
            return self._refuse("withdrawal", signal.requested_by, "the bureau has already decided")
        self._withdrawal = signal
        self._record("withdrawal_requested", signal.requested_by, signal.reason or None)

    @workflow.update(name="select_school")
    def select_school(self, selection: SchoolSelection) -> CaseStatusView:
        self._school_choice = SchoolChoice(zone_id=selection.zone_id, school_id=selection.school_id)
        self._record("school_selected", "applicant", f"{selection.zone_id} / {selection.school_id}")
        return self._view()

    @select_school.validator
    def _check_school_selection(self, selection: SchoolSelection) -> None:
        if refusal := self._not_accepting("awaiting_school_selection", self._school_choice is not None):
            raise ValueError(refusal)
        problem = self._policy.school_choice_problem(self._application.stage, selection.zone_id, selection.school_id)
        if problem:
            raise ValueError(problem)

    @workflow.query(name="status")
    def status(self) -> CaseStatusView:
        return self._view()

    @workflow.query(name="filled_elements")
    def filled_elements(self) -> list[FilledElement]:
        """The auto-filled elements with their values, for the reviewer of the case (personal data)."""
        return [
            FilledElement(element=element, value=self._element_values[element], source=source)
            for element, source in self._element_sources.items()
        ]

    def _key_fields(self) -> dict:
        """What the status view and the case store's row both say about the case."""
        app = self._application
        return {
            "application_id": app.application_id,
            "status": self._status,
            "routing_phase": self._phase,
            "channel": app.channel,
            "stage": app.stage,
            "registration_type": app.registration_type,
            "district_code": app.district_code,
            "school_year": app.school_year,
            "policy_version": self._policy.version if self._policy else None,
            "auto_filled_count": len(self._element_sources),
            "platform_synced": self._platform_synced,
        }

    def _view(self) -> CaseStatusView:
        return CaseStatusView(
            **self._key_fields(),
            eligibility_problems=self._problems,
            verifications=self._verifications,
            auto_filled=self._element_sources,
            school_choice=self._school_choice,
            materials=self._materials,
            review=self._reviews[-1] if self._reviews else None,
            reviews=self._reviews,
            timeline=self._timeline,
        )
