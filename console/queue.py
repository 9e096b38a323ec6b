"""The lists each role works from: cases awaiting review (reviewers) and offline registration (staff).

Both read the case store, which each case writes at every step: one indexed query per page, however
many thousand cases a district has, with the same filters, sorting, search and paging. Why a case's
verification failed is on its page (the store keeps each verifier's outcome, not the department's words).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import get_args

from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.audit import audit
from console.auth import signed_in
from console.backends import backends
from console.pages import Refusal, render
from console.results import key_of
from enrollment.application import Channel, RegistrationType, Stage
from enrollment.policy import policy_book
from enrollment.statuses import OUTCOME_LABELS, CaseStatus, RoutingPhase
from enrollment.verifiers import VERIFIERS
from store.console_reads import SORTS, QueueFilters, queue_page

_APPLICATION_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{2,39}")


PAGE_SIZE = 50
# The most clean cases one bulk approval takes (console/bulk.py).
BULK_LIMIT = 500
_CHOICES: dict[str, tuple[str, ...]] = {
    "stage": get_args(Stage),
    "registration_type": get_args(RegistrationType),
    "channel": get_args(Channel),
    "routing_phase": get_args(RoutingPhase),
}
_OUTCOMES = tuple(OUTCOME_LABELS)


def queue_filters(request: Request) -> tuple[QueueFilters, str, int]:
    """The filters, sort and page a reviewer asked for; a bad one is a 400 naming the field and its rule."""
    asked = request.query_params
    problems: list[str] = []

    def choice(name: str, allowed: tuple[str, ...]) -> str | None:
        value = asked.get(name) or None
        if value is not None and value not in allowed:
            problems.append(f"{name}: must be one of {', '.join(allowed)}")
            return None
        return value

    fields: dict[str, object] = {name: choice(name, allowed) for name, allowed in _CHOICES.items()}
    outcomes = {verifier: choice(verifier, _OUTCOMES) for verifier in VERIFIERS}
    fields["outcomes"] = {verifier: outcome for verifier, outcome in outcomes.items() if outcome}
    for flag in ("reminded", "escalated"):
        fields[flag] = {"yes": True, "no": False, None: None}.get(choice(flag, ("yes", "no")))
    held = choice("held", ("me", "unassigned"))
    fields["held_by"] = signed_in(request).identity if held == "me" else held
    days = asked.get("days") or None
    if days is not None:
        try:
            fields["min_days_waiting"] = float(days)
            if not 0 <= float(days) <= 365:
                raise ValueError
        except ValueError:
            problems.append("days: a number of days from 0 to 365")
    search = (asked.get("q") or "").strip()
    if search:
        key = key_of(search, request.app.state.result_lookups.lookup)
        if key is not None:
            fields["person_key"] = key
        elif _APPLICATION_ID.fullmatch(search.upper()):
            fields["application_id"] = search.upper()
        else:
            problems.append("q: an application id or a student's or guardian's identity number")
    sort = choice("sort", tuple(SORTS)) or "oldest"
    try:
        page = max(1, int(asked.get("page") or 1))
    except ValueError:
        problems.append("page: a whole number from 1")
        page = 1
    if problems:
        raise Refusal(400, "筛选条件有误 Bad filter", "; ".join(problems))
    return QueueFilters.model_validate(fields), sort, page


@dataclass(frozen=True)
class Listing:
    """One of the lists a role works from: the step it shows, its path, heading and count's element id."""

    status: CaseStatus
    path: str
    title: str
    heading: str
    count_id: str
    # Reviewers decide from their list (bulk approval, who holds each case); staff register offline.
    reviewing: bool


REVIEW = Listing(
    "awaiting_review", "/queue", "待审核 Review queue", "待审核案件 Cases awaiting review", "queue-count", True
)
OFFLINE = Listing(
    "awaiting_offline_registration",
    "/offline",
    "待线下登记 Offline registration",
    "待线下登记 Cases awaiting offline registration",
    "offline-count",
    False,
)


async def listing(request: Request, shown: Listing) -> Response:
    """The district's cases at the list's step from the case store: filtered, sorted, paged, with their freshness."""
    filters, sort, page = queue_filters(request)
    person = signed_in(request)
    listed = await queue_page(backends(request).pool, person.district, shown.status, filters, sort, page, PAGE_SIZE)
    if filters.person_key:
        # Looking a person up is recorded (who searched, how many cases it found), never the number searched.
        found = [row.application_id for row in listed.rows]
        only = found[0] if len(found) == 1 else None
        await audit(request, person.actor, "queue_search", "ok", only, by="identity number", found=listed.total)
    policy = policy_book().district(person.district)
    context = {
        "title": shown.title,
        "listing": shown,
        "queue": listed,
        "deadlines": policy.deadlines if policy else None,
        "page": page,
        "pages": max(1, -(-listed.total // PAGE_SIZE)),
        "kept": {name: value for name, value in request.query_params.items() if name != "page" and value},
        "asked": request.query_params,
        "choices": _CHOICES,
        "outcomes": _OUTCOMES,
        "sorts": tuple(SORTS),
        "now": dt.datetime.now(dt.UTC),
        "bulk_limit": BULK_LIMIT,
    }
    return render(request, "queue.html", context)


@requires(["authenticated", "reviewer"])
async def review_queue(request: Request) -> Response:
    return await listing(request, REVIEW)


@requires(["authenticated", "staff"])
async def offline_queue(request: Request) -> Response:
    return await listing(request, OFFLINE)


routes = [
    Route("/queue", review_queue, methods=["GET"]),
    Route("/offline", offline_queue, methods=["GET"]),
]
