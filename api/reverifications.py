"""`/v1/reverifications`: ops ask again for the families a department outage sent to the service point.

The same job as `enroll reverify`, for ops tooling that speaks HTTP. The caller is an ops person signed in
on the `enroll` command line, sending their access token; the API asks the identity provider for each
case's proof on their behalf (token exchange, the proof naming the API as `act`), so every case still
checks that an ops person sent its `reverify`, and the audit trail says who.

The answer streams as the job goes (newline-delimited JSON): a `selected` line, one `case` line per case
with its result, and a `done` line with the counts. Nothing is kept in the API process, so any replica
serves it; a run cut short (the connection dropped, the sign-in expired) is simply made again, since a
case back online is no longer selected.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api.bearer import bearer_token, verified
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
    def _forward(self) -> ReverificationOrder:
        if self.until <= self.since:
            raise ValueError("to: must be later than from")
        return self

    @property
    def window(self) -> Window:
        return Window(since=self.since, until=self.until, district_code=self.district_code)


class OpsPerson(BaseModel):
    identity: Identity
    access_token: str


async def ops_person(request: Request) -> OpsPerson:
    """The ops person calling; 401 without a token, 403 for anyone else or a token the API cannot act for."""
    token = bearer_token(request, "an ops person's")
    identity = await verified(request, token, ("ops",))
    if identity.client_id != CLI_CLIENT:
        raise ApiProblem(403, [f"authorization: sign in with `enroll login` (a token of {CLI_CLIENT})"])
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
    pool = request.app.state.pool
    cases = await cases_in(pool, order.window)
    source = request.client.host if request.client else None
    sub = person.identity.sub

    async def audited(action: str, outcome: str, case_id: str | None = None, **detail: Any) -> None:
        await audit.record(
            pool,
            audit.AuditEvent(
                actor=sub, role="ops", source=source, case_id=case_id, action=action, outcome=outcome, detail=detail
            ),
        )

    await audited(
        "reverify_requested",
        "dry_run" if order.dry_run else "started",
        cases=len(cases),
        per_second=order.per_second,
        district=order.district_code,
    )
    window = {"from": order.since.isoformat(), "to": order.until.isoformat(), "district_code": order.district_code}

    async def progress() -> AsyncIterator[bytes]:
        yield _line("selected", cases=len(cases), dry_run=order.dry_run, **window)
        if order.dry_run:
            for case in cases:
                yield _line("case", application_id=case, result="selected")
            yield _line("done", counts={"selected": len(cases)})
            return
        client = await request.app.state.temporal.client()
        prover: ClientProver = request.app.state.prove
        message = Reverification(requested_by=sub, reason=order.reason)
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

    return StreamingResponse(progress(), media_type=NDJSON)
