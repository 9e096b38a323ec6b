"""One enrollment application (教育入学"一件事"), from intake to the result on the platform.

The run method reads as the scheme's flow: accept the case, check the
acceptance conditions, verify the family with the departments, route it
(online, to the service point, or to school selection), have the local bureau
review it, and feed the result back to the platform (一体反馈).

People's messages are Workflow Updates. Each handler decides, there and then,
whether the case takes the message; a refusal changes nothing but is written
into the timeline with its reason (the audit trail keeps it) and returned to
the sender, so no caller has to watch the timeline to learn what happened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.archive import ArchiveActivities, ArchiveRequest
    from activities.identity import IdentityActivities, TrustedKeysRequest
    from activities.intake import IntakeActivities
    from activities.platform import PlatformActivities, PlatformMessage
    from enrollment import search_attributes as sa
    from enrollment.application import SchoolChoice
    from enrollment.case import (
        ACTIONS,
        WORKFLOW_TYPE,
        CaseFile,
        CaseInput,
        CaseSetupRequest,
        CaseView,
        Claim,
        ClaimHold,
        FilledElement,
        HandIn,
        IntakeAnswer,
        OfflineRegistration,
        Reassignment,
        Receipt,
        Reverification,
        Review,
        ReviewRecord,
        SchoolSelection,
        Supplement,
        TimelineEntry,
        VerifierReport,
        Withdrawal,
    )
    from enrollment.policy import DEFAULT_CLAIM_LEASE_HOURS, DistrictPolicy, eligibility_problems
    from enrollment.proofs import ProofCheck, TrustedKeys, check_proof, message_digest
    from enrollment.statuses import DECISIONS, FINAL_STATUSES, PASSED_OUTCOMES, CaseStatus
    from enrollment.verification import Person, VerificationRequest, VerificationResult
    from enrollment.verifiers import REGISTRY, VERIFIERS, Verifier, VerifierSpec
    from store.cases import CaseSnapshot

# A department gets five minutes to answer at once. Past them, the case tells the applicant that checking
# is delayed and keeps asking for as long as its policy's patience allows (release 1.2); only then does
# it send the family to the service point. Before 1.2 it sent them there at once.
VERIFICATION_BUDGET = timedelta(minutes=5)
VERIFICATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# While a department is down, its waiting cases ask at most every three minutes: a department back up
# answers them within minutes, and the verifier queue's rate limit paces them so it is not flooded.
OUTAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=3)
)
# Release 1.2: a department that does not answer is a delay, not a failed verification.
OUTAGE_IS_A_DELAY_PATCH = "1.2-outage-is-a-delay"
# The platform must always receive what the case owes it, so these retry until accepted.
PLATFORM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5)
)
# Store writes retry like platform calls: the archive must end up complete.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)
MAX_OPINION_LENGTH = 2000
# Release 1.1: every message must carry a proof of who sent it. One patch per message handled
# (`1.1-message-proofs-<n>`), because a patch's answer is fixed at its first use: a case that took a
# message under 1.0 replays it without a proof, and must still ask one of every message after it.
MESSAGE_PROOFS_PATCH = "1.1-message-proofs"
# Release 1.1: a signal (which carries no proof) is refused and recorded instead of left waiting unread.
SIGNALS_REFUSED_PATCH = "1.1-signals-refused"
# Release 1.4: fewer steps per case at the server. A case asks this patch first thing, in its first step, and
# one that has it runs today's code throughout: it never asks the patches of earlier releases, each of which
# cost a marker and a search-attribute upsert in its history (one per message, for the message proofs). Under
# it, the search attributes of the first step go out with the first status in one upsert instead of three,
# and the last case-store write travels with the archive.
FEWER_STEPS_PATCH = "1.4-fewer-steps"
_SHOWABLE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
# A proof naming a key the case has not seen makes it fetch the provider's keys again, at most this often.
KEYS_REFETCH_INTERVAL = timedelta(minutes=1)
# Refused messages are written into the timeline up to this many; past it they are refused without a
# trace in the case (the workers' log still has them), so nobody can grow a case's history at will.
MAX_RECORDED_REFUSALS = 50

T = TypeVar("T")
KEYS_UNAVAILABLE = "proof: the identity provider's keys could not be fetched; nothing changed, send it again"
# Before a case has fetched any key, every proof names a key it has not seen.
_NO_KEYS = TrustedKeys(issuer="", jwks={"keys": []}, fetched_at=datetime.min.replace(tzinfo=UTC))
_Proven = (
    Review | OfflineRegistration | Supplement | Withdrawal | SchoolSelection | Reverification | Claim | Reassignment
)


class _Sender(BaseModel):
    """Who a message came from (for the timeline), the proof's id, and why the case refuses it, if it does."""

    actor: str
    credential: str | None = None
    refusal: str | None = None


