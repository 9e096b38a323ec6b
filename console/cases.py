"""One case: its page, the reviewer's decision and the service point's offline registration.

The case stays the authority: it checks the district, the decision and the
opinion again, and answers each message with a receipt (taken, or refused and
why) that the page shows at once. The console adds the district wall: a case of
another district is "not found", exactly like a case that does not exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from psycopg_pool import AsyncConnectionPool
from pydantic import TypeAdapter, ValidationError
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.audit import audit
from console.auth import PROVIDER_UNAVAILABLE, checked_form, prover, signed_in
from console.backends import backends
from console.pages import Refusal, render
from enrollment.application import ApplicationId
from enrollment.case import CaseView, Claim, FilledElement, OfflineRegistration, Reassignment, Review, SchoolSelection
from enrollment.oidc import IdentityError, IdentityUnavailable
from enrollment.policy import policy_book
from enrollment.statuses import DECISIONS, STATUS_LABELS
from starter.cases import CaseActionError, case_handle, case_status, send_message
from store.console_reads import ArchiveCard, archive_card
from workflows.enrollment_case import MAX_OPINION_LENGTH, EnrollmentCase

log = structlog.get_logger()

APPLICATION_ID = TypeAdapter(ApplicationId)
MAX_MATERIALS = 30
MAX_MATERIAL_LENGTH = 100


@dataclass(frozen=True)
class Outcome:
    """What became of the action just sent, shown above the case."""

    done: bool
    text: str
    status_code: int = 200


def _not_found(application_id: str) -> Refusal:
    message = f"本区县没有申请编号为 {application_id} 的案件。No case {application_id} in your district."
    return Refusal(404, "未找到 Not found", message)


def application_id_in(request: Request) -> str:
    application_id: str = request.path_params["application_id"]
    try:
        return APPLICATION_ID.validate_python(application_id)
    except ValidationError:
        raise _not_found(application_id) from None


async def case_of_district(request: Request, application_id: str, action: str = "view") -> CaseView:
    """The case's view; "not found" both when there is none and when it is another district's."""
    person = signed_in(request)
    try:
        view = await case_status(backends(request).client, application_id)
    except CaseActionError:
        view = None
    if view is None or view.district_code != person.district:
        # The same page as no case at all, but the audit trail knows.
        await audit(request, person.actor, action, "not_found", application_id)
        raise _not_found(application_id)
    return view


async def _archive(pool: AsyncConnectionPool | None, application_id: str) -> tuple[ArchiveCard | None, str]:
    """The case store's card for the case, or why there is none to show."""
    if pool is None:
        return None, "—"
    try:
        card = await archive_card(pool, application_id)
    except Exception as err:  # the case page still shows the case itself
        log.warning("console case store unavailable", error=type(err).__name__)
        return None, "案件库暂时不可用。The case store cannot be reached right now."
    return card, "案件库尚无记录。Not in the case store yet."


def _schools(view: CaseView) -> list[tuple[str, str]]:
    """The district's schools for the case's stage, as (zone|school, label) choices."""
    try:
        policy = policy_book().district(view.district_code)
    except Exception:  # a broken policy folder leaves staff typing the zone and school
        policy = None
    if policy is None:
        return []
    return [
        (f"{zone.zone_id}|{school.school_id}", f"{zone.name} {zone.zone_id} / {school.name} {school.school_id}")
        for zone, school in policy.schools_for(view.stage)
    ]


# What a bureau's person sends a case from the console, each proven as them.
PersonsMessage = Review | OfflineRegistration | Claim | Reassignment


def _holder(view: CaseView) -> str | None:
    """Who holds the case for review now: a hold whose lease has run out holds nothing."""
    claim = view.claim
    return claim.holder if claim is not None and claim.until > dt.datetime.now(dt.UTC) else None


async def show_case(
    request: Request, application_id: str, view: CaseView, outcome: Outcome | None = None, status_code: int = 200
) -> Response:
    held = backends(request)
    elements: list[FilledElement] = await case_handle(held.client, application_id).query(EnrollmentCase.filled_elements)
    archive, archive_note = await _archive(held.pool, application_id)
    role = signed_in(request).role
    registering = role == "staff" and view.status == "awaiting_offline_registration"
    context = {
        "title": f"案件 {application_id}",
        "application_id": application_id,
        "view": view,
        "elements": elements,
        "archive": archive,
        "archive_note": archive_note,
        "outcome": outcome,
        "reviewing": role == "reviewer" and view.status == "awaiting_review",
        "held_by": _holder(view),
        "reassigning": role == "supervisor" and view.status == "awaiting_review",
        "registering": registering,
        "schools": _schools(view) if registering else [],
        "max_opinion": MAX_OPINION_LENGTH,
    }
    return render(request, "case.html", context, status_code)


