"""Reading application files and handing in each valid application (`enroll submit`).

Every application goes through the same rules and the same intake path as the
HTTP API (`starter.hand_in`): nothing is started for an application that breaks
a rule, the same application twice is one case, and a child holds one open
application per school year.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from enrollment.application import Application, describe_errors
from enrollment.case import workflow_id_for
from enrollment.identity import LookupSecret
from enrollment.policy import PolicyBook, intake_problems
from starter.hand_in import IntakeUnavailable, hand_in

MAX_LINE_BYTES = 64 * 1024


@dataclass
class SubmissionResult:
    """One line of `enroll submit` output."""

    source: str
    result: str  # started | duplicate | refused | invalid | error
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
    """The application, or the rules it breaks: its own fields first, then the district's policy."""
    if not isinstance(item, dict):
        return None, ["application: must be a JSON object"]
    try:
        application = Application.model_validate(item)
    except ValidationError as exc:
        return None, describe_errors(exc)
    problems = intake_problems(application, policies)
    return (None, problems) if problems else (application, [])


async def submit_one(intake: Intake, application: Application) -> SubmissionResult:
    """Hand one valid application in through the one intake path (starter.hand_in)."""
    app_id = application.application_id
    try:
        handed = await hand_in(intake.client, intake.pool, intake.lookup_key, application, intake.submitted_by)
    except (IntakeUnavailable, RPCError) as err:
        # One refused start (an overloaded server at the season's peak) must not end the batch.
        return SubmissionResult(source="", result="error", application_id=app_id, errors=[f"temporal: {err}"])
    workflow_id = workflow_id_for(app_id)
    if handed.outcome == "accepted":
        return SubmissionResult(source="", result="started", application_id=app_id, workflow_id=workflow_id)
    if handed.outcome == "again":
        errors = [f"application_id: {app_id} already has a case"]
        return SubmissionResult(
            source="", result="duplicate", application_id=app_id, workflow_id=workflow_id, errors=errors
        )
    errors = handed.errors + (
        [f"application_id: the open application is {handed.existing_application_id}"]
        if handed.existing_application_id
        else []
    )
    return SubmissionResult(source="", result="refused", application_id=app_id, errors=errors)


@dataclass(frozen=True)
class Intake:
    """What handing in needs: Temporal, the case store, the lookup key, and who is handing in."""

    client: Client
    pool: AsyncConnectionPool
    lookup_key: LookupSecret
    submitted_by: str


async def submit_file(
    submit: Callable[[Application], Awaitable[SubmissionResult]],
    path: Path,
    policies: PolicyBook,
    concurrency: int = 32,
) -> AsyncIterator[SubmissionResult]:
    """Hand in every valid application in the file with `submit` (`functools.partial(submit_one, intake)`),
    a bounded number at a time, yielding results in file order."""
    limit = asyncio.Semaphore(concurrency)
    first_seen: dict[str, str] = {}

    async def one(where: str, item: object | None, errors: list[str]) -> SubmissionResult:
        application, problems = (None, errors) if errors else validate(item, policies)
        if application is None:
            app_id = (
                item.get("application_id")
                if isinstance(item, dict) and isinstance(item.get("application_id"), str)
                else None
            )
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
            result = await submit(application)
        result.source = where
        return result

    pending: list[asyncio.Task] = []
    for where, item, errors in read_applications(path):
        pending.append(asyncio.create_task(one(where, item, errors)))
        if len(pending) >= concurrency * 4:
            yield await pending.pop(0)
    for task in pending:
        yield await task
