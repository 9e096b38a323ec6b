"""`/v1/applications`: hand in applications, read a case's status and result, relay the applicant's actions.

A client sees and acts on only the cases it handed in (a service point also
those of its district); any other case is "not found", exactly as a case that
does not exist, so nothing about another system's cases leaks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import BaseModel, Field, StringConstraints, ValidationError
from temporalio.client import Client

from api.callers import Caller, RegisteredClient
from api.limits import retry_after
from api.problems import ApiProblem, documented
from api.temporal import TemporalConnection
from enrollment.application import Application, SchoolChoice, describe_errors
from enrollment.case import CaseView, Receipt, SchoolSelection, Supplement, Withdrawal, workflow_id_for
from enrollment.logs import mask_text
from enrollment.oidc import IdentityError
from enrollment.policy import intake_problems, policy_book
from enrollment.statuses import FINAL_STATUSES, STATUS_LABELS, CaseStatus, Decision, Outcome, RoutingPhase
from enrollment.verifiers import Verifier
from starter.cases import CaseActionError, CaseNotFound, case_status, send_message
from starter.hand_in import HandInResult, IntakeUnavailable, hand_in
from store import audit
from store import intake as store

router = APIRouter(prefix="/v1/applications", tags=["applications"])
MAX_BATCH = 200
BATCH_CONCURRENCY = 8
RETRY_AFTER_SECONDS = "5"
PROBLEMS = documented(401, 404, 409, 413, 422, 429, 503)
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{5,39}$", description="the application id")]
Material = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AcceptanceResult(BaseModel):
    """The acceptance conditions (受理条件): whether the application meets them, and if not, why."""

    eligible: bool
    problems: list[str]


class HandedIn(BaseModel):
    application_id: str
    case_id: str
    status_url: str
    status: CaseStatus
    routing_phase: RoutingPhase | None
    acceptance: AcceptanceResult


class BatchRequest(BaseModel):
    applications: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_BATCH, description="each an application (GET /v1/schemas/application.json)"
    )


class BatchItem(BaseModel):
    index: int
    application_id: str | None
    status_code: int
    case: HandedIn | None = None
    errors: list[str] = Field(default_factory=list)


class BatchResult(BaseModel):
    items: list[BatchItem]


class TimelineStep(BaseModel):
    at: dt.datetime
    step: str


class ApplicationStatus(BaseModel):
    """A case as the system that handed it in sees it: what happened, never who the family is."""

    application_id: str
    status: CaseStatus
    status_label: str
    routing_phase: RoutingPhase | None
    district_code: str
    school_year: int
    eligibility_problems: list[str]
    verifications: dict[Verifier, Outcome]
    auto_filled_count: int
    school_choice: SchoolChoice | None
    materials_count: int
    platform_synced: bool
    timeline: list[TimelineStep]


class ApplicationResult(BaseModel):
    """The handling result (办结) as the applicant sees it; `decided` is false until the case has ended."""

    application_id: str
    decided: bool
    status: CaseStatus
    status_label: str
    decision: Decision | None = None
    opinion: str | None = None
    decided_at: dt.datetime | None = None
    school_choice: SchoolChoice | None = None


class SupplementRequest(BaseModel):
    materials: list[Material] = Field(default_factory=list, max_length=30)
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class WithdrawalRequest(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""


class SchoolChoiceRequest(BaseModel):
    zone_id: str
    school_id: str


def _handed_in(result: HandInResult) -> HandedIn:
    answer = result.answer
    assert answer is not None
    return HandedIn(
        application_id=answer.application_id,
        case_id=workflow_id_for(answer.application_id),
        status_url=f"{router.prefix}/{answer.application_id}",
        status=answer.status,
        routing_phase=answer.routing_phase,
        acceptance=AcceptanceResult(eligible=answer.eligible, problems=answer.problems),
    )


def _own_channel_problems(application: Application, client: RegisteredClient) -> list[str]:
    problems = []
    if application.channel != client.channel:
        problems.append(f"channel: must be {client.channel} for this client")
    if client.kind == "service_point" and application.district_code != client.district_code:
        problems.append(f"district_code: this service point hands in applications of {client.district_code} only")
    return problems


async def _hand_in_one(
    request: Request, client: RegisteredClient, application: Application
) -> tuple[int, HandedIn | None, list[str]]:
    """(HTTP status, the case's answer, errors) for one application that passed its own field rules."""
    problems = _own_channel_problems(application, client) or intake_problems(
        application, policy_book(request.app.state.settings.policies_dir)
    )
    if problems:
        return 422, None, problems
    try:
        result = await hand_in(
            await _temporal(request),
            request.app.state.pool,
            request.app.state.lookup_key,
            application,
            client.client_id,
        )
    except IntakeUnavailable as unavailable:
        return 503, None, [f"temporal: {unavailable}; send the same request again later"]
    if result.outcome in ("accepted", "again"):
        return (201 if result.outcome == "accepted" else 200), _handed_in(result), []
    errors = list(result.errors)
    if result.existing_application_id:
        errors.append(f"application_id: the open application is {result.existing_application_id}")
    return 409, None, errors


@router.post("", status_code=201, responses={200: {"model": HandedIn}, **PROBLEMS})
async def hand_in_application(
    request: Request, response: Response, client: Caller, application: Application
) -> HandedIn:
    """Hand in one application; the answer comes from the case: its id, status URL and acceptance-conditions result.

    The same application handed in again answers 200 with the same case; other content under the same
    application id is a 409; a child with an open application this school year is a 409.
    """
    status, case, errors = await _hand_in_one(request, client, application)
    if case is None:
        raise ApiProblem(status, errors, headers={"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None)
    response.status_code = status
    response.headers["Location"] = case.status_url
    return case


@router.post("/batch", responses=PROBLEMS)
async def hand_in_batch(request: Request, client: Caller, batch: BatchRequest) -> BatchResult:
    """A service point's import: up to 200 applications, one result per item, in order."""
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(index: int, item: dict[str, Any]) -> BatchItem:
        try:
            application = Application.model_validate(item)
        except ValidationError as err:
            status, case, errors = 422, None, describe_errors(err)
        else:
            async with gate:
                status, case, errors = await _hand_in_one(request, client, application)
        app_id = item.get("application_id")
        return BatchItem(
            index=index,
            application_id=app_id if isinstance(app_id, str) and len(app_id) <= 40 else None,
            status_code=status,
            case=case,
            errors=errors,
        )

    return BatchResult(items=list(await asyncio.gather(*(one(i, item) for i, item in enumerate(batch.applications)))))


async def _temporal(request: Request) -> Client:
    connection: TemporalConnection = request.app.state.temporal
    return await connection.client()


def _not_found(application_id: str) -> ApiProblem:
    return ApiProblem(404, [f"application_id: no case {application_id} for this client"])


async def _check_visible(request: Request, client: RegisteredClient, application_id: str) -> None:
    """404, the same as for a case that does not exist, unless the client may see this one (case store only)."""
    handed_in = await store.hand_in_of(request.app.state.pool, application_id)
    if handed_in is None or not client.may_see(handed_in.client_id, handed_in.district_code):
        raise _not_found(application_id)


async def _visible_case(request: Request, client: RegisteredClient, application_id: str, read: str) -> CaseView:
    """The case, for a client that may see it; the read goes into the audit trail (who saw this child's case)."""
    await _check_visible(request, client, application_id)
    try:
        view = await case_status(await _temporal(request), application_id)
    except CaseNotFound:
        raise _not_found(application_id) from None
    await audit.record(
        request.app.state.pool,
        audit.AuditEvent(
            actor=f"client:{client.client_id}",
            role=client.kind,
            district=client.district_code,
            source=request.client.host if request.client else None,
            case_id=application_id,
            action=read,
            outcome="ok",
        ),
    )
    return view


@router.get("/{application_id}", responses=PROBLEMS)
async def application_status(request: Request, client: Caller, application_id: Id) -> ApplicationStatus:
    """The case's status for the system that handed it in; no names or identity numbers."""
    view = await _visible_case(request, client, application_id, "api_status")
    return ApplicationStatus(
        application_id=view.application_id,
        status=view.status,
        status_label=str(STATUS_LABELS[view.status]),
        routing_phase=view.routing_phase,
        district_code=view.district_code,
        school_year=view.school_year,
        eligibility_problems=view.eligibility_problems,
        verifications={verifier: report.outcome for verifier, report in view.verifications.items()},
        auto_filled_count=view.auto_filled_count,
        school_choice=view.school_choice,
        materials_count=len(view.materials),
        platform_synced=view.platform_synced,
        timeline=[TimelineStep(at=entry.at, step=entry.step) for entry in view.timeline],
    )


@router.get("/{application_id}/result", responses=PROBLEMS)
async def application_result(request: Request, client: Caller, application_id: Id) -> ApplicationResult:
    """The result (办结) as the applicant sees it, once the case has ended."""
    view = await _visible_case(request, client, application_id, "api_result")
    decided = view.status in FINAL_STATUSES
    review = view.review if decided and view.status in ("approved", "rejected") else None
    ended = next((entry.at for entry in reversed(view.timeline) if entry.step == view.status), None)
    return ApplicationResult(
        application_id=view.application_id,
        decided=decided,
        status=view.status,
        status_label=str(STATUS_LABELS[view.status]),
        decision=review.decision if review else None,
        opinion=mask_text(review.opinion) if review else None,
        decided_at=ended if decided else None,
        school_choice=view.school_choice if decided else None,
    )


async def _relay(request: Request, client: RegisteredClient, application_id: str, message: Any) -> Receipt:
    """Send the applicant's message with this API's proof (the provider signs it for the `platform` role).

    The case answers for itself (a missing or finished case raises CaseActionError): no status query first.
    """
    await _check_visible(request, client, application_id)
    try:
        receipt = await send_message(await _temporal(request), application_id, message, request.app.state.prove)
    except CaseNotFound:
        raise _not_found(application_id) from None
    except CaseActionError as err:
        raise ApiProblem(409, [str(err)]) from None
    except IdentityError as err:
        # The provider would not prove the message (down, or this API's client refused): nothing was sent.
        raise ApiProblem(503, [f"identity: {err.reason}; try again later"], headers=retry_after(5)) from None
    if not receipt.accepted:
        raise ApiProblem(409, [receipt.reason or "refused"], detail=f"the case is {receipt.status}")
    return receipt


@router.post("/{application_id}/school-choice", responses=PROBLEMS)
async def choose_school(request: Request, client: Caller, application_id: Id, choice: SchoolChoiceRequest) -> Receipt:
    """The applicant's zone and school (报名片区与学校), relayed by the system that signed the applicant in."""
    return await _relay(request, client, application_id, SchoolSelection(**choice.model_dump()))


@router.post("/{application_id}/supplement", responses=PROBLEMS)
async def send_supplement(
    request: Request, client: Caller, application_id: Id, supplement: SupplementRequest
) -> Receipt:
    """Materials the reviewer asked for (补充材料)."""
    message = Supplement(
        submitted_by=f"applicant via {client.client_id}", materials=supplement.materials, note=supplement.note
    )
    return await _relay(request, client, application_id, message)


@router.post("/{application_id}/withdrawal", responses=PROBLEMS)
async def withdraw(
    request: Request, client: Caller, application_id: Id, withdrawal: Annotated[WithdrawalRequest, Body()]
) -> Receipt:
    """Withdraw the application before the bureau decides."""
    message = Withdrawal(requested_by=f"applicant via {client.client_id}", reason=withdrawal.reason)
    return await _relay(request, client, application_id, message)
