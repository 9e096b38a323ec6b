"""What a case carries and shows: its input, the messages people send it, its state and its view.

Every update, query and activity takes one model, so a field can be added
later without breaking cases already running. The messages are Workflow
Updates: each answers its sender at once with a `Receipt` saying whether the
case took it and, if not, why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from enrollment.application import Application, RegistrationType, SchoolChoice, Stage
from enrollment.policy import DistrictPolicy
from enrollment.proofs import TrustedKeys
from enrollment.statuses import CaseStatus, Decision, Outcome, RoutingPhase
from enrollment.verifiers import Verifier

WORKFLOW_TYPE = "EnrollmentCase"
CASE_TASK_QUEUE = "enrollment-cases"

_WORKFLOW_ID_PREFIX = "case-"


def workflow_id_for(application_id: str) -> str:
    return f"{_WORKFLOW_ID_PREFIX}{application_id}"


def application_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix(_WORKFLOW_ID_PREFIX)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CaseInput(_Message):
    application: Application
    # Digest of the application as handed in (starter.hand_in.fingerprint), so a later hand-in of the
    # same application id can be told apart from a different application.
    fingerprint: str = ""


class CaseSetupRequest(_Message):
    district_code: str
    received_at: dt.datetime


class CaseSetup(_Message):
    """What the deployment decides once, at intake: the policy in force and the routing phase."""

    policy: DistrictPolicy | None
    routing_phase: RoutingPhase


# Handing in (Update-with-Start): the case answers the system that handed the application in.


class HandIn(_Message):
    fingerprint: str


class IntakeAnswer(_Message):
    """The case's answer to a hand-in: its acceptance-conditions (受理条件) result, from the case itself."""

    application_id: str
    # False: the case holds a different application under this id.
    same_application: bool
    # True for the hand-in that started the case, False when the same application came again.
    first: bool
    status: CaseStatus
    routing_phase: RoutingPhase | None
    eligible: bool
    problems: list[str]


# Messages from people (Workflow Updates). Fields are plain strings where a wrong value must be
# refused and recorded by the case rather than dropped while decoding. Each carries `proof`: a token
# the identity provider signed for exactly this message to this case (enrollment.proofs), which the
# case checks before anything else.


class Review(_Message):
    """A reviewer's decision with the handling opinion (办理意见)."""

    reviewer_id: str
    district_code: str
    decision: str
    opinion: str = ""
    # Id of the signed token the sender's identity was taken from (release 1.0; now the proof's id).
    credential: str | None = None
    proof: str | None = None


class SchoolSelection(_Message):
    zone_id: str
    school_id: str
    proof: str | None = None


class OfflineRegistration(_Message):
    """Service-point staff registered the family and received its paper materials."""

    staff_id: str
    district_code: str
    materials: list[str] = Field(default_factory=list)
    note: str = ""
    school_choice: SchoolSelection | None = None
    credential: str | None = None
    proof: str | None = None


class Supplement(_Message):
    submitted_by: str = "applicant"
    materials: list[str] = Field(default_factory=list)
    note: str = ""
    proof: str | None = None


class Withdrawal(_Message):
    requested_by: str = "applicant"
    reason: str = ""
    proof: str | None = None


class Reverification(_Message):
    """Ops ask a case sent offline because a department did not answer to ask that department again."""

    requested_by: str
    reason: str = ""
    proof: str | None = None


class Claim(_Message):
    """A reviewer takes a case awaiting review for themselves (`claim`, which also renews their hold) or
    gives it back (`release`). While held, other reviewers see who holds it and cannot decide it."""

    action: Literal["claim", "release"]
    reviewer_id: str
    district_code: str
    proof: str | None = None


class Reassignment(_Message):
    """A supervisor gives a case awaiting review to a reviewer of the district, whoever holds it now."""

    supervisor_id: str
    district_code: str
    assignee: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    proof: str | None = None


class ClaimHold(_Message):
    """Who holds a case awaiting review, and until when (the policy's lease, renewed by claiming again)."""

    holder: str
    until: dt.datetime


# The Update each message is sent as: the action its proof must name.
ACTIONS: dict[type[BaseModel], str] = {
    Review: "review",
    OfflineRegistration: "register_offline",
    Supplement: "supplement",
    Withdrawal: "withdraw",
    SchoolSelection: "select_school",
    Reverification: "reverify",
    Claim: "claim",
    Reassignment: "reassign",
}


class Receipt(_Message):
    """The case's answer to a message: taken, or refused with the reason (recorded in its timeline either way)."""

    accepted: bool
    reason: str | None = None
    status: CaseStatus


# What the case knows and shows.


class VerifierReport(_Message):
    outcome: Outcome
    reason: str | None = None
    elements: list[str] = Field(default_factory=list)


class FilledElement(_Message):
    """One of the 25 elements the departments filled in, with where it came from."""

    element: str
    value: str
    source: str


