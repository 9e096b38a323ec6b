"""`/healthz`: the process answers; `/readyz`: it can reach Temporal and PostgreSQL. For probes and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from temporalio.service import RPCError

from api.problems import ApiProblem, documented
from api.temporal import TemporalConnection
from starter.hand_in import IntakeUnavailable
from store.database import ping

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", responses=documented(503))
async def readyz(request: Request) -> Health:
    unreachable = []
    temporal: TemporalConnection = request.app.state.temporal
    try:
        client = await temporal.client()
        await client.service_client.check_health()
    except IntakeUnavailable as err:
        unreachable.append(f"temporal: {err}")
    except RPCError:
        unreachable.append("temporal: unreachable")
    try:
        await ping(request.app.state.pool)
    except Exception:  # any failure to reach the store means not ready
        unreachable.append("postgresql: unreachable")
    if unreachable:
        raise ApiProblem(503, unreachable, headers={"Retry-After": "5"})
    return Health(status="ready")
