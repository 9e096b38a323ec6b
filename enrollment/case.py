"""What a case carries and shows: its input, the messages people send it, and its status view.

Every signal, update, query and activity takes one model, so a field can be
added later without breaking cases already running.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from enrollment.application import Application, RegistrationType, SchoolChoice, Stage
from enrollment.policy import DistrictPolicy, Verifier

WORKFLOW_TYPE = "EnrollmentCase"
CASE_TASK_QUEUE = "enrollment-cases"
# Cases begun before each verifier had its own queue schedule verifications here.
VERIFICATION_TASK_QUEUE = "enrollment-verification"

CaseState = Literal[
    "submitted",
    "verifying",
    "not_eligible",
    "awaiting_offline_registration",
    "awaiting_school_selection",
    "awaiting_review",
    "awaiting_supplement",
    "approved",
    "rejected",
    "withdrawn",
    "expired",
]
CASE_STATES: tuple[str, ...] = CaseState.__args__
FINAL_STATES: frozenset[str] = frozenset({"not_eligible", "approved", "rejected", "withdrawn", "expired"})

RoutingPhase = Literal["phase_one", "phase_two"]
Outcome = Literal["matched", "mismatch", "not_found", "unavailable", "not_required"]
Decision = Literal["approve", "reject", "request_supplement"]
DECISIONS: tuple[str, ...] = ("approve", "reject", "request_supplement")


def verifier_task_queue(verifier: Verifier) -> str:
    """Each verifier has its own queue, so the server can hold each department to its own call rate."""
    return f"{VERIFICATION_TASK_QUEUE}-{verifier.replace('_', '-')}"


_WORKFLOW_ID_PREFIX = "case-"


def workflow_id_for(application_id: str) -> str:
    return f"{_WORKFLOW_ID_PREFIX}{application_id}"


def application_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix(_WORKFLOW_ID_PREFIX)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CaseInput(_Message):
    application: Application


class CaseSetupRequest(_Message):
    district_code: str
    received_at: dt.datetime


class CaseSetup(_Message):
    """What the deployment decides once, at intake: the policy in force and the routing phase."""

    policy: DistrictPolicy | None
    routing_phase: RoutingPhase


# Signals and updates. Fields are plain strings where a wrong value must be
# refused and recorded by the case rather than dropped while decoding.


class ReviewSignal(_Message):
    reviewer_id: str
    district_code: str
    decision: str
    opinion: str = ""
    # Id of the signed token the sender's identity was taken from, for the audit trail.
    credential: str | None = None


class SchoolSelection(_Message):
    zone_id: str
    school_id: str


class OfflineRegistrationSignal(_Message):
    staff_id: str
    district_code: str
    materials: list[str] = Field(default_factory=list)
    note: str = ""
    school_choice: SchoolSelection | None = None
    credential: str | None = None


class SupplementSignal(_Message):
    submitted_by: str = "applicant"
    materials: list[str] = Field(default_factory=list)
    note: str = ""


class WithdrawSignal(_Message):
    requested_by: str = "applicant"
    reason: str = ""


# The status view.


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


class CaseStatusView(_Message):
    application_id: str
    status: CaseState
    routing_phase: RoutingPhase | None
    channel: str
    stage: Stage
    registration_type: RegistrationType
    district_code: str
    school_year: int
    policy_version: str | None
    eligibility_problems: list[str]
    verifications: dict[Verifier, VerifierReport]
    auto_filled_count: int
    auto_filled: dict[str, str] = Field(description="element -> source that filled it")
    school_choice: SchoolChoice | None
    materials: list[str]
    review: ReviewRecord | None
    reviews: list[ReviewRecord]
    platform_synced: bool
    timeline: list[TimelineEntry]
