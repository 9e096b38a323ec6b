"""The lists each role works from: cases awaiting review (reviewers) and offline registration (staff).

Temporal's visibility store says which cases of the district wait at the step;
each case's own `status` query adds its channel and verification outcomes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from console.auth import signed_in
from console.backends import backends
from console.pages import Refusal, render
from enrollment.case import CaseView
from enrollment.statuses import CaseStatus
from starter.cases import CaseActionError, case_status, cases_awaiting

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


@requires(["authenticated", "reviewer"])
async def review_queue(request: Request) -> Response:
    cases = await waiting(request, "awaiting_review")
    return render(request, "queue.html", {"title": "待审核 Review queue", "cases": cases})


@requires(["authenticated", "staff"])
async def offline_queue(request: Request) -> Response:
    cases = await waiting(request, "awaiting_offline_registration")
    return render(request, "offline.html", {"title": "待线下登记 Offline registration", "cases": cases})


routes = [
    Route("/queue", review_queue, methods=["GET"]),
    Route("/offline", offline_queue, methods=["GET"]),
]
