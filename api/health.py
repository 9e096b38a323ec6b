"""`/healthz`: the process answers; `/readyz`: it can reach Temporal and PostgreSQL. For probes and load balancers.

Readiness asks Temporal for the namespace with the API's own credentials rather than for the server's health: a
frontend that checks tokens answers a health check without one, and would have the API look ready while it
refuses every call the API makes (its token lapsed while the identity provider was down).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError

from api.problems import ApiProblem, documented
from api.temporal import TemporalConnection
from starter.hand_in import REFUSED_BEFORE_THE_CASE, IntakeUnavailable
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
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    except IntakeUnavailable as err:
        unreachable.append(f"temporal: {err}")
    except RPCError as err:
        unreachable.append(f"temporal: {REFUSED_BEFORE_THE_CASE.get(err.status, 'unreachable')}")
    try:
        await ping(request.app.state.pool)
    except Exception:  # any failure to reach the store means not ready
        unreachable.append("postgresql: unreachable")
    if unreachable:
        raise ApiProblem(503, unreachable, headers={"Retry-After": "5"})
    return Health(status="ready")
