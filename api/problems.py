"""Every error as RFC 9457 problem details (`application/problem+json`), naming the field and the rule, never a value.

Request bodies carry children's identity numbers and names, so no error here
quotes what was sent: validation errors become `field.path: rule` lines (the
same wording intake uses everywhere), and the framework's own error bodies,
which echo input, are replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from enrollment.application import error_lines

MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    503: "Temporarily unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details, with `errors`: one `field.path: rule` line per broken rule."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[str] = Field(default_factory=list)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an endpoint that may answer these problems, so OpenAPI documents them."""
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"model": Problem, "description": TITLES.get(status, "Error"), "content": content}
        for status in statuses
    }


class ApiProblem(Exception):
    """Raised by endpoints to answer with a problem."""

    def __init__(
        self,
        status: int,
        errors: Sequence[str] = (),
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(detail or "; ".join(errors))
        self.status = status
        self.errors = list(errors)
        self.detail = detail
        self.headers = dict(headers or {})


def problem_response(
    status: int, errors: Sequence[str] = (), detail: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = Problem(title=TITLES.get(status, "Error"), status=status, detail=detail, errors=list(errors))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def validation_lines(errors: Sequence[Mapping[str, Any]]) -> list[str]:
    """`field.path: rule` for each error, without FastAPI's leading `body`; never the input."""
    located: list[dict[str, Any]] = []
    for error in errors:
        if error.get("type") == "json_invalid":
            located.append({"loc": ("body",), "msg": "not valid JSON"})
            continue
        location = tuple(error.get("loc", ()))
        located.append({"loc": location[1:] if location[:1] == ("body",) else location, "msg": error.get("msg")})
    return error_lines(located, whole="body")


def install(app: FastAPI) -> None:
    """Answer every error the framework raises as a problem."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc.status, exc.errors, exc.detail, exc.headers)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(422, validation_lines(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 422 else None
        return problem_response(exc.status_code, detail=detail, headers=exc.headers)

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
