"""`/v1/reverifications`: ops ask again for the families a department outage sent to the service point.

The same job as `enroll reverify`, for ops tooling that speaks HTTP. The caller is an ops person signed in
on the `enroll` command line, sending their access token; the API asks the identity provider for each
case's proof on their behalf (token exchange, the proof naming the API as `act`), so every case still
checks that an ops person sent its `reverify`, and the audit trail says who.

The answer streams as the job goes (newline-delimited JSON): a `selected` line, one `case` line per case
with its result, and a `done` line with the counts. Nothing is kept in the API process, so any replica
serves it; a run cut short (the connection dropped, the sign-in expired) is simply made again, since a
case back online is no longer selected.

The departments are protected whoever asks: one run at a time across every API replica (a PostgreSQL
advisory lock held while it streams), at most MAX_CASES_PER_SECOND, at most MAX_CASES_PER_RUN cases a run
(`more_remain` says to run again), and each ops person's requests are rate-limited like a calling system's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from temporalio.client import Client

from api.bearer import bearer_token, still_active, verified
from api.limits import RateLimiter, retry_after
from api.problems import ApiProblem, documented
from enrollment.application import DistrictCode
from enrollment.case import Reverification
from enrollment.oidc import Identity
from enrollment.provers import ClientProver
from starter.reverify import RESULTS, CaseResult, Window, cases_in, reverify
from starter.signin import CLI_CLIENT
from store import audit

router = APIRouter(prefix="/v1/reverifications", tags=["operations"])
# Cases started a second, at most: a department just back up is not flooded whoever asks.
MAX_CASES_PER_SECOND = 20.0
# Cases one run asks again, at most (about four minutes at the highest rate); the rest wait for the next run.
MAX_CASES_PER_RUN = 5000
# The advisory lock (one bigint, any value no other lock in the case store uses) that makes runs one at a time.
ONE_RUN_AT_A_TIME = 0x5245564552494659  # "REVERIFY"
NDJSON = "application/x-ndjson"


class ReverificationOrder(BaseModel):
    """Which cases to ask again (those an outage between `from` and `to` sent offline), how fast, and why."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: AwareDatetime = Field(alias="from", description="when the department stopped answering, zoned")
    until: AwareDatetime = Field(alias="to", description="when it answered again, zoned")
    district_code: DistrictCode | None = Field(None, description="only this district's cases")
    per_second: float = Field(5.0, gt=0, le=MAX_CASES_PER_SECOND, description="cases started a second")
    reason: str = Field("", max_length=200, description="why, for the cases' timelines (the outage's ticket)")
    dry_run: bool = Field(False, description="list the cases, send nothing")

    @model_validator(mode="after")
    def _a_window(self) -> ReverificationOrder:
        Window(since=self.since, until=self.until)  # its rules (zoned, forward) refuse a bad one: a 422
        return self

    @property
    def window(self) -> Window:
        return Window(since=self.since, until=self.until, district_code=self.district_code)


class OpsPerson(BaseModel):
    identity: Identity
    access_token: str


async def ops_person(request: Request) -> OpsPerson:
    """The ops person calling; 401 without a token, 403 for anyone else, a token the API cannot act for, or a
    sign-in that has ended (asked of the provider: a revoked token's signature still holds); 429 past the rate."""
    token = bearer_token(request, "an ops person's")
    identity = await verified(request, token, ("ops",))
    if identity.client_id != CLI_CLIENT:
        raise ApiProblem(403, [f"authorization: sign in with `enroll login` (a token of {CLI_CLIENT})"])
    prover: ClientProver = request.app.state.prove
    if not await still_active(request, token, prover.client_id, prover.client_secret):
        raise ApiProblem(403, ["authorization: the sign-in has ended (signed out, revoked or disabled)"])
    limiter: RateLimiter = request.app.state.rate
    if wait := limiter.wait_seconds(f"person:{identity.sub}"):
        raise ApiProblem(429, ["rate: too many requests from this person"], headers=retry_after(wait))
    return OpsPerson(identity=identity, access_token=token)


