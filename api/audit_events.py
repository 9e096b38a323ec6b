"""Audit events reported by the product's own services that hold no database (the codec server).

The codec server decodes payloads for ops people and must leave a trace of
who saw what, yet is given no database URL (least privilege). It reports each
decode here, as itself: a bearer access token the identity provider issued to
its client, of the `service` role. The person it decoded for is what the
codec server verified; the event records which service vouched for it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, StringConstraints

from api.bearer import bearer_token, verified
from api.problems import documented
from enrollment.oidc import Identity
from store import audit

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])

Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,80}$")]


class ReportedEvent(BaseModel):
    actor: Word
    role: Word
    district: Word | None = None
    source: Annotated[str, StringConstraints(max_length=80)] | None = None
    case_id: Word | None = None
    action: Word
    outcome: Word
    detail: dict[str, int | str | None] = Field(default_factory=dict, max_length=10)


async def reporting_service(request: Request) -> Identity:
    """The service reporting, from its bearer token; 401 without one, 403 for anything but a service."""
    return await verified(request, bearer_token(request, "a service's"), ("service",))


@router.post("", status_code=204, responses=documented(401, 403, 422))
async def report(
    request: Request, event: ReportedEvent, service: Annotated[Identity, Depends(reporting_service)]
) -> Response:
    """Record one event in the audit trail, as reported by the service."""
    fields = event.model_dump()
    recorded = audit.AuditEvent(**fields | {"detail": fields["detail"] | {"reported_by": service.sub}})
    await audit.record(request.app.state.pool, recorded)
    return Response(status_code=204)
