"""The registered calling systems, and the dependency that tells every endpoint which one is calling.

A client is the provincial platform, an enrollment-system front end, or a
service point's import tool, each with its own id and secret (issued by the
bureau, kept in the file `ENROLL_API_CLIENTS_FILE`). A service point acts for
one district. Every request is verified (`api.signing`) before an endpoint
runs, and its nonce is remembered, so a replayed request is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, SecretStr, ValidationError, model_validator

from api import signing
from api.limits import RateLimiter, retry_after
from api.problems import ApiProblem
from enrollment import deployment_secrets
from enrollment.application import Channel, DistrictCode
from enrollment.policy import policy_book
from enrollment.settings import Settings
from store import intake as store

ClientKind = Literal["platform", "enrollment_system", "service_point"]
# Nonces older than this are forgotten; the signature window refuses such requests anyway.
NONCE_MEMORY = dt.timedelta(seconds=2 * signing.WINDOW_SECONDS)
log = structlog.get_logger()


class RegisteredClient(BaseModel):
    client_id: str
    kind: ClientKind
    district_code: DistrictCode | None = None
    secret: SecretStr

    @model_validator(mode="after")
    def _service_points_act_for_a_district(self) -> RegisteredClient:
        if self.kind == "service_point" and self.district_code is None:
            raise ValueError("a service point client must name its district_code")
        if not signing.CLIENT_ID.match(self.client_id):
            raise ValueError("client_id: lower-case letters, digits and '-'")
        return self

    @property
    def channel(self) -> Channel:
        """The intake channel this client's applications arrive by."""
        return self.kind

    def may_see(self, handed_in_by: str, district_code: str) -> bool:
        """A client sees the cases it handed in; a service point also its district's."""
        if handed_in_by == self.client_id:
            return True
        return self.kind == "service_point" and district_code == self.district_code


class ClientRegistry:
    def __init__(self, clients: list[RegisteredClient]):
        self._clients = {client.client_id: client for client in clients}

    @classmethod
    def load(cls, path: Path) -> ClientRegistry:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls([RegisteredClient.model_validate(item) for item in raw["clients"]])
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as err:
            raise ValueError(f"ENROLL_API_CLIENTS_FILE: not a readable client list ({type(err).__name__})") from None

    def get(self, client_id: str) -> RegisteredClient | None:
        return self._clients.get(client_id)

    def first_of(self, kind: ClientKind) -> RegisteredClient | None:
        """The first client of a kind, as the stand-in platform and front end pick their credential."""
        return next((client for client in self._clients.values() if client.kind == kind), None)


def registered_clients(settings: Settings) -> ClientRegistry:
    """The deployment's client list (ENROLL_API_CLIENTS_FILE), or a development list generated once without one."""
    return ClientRegistry.load(clients_file(settings))


def clients_file(settings: Settings) -> Path:
    codes = policy_book(settings.policies_dir).codes()
    return deployment_secrets.api_clients_file(settings, lambda: development_clients(codes))


def development_clients(district_codes: list[str]) -> str:
    """A client list for a laptop or the demo: the platform, the enrollment system, a service point per district."""
    clients = [
        {"client_id": "platform", "kind": "platform"},
        {"client_id": "enrollment-system", "kind": "enrollment_system"},
        *(
            {"client_id": f"service-point-{code}", "kind": "service_point", "district_code": code}
            for code in district_codes
        ),
    ]
    for client in clients:
        client["secret"] = secrets.token_urlsafe(32)
    return json.dumps({"clients": clients}, ensure_ascii=False, indent=2)


async def forget_old_nonces(pool: AsyncConnectionPool, every_seconds: float = 60.0) -> None:
    """Drop the nonces the signature window already refuses, so the table stays the size of one window."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await store.forget_nonces_before(pool, dt.datetime.now(dt.UTC) - NONCE_MEMORY)
        except Exception as err:  # the store being down for a minute must not end the API
            log.warning("old request nonces not forgotten", error=type(err).__name__)


async def caller(request: Request) -> RegisteredClient:
    """The verified client making this request, or 401 naming the header and rule that failed."""
    registry: ClientRegistry = request.app.state.clients
    pool: AsyncConnectionPool = request.app.state.pool
    try:
        signed = signing.SignedHeaders.parse(dict(request.headers))
        client = registry.get(signed.client_id)
        if client is None:
            # The same answer as a wrong secret, so the refusal does not tell which client ids exist.
            raise signing.SignatureError(signing.MISMATCH)
        body = await request.body()
        signing.verify(
            signed,
            client.secret.get_secret_value().encode(),
            request.method,
            request.url.path,
            request.url.query,
            body,
        )
    except signing.SignatureError as err:
        raise ApiProblem(401, [str(err)], headers={"WWW-Authenticate": "Signature"}) from None
    # Counted only once the signature holds, so nobody can spend another client's allowance.
    limiter: RateLimiter = request.app.state.rate
    wait = limiter.wait_seconds(client.client_id)
    if wait > 0:
        raise ApiProblem(429, ["rate: too many requests from this client"], headers=retry_after(wait))
    if not await store.remember_nonce(pool, client.client_id, signed.nonce):
        raise ApiProblem(401, [f"{signing.NONCE_HEADER}: already used (a replayed request)"])
    return client


Caller = Annotated[RegisteredClient, Depends(caller)]
