"""Rendering: the Jinja environment, the error pages and the headers every response carries.

Templates autoescape, and every `{{ value }}` passes through `finalize` first,
which masks anything shaped like a resident identity number: no page can show
one in full, whatever a view hands its template. Labels come from
`enrollment.statuses` and `enrollment.verifiers`; the console defines none.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jinja2
import structlog
from markupsafe import Markup
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enrollment import identity
from enrollment.case import VerifierReport
from enrollment.china_time import CHINA
from enrollment.labels import Label
from enrollment.policy import policy_book
from enrollment.statuses import DECISION_LABELS, OUTCOME_LABELS, STATUS_LABELS
from enrollment.verifiers import REGISTRY, VERIFIERS

log = structlog.get_logger()
# A code set of the registry: statuses, decisions, outcomes, verifiers.
_Code = TypeVar("_Code", bound=str)

_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


def security_headers(*form_origins: str) -> dict[str, str]:
    """The headers of every page: no scripts, no framing, no caching, forms only to the console itself and
    `form_origins` (the identity provider: sign-in and sign-out go on there, and browsers hold the redirects
    that follow a form to `form-action` as well)."""
    targets = " ".join(("'self'", *form_origins))
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; form-action {targets}; frame-ancestors 'none';"
            " base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _mask(match: re.Match[str]) -> str:
    return identity.mask(match.group(0))


def finalize(value: object) -> object:
    """The environment's finalize hook: what every `{{ value }}` becomes before it is escaped.

    Markup (a macro's output) stays markup, with identity numbers masked inside it as well;
    None shows as a dash rather than the word "None".
    """
    if value is None:
        return "—"
    if isinstance(value, Markup):
        return Markup(_ID_NUMBER.sub(_mask, str(value)))
    return _ID_NUMBER.sub(_mask, str(value))


def when(moment: dt.datetime | str | None) -> str | None:
    """A moment in China time, to the second (naive moments are UTC, as Temporal and the store give them)."""
    if moment is None or moment == "":
        return None
    if isinstance(moment, str):
        text = moment
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def district(code: str | None) -> str | None:
    """A district code with its city and district names, as the header and the lists show it."""
    if not code:
        return None
    try:
        policy = policy_book().district(code)
    except Exception:  # a broken policy folder must not take the console down
        policy = None
    return f"{code} {policy.city_name}{policy.district_name}" if policy else code


def _labelled(labels: Mapping[_Code, Label]) -> Callable[[object], object]:
    """A filter: the code's label, or the code itself when it has none (the platform's record may say anything)."""
    by_code: dict[str, Label] = dict(labels.items())

    def label(code: object) -> object:
        return by_code.get(code, code) if isinstance(code, str) else code

    return label


def in_verifier_order(verifications: Mapping[str, VerifierReport]) -> list[tuple[str, VerifierReport]]:
    """Verifiers in the registry's display order (the case keeps them in the order they answered)."""
    order: dict[str, int] = {name: position for position, name in enumerate(VERIFIERS)}
    return sorted(verifications.items(), key=lambda item: order.get(item[0], len(order)))


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=True,
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        when=when,
        district=district,
        status=_labelled(STATUS_LABELS),
        decision=_labelled(DECISION_LABELS),
        outcome=_labelled(OUTCOME_LABELS),
        verifier=_labelled({name: spec.label for name, spec in REGISTRY.items()}),
        in_verifier_order=in_verifier_order,
    )
    return environment


TEMPLATES = Jinja2Templates(env=_environment())


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """A page from console/templates; `user` is whoever signed in (if the sign-in middleware got that far)."""
    context = {"user": request.scope.get("user"), **context}
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


class Refusal(Exception):
    """A request the console answers with an error page: status code, heading and message."""

    def __init__(self, status_code: int, heading: str, message: str):
        super().__init__(message)
        self.status_code, self.heading, self.message = status_code, heading, message


def error_page(request: Request, refusal: Refusal) -> Response:
    context = {"title": refusal.heading, "heading": refusal.heading, "message": refusal.message}
    return render(request, "error.html", context, refusal.status_code)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return error_page(request, exc)


_HTTP_HEADINGS = {404: "未找到 Not found", 405: "不支持的请求 Method not allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as console pages."""
    assert isinstance(exc, HTTPException)
    heading = _HTTP_HEADINGS.get(exc.status_code, f"错误 Error {exc.status_code}")
    return error_page(request, Refusal(exc.status_code, heading, str(exc.detail)))


async def unavailable(request: Request, exc: Exception) -> Response:
    """Temporal could not be reached or could not answer a query."""
    log.warning("console backend error", path=request.url.path, error=type(exc).__name__)
    message = "案件服务暂时不可用，请稍后再试。The case service cannot be reached right now; try again shortly."
    return error_page(request, Refusal(503, "暂时无法访问 Unavailable", message))


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything else. Starlette sends this page from outside the middleware, so it adds the headers itself."""
    message = "出现内部错误，已记录。Something went wrong; it has been logged."
    response = error_page(request, Refusal(500, "内部错误 Internal error", message))
    response.headers.update(request.app.state.security_headers)
    return response


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


class SecurityHeaders:
    """Adds the console's security headers (`security_headers`) to every response."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app, self.headers = app, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
