"""The district supervisor's view: the backlog as a whole, who decided how much, and reassigning a held case.

Everything here is counted from the case store (store/console_reads.py), which the cases write at every
step: no per-case query, whatever the district's size. The chart is drawn on the server as SVG, so the
page needs no script and shows the same in every browser.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.audit import audit
from console.auth import checked_form, signed_in
from console.backends import backends
from console.cases import application_id_in, case_of_district, send_and_show
from console.pages import Refusal, render
from enrollment.case import Reassignment
from enrollment.policy import policy_book
from enrollment.statuses import STATUS_LABELS
from store.console_reads import district_overview

BAR_WIDTH = 360


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    width: int
    css: str


def bars(counts: list[tuple[str, int, str]]) -> list[Bar]:
    """Horizontal bars scaled to the largest count (a zero count draws no bar)."""
    largest = max((count for _, count, _ in counts), default=0) or 1
    return [Bar(label, count, round(BAR_WIDTH * count / largest), css) for label, count, css in counts]


@requires(["authenticated", "supervisor"])
async def overview(request: Request) -> Response:
    person = signed_in(request)
    policy = policy_book().district(person.district)
    if policy is None:
        raise Refusal(404, "未找到 Not found", "No enrollment policy for this district.")
    deadlines = policy.deadlines
    seen = await district_overview(
        backends(request).pool, person.district, deadlines.review_reminder_days, deadlines.review_escalation_days
    )
    await audit(request, person.actor, "supervisor_overview", "ok")
    age = seen.review_age
    context = {
        "title": "区县总览 District overview",
        "overview": seen,
        "deadlines": deadlines,
        "age_bars": bars(
            [
                (f"提醒期内 within {deadlines.review_reminder_days:g} d", age["within_reminder"], "ok"),
                ("已过提醒 past reminder", age["past_reminder"], "warn"),
                (f"已过督办 past {deadlines.review_escalation_days:g} d", age["past_escalation"], "late"),
            ]
        ),
        "status_bars": bars(
            [(str(label), seen.by_status.get(status, 0), "ok") for status, label in STATUS_LABELS.items()]
        ),
        "bar_width": BAR_WIDTH,
    }
    return render(request, "supervisor.html", context)


@requires(["authenticated", "supervisor"])
async def reassign(request: Request) -> Response:
    fields = await checked_form(request)
    application_id = application_id_in(request)
    await case_of_district(request, application_id, "reassign")
    person = signed_in(request)
    fields_sent = {"supervisor_id": person.identity, "district_code": person.district}
    try:
        message = Reassignment.model_validate(fields_sent | {"assignee": fields.get("assignee", "").strip()})
    except ValidationError:
        raise Refusal(
            422, "指派有误 Bad reassignment", "assignee: the account of a reviewer of this district"
        ) from None
    return await send_and_show(request, application_id, "reassign", message)


routes = [
    Route("/supervisor", overview, methods=["GET"]),
    Route("/cases/{application_id}/reassign", reassign, methods=["POST"]),
]