def _line(event: str, **fields: Any) -> bytes:
    return (json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n").encode()


@router.post(
    "",
    responses={
        **documented(401, 403, 422),
        200: {"content": {NDJSON: {}}, "description": "progress, a line at a time"},
    },
)
async def reverify_cases(
    request: Request, order: ReverificationOrder, person: Annotated[OpsPerson, Depends(ops_person)]
) -> StreamingResponse:
    """Ask again, paced, for each case an outage sent offline in the window; a result line per case."""
    pool: AsyncConnectionPool = request.app.state.pool
    client = await request.app.state.temporal.client()  # before anything is sent: 503 if Temporal is down
    held = await pool.getconn()
    locked = False
    try:
        await held.set_autocommit(True)  # the lock is the session's: no transaction stays open while it runs
        locked = await _try_lock(held)
        if not locked:
            raise ApiProblem(409, ["reverification: another run is going on; try again when it has ended"])
        selected = await cases_in(pool, order.window)
    except BaseException:
        await _give_back(pool, held, locked)
        raise
    cases, more_remain = selected[:MAX_CASES_PER_RUN], len(selected) > MAX_CASES_PER_RUN
    source = request.client.host if request.client else None
    sub = person.identity.sub

    async def audited(action: str, outcome: str, case_id: str | None = None, **detail: Any) -> None:
        await audit.record(
            pool,
            audit.AuditEvent(
                actor=sub, role="ops", source=source, case_id=case_id, action=action, outcome=outcome, detail=detail
            ),
        )

    async def progress() -> AsyncIterator[bytes]:
        try:
            await audited(
                "reverify_requested",
                "dry_run" if order.dry_run else "started",
                cases=len(cases),
                per_second=order.per_second,
                district=order.district_code,
            )
            window = {
                "from": order.since.isoformat(),
                "to": order.until.isoformat(),
                "district_code": order.district_code,
            }
            yield _line("selected", cases=len(cases), more_remain=more_remain, dry_run=order.dry_run, **window)
            if order.dry_run:
                for case in cases:
                    yield _line("case", application_id=case, result="selected")
                yield _line("done", counts={"selected": len(cases)})
                return
            async for line in _reverified(client, cases, order, person, request.app.state.prove, audited):
                yield line
        finally:
            await _give_back(pool, held, locked=True)

    return StreamingResponse(progress(), media_type=NDJSON)


async def _reverified(
    client: Client,
    cases: list[str],
    order: ReverificationOrder,
    person: OpsPerson,
    prover: ClientProver,
    audited: Callable[..., Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The job's `case` lines as results come, then its `done` line; the job ends if the caller goes away."""
    message = Reverification(requested_by=person.identity.sub, reason=order.reason)
    finished: asyncio.Queue[CaseResult | None] = asyncio.Queue()
    job = asyncio.create_task(
        reverify(
            client,
            cases,
            prover.acting_for(person.access_token),
            message,
            order.per_second,
            on_result=finished.put_nowait,
        )
    )
    # However the job ends, the lines end with it (an error it raised is raised here after them).
    job.add_done_callback(lambda _: finished.put_nowait(None))
    counts = dict.fromkeys(RESULTS, 0)
    try:
        while (result := await finished.get()) is not None:
            counts[result.result] += 1
            await audited("reverify", result.result, result.application_id)
            yield _line("case", done=sum(counts.values()), of=len(cases), **vars(result))
        await job
    finally:
        job.cancel()
    yield _line("done", counts=counts)


async def _try_lock(conn: AsyncConnection[Any]) -> bool:
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (ONE_RUN_AT_A_TIME,))).fetchone()
    return bool(row and row[0])


async def _give_back(pool: AsyncConnectionPool, conn: AsyncConnection[Any], locked: bool) -> None:
    """Release the run's lock if held and give its connection back (a broken connection's lock ends with it)."""
    try:
        if locked:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (ONE_RUN_AT_A_TIME,))
        await conn.set_autocommit(False)  # as the pool's other users expect it
    finally:
        await pool.putconn(conn)
