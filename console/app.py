"""The review console: reviewers of a district's education bureau and service-point staff act on cases.

Server-rendered pages over the same pieces the `enroll` command line uses.
This module only assembles the Starlette app; each concern has its module:
`signin` (OpenID Connect sign-in and sign-out), `auth` and `sessions` (who is
signed in, and for how long), `queue` (the lists), `cases` (a case and the
actions on it), `results` (the applicant's lookup), `audit` (the audit trail),
`pages` (templates, error pages, security headers) and `backends` (Temporal,
the case store, the platform, the identity provider).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from console import auth, bulk, cases, pages, queue, results, signin, supervisor
from console.backends import ClientSource, IdentityClient, PoolSource, lifespan
from console.results import LookupLimits, ResultLookups
from console.sessions import SESSION_COOKIE, SessionPolicy
from enrollment.identity import LookupSecret

__all__ = ["SESSION_COOKIE", "IdentityClient", "LookupLimits", "SessionPolicy", "create_app"]


def create_app(
    client: ClientSource,
    pool: PoolSource,
    identity: IdentityClient,
    platform_url: str,
    lookup: LookupSecret,
    *,
    http_timeout_seconds: float = 10.0,
    session_policy: SessionPolicy | None = None,
    lookup_limits: LookupLimits | None = None,
) -> Starlette:
    """The console app.

    `client` and `pool` may be the objects themselves or zero-argument coroutine
    functions that make them; the latter are called at start-up, on the server's
    own event loop, and what they made is closed at shutdown. The case store is
    required: sessions and the audit trail live there. `identity` is the console's
    client at the identity provider; `lookup` the keyed hash of identity numbers the
    case store uses, for the applicant's result lookup.
    """
    policy = session_policy or SessionPolicy()
    issuer = urlsplit(identity.issuer)
    headers = pages.security_headers(f"{issuer.scheme}://{issuer.netloc}")
    app = Starlette(
        routes=[
            *signin.routes,
            *queue.routes,
            *bulk.routes,
            *supervisor.routes,
            *cases.routes,
            *results.routes,
            Route("/healthz", pages.healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(pages.SecurityHeaders, headers=headers),
            Middleware(
                AuthenticationMiddleware,
                backend=auth.SessionAuth(policy),
                on_error=auth.provider_unavailable,
            ),
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
        lifespan=lifespan(client, pool, platform_url, identity, http_timeout_seconds),
    )
    app.state.security_headers = headers
    app.state.session_policy = policy
    app.state.result_lookups = ResultLookups(lookup, lookup_limits or LookupLimits())
    # Bulk approvals running in this process, and their tasks (held so they are not collected mid-way).
    app.state.bulk_jobs = {}
    app.state.bulk_tasks = set()
    return app
