"""The applicant's result lookup: what the platform shows the family, with no sign-in and no personal data."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console.backends import backends
from console.cases import APPLICATION_ID
from console.pages import render

log = structlog.get_logger()

TITLE = "结果查询 Result lookup"


def _latest_result(record: Any) -> dict[str, Any] | None:
    """The last result the platform holds for the case; earlier ones are history the applicant does not need."""
    results = record.get("result") if isinstance(record, dict) else None
    latest = results[-1] if isinstance(results, list) and results else None
    body = latest.get("body") if isinstance(latest, dict) else None
    return body if isinstance(body, dict) else None


async def result_lookup(request: Request) -> Response:
    application_id = request.query_params.get("application_id", "").strip()
    if application_id:
        return RedirectResponse(f"/result/{quote(application_id, safe='')}", status_code=303)
    return render(request, "result.html", {"title": TITLE, "application_id": "", "state": "blank"})


async def result(request: Request) -> Response:
    """The latest result only: status, decision, opinion and when, never names or the reviewer's account."""
    application_id: str = request.path_params["application_id"]
    context: dict[str, Any] = {"title": TITLE, "application_id": application_id[:40]}
    try:
        APPLICATION_ID.validate_python(application_id)
    except ValidationError:
        return render(request, "result.html", context | {"state": "not_an_id"}, 404)
    held = backends(request)
    try:
        response = await held.http.get(f"{held.platform_url}/v1/cases/{quote(application_id, safe='')}")
        response.raise_for_status()
        latest = _latest_result(response.json())
    except (httpx.HTTPError, ValueError) as err:
        log.warning("console platform unavailable", error=type(err).__name__)
        return render(request, "result.html", context | {"state": "unavailable"}, 503)
    return render(request, "result.html", context | {"state": "result" if latest else "none", "result": latest})


routes = [
    Route("/result", result_lookup, methods=["GET"]),
    Route("/result/{application_id}", result, methods=["GET"]),
]
