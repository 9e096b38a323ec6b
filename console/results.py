"""The applicant's result lookup: the platform's latest result, for whoever knows the application id
and the student's identity number.

The identity number is the second factor. It is checked by the keyed hash the case store already
keeps (`enrollment.identity.lookup_key`), never stored, logged or shown back. A wrong application
id and a wrong number get the very same "not found" answer (same page, same status, the same query
behind it), so the lookup tells nobody which application ids exist. The form is a POST, so neither
factor lands in a URL, a log line or the browser's history; its CSRF token is a double-submit
cookie (SameSite=Strict, this path only), since a lookup has no session. Lookups are rate-limited
per client address and per application id, and each lookup made is audited without personal data.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.limits import RateLimiter, retry_after
from console.audit import PUBLIC, audit
from console.backends import backends
from console.cases import APPLICATION_ID
from console.forms import read_form
from console.pages import render
from enrollment import identity
from enrollment.identity import IdentityNumberError, LookupSecret
from store.console_reads import student_matches

log = structlog.get_logger()

TITLE = "结果查询 Result lookup"
LOOKUP_COOKIE = "enroll_console_lookup"
LOOKUP_COOKIE_SECONDS = 3600


@dataclass(frozen=True)
class LookupLimits:
    """Lookups allowed: a burst, then a steady rate, per client address and per application id.

    The per-id limit stops guessing one child's number from many addresses; it applies to any id,
    existing or not, so hitting it reveals nothing either.
    """

    address_burst: int = 10
    address_per_minute: float = 5.0
    case_burst: int = 10
    case_per_hour: float = 10.0


class ResultLookups:
    """The lookup's limiters and the secret of the keyed hash, held by the app."""

    def __init__(self, lookup: LookupSecret, limits: LookupLimits) -> None:
        self.lookup = lookup
        self.by_address = RateLimiter(limits.address_per_minute / 60, limits.address_burst)
        self.by_case = RateLimiter(limits.case_per_hour / 3600, limits.case_burst)


def _lookups(request: Request) -> ResultLookups:
    held: ResultLookups = request.app.state.result_lookups
    return held


def _latest_result(record: Any) -> dict[str, Any] | None:
    """The last result the platform holds for the case; earlier ones are history the applicant does not need."""
    results = record.get("result") if isinstance(record, dict) else None
    latest = results[-1] if isinstance(results, list) and results else None
    body = latest.get("body") if isinstance(latest, dict) else None
    return body if isinstance(body, dict) else None


def _page(request: Request, state: str, status_code: int = 200, **context: Any) -> Response:
    """The lookup form (with its CSRF token, kept from the cookie when there is one) and what the lookup found."""
    token = request.cookies.get(LOOKUP_COOKIE) or secrets.token_urlsafe(24)
    fields = {"title": TITLE, "csrf": token, "state": state, "application_id": "", "result": None}
    response = render(request, "result.html", fields | context, status_code)
    response.set_cookie(
        LOOKUP_COOKIE,
        token,
        max_age=LOOKUP_COOKIE_SECONDS,
        path="/result",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def result_form(request: Request) -> Response:
    return _page(request, "blank")


def _is_application_id(text: str) -> bool:
    """An application id, and not an identity number typed into the wrong box (it would be audited as a case)."""
    try:
        APPLICATION_ID.validate_python(text)
        identity.parse(text.upper())
    except ValidationError:
        return False
    except IdentityNumberError:
        return True
    return False


def key_of(number: str, lookup: LookupSecret) -> str | None:
    """The number's keyed hash, or None when it is no identity number at all (GB 11643's check digit)."""
    number = number.strip().upper()
    try:
        identity.parse(number)
    except IdentityNumberError:
        return None
    return identity.lookup_key(number, lookup.secret, lookup.profile)


async def result(request: Request) -> Response:
    """The latest result only: status, decision, opinion and when, never names or the reviewer's account."""
    fields = await read_form(request)
    cookie = request.cookies.get(LOOKUP_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, fields.get("csrf", "")):
        log.info("console result lookup refused", outcome="csrf_refused")
        return _page(request, "form_expired", 403)
    application_id = fields.get("application_id", "").strip()
    if not _is_application_id(application_id):
        return _page(request, "not_an_id", 422, application_id=application_id[:40])
    lookups = _lookups(request)
    address = request.client.host if request.client else "unknown"
    wait = max(lookups.by_address.wait_seconds(address), lookups.by_case.wait_seconds(application_id))
    if wait > 0:  # logged, not audited: the audit trail's writes stay bounded by the limits too
        log.info("console result lookup refused", outcome="rate_limited", application_id=application_id)
        response = _page(request, "rate_limited", 429, application_id=application_id)
        response.headers.update(retry_after(wait))
        return response
    key = key_of(fields.get("id_number", ""), lookups.lookup)
    if key is None:
        return _page(request, "not_an_id_number", 422, application_id=application_id)
    held = backends(request)
    if not await student_matches(held.pool, application_id, key):
        await audit(request, PUBLIC, "result_lookup", "not_found", application_id)
        return _page(request, "not_found", 404, application_id=application_id)
    try:
        answer = await held.http.get(f"{held.platform_url}/v1/cases/{quote(application_id, safe='')}")
        answer.raise_for_status()
        latest = _latest_result(answer.json())
    except (httpx.HTTPError, ValueError) as err:
        log.warning("console platform unavailable", error=type(err).__name__)
        await audit(request, PUBLIC, "result_lookup", "unavailable", application_id)
        return _page(request, "unavailable", 503, application_id=application_id)
    await audit(request, PUBLIC, "result_lookup", "found" if latest else "no_result", application_id)
    return _page(request, "result" if latest else "none", application_id=application_id, result=latest)


routes = [
    Route("/result", result_form, methods=["GET"]),
    Route("/result", result, methods=["POST"]),
]
