"""Reading application files and starting one case per valid application.

Nothing is started for an application that breaks a rule, and an application
id that already has a case is refused as a duplicate by Temporal itself (the
workflow id is derived from it), so two submissions racing still make one case.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from enrollment.application import Application, describe_errors
from enrollment.case import CASE_TASK_QUEUE, CaseInput, workflow_id_for
from enrollment.policy import PolicyBook
from workflows.enrollment_case import EnrollmentCase

MAX_LINE_BYTES = 64 * 1024


@dataclass
class SubmissionResult:
    """One line of `enroll submit` output."""

    source: str
    result: str  # started | duplicate | invalid | error
    application_id: str | None = None
    workflow_id: str | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if value not in (None, [])}


def read_applications(path: Path) -> Iterator[tuple[str, object | None, list[str]]]:
    """Yield (where, parsed JSON or None, errors) for each application in a JSON or JSON Lines file."""
    raw = path.read_bytes()
    try:
        whole = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        whole = None  # JSON Lines, or broken: judged line by line below
    if isinstance(whole, list):
        for index, item in enumerate(whole):
            yield f"{path.name}[{index}]", item, []
        return
    if isinstance(whole, dict):
        yield path.name, whole, []
        return
    if raw.lstrip().startswith(b"["):
        yield path.name, None, ["file: not a valid UTF-8 JSON array"]
        return
    for number, line in enumerate(raw.splitlines(), start=1):
        where = f"{path.name}:{number}"
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            yield where, None, [f"line: longer than {MAX_LINE_BYTES} bytes"]
            continue
        try:
            item = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield where, None, ["line: not valid UTF-8"]
        except json.JSONDecodeError as exc:
            yield where, None, [f"line: not valid JSON ({exc.msg} at column {exc.colno})"]
        except (ValueError, RecursionError):
            # Numbers too long to convert, nesting too deep to parse.
            yield where, None, ["line: JSON too deeply nested or with a number too long"]
        else:
            yield where, item, []


def validate(item: object, policies: PolicyBook) -> tuple[Application | None, list[str]]:
    """The application, or the rules it breaks: its own fields first, then the district's existence."""
    if not isinstance(item, dict):
        return None, ["application: must be a JSON object"]
    try:
        application = Application.model_validate(item)
    except ValidationError as exc:
        return None, describe_errors(exc)
    policy = policies.district(application.district_code)
    if policy is None:
        return None, [f"district_code: no enrollment policy is configured for district {application.district_code}"]
    if application.school_choice is not None:
        choice = application.school_choice
        if problem := policy.school_choice_problem(application.stage, choice.zone_id, choice.school_id):
            return None, [f"school_choice.{problem}"]
    return application, []


def static_details(application: Application) -> str:
    """The UI's details panel for a case: what it is, never who."""
    return (
        f"**Application** {application.application_id}  \n"
        f"**Stage** {application.stage} · **Type** {application.registration_type}  \n"
        f"**District** {application.district_code} · **School year** {application.school_year}  \n"
        f"**Intake** {application.channel} · **Guardians** {len(application.guardians)}"
    )


def static_summary(application: Application) -> str:
    """What ops see for a case in the UI list: no personal data."""
    return (
        f"{application.school_year} {application.stage} · {application.registration_type} · "
        f"district {application.district_code} · via {application.channel}"
    )


async def start_case(client: Client, application: Application) -> SubmissionResult:
    workflow_id = workflow_id_for(application.application_id)
    try:
        await client.start_workflow(
            EnrollmentCase.run,
            CaseInput(application=application),
            id=workflow_id,
            task_queue=CASE_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=static_summary(application),
            static_details=static_details(application),
        )
    except WorkflowAlreadyStartedError:
        return SubmissionResult(
            source="",
            result="duplicate",
            application_id=application.application_id,
            workflow_id=workflow_id,
            errors=[f"application_id: {application.application_id} already has a case"],
        )
    return SubmissionResult(source="", result="started", application_id=application.application_id, workflow_id=workflow_id)


async def submit_file(client: Client, path: Path, policies: PolicyBook, concurrency: int = 32) -> AsyncIterator[SubmissionResult]:
    """Submit every application in the file, a bounded number at a time, yielding results in file order."""
    limit = asyncio.Semaphore(concurrency)
    first_seen: dict[str, str] = {}

    async def one(where: str, item: object | None, errors: list[str]) -> SubmissionResult:
        application, problems = (None, errors) if errors else validate(item, policies)
        if application is None:
            app_id = item.get("application_id") if isinstance(item, dict) and isinstance(item.get("application_id"), str) else None
            return SubmissionResult(source=where, result="invalid", application_id=app_id, errors=problems)
        # Within one file the first occurrence wins, whatever order the starts complete in.
        earlier = first_seen.setdefault(application.application_id, where)
        if earlier != where:
            return SubmissionResult(
                source=where,
                result="duplicate",
                application_id=application.application_id,
                workflow_id=workflow_id_for(application.application_id),
                errors=[f"application_id: {application.application_id} already appears at {earlier}"],
            )
        async with limit:
            try:
                result = await start_case(client, application)
            except RPCError as err:
                # One refused start (an overloaded server at the season's peak) must not end the batch.
                result = SubmissionResult(source="", result="error", application_id=application.application_id, errors=[f"temporal: {err.message}"])
        result.source = where
        return result

    pending: list[asyncio.Task] = []
    for where, item, errors in read_applications(path):
        pending.append(asyncio.create_task(one(where, item, errors)))
        if len(pending) >= concurrency * 4:
            yield await pending.pop(0)
    for task in pending:
        yield await task
