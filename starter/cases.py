"""Acting on one case: reading its status and sending people's messages to it.

A signal is fire-and-forget at Temporal, so after sending one we watch the
case's timeline until it records the message, and report whether the case
took it or refused it (and why).
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, TypeAdapter, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from enrollment import search_attributes as sa
from enrollment.application import DistrictCode
from enrollment.case import FINAL_STATES, CaseStatusView, TimelineEntry, application_id_of, workflow_id_for
from starter import ops_queries
from workflows.enrollment_case import EnrollmentCase


DISTRICT_CODE_ADAPTER = TypeAdapter(DistrictCode)


class CaseActionError(Exception):
    """An action the case (or Temporal on its behalf) did not take; the message says why."""


def case_handle(client: Client, application_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(EnrollmentCase.run, workflow_id_for(application_id))


async def case_status(client: Client, application_id: str) -> CaseStatusView:
    handle = case_handle(client, application_id)
    try:
        return await handle.query(EnrollmentCase.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseActionError(f"application_id: no case for {application_id}") from None
        raise


async def send_signal(
    client: Client, application_id: str, signal, payload: BaseModel, actor: str, wait_seconds: float = 10.0
) -> list[TimelineEntry]:
    """Send a signal and return the timeline entries the sender produced; raise if the case refused it."""
    handle = case_handle(client, application_id)
    before = await case_status(client, application_id)
    if before.status in FINAL_STATES:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise CaseActionError(f"case {application_id} is already finished ({before.status}); nothing was changed")
    try:
        await handle.signal(signal, payload)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseActionError(f"case {application_id} is already finished; nothing was changed") from None
        raise
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        after = await case_status(client, application_id)
        new_entries = [entry for entry in after.timeline[len(before.timeline) :] if entry.actor == actor]
        if new_entries:
            refused = [entry for entry in new_entries if entry.step.endswith("_refused")]
            if refused:
                raise CaseActionError(f"refused: {refused[0].detail}")
            return new_entries
        await asyncio.sleep(0.2)
    raise CaseActionError(f"sent, but the case has not recorded it within {wait_seconds:.0f}s; check `enroll status {application_id}`")


async def cases_awaiting_review(client: Client, district_code: str, limit: int = 500) -> list[dict]:
    return await cases_awaiting(client, "awaiting_review", district_code, limit)


async def cases_awaiting(client: Client, status: str, district_code: str, limit: int = 500) -> list[dict]:
    """A district's cases waiting at one step, from Temporal's visibility store."""
    try:
        DISTRICT_CODE_ADAPTER.validate_python(district_code)
    except ValidationError:
        raise CaseActionError("district_code: must be a 6-digit Sichuan region code (51xxxx)") from None
    query = ops_queries.awaiting(status, district_code)
    found = []
    async for execution in client.list_workflows(query, limit=limit):
        attributes = execution.typed_search_attributes
        found.append(
            {
                "workflow_id": execution.id,
                "application_id": application_id_of(execution.id),
                "stage": attributes.get(sa.ENROLL_STAGE),
                "registration_type": attributes.get(sa.REGISTRATION_TYPE),
                "routing_phase": attributes.get(sa.ROUTING_PHASE),
                "started": execution.start_time.isoformat() if execution.start_time else None,
            }
        )
    return found