@workflow.defn(name=WORKFLOW_TYPE)
class EnrollmentCase:
    @workflow.init
    def __init__(self, case: CaseInput) -> None:
        self.case = CaseFile(
            application=case.application,
            fingerprint=case.fingerprint,
            entered_at=workflow.now(),
            school_choice=case.application.school_choice,
        )
        # Search attributes waiting to go out with the case's next status, by name (release 1.4).
        self._unpublished: dict[str, SearchAttributeUpdate[Any]] = {}

    # The flow.

    @workflow.run
    async def run(self, case: CaseInput) -> CaseView:
        self._current_release()  # asked first, so that its answer is fixed in the case's first step
        app = self.case.application
        self._record("submitted", f"applicant via {app.channel}")
        # From release 1.4 the starter sets these on the start request (sa.at_start); the case sets any it did
        # not, or set otherwise than the application says.
        given = workflow.info().typed_search_attributes
        self._search_attributes(
            *(u for u in sa.describing(app) if not self._current_release() or given.get(u.key) != u.value)
        )
        policy = await self._accept()
        self.case.eligibility_problems = self._acceptance_problems(policy)
        # The system that handed the application in gets its answer now (hand_in).
        self.case.acceptance_checked = True
        if self.case.withdrawal is not None:
            return await self._finish("withdrawn")
        if policy is None or self.case.eligibility_problems:
            problems = "; ".join(self.case.eligibility_problems)
            await self._notify("not_eligible", "不符合申请条件: " + problems)
            return await self._finish("not_eligible", problems)

        await self._verify_family(policy)
        if self.case.withdrawal is not None:
            return await self._finish("withdrawn")
        outcome = await self._route(policy)
        if outcome is None:
            outcome = await self._review(policy)
        return await self._finish(outcome)

    async def _accept(self) -> DistrictPolicy | None:
        """Capture the policy and routing phase (受理).

        In phase two the platform accepted the application and dispatched it here; the case's answer to
        that hand-in (`hand_in`) is the acknowledgement, so nothing more is sent back at this step.
        """
        app = self.case.application
        setup = await self._bookkeeping(
            IntakeActivities.load_case_setup,
            CaseSetupRequest(district_code=app.district_code, received_at=workflow.info().start_time),
            "load district policy",
            retry_policy=None,
        )
        self.case.policy = setup.policy
        self.case.routing_phase = setup.routing_phase
        self._search_attributes(sa.ROUTING_PHASE.value_set(setup.routing_phase))
        version = setup.policy.version if setup.policy else "none"
        self._record("accepted", "enrollment_system", f"{setup.routing_phase}, policy {version}")
        return setup.policy

    def _acceptance_problems(self, policy: DistrictPolicy | None) -> list[str]:
        if policy is None:
            return [f"district_code: no enrollment policy for district {self.case.application.district_code}"]
        return eligibility_problems(self.case.application, policy)

    async def _verify_family(self, policy: DistrictPolicy) -> None:
        """Ask the departments this case's policy requires, all at once."""
        await self._enter("verifying", "system")
        required = policy.required_verifications(self.case.application.registration_type)
        for verifier in VERIFIERS:
            if verifier not in required:
                self.case.verifications[verifier] = VerifierReport(outcome="not_required")
        await asyncio.gather(*(self._verify(verifier, policy) for verifier in required))

    async def _verify(self, verifier: Verifier, policy: DistrictPolicy, patient: bool = True) -> None:
        """Ask one department; when it does not answer, keep asking for the policy's patience (if `patient`)."""
        app = self.case.application
        spec = REGISTRY[verifier]
        request = VerificationRequest(
            application_id=app.application_id,
            verifier=verifier,
            registration_type=app.registration_type,
            district_code=app.district_code,
            city_code=policy.city_code,
            min_social_insurance_months=policy.registration_types[app.registration_type].min_social_insurance_months,
            student=Person(name=app.student.name, id_number=app.student.id_number),
            guardians=[Person(name=g.name, id_number=g.id_number) for g in app.guardians],
        )
        result: VerificationResult | None = None
        try:
            result = await self._ask(spec, request, VERIFICATION_BUDGET, VERIFICATION_RETRY)
        except ActivityError as err:
            unanswered = f"no answer within the retry budget: {_cause(err)}"
            if patient and (self._current_release() or workflow.patched(OUTAGE_IS_A_DELAY_PATCH)):
                patience = policy.verification_patience.of(verifier)
                await self._delayed(verifier)
                try:
                    result = await self._ask(spec, request, patience, OUTAGE_RETRY)
                except ActivityError as still:
                    unanswered = f"no answer for {patience.total_seconds() / 3600:g} hours: {_cause(still)}"
            if result is None:
                report = VerifierReport(outcome="unavailable", reason=unanswered)
        if result is not None:
            report = VerifierReport(outcome=result.outcome, reason=result.reason, elements=sorted(result.elements))
            for element, value in result.elements.items():
                self.case.filled[element] = FilledElement(element=element, value=value, source=spec.source)
        self.case.verifications[verifier] = report
        workflow.metric_meter().create_counter("enrollment_verifier_outcomes", "verification outcomes").add(
            1, {"verifier": verifier, "outcome": report.outcome}
        )
        self._record(
            f"{verifier}_verified", spec.source, report.outcome + (f": {report.reason}" if report.reason else "")
        )

    async def _ask(
        self, spec: VerifierSpec, request: VerificationRequest, budget: timedelta, retry: RetryPolicy
    ) -> VerificationResult:
        result: VerificationResult = await workflow.execute_activity(
            spec.activity,
            request,
            result_type=VerificationResult,
            task_queue=spec.task_queue,
            schedule_to_close_timeout=budget,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry,
            summary=f"{spec.label.en} verification",
        )
        return result

    async def _delayed(self, verifier: Verifier) -> None:
        """A department did not answer in time: say so once, and keep the family's case online."""
        self._record(f"{verifier}_delayed", REGISTRY[verifier].source, "no answer yet; asking again with backoff")
        if self.case.status != "verifying":
            return
        await self._enter("verification_delayed", "system", REGISTRY[verifier].label.en)
        await self._notify(
            "verification_delayed",
            "核验延迟: a department has not answered yet. Your application is kept and checked again "
            "automatically; you need not go to the service point unless we tell you so.",
        )

    def _verified(self) -> bool:
        return all(report.outcome in PASSED_OUTCOMES for report in self.case.verifications.values())

    def _offline_notice(self) -> str:
        unanswered = [REGISTRY[v].label.zh for v, r in self.case.verifications.items() if r.outcome == "unavailable"]
        if unanswered and any(entry.step.endswith("_delayed") for entry in self.case.timeline):
            return (
                f"核验未完成: {'、'.join(unanswered)} did not answer within the policy's time; please register at "
                "your local education bureau's enrollment service point (登记后仍可恢复线上核验)"
            )
        return "符合申请条件但核验未通过: please register at your local education bureau's enrollment service point"

    async def _route(self, policy: DistrictPolicy) -> CaseStatus | None:
        """Send the case offline or to school selection; a final status if it ends while waiting."""
        deadlines = policy.deadlines
        if self.case.application.channel == "service_point":
            # Registered at the service point with paper materials: straight to review.
            return None
        if not self._verified():
            await self._enter("awaiting_offline_registration", "system")
            await self._notify("go_to_service_point", self._offline_notice())
            while not self._verified():
                if not await self._wait_for(
                    lambda: self.case.offline_registered or self.case.reverification is not None,
                    deadlines.offline_registration_days,
                ):
                    return "expired"
                if self.case.offline_registered or self.case.withdrawal is not None:
                    # Staff registered the case with its materials: the bureau reviews it as it stands.
                    return "withdrawn" if self.case.withdrawal is not None else None
                await self._verify_again(policy)
        self._drop_school_choice_the_district_does_not_offer(policy)
        if self.case.withdrawal is None and self.case.school_choice is None:
            await self._enter("awaiting_school_selection", "system")
            await self._notify("choose_school", "核验通过: please choose your enrollment zone and school")
            if not await self._wait_for(lambda: self.case.school_choice is not None, deadlines.school_selection_days):
                return "expired"
        return "withdrawn" if self.case.withdrawal is not None else None

    async def _verify_again(self, policy: DistrictPolicy) -> None:
        """Ops asked: ask again the departments that did not answer. Verified now, the family need not come in."""
        unanswered = [v for v, report in self.case.verifications.items() if report.outcome == "unavailable"]
        await asyncio.gather(*(self._verify(verifier, policy, patient=False) for verifier in unanswered))
        self.case.reverification = None
        if self._verified():
            await self._notify(
                "verified_after_outage",
                "核验通过: the departments have now confirmed your information; you need not go to the service point",
            )

    def _drop_school_choice_the_district_does_not_offer(self, policy: DistrictPolicy) -> None:
        """An application from another intake path may name a school the policy does not offer: ask again."""
        choice = self.case.school_choice
        if choice is None:
            return
        problem = policy.school_choice_problem(self.case.application.stage, choice.zone_id, choice.school_id)
        if problem:
            self._record("school_choice_refused", "system", problem)
            self.case.school_choice = None

    async def _review(self, policy: DistrictPolicy) -> CaseStatus:
        """The local bureau reviews until it approves or rejects; a supplement request loops back."""
        while True:
            await self._enter("awaiting_review", "system")
            decision = await self._await_decision(policy)
            if decision is None:
                return "withdrawn"
            self.case.reviews.append(decision)
            if decision.decision == "approve":
                return "approved"
            if decision.decision == "reject":
                return "rejected"
            # Cleared before the status changes, so a supplement sent while the applicant is
            # being notified is kept.
            self.case.supplemented = False
            await self._enter("awaiting_supplement", f"reviewer:{decision.reviewer_id}", decision.opinion)
            await self._notify("supplement_requested", f"需补充材料: {decision.opinion}")
            if not await self._wait_for(lambda: self.case.supplemented, policy.deadlines.supplement_days):
                return "expired"
            if self.case.withdrawal is not None:
                return "withdrawn"

    async def _await_decision(self, policy: DistrictPolicy) -> ReviewRecord | None:
        """The reviewer's decision (None: withdrawn), with a reminder and then an escalation when overdue."""
        deadlines = policy.deadlines

        def decided() -> bool:
            return self.case.pending_decision is not None or self.case.withdrawal is not None

        for days, step in (
            (deadlines.review_reminder_days, "review_reminder"),
            (deadlines.review_escalation_days, "review_escalated"),
        ):
            if await self._wait_until(decided, self.case.entered_at + timedelta(days=days)):
                break
            self._record(step, "system", f"no decision after {days:g} days")
        else:
            await self._wait_until(decided, None)
        if self.case.withdrawal is not None:
            return None
        decision, self.case.pending_decision = self.case.pending_decision, None
        return decision

    async def _finish(self, outcome: CaseStatus, detail: str | None = None) -> CaseView:
        """End the case, feed the result back to the platform (办结) exactly once, and archive it."""
        review = self.case.reviews[-1] if self.case.reviews and outcome in ("approved", "rejected") else None
        if review is not None:
            detail = review.opinion
        elif outcome == "withdrawn" and self.case.withdrawal is not None:
            detail = self.case.withdrawal.reason or None
        await self._enter(outcome, self._actor_for(outcome, review), detail)
        app = self.case.application
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
                "routing_phase": self.case.routing_phase,
                "policy_version": self.case.policy.version if self.case.policy else None,
                "school_choice": self.case.school_choice.model_dump() if self.case.school_choice else None,
            },
        )
        self.case.platform_synced = True
        self._record("result_synced_to_platform", "enrollment_system")
        await workflow.wait_condition(workflow.all_handlers_finished)
        last_progress = self._unsaved_progress() if self._current_release() else None
        if last_progress is None:
            await self._save_progress()
        await self._bookkeeping(
            ArchiveActivities.archive_case,
            ArchiveRequest(application=app, view=self.case.view(), last_progress=last_progress),
            "archive acceptance, review and result",
        )
        self.case.stored = len(self.case.timeline)
        return self.case.view()

    def _actor_for(self, outcome: CaseStatus, review: ReviewRecord | None) -> str:
        if review is not None:
            return f"reviewer:{review.reviewer_id}"
        if outcome == "withdrawn" and self.case.withdrawal is not None:
            return self.case.withdrawal.requested_by
        return "system"

    # Steps shared by the flow.

    async def _enter(self, status: CaseStatus, actor: str, detail: str | None = None) -> None:
        """Change status; deadlines run from this moment, not from when the platform hears of it."""
        self.case.status = status
        self.case.entered_at = workflow.now()
        self._record(status, actor, detail)
        workflow.metric_meter().create_counter("enrollment_case_transitions", "cases entering a status").add(
            1, {"status": status, "routing_phase": self.case.routing_phase or "pending"}
        )
        self._search_attributes(sa.CASE_STATUS.value_set(status), now=True)
        workflow.set_current_details(self._current_details())
        await self._save_progress()
        if self.case.routing_phase == "phase_two":
            self.case.status_pushes += 1
            await self._to_platform(
                PlatformActivities.push_status,
                f"platform status push: {status}",
                f"{self.case.application.application_id}/status/{self.case.status_pushes}-{status}",
                {"status": status, "sequence": self.case.status_pushes, "at": workflow.now().isoformat()},
            )

    async def _save_progress(self) -> None:
        """Write the case row and the timeline entries the store has not seen yet."""
        snapshot = self._unsaved_progress()
        if snapshot is None:
            return
        await self._bookkeeping(ArchiveActivities.record_progress, snapshot, f"case store: {self.case.status}")
        self.case.stored = max(self.case.stored, snapshot.progress)

    def _unsaved_progress(self) -> CaseSnapshot | None:
        """The case row with the timeline entries the store has not seen yet; None when it has seen them all."""
        upto = len(self.case.timeline)
        if self.case.stored == upto:
            return None
        app = self.case.application
        return CaseSnapshot(
            **self.case.summary(),
            **self.case.queue_facts(),
            workflow_id=workflow.info().workflow_id,
            progress=upto,
            student_id_number=app.student.id_number,
            guardian_id_numbers=[g.id_number for g in app.guardians],
            submitted_at=self.case.timeline[0].at,
            first_seq=self.case.stored,
            events=self.case.timeline[self.case.stored : upto],
        )

    def _current_release(self) -> bool:
        """True for a case started on release 1.4 or later (FEWER_STEPS_PATCH); the SDK keeps the answer."""
        return workflow.patched(FEWER_STEPS_PATCH)

    def _search_attributes(self, *updates: SearchAttributeUpdate[Any], now: bool = False) -> None:
        """Set search attributes; from release 1.4 they are held until the case's next status, or until it first
        waits on anything outside its worker (`now`), and go out together.

        Every upsert is a history event and a write to visibility. A case's first workflow task sets three
        groups (what it is, its routing phase, its first status), so they become visible together either way;
        a case that is not eligible tells the platform before its status, so its routing phase goes first.
        """
        self._unpublished.update((update.key.name, update) for update in updates)
        if self._unpublished and (now or not self._current_release()):
            workflow.upsert_search_attributes(list(self._unpublished.values()))
            self._unpublished.clear()

    async def _bookkeeping(
        self,
        activity: Callable[[Any, Any], Awaitable[T]],
        arg: Any,
        summary: str,
        retry_policy: RetryPolicy | None = STORE_RETRY,
    ) -> T:
        """Run one of the case's own steps (policy, case store, archive) as a local activity.

        They take milliseconds on the case worker itself, so they cost the server no task of
        their own, only a marker in the history.
        """
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=timedelta(seconds=30), retry_policy=retry_policy, summary=summary
        )

    async def _notify(self, kind: str, message: str) -> None:
        self.case.notices += 1
        await self._to_platform(
            PlatformActivities.notify_applicant,
            f"applicant notice: {kind}",
            f"{self.case.application.application_id}/notice/{self.case.notices}-{kind}",
            {"kind": kind, "message": message, "status": self.case.status},
        )
        self._record(f"applicant_notified:{kind}", "enrollment_system")

    async def _to_platform(
        self,
        activity: Callable[[Any, PlatformMessage], Awaitable[Any]],
        summary: str,
        idempotency_key: str,
        body: dict[str, Any],
    ) -> None:
        self._search_attributes(now=True)  # the platform may take hours to answer: nothing held meanwhile
        await workflow.execute_activity_method(
            activity,
            PlatformMessage(
                application_id=self.case.application.application_id, idempotency_key=idempotency_key, body=body
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PLATFORM_RETRY,
            summary=summary,
        )

    async def _wait_until(self, condition: Callable[[], bool], deadline: datetime | None) -> bool:
        """True when the condition holds before the deadline (None: no deadline), False when the deadline comes first.

        While waiting, steps that messages add to the timeline (a refused review,
        say) are written to the store as they happen, not weeks later.
        """

        def unsaved() -> bool:
            return self.case.stored < len(self.case.timeline)

        self._search_attributes(now=True)
        while True:
            remaining = None if deadline is None else deadline - workflow.now()
            if remaining is not None and remaining <= timedelta(0):
                return condition()
            self.case.waiting = True
            try:
                await workflow.wait_condition(lambda: condition() or unsaved(), timeout=remaining)
            except TimeoutError:
                return False
            finally:
                self.case.waiting = False
            if condition():
                return True
            await self._save_progress()

    async def _wait_for(self, condition: Callable[[], bool], days: float) -> bool:
        """Wait for a person's step or a withdrawal; False when the policy's deadline passes first."""
        met = await self._wait_until(
            lambda: condition() or self.case.withdrawal is not None, self.case.entered_at + timedelta(days=days)
        )
        if not met:
            self._record("deadline_passed", "system", f"{self.case.status} for {days:g} days")
        return met

    def _record(self, step: str, actor: str, detail: str | None = None, credential: str | None = None) -> None:
        self.case.timeline.append(
            TimelineEntry(at=workflow.now(), step=step, actor=actor, detail=detail, credential=credential)
        )

    def _current_details(self) -> str:
        app = self.case.application
        return (
            f"**{self.case.status}** · {app.stage} · {app.registration_type} · district {app.district_code} · "
            f"{self.case.routing_phase or 'phase pending'} · via {app.channel}"
        )

    # Messages from people.

    def _refuse(self, what: str, actor: str, reason: str, credential: str | None = None) -> Receipt:
        """A refused message changes nothing but is kept in the timeline, for the audit trail (up to a cap)."""
        workflow.logger.info("Refused %s: %s", what, reason)
        if self.case.refusals < MAX_RECORDED_REFUSALS:
            self.case.refusals += 1
            self._record(f"{what}_refused", actor, reason, credential)
        return Receipt(accepted=False, reason=reason, status=self.case.status)

    @workflow.signal(dynamic=True)
    def refuse_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A case takes people's messages only as proven Updates; a signal of any name is refused and recorded.

        Its payload is never decoded (it may be forged or unreadable). Release 1.0 left such signals
        waiting unread, so a case that received one then keeps doing so.
        """
        if self._current_release() or workflow.patched(SIGNALS_REFUSED_PATCH):
            shown = name if _SHOWABLE_NAME.fullmatch(name) else "(unprintable name)"
            self._refuse("signal", "unknown sender", f"signal {shown}: a case takes messages only as proven updates")

    def _not_accepting(self, awaited: CaseStatus, already_received: bool) -> str | None:
        """Why the case cannot take a message meant for the `awaited` step now, or None if it can."""
        if self.case.withdrawal is not None:
            return "the applicant has withdrawn the application"
        if self.case.status != awaited:
            return f"case is {self.case.status}, not {awaited}"
        if already_received:
            return f"this {awaited.removeprefix('awaiting_').replace('_', ' ')} has already been received"
        return None

    def _wrong_district(self, role: str, district_code: str) -> str | None:
        case_district = self.case.application.district_code
        if district_code == case_district:
            return None
        return f"district_code: a {role} of {district_code} cannot act on a case of {case_district}"

    async def _taken(self, left: CaseStatus) -> Receipt:
        """Answer once the flow has moved on from the step the message was for, so the sender learns the new status.

        A waiting flow wakes in the same workflow task, so this adds no history and no delay. A flow
        busy elsewhere (still telling the platform of the step, say) takes the message when it is
        done; the sender is not held until then and gets the status as it stands.
        """
        await workflow.wait_condition(lambda: self.case.status != left or not self.case.waiting)
        return Receipt(accepted=True, status=self.case.status)

    # Who sent a message: its proof, checked by the case itself.

    def _check_with(self, keys: TrustedKeys, message: _Proven) -> ProofCheck:
        return check_proof(
            message.proof,
            keys,
            case=workflow.info().workflow_id,
            action=ACTIONS[type(message)],
            digest=message_digest(message),
            district=self.case.application.district_code,
            now=workflow.now(),
            seen=self.case.proofs_seen,
        )

    async def _sender(
        self, message: _Proven, actor: str, subject: str | None = None, district: str | None = None
    ) -> _Sender:
        """Who sent the message, as its proof shows; for a message a 1.0 case took, who it said it was.

        `actor` is who the message says sent it (`reviewer:r-01`, `applicant`); `subject` and
        `district` are what it says of a bureau's person, which the proof must bear out. An
        applicant's message has neither: the platform's system relays it and signs as itself.
        """
        self.case.messages += 1
        if not self._current_release() and not workflow.patched(f"{MESSAGE_PROOFS_PATCH}-{self.case.messages}"):
            return _Sender(actor=actor, credential=getattr(message, "credential", None))
        keys = self.case.trusted_keys or _NO_KEYS
        check = self._check_with(keys, message)
        if check.unknown_key and workflow.now() - keys.fetched_at >= KEYS_REFETCH_INTERVAL:
            fetched = await self._fetch_keys(refresh=keys is not _NO_KEYS)
            if fetched is None:
                return _Sender(actor=f"unverified {actor}", refusal=KEYS_UNAVAILABLE)
            self.case.trusted_keys = fetched
            check = self._check_with(fetched, message)
        claims = check.claims
        if claims is None:
            return _Sender(actor=f"unverified {actor}", refusal=check.refusal or "proof: not accepted")
        self.case.proofs_seen.append(claims.jti)
        if subject is None:
            return _Sender(actor=f"{actor} via {claims.sub}", credential=claims.jti)
        refusal = None
        if subject != claims.sub:
            refusal = "proof: signed for another person than the message names"
        elif district != claims.district:
            refusal = "district_code: differs from the district the proof was signed for"
        return _Sender(actor=actor, credential=claims.jti, refusal=refusal)

    async def _fetch_keys(self, refresh: bool) -> TrustedKeys | None:
        try:
            keys = await workflow.execute_local_activity_method(
                IdentityActivities.trusted_identity_keys,
                TrustedKeysRequest(refresh=refresh),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary="identity provider keys",
            )
        except ActivityError:
            return None
        return keys.model_copy(update={"fetched_at": workflow.now()})

    def _refuse_unproven_past_the_cap(self, message: _Proven) -> None:
        """Validator of every message: once the case has recorded its fill of refusals, a message whose
        proof already fails with the keys the case holds is turned away before it reaches the history."""
        if self.case.refusals < MAX_RECORDED_REFUSALS or self.case.trusted_keys is None:
            return
        check = self._check_with(self.case.trusted_keys, message)
        if check.refusal and not check.unknown_key:
            raise ValueError(check.refusal)

    @workflow.update(name="hand_in")
    async def hand_in(self, message: HandIn) -> IntakeAnswer:
        """Answer the system that handed the application in, once the acceptance conditions are checked.

        Sent with the start (Update-with-Start) and again whenever the same application id is handed in
        again, so every sender gets the case's own answer; a different application under the same id
        is told apart by its fingerprint and changes nothing.
        """
        await workflow.wait_condition(lambda: self.case.acceptance_checked)
        same = message.fingerprint == self.case.fingerprint
        if same:
            self.case.hand_ins += 1
        return IntakeAnswer(
            application_id=self.case.application.application_id,
            same_application=same,
            first=same and self.case.hand_ins == 1,
            status=self.case.status,
            routing_phase=self.case.routing_phase,
            eligible=not self.case.eligibility_problems,
            problems=self.case.eligibility_problems,
        )

    @workflow.update(name="review")
    async def review(self, message: Review) -> Receipt:
        sender = await self._sender(
            message, f"reviewer:{message.reviewer_id}", message.reviewer_id, message.district_code
        )
        actor = sender.actor
        opinion = message.opinion.strip()
        refusal = (
            sender.refusal
            or self._not_accepting("awaiting_review", self.case.pending_decision is not None)
            or self._wrong_district("reviewer", message.district_code)
            or self._held_by_another(message.reviewer_id)
            or (None if message.decision in DECISIONS else f"decision: must be one of {', '.join(DECISIONS)}")
            or (
                None
                if 0 < len(opinion) <= MAX_OPINION_LENGTH
                else f"opinion: a handling opinion (办理意见) of 1 to {MAX_OPINION_LENGTH} characters is required"
            )
        )
        if refusal:
            return self._refuse("review", actor, refusal, sender.credential)
        record = ReviewRecord.model_validate(
            {
                "reviewer_id": message.reviewer_id,
                "district_code": message.district_code,
                "decision": message.decision,
                "opinion": opinion,
                "at": workflow.now(),
            }
        )
        self.case.pending_decision = record
        self.case.claim = None
        self._record(f"reviewed:{record.decision}", actor, opinion, sender.credential)
        return await self._taken("awaiting_review")

    @review.validator
    def _review_past_the_cap(self, message: Review) -> None:
        self._refuse_unproven_past_the_cap(message)

    @workflow.update(name="register_offline")
    async def register_offline(self, message: OfflineRegistration) -> Receipt:
        sender = await self._sender(message, f"staff:{message.staff_id}", message.staff_id, message.district_code)
        choice = message.school_choice
        refusal = (
            sender.refusal
            or self._not_accepting("awaiting_offline_registration", self.case.offline_registered)
            or self._wrong_district("service point", message.district_code)
        )
        if refusal is None and choice is not None and self.case.policy is not None:
            stage = self.case.application.stage
            refusal = self.case.policy.school_choice_problem(stage, choice.zone_id, choice.school_id)
        if refusal:
            return self._refuse("offline_registration", sender.actor, refusal, sender.credential)
        if choice is not None:
            self.case.school_choice = SchoolChoice(zone_id=choice.zone_id, school_id=choice.school_id)
        self.case.materials.extend(message.materials)
        self.case.offline_registered = True
        note = f"; {message.note}" if message.note else ""
        self._record("registered_offline", sender.actor, f"{len(message.materials)} materials{note}", sender.credential)
        return await self._taken("awaiting_offline_registration")

    @register_offline.validator
    def _register_offline_past_the_cap(self, message: OfflineRegistration) -> None:
        self._refuse_unproven_past_the_cap(message)

    @workflow.update(name="supplement")
    async def supplement(self, message: Supplement) -> Receipt:
        sender = await self._sender(message, message.submitted_by)
        refusal = sender.refusal or self._not_accepting("awaiting_supplement", self.case.supplemented)
        if refusal is None and not message.materials and not message.note.strip():
            refusal = "materials: a supplement needs materials or a note"
        if refusal:
            return self._refuse("supplement", sender.actor, refusal, sender.credential)
        self.case.materials.extend(message.materials)
        self.case.supplemented = True
        self._record("supplemented", sender.actor, f"{len(message.materials)} materials", sender.credential)
        return await self._taken("awaiting_supplement")

    @supplement.validator
    def _supplement_past_the_cap(self, message: Supplement) -> None:
        self._refuse_unproven_past_the_cap(message)

    @workflow.update(name="withdraw")
    async def withdraw(self, message: Withdrawal) -> Receipt:
        """Taken at any step before the decision; the flow ends the case at its next step."""
        sender = await self._sender(message, message.requested_by)
        pending = self.case.pending_decision
        if sender.refusal:
            refusal = sender.refusal
        elif self.case.status in FINAL_STATUSES or self.case.withdrawal is not None:
            refusal = f"case is already {self.case.status}"
        elif self.case.eligibility_problems:
            refusal = "the application does not meet the acceptance conditions and is being closed"
        elif pending is not None and pending.decision != "request_supplement":
            refusal = "the bureau has already decided"
        else:
            self.case.withdrawal = message
            self._record("withdrawal_requested", sender.actor, message.reason or None, sender.credential)
            return Receipt(accepted=True, status=self.case.status)
        return self._refuse("withdrawal", sender.actor, refusal, sender.credential)

    @withdraw.validator
    def _withdraw_past_the_cap(self, message: Withdrawal) -> None:
        self._refuse_unproven_past_the_cap(message)

    @workflow.update(name="select_school")
    async def select_school(self, selection: SchoolSelection) -> Receipt:
        sender = await self._sender(selection, "applicant")
        refusal = sender.refusal or self._not_accepting(
            "awaiting_school_selection", self.case.school_choice is not None
        )
        if refusal is None and self.case.policy is not None:
            stage = self.case.application.stage
            refusal = self.case.policy.school_choice_problem(stage, selection.zone_id, selection.school_id)
        if refusal:
            return self._refuse("school_selection", sender.actor, refusal, sender.credential)
        self.case.school_choice = SchoolChoice(zone_id=selection.zone_id, school_id=selection.school_id)
        self._record("school_selected", sender.actor, f"{selection.zone_id} / {selection.school_id}", sender.credential)
        return await self._taken("awaiting_school_selection")

    @select_school.validator
    def _select_school_past_the_cap(self, selection: SchoolSelection) -> None:
        self._refuse_unproven_past_the_cap(selection)

    @workflow.update(name="reverify")
    async def reverify(self, message: Reverification) -> Receipt:
        """Ops ask a case that went offline for want of an answer to ask again (a new message in release 1.2:
        no case recorded before it has one in its history, so it needs no patch)."""
        sender = await self._sender(message, f"ops:{message.requested_by}", message.requested_by, None)
        refusal = sender.refusal or self._not_accepting("awaiting_offline_registration", self.case.offline_registered)
        if refusal is None and self.case.reverification is not None:
            refusal = "a re-verification is already under way"
        if refusal is None and not any(r.outcome == "unavailable" for r in self.case.verifications.values()):
            refusal = "every department answered: the family goes offline on their answer, not for an outage"
        if refusal:
            return self._refuse("reverification", sender.actor, refusal, sender.credential)
        self.case.reverification = message
        self._record("reverification_requested", sender.actor, message.reason or None, sender.credential)
        # Answer once the flow has asked: moved on when verified, waiting offline again when not.
        await workflow.wait_condition(
            lambda: (
                self.case.reverification is None
                and (self.case.status != "awaiting_offline_registration" or self.case.waiting)
            )
        )
        return Receipt(accepted=True, status=self.case.status)

    @reverify.validator
    def _reverify_past_the_cap(self, message: Reverification) -> None:
        self._refuse_unproven_past_the_cap(message)

    def _current_claim(self) -> ClaimHold | None:
        claim = self.case.claim
        return claim if claim is not None and claim.until > workflow.now() else None

    def _hold_for(self, holder: str) -> ClaimHold:
        """A hold for `holder` from now for the policy's lease (a case awaiting review has its policy)."""
        hours = self.case.policy.claim_lease_hours if self.case.policy else DEFAULT_CLAIM_LEASE_HOURS
        return ClaimHold(holder=holder, until=workflow.now() + timedelta(hours=hours))

    def _held_by_another(self, reviewer_id: str) -> str | None:
        claim = self._current_claim()
        if claim is None or claim.holder == reviewer_id:
            return None
        return f"claimed by {claim.holder} until {claim.until.isoformat(timespec='minutes')}"

    @workflow.update(name="claim")
    async def claim(self, message: Claim) -> Receipt:
        """A reviewer holds the case, or lets it go (a new message in release 1.3: no earlier history holds
        one, and a hold exists only once one was taken, so neither needs a patch)."""
        sender = await self._sender(
            message, f"reviewer:{message.reviewer_id}", message.reviewer_id, message.district_code
        )
        refusal = (
            sender.refusal
            or self._not_accepting("awaiting_review", self.case.pending_decision is not None)
            or self._wrong_district("reviewer", message.district_code)
            or self._held_by_another(message.reviewer_id)
        )
        if refusal is None and message.action == "release" and self._current_claim() is None:
            refusal = "the case is not held by you"
        if refusal:
            return self._refuse("claim", sender.actor, refusal, sender.credential)
        if message.action == "release":
            self.case.claim = None
            self._record("released", sender.actor, None, sender.credential)
        else:
            self.case.claim = self._hold_for(message.reviewer_id)
            until = self.case.claim.until.isoformat(timespec="minutes")
            self._record("claimed", sender.actor, f"until {until}", sender.credential)
        return Receipt(accepted=True, status=self.case.status)

    @claim.validator
    def _claim_past_the_cap(self, message: Claim) -> None:
        self._refuse_unproven_past_the_cap(message)

    @workflow.update(name="reassign")
    async def reassign(self, message: Reassignment) -> Receipt:
        """A supervisor of the district gives the case to a reviewer for a fresh lease (new in release 1.3)."""
        sender = await self._sender(
            message, f"supervisor:{message.supervisor_id}", message.supervisor_id, message.district_code
        )
        refusal = (
            sender.refusal
            or self._not_accepting("awaiting_review", self.case.pending_decision is not None)
            or self._wrong_district("supervisor", message.district_code)
        )
        if refusal:
            return self._refuse("reassignment", sender.actor, refusal, sender.credential)
        self.case.claim = self._hold_for(message.assignee)
        detail = f"to {message.assignee} until {self.case.claim.until.isoformat(timespec='minutes')}"
        self._record("reassigned", sender.actor, detail, sender.credential)
        return Receipt(accepted=True, status=self.case.status)

    @reassign.validator
    def _reassign_past_the_cap(self, message: Reassignment) -> None:
        self._refuse_unproven_past_the_cap(message)

    @workflow.query(name="status")
    def status(self) -> CaseView:
        return self.case.view()

    @workflow.query(name="filled_elements")
    def filled_elements(self) -> list[FilledElement]:
        """The auto-filled elements with their values, for the reviewer of the case (personal data)."""
        return list(self.case.filled.values())


def _cause(err: ActivityError) -> str:
    # The SDK always converts an activity's failure to a FailureError; `cause` is typed as any exception.
    return cast(FailureError, err.cause).message if err.cause is not None else str(err)
