"""The review console: reviewers of a district's education bureau and service-point staff act on cases.

Server-rendered pages over the same pieces the `enroll` command line uses.
This module only assembles the Starlette app; each concern has its module:
`auth` (who is signed in), `queue` (the lists), `cases` (a case and the
actions on it), `results` (the applicant's lookup), `pages` (templates, error
pages, security headers) and `backends` (Temporal, the case store, the platform).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from console import auth, cases, pages, queue, results
from console.auth import SESSION_COOKIE, TokenSession
from console.backends import ClientSource, PoolSource, lifespan

__all__ = ["SESSION_COOKIE", "create_app"]


def create_app(
    client: ClientSource,
    pool: PoolSource,
    token_secret: bytes,
    platform_url: str,
    *,
    http_timeout_seconds: float = 10.0,
) -> Starlette:
    """The console app.

    `client` and `pool` may be the objects themselves or zero-argument coroutine
    functions that make them; the latter are called at start-up, on the server's
    own event loop, and what they made is closed at shutdown.
    """
    session = TokenSession(token_secret)
    app = Starlette(
        routes=[
            *auth.routes,
            *queue.routes,
            *cases.routes,
            *results.routes,
            Route("/healthz", pages.healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(pages.SecurityHeaders),
            Middleware(AuthenticationMiddleware, backend=session),
        ],
        exception_handlers={
            # `@requires` refuses with 403; it means "sign in" to whoever has not.
            403: auth.not_permitted,
            HTTPException: pages.http_error,
            pages.Refusal: pages.refused,
            RPCError: pages.unavailable,
            WorkflowQueryFailedError: pages.unavailable,
            WorkflowQueryRejectedError: pages.unavailable,
            Exception: pages.internal_error,
        },
        lifespan=lifespan(client, pool, platform_url, http_timeout_seconds),
    )
    app.state.token_session = session
    return app
