"""Acting on one case: reading its status and sending people's messages to it.

Messages are Workflow Updates: the case answers each with a receipt (taken, or
refused and why) as soon as it has decided, so nothing here waits on its timeline.
Each goes with a proof of who sent it, which the identity provider signs for
exactly that message to that case (`Prover`); the case refuses it without one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from enrollment import search_attributes as sa
from enrollment.application import DistrictCode
from enrollment.case import ACTIONS, CaseView, Receipt, application_id_of, workflow_id_for
from enrollment.proofs import message_digest
from starter import ops_queries
from workflows.enrollment_case import EnrollmentCase

DISTRICT_CODE_ADAPTER = TypeAdapter(DistrictCode)

# (workflow id of the case, action, digest of the message) -> the provider's proof for that message.
Prover = Callable[[str, str, str], Awaitable[str]]


class CaseActionError(Exception):
    """An action the case (or Temporal on its behalf) did not take; the message says why."""


class CaseNotFound(CaseActionError):
    """No case has this application id."""


def case_handle(client: Client, application_id: str) -> WorkflowHandle[EnrollmentCase, CaseView]:
    return client.get_workflow_handle_for(EnrollmentCase.run, workflow_id_for(application_id))


async def case_status(client: Client, application_id: str) -> CaseView:
    handle = case_handle(client, application_id)
    try:
        return await handle.query(EnrollmentCase.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(f"application_id: no case for {application_id}") from None
        raise


async def proven(message: Any, workflow_id: str, prove: Prover) -> Any:
    """The message with the provider's proof for it, to the case of `workflow_id`."""
    proof = await prove(workflow_id, ACTIONS[type(message)], message_digest(message))
    return message.model_copy(update={"proof": proof})


async def send_message(client: Client, application_id: str, message: Any, prove: Prover) -> Receipt:
    """Prove and send a person's message to the case; its receipt (accepted, or refused with the reason).

    A case that does not exist or has already finished takes no message: CaseActionError.
    """
    handle = case_handle(client, application_id)
    try:
        receipt = await handle.execute_update(
            ACTIONS[type(message)], await proven(message, handle.id, prove), result_type=Receipt
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            description = await handle.describe()
        except RPCError:
            raise CaseNotFound(f"application_id: no case for {application_id}") from None
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise CaseActionError(f"case {application_id} is already finished; nothing was changed") from None
        raise
    return receipt


async def cases_awaiting(client: Client, status: str, district_code: str, limit: int = 500) -> list[dict[str, Any]]:
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
