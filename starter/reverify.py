"""Ops re-verification after a department outage: ask again for the families an outage sent offline.

A case that went to the service point because a department did not answer (not because it answered
`mismatch` or `not_found`) can ask that department again when ops send it a proven `reverify`; a family
verified then goes on online and is told so. This module finds those cases in the case store and sends
each its message, paced so a department just back up is not flooded, with a result per case.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.service import RPCError

from enrollment.case import Reverification
from enrollment.oidc import IdentityError
from starter.cases import CaseActionError, Prover, send_message
from store.cases import unanswered_offline_cases

Result = Literal["online", "still_offline", "refused", "failed"]
RESULTS: tuple[Result, ...] = get_args(Result)


@dataclass(frozen=True)
class CaseResult:
    application_id: str
    result: Result
    status: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Window:
    """When the department was down, and optionally the one district whose cases are asked again."""

    since: dt.datetime
    until: dt.datetime
    district_code: str | None = None

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("from, to: give a time zone (for example 2027-06-01T08:00+08:00)")
        if self.until <= self.since:
            raise ValueError("to: must be later than from")


async def cases_in(pool: AsyncConnectionPool, window: Window) -> list[str]:
    return await unanswered_offline_cases(pool, window.since, window.until, window.district_code)


async def reverify(
    client: Client,
    application_ids: list[str],
    prove: Prover,
    message: Reverification,
    per_second: float,
    concurrency: int = 20,
    on_result: Callable[[CaseResult], None] = lambda _: None,
) -> list[CaseResult]:
    """Send `message` to each case, starting at most `per_second` a second and `concurrency` at once.

    A case answers once it has asked its departments again, which takes a department that is still
    down its five-minute budget: hence several at once, while the start rate keeps the pace.
    """
    if per_second <= 0 or concurrency < 1:
        raise ValueError("rate: must be more than 0 cases a second, with at least one at a time")
    slots = asyncio.Semaphore(concurrency)
    interval = 1.0 / per_second
    started = time.monotonic()

    async def one(index: int, application_id: str) -> CaseResult:
        await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
        async with slots:
            result = await _send(client, application_id, prove, message)
        on_result(result)
        return result

    return list(await asyncio.gather(*(one(i, case) for i, case in enumerate(application_ids))))


async def _send(client: Client, application_id: str, prove: Prover, message: Reverification) -> CaseResult:
    try:
        receipt = await send_message(client, application_id, message, prove)
    except (CaseActionError, RPCError) as err:
        return CaseResult(application_id, "failed", reason=str(err))
    except IdentityError as err:
        # The sender's sign-in ended (expired, revoked) mid-run: this case is left as it was; run again.
        return CaseResult(application_id, "failed", reason=f"proof: {err}")
    except Exception as err:
        return CaseResult(application_id, "failed", reason=f"{type(err).__name__}: {err}")
    if not receipt.accepted:
        return CaseResult(application_id, "refused", receipt.status, receipt.reason)
    outcome: Result = "still_offline" if receipt.status == "awaiting_offline_registration" else "online"
    return CaseResult(application_id, outcome, receipt.status)