class TimelineEntry(_Message):
    at: dt.datetime
    step: str
    actor: str
    detail: str | None = None
    credential: str | None = Field(default=None, description="token id the actor's identity came from")


class ReviewRecord(_Message):
    reviewer_id: str
    district_code: str
    decision: Decision
    opinion: str
    at: dt.datetime


class CaseSummary(_Message):
    """What the status view and the case store's row both say about a case."""

    application_id: str
    status: CaseStatus
    routing_phase: RoutingPhase | None
    channel: str
    stage: Stage
    registration_type: RegistrationType
    district_code: str
    school_year: int
    policy_version: str | None
    auto_filled_count: int
    platform_synced: bool


class CaseView(CaseSummary):
    """The `status` query: the case as its reviewer and ops see it (no identity numbers)."""

    eligibility_problems: list[str]
    verifications: dict[Verifier, VerifierReport]
    auto_filled: dict[str, str] = Field(description="element -> source that filled it")
    school_choice: SchoolChoice | None
    materials: list[str]
    review: ReviewRecord | None
    reviews: list[ReviewRecord]
    timeline: list[TimelineEntry]
    # Who holds the case for review, if anyone took it (release 1.3; the hold may have lapsed since).
    claim: ClaimHold | None = None


class CaseFile(BaseModel):
    """The workflow's whole state: one object, so what a case knows is visible in one place.

    It lives only inside the workflow; queries and the case store see projections of it.
    """

    application: Application
    fingerprint: str = ""
    status: CaseStatus = "submitted"
    entered_at: dt.datetime
    # Set once the acceptance conditions are checked, when a hand-in can be answered.
    acceptance_checked: bool = False
    hand_ins: int = 0
    routing_phase: RoutingPhase | None = None
    policy: DistrictPolicy | None = None
    eligibility_problems: list[str] = Field(default_factory=list)
    verifications: dict[Verifier, VerifierReport] = Field(default_factory=dict)
    filled: dict[str, FilledElement] = Field(default_factory=dict)
    school_choice: SchoolChoice | None = None
    materials: list[str] = Field(default_factory=list)
    reviews: list[ReviewRecord] = Field(default_factory=list)
    # A decision taken by the review handler and not yet acted on by the flow.
    pending_decision: ReviewRecord | None = None
    offline_registered: bool = False
    supplemented: bool = False
    withdrawal: Withdrawal | None = None
    # Ops asked to verify again what no department answered; the flow does it and clears this.
    reverification: Reverification | None = None
    # The reviewer holding the case while it awaits review (release 1.3); lapses at `until`.
    claim: ClaimHold | None = None
    platform_synced: bool = False
    timeline: list[TimelineEntry] = Field(default_factory=list)
    # True while the flow waits for a person's message or a deadline, so a message's handler knows
    # the flow will take it at once.
    waiting: bool = False
    # Timeline entries already written to the case store.
    stored: int = 0
    status_pushes: int = 0
    notices: int = 0
    # People's messages handled, proofs already used (by id), and refusals written to the timeline.
    messages: int = 0
    proofs_seen: list[str] = Field(default_factory=list)
    refusals: int = 0
    # The identity provider's public keys, as last fetched for this case (recorded in its history).
    trusted_keys: TrustedKeys | None = None

    def summary(self) -> dict[str, Any]:
        """The CaseSummary fields, as keyword arguments for the view and the case store's snapshot."""
        app = self.application
        return {
            "application_id": app.application_id,
            "status": self.status,
            "routing_phase": self.routing_phase,
            "channel": app.channel,
            "stage": app.stage,
            "registration_type": app.registration_type,
            "district_code": app.district_code,
            "school_year": app.school_year,
            "policy_version": self.policy.version if self.policy else None,
            "auto_filled_count": len(self.filled),
            "platform_synced": self.platform_synced,
        }

    def queue_facts(self) -> dict[str, Any]:
        """What a reviewer's queue shows and filters on, for the case store's row: since when the case is at
        its step, each verifier's outcome, how many materials, and whether the review is overdue."""
        since = self.entered_at
        steps_now = {entry.step for entry in self.timeline if entry.at >= since}
        return {
            "status_since": since,
            "verification_outcomes": {verifier: report.outcome for verifier, report in self.verifications.items()},
            "materials_count": len(self.materials),
            "reminded": "review_reminder" in steps_now,
            "escalated": "review_escalated" in steps_now,
            "claimed_by": self.claim.holder if self.claim else None,
            "claimed_until": self.claim.until if self.claim else None,
        }

    def view(self) -> CaseView:
        return CaseView(
            **self.summary(),
            eligibility_problems=self.eligibility_problems,
            verifications=self.verifications,
            auto_filled={element: filled.source for element, filled in self.filled.items()},
            school_choice=self.school_choice,
            materials=self.materials,
            review=self.reviews[-1] if self.reviews else None,
            reviews=self.reviews,
            timeline=self.timeline,
            claim=self.claim,
        )
