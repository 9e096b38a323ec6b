"""Bulk approval of a district's clean cases: one opinion, many decisions, each still one proven, audited review.

A clean case is one whose every verification matched (or was not required): the reviewer decides on
the family's data the departments confirmed. The reviewer approves every clean case the queue's
current filter shows (up to BULK_LIMIT) with one opinion. The console then works through them in the
background at BULK_RATE a second, so neither Temporal nor the identity provider is flooded. Each case
is read again just before its decision and skipped, with the reason, if it changed meanwhile (decided,
withdrawn, no longer clean). The reviewer watches progress and the result of each case on the job's
page.

Jobs live in the console process that runs them: a restart ends a job part-way, and the reviewer
starts it again. The cases already approved have left the queue, so they are not approved twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from dataclasses import dataclass, field

import structlog
from psycopg_pool import AsyncConnectionPool
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from console.auth import checked_form, prover, signed_in
from console.backends import backends
from console.pages import Refusal, render
from console.queue import BULK_LIMIT, queue_filters
from enrollment.case import Review
from enrollment.provers import PersonProver
from enrollment.statuses import PASSED_OUTCOMES
from starter.cases import case_status, send_message
from store.audit import AuditEvent, record
from store.console_reads import queue_page
from workflows.enrollment_case import MAX_OPINION_LENGTH

BULK_RATE = 5.0
# Finished jobs kept for their pages, per console process.
KEPT_JOBS = 50


@dataclass
class CaseResult:
    application_id: str
    outcome: str  # approved | skipped | refused
    reason: str | None = None


@dataclass
class BulkJob:
    job_id: str
    owner: str
    district: str
    opinion: str
    cases: list[str]
    started_at: dt.datetime
    results: list[CaseResult] = field(default_factory=list)
    finished: bool = False

    def count(self, outcome: str) -> int:
        return sum(result.outcome == outcome for result in self.results)


def _jobs(request: Request) -> dict[str, BulkJob]:
    jobs: dict[str, BulkJob] = request.app.state.bulk_jobs
    return jobs


async def _decide(
    client: Client, pool: AsyncConnectionPool, job: BulkJob, application_id: str, prove: PersonProver, role: str
) -> CaseResult:
    """Read the case again, approve it if it is still a clean case awaiting review, and record what happened."""
    try:
        view = await case_status(client, application_id)
    except Exception:  # gone, or not answering: skipped, with the reason, never guessed
        result = CaseResult(application_id, "skipped", "the case could not be read")
    else:
        outcomes = {report.outcome for report in view.verifications.values()}
        if view.district_code != job.district:
            result = CaseResult(application_id, "skipped", "not a case of this district")
        elif view.status != "awaiting_review":
            result = CaseResult(application_id, "skipped", f"the case is now {view.status}")
        elif not outcomes or not outcomes <= PASSED_OUTCOMES:
            result = CaseResult(application_id, "skipped", "a verification is not matched")
        else:
            message = Review(reviewer_id=job.owner, district_code=job.district, decision="approve", opinion=job.opinion)
            try:
                receipt = await send_message(client, application_id, message, prove)
            except Exception as err:  # the provider or the case refused (or went away): say so, go on
                result = CaseResult(application_id, "refused", str(getattr(err, "reason", err)))
            else:
                result = (
                    CaseResult(application_id, "approved")
                    if receipt.accepted
                    else CaseResult(application_id, "refused", receipt.reason)
                )
    await record(
        pool,
        AuditEvent(
            actor=job.owner,
            role=role,
            district=job.district,
            case_id=application_id,
            action="review:approve",
            outcome={"approved": "recorded"}.get(result.outcome, result.outcome),
            detail={"bulk": job.job_id},
        ),
    )
    return result


async def _run(client: Client, pool: AsyncConnectionPool, job: BulkJob, prove: PersonProver, role: str) -> None:
    started = time.monotonic()
    try:
        for index, application_id in enumerate(job.cases):
            await asyncio.sleep(max(0.0, started + index / BULK_RATE - time.monotonic()))
            job.results.append(await _decide(client, pool, job, application_id, prove, role))
    except Exception:  # a job that cannot go on says so on its page; the cases it did not reach are untouched
        structlog.get_logger().exception("console bulk approval stopped", job=job.job_id)
    finally:
        job.finished = True


@requires(["authenticated", "reviewer"])
async def start_bulk_approval(request: Request) -> Response:
    fields = await checked_form(request)
    person = signed_in(request)
    opinion = fields.get("opinion", "").strip()
    if not 0 < len(opinion) <= MAX_OPINION_LENGTH:
        raise Refusal(422, "意见有误 Bad opinion", f"opinion: 1 to {MAX_OPINION_LENGTH} characters")
    filters, sort, _ = queue_filters(request)
    held = backends(request)
    clean = filters.model_copy(update={"clean": True})
    listed = await queue_page(held.pool, person.district, "awaiting_review", clean, sort, 1, BULK_LIMIT)
    jobs = _jobs(request)
    job = BulkJob(
        job_id=secrets.token_urlsafe(9),
        owner=person.identity,
        district=person.district,
        opinion=opinion,
        cases=[row.application_id for row in listed.rows],
        started_at=dt.datetime.now(dt.UTC),
    )
    for stale in [key for key, kept in jobs.items() if kept.finished][: max(0, len(jobs) - KEPT_JOBS + 1)]:
        del jobs[stale]
    jobs[job.job_id] = job
    job_task = asyncio.create_task(_run(held.client, held.pool, job, prover(request), person.role))
    request.app.state.bulk_tasks.add(job_task)
    job_task.add_done_callback(request.app.state.bulk_tasks.discard)
    return RedirectResponse(f"/queue/bulk/{job.job_id}", status_code=303)


@requires(["authenticated", "reviewer"])
async def bulk_progress(request: Request) -> Response:
    job = _jobs(request).get(request.path_params["job_id"])
    if job is None or job.owner != signed_in(request).identity:
        raise Refusal(404, "未找到 Not found", "No such bulk approval of yours.")
    return render(request, "bulk.html", {"title": "批量通过 Bulk approval", "job": job})


routes = [
    Route("/queue/bulk", start_bulk_approval, methods=["POST"]),
    Route("/queue/bulk/{job_id}", bulk_progress, methods=["GET"]),
]
