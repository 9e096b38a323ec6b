"""The lists each role works from: cases awaiting review (reviewers) and offline registration (staff).

The review queue reads the case store, which each case writes at every step: one indexed query per
page, however many thousand cases a district has, with filters, sorting, search and paging. The
offline list still asks Temporal's visibility store which cases wait, and each case's `status` query
for why its verification failed (the reasons are not in the store).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, get_args

from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from console.audit import audit
from console.auth import signed_in
from console.backends import backends
from console.pages import Refusal, render
from console.results import key_of
from enrollment.application import Channel, RegistrationType, Stage
from enrollment.case import CaseView
from enrollment.policy import policy_book
from enrollment.statuses import OUTCOME_LABELS, CaseStatus, RoutingPhase
from enrollment.verifiers import VERIFIERS
from starter.cases import CaseActionError, case_status, cases_awaiting
from store.console_reads import SORTS, QueueFilters, queue_page

_APPLICATION_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{2,39}")
# Status queries in flight at once for one list, so a long list does not flood the frontend.
QUERY_CONCURRENCY = 16


@dataclass(frozen=True)
class Listed:
    """One row of a list: what visibility knows, and the case's view (None if it could not be read)."""

    application_id: str
    stage: str | None
    registration_type: str | None
    routing_phase: str | None
    started: str | None
    view: CaseView | None


async def _views(client: Client, application_ids: list[str]) -> list[CaseView | None]:
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def one(application_id: str) -> CaseView | None:
        async with gate:
            try:
                return await case_status(client, application_id)
            except Exception:  # one unreadable case must not hide the others
                return None

    return list(await asyncio.gather(*(one(application_id) for application_id in application_ids)))


async def waiting(request: Request, status: CaseStatus) -> list[Listed]:
    """The signed-in person's district's cases waiting at `status`, oldest first."""
    client = backends(request).client
    try:
        rows: list[dict[str, Any]] = await cases_awaiting(client, status, signed_in(request).district)
    except CaseActionError as err:
        raise Refusal(400, "区县代码错误 Bad district", str(err)) from None
    rows.sort(key=lambda row: (row.get("started") or "", row["application_id"]))
    views = await _views(client, [row["application_id"] for row in rows])
    return [
        Listed(
            row["application_id"],
            row.get("stage"),
            row.get("registration_type"),
            row.get("routing_phase"),
            row.get("started"),
            view,
        )
        for row, view in zip(rows, views, strict=True)
    ]


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


@requires(["authenticated", "reviewer"])
async def review_queue(request: Request) -> Response:
    """The district's cases awaiting review from the case store: filtered, sorted, paged, with their freshness."""
    filters, sort, page = queue_filters(request)
    district = signed_in(request).district
    listed = await queue_page(backends(request).pool, district, "awaiting_review", filters, sort, page, PAGE_SIZE)
    if filters.person_key:
        # Looking a person up is recorded (who searched, how many cases it found), never the number searched.
        found = [row.application_id for row in listed.rows]
        await audit(
            request,
            signed_in(request).actor,
            "queue_search",
            "ok",
            found[0] if len(found) == 1 else None,
            by="identity number",
            found=listed.total,
        )
    policy = policy_book().district(district)
    pages = max(1, -(-listed.total // PAGE_SIZE))
    kept = {name: value for name, value in request.query_params.items() if name != "page" and value}
    context = {
        "title": "待审核 Review queue",
        "queue": listed,
        "deadlines": policy.deadlines if policy else None,
        "page": page,
        "pages": pages,
        "kept": kept,
        "asked": request.query_params,
        "choices": _CHOICES,
        "outcomes": _OUTCOMES,
        "sorts": tuple(SORTS),
        "now": dt.datetime.now(dt.UTC),
        "bulk_limit": BULK_LIMIT,
    }
    return render(request, "queue.html", context)


@requires(["authenticated", "staff"])
async def offline_queue(request: Request) -> Response:
    cases = await waiting(request, "awaiting_offline_registration")
    return render(request, "offline.html", {"title": "待线下登记 Offline registration", "cases": cases})


routes = [
    Route("/queue", review_queue, methods=["GET"]),
    Route("/offline", offline_queue, methods=["GET"]),
]
