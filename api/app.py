"""The API application: routers, error handling, limits, and the connections it holds while it runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api import applications, audit_events, health, problems, reference, reverifications
from api.callers import ClientRegistry, forget_old_nonces
from api.limits import BodyLimit, RateLimiter, retry_after
from api.temporal import TemporalConnection
from enrollment.identity import LookupSecret
from enrollment.oidc import IdentityProvider
from enrollment.provers import ClientProver
from enrollment.settings import Settings
from starter.hand_in import IntakeUnavailable

log = structlog.get_logger()

API_VERSION = "1.0"
DESCRIPTION = """\
The front door of Sichuan's compulsory-education enrollment "one thing" (教育入学"一件事"): the provincial platform,
the enrollment system's front ends and service points hand in applications here and relay the applicant's actions.

Every `/v1/applications` request is signed by a registered client (headers `X-Client-Id`, `X-Timestamp`, `X-Nonce`,
`X-Signature`: see the README); a replayed request is refused. Errors are RFC 9457 `application/problem+json`, each
broken rule a `field.path: rule` line, never echoing a value.
"""


@dataclass(frozen=True)
class ApiLimits:
    max_body_bytes: int = 1 << 20
    requests_per_second: float = 50.0
    burst: int = 100


def create_app(
    settings: Settings,
    clients: ClientRegistry,
    lookup_key: LookupSecret,
    connect: Callable[[], Awaitable[Client]],
    open_pool: Callable[[], Awaitable[AsyncConnectionPool]],
    prove: ClientProver,
    identity: IdentityProvider,
    limits: ApiLimits = ApiLimits(),
) -> FastAPI:
    """The API. `connect` and `open_pool` run on the server's own event loop at start-up (the pool) or when
    first needed (Temporal, so the API starts and says so in /readyz while Temporal is down). `prove` gets
    the identity provider's proof for each applicant message the API relays, and for an ops person's
    re-verification on their behalf; `identity` verifies the tokens of services and people calling."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await open_pool()
        forgetting = asyncio.create_task(forget_old_nonces(app.state.pool))
        try:
            yield
        finally:
            forgetting.cancel()
            await app.state.pool.close()

    app = FastAPI(
        title="Enrollment one-thing API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clients = clients
    app.state.lookup_key = lookup_key
    app.state.prove = prove
    app.state.identity = identity
    app.state.temporal = TemporalConnection(connect)
    app.state.rate = RateLimiter(limits.requests_per_second, limits.burst)
    problems.install(app)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return problems.problem_response(
            503, ["temporal: the case service cannot be reached; try again later"], headers=retry_after(5)
        )

    async def temporal_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RPCError)
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return await unavailable(request, exc)
        if exc.status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
            # The API's own credentials, not the caller's: its token for Temporal lapsed while the identity
            # provider could not renew it (enrollment/temporal_tokens.py), or its role lacks the right. The
            # caller's request was sound; ops see why here.
            log.error("temporal refused the api's credentials", status=exc.status.name)
            return await unavailable(request, exc)
        raise exc

    app.add_exception_handler(IntakeUnavailable, unavailable)
    app.add_exception_handler(RPCError, temporal_error)

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.include_router(applications.router)
    app.include_router(reference.router)
    app.include_router(audit_events.router)
    app.include_router(reverifications.router)
    app.include_router(health.router)
    return app
