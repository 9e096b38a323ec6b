"""Handing in one application: the one intake path, shared by the HTTP API and `enroll submit`.

The rules, in order:
1. The application is valid (`enrollment.application`) and its district has a
   policy that offers its school choice (`policy_problems`); the caller checks
   both before anything here runs, so nothing is written for a bad application.
2. The same application id handed in again with the same content is the same
   case; with other content, or from another system, it is a conflict.
3. A child (the keyed hash of the identity number) holds at most one open
   application per school year, whatever the channel: a primary key in the
   case store holds the place, so concurrent hand-ins cannot both win.
4. The case is started and asked, in one Update-with-Start call, for its
   acceptance-conditions (受理条件) result, so the answer comes from the case
   itself; ten identical requests at once make one case and get one answer.

A Temporal outage raises `IntakeUnavailable` with nothing half-made: the place
held for the child is let go, and the same request later succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Literal

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from enrollment import identity
from enrollment import search_attributes as sa
from enrollment.application import Application
from enrollment.case import CASE_TASK_QUEUE, CaseInput, HandIn, IntakeAnswer, workflow_id_for
from enrollment.identity import LookupSecret
from starter.cases import case_status
from store import intake as store
from store.cases import PLACE_FREED_BY
from workflows.enrollment_case import EnrollmentCase

# How long a hand-in waits for the case's answer before the caller is told to try again.
ANSWER_WITHIN_SECONDS = 20

Outcome = Literal["accepted", "again", "conflict", "child_has_open_application"]


class IntakeUnavailable(Exception):
    """Temporal could not be reached; nothing was created and the same request may be sent again."""


# What Temporal's frontend answers for a call it did not let through, and what the caller is told. A frontend
# that checks tokens refuses a lapsed one as it refuses a role without the right (PERMISSION_DENIED, "Request
# unauthorized"): the service's own token for it (enrollment/temporal_tokens.py) lapses when the identity
# provider is down for longer than a token lives, and the next renewal mends it.
REFUSED_BEFORE_THE_CASE = {
    RPCStatusCode.UNAVAILABLE: "the case service cannot be reached",
    RPCStatusCode.UNAUTHENTICATED: "the case service refused this service's credentials",
    RPCStatusCode.PERMISSION_DENIED: "the case service refused this service's credentials",
}


@dataclass
class HandInResult:
    outcome: Outcome
    application_id: str
    answer: IntakeAnswer | None = None
    errors: list[str] = field(default_factory=list)
    # The application that already holds the child's place, told only to the system that handed it in.
    existing_application_id: str | None = None


def fingerprint(application: Application) -> str:
    """What the application says, as a digest: equal for the same application, whatever the key order sent."""
    return hashlib.sha256(application.model_dump_json().encode()).hexdigest()


def summary(application: Application) -> str:
    """What ops see for a case in the Temporal UI list: no personal data."""
    return (
        f"{application.school_year} {application.stage} · {application.registration_type} · "
        f"district {application.district_code} · via {application.channel}"
    )


def details(application: Application) -> str:
    """The UI's details panel for a case: what it is, never who."""
    return (
        f"**Application** {application.application_id}  \n"
        f"**Stage** {application.stage} · **Type** {application.registration_type}  \n"
        f"**District** {application.district_code} · **School year** {application.school_year}  \n"
        f"**Intake** {application.channel} · **Guardians** {len(application.guardians)}"
    )


async def hand_in(
    client: Client, pool: AsyncConnectionPool, lookup: LookupSecret, application: Application, submitted_by: str
) -> HandInResult:
    """Hand in a valid application for `submitted_by` (a registered client id) and return the case's answer."""
    app_id = application.application_id
    digest = fingerprint(application)
    first = await store.record_hand_in(pool, store.HandIn(app_id, submitted_by, application.district_code, digest))
    if first.fingerprint != digest or first.client_id != submitted_by:
        return _conflict(app_id)
    student = identity.lookup_key(application.student.id_number, lookup.secret, lookup.profile)
    holder = await store.open_application(pool, student, application.school_year, app_id, submitted_by)
    if holder.application_id != app_id:
        return HandInResult(
            "child_has_open_application",
            app_id,
            errors=[f"student.id_number: the child already has an open application for {application.school_year}"],
            existing_application_id=holder.application_id if holder.client_id == submitted_by else None,
        )
    try:
        async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
            answer = await _ask_the_case(client, application, digest)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # The case exists but has not answered (its workers are down or behind): the place stays with it,
        # and the same request later gets the answer.
        raise IntakeUnavailable(f"the case did not answer within {ANSWER_WITHIN_SECONDS} s") from None
    except RPCError as err:
        if err.status in REFUSED_BEFORE_THE_CASE:
            # Refused before it reached the server's history: no case exists, so the child's place is let go.
            await store.release_place(pool, app_id)
            raise IntakeUnavailable(REFUSED_BEFORE_THE_CASE[err.status]) from None
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            # The case may exist: the place stays with it, and the same request later finds it.
            raise IntakeUnavailable("the case service did not answer in time") from None
        raise
    if answer.status in PLACE_FREED_BY:
        # The case has ended without a place (perhaps before this hand-in came again): the family may apply anew.
        await store.release_place(pool, app_id)
    if not answer.same_application:
        return _conflict(app_id, answer)
    return HandInResult("accepted" if answer.first else "again", app_id, answer)


def _conflict(app_id: str, answer: IntakeAnswer | None = None) -> HandInResult:
    return HandInResult(
        "conflict", app_id, answer, [f"application_id: {app_id} was already handed in with other content"]
    )


async def _ask_the_case(client: Client, application: Application, digest: str) -> IntakeAnswer:
    workflow_id = workflow_id_for(application.application_id)
    start = WithStartWorkflowOperation(
        EnrollmentCase.run,
        CaseInput(application=application, fingerprint=digest),
        id=workflow_id,
        task_queue=CASE_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=sa.at_start(application),
        static_summary=summary(application),
        static_details=details(application),
    )
    try:
        # temporalio types `@workflow.update(name=...)` on an async handler as returning the coroutine.
        return await client.execute_update_with_start_workflow(
            EnrollmentCase.hand_in,  # type: ignore[arg-type]
            HandIn(fingerprint=digest),
            start_workflow_operation=start,
        )
    except (WorkflowAlreadyStartedError, RPCError) as err:
        if isinstance(err, RPCError) and err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        # The case has already finished: it answers from its final state.
        view = await case_status(client, application.application_id)
        return IntakeAnswer(
            application_id=view.application_id,
            same_application=True,
            first=False,
            status=view.status,
            routing_phase=view.routing_phase,
            eligible=not view.eligibility_problems,
            problems=view.eligibility_problems,
        )