@requires("authenticated")
async def case_page(request: Request) -> Response:
    application_id = application_id_in(request)
    view = await case_of_district(request, application_id)
    # Recorded before anything of the child's is shown: a view that cannot be audited is not shown.
    await audit(request, signed_in(request).actor, "view", "ok", application_id)
    return await show_case(request, application_id, view)


async def _send(request: Request, application_id: str, action: str, message: PersonsMessage) -> Outcome:
    """The case's receipt as the page shows it: recorded, or refused with the case's (or the provider's) reason."""
    actor = signed_in(request).actor
    try:
        receipt = await send_message(backends(request).client, application_id, message, prover(request))
    except IdentityUnavailable:
        raise Refusal(503, "暂时无法访问 Unavailable", PROVIDER_UNAVAILABLE) from None
    except IdentityError as err:  # the provider would not sign the proof: the session is no longer good
        await audit(request, actor, action, "refused", application_id, reason=err.reason)
        return Outcome(False, f"未执行 Not done — {err.reason}", 409)
    except CaseActionError as err:  # the case has finished (or never was): it takes no message
        await audit(request, actor, action, "refused", application_id, reason=str(err))
        return Outcome(False, f"未执行 Not done — {err}", 409)
    if not receipt.accepted:
        await audit(request, actor, action, "refused", application_id, reason=receipt.reason)
        return Outcome(False, f"未执行 Not done — {receipt.reason}", 409)
    await audit(request, actor, action, "recorded", application_id, status=receipt.status)
    return Outcome(True, f"已记录 Recorded · 案件现为 case is now {STATUS_LABELS[receipt.status]}")


async def send_and_show(request: Request, application_id: str, action: str, message: PersonsMessage) -> Response:
    outcome = await _send(request, application_id, action, message)
    view = await case_of_district(request, application_id, action)
    return await show_case(request, application_id, view, outcome, outcome.status_code)


@requires(["authenticated", "reviewer"])
async def review(request: Request) -> Response:
    fields = await checked_form(request)
    application_id = application_id_in(request)
    decision = fields.get("decision", "")
    action = f"review:{decision if decision in DECISIONS else 'invalid'}"
    await case_of_district(request, application_id, action)
    person = signed_in(request)
    message = Review(
        reviewer_id=person.identity,
        district_code=person.district,
        decision=decision,
        opinion=fields.get("opinion", ""),
    )
    return await send_and_show(request, application_id, action, message)


@requires(["authenticated", "reviewer"])
async def claim(request: Request) -> Response:
    fields = await checked_form(request)
    application_id = application_id_in(request)
    action = fields.get("action", "")
    if action not in ("claim", "release"):
        raise Refusal(400, "操作有误 Bad action", "action: must be claim or release")
    await case_of_district(request, application_id, action)
    person = signed_in(request)
    message = Claim.model_validate({"action": action, "reviewer_id": person.identity, "district_code": person.district})
    return await send_and_show(request, application_id, action, message)


def _registration_problem(materials: list[str], zone: str, school: str) -> str | None:
    if bool(zone) != bool(school):
        return "zone and school go together: give both or neither"
    if len(materials) > MAX_MATERIALS or any(len(material) > MAX_MATERIAL_LENGTH for material in materials):
        return f"materials: at most {MAX_MATERIALS} lines of {MAX_MATERIAL_LENGTH} characters"
    return None


@requires(["authenticated", "staff"])
async def register(request: Request) -> Response:
    fields = await checked_form(request)
    application_id = application_id_in(request)
    view = await case_of_district(request, application_id, "register_offline")
    person = signed_in(request)
    materials = [line.strip() for line in fields.get("materials", "").splitlines() if line.strip()]
    zone, school = fields.get("zone", "").strip(), fields.get("school", "").strip()
    if fields.get("school_choice"):
        zone, _, school = fields["school_choice"].partition("|")
    problem = _registration_problem(materials, zone, school)
    if problem:
        await audit(request, person.actor, "register_offline", "invalid", application_id, reason=problem)
        outcome = Outcome(False, f"未执行 Not done — {problem}", 422)
        return await show_case(request, application_id, view, outcome, outcome.status_code)
    message = OfflineRegistration(
        staff_id=person.identity,
        district_code=person.district,
        materials=materials,
        note=fields.get("note", "").strip(),
        school_choice=SchoolSelection(zone_id=zone, school_id=school) if zone else None,
    )
    return await send_and_show(request, application_id, "register_offline", message)


routes = [
    Route("/cases/{application_id}", case_page, methods=["GET"]),
    Route("/cases/{application_id}/review", review, methods=["POST"]),
    Route("/cases/{application_id}/claim", claim, methods=["POST"]),
    Route("/cases/{application_id}/register", register, methods=["POST"]),
]
