"""Figures taken while every case of a held run waits for review (`--hold-reviews`, always on with `--cluster`).

- Visibility: the reviewer's list query and the ops saved queries (starter/ops_queries.py), each timed as one
  ListWorkflowExecutions call (the first page) and one CountWorkflowExecutions call, `runs` times, one after the
  other, while the N cases are open and waiting and nothing else runs; and the product's own reviewer call
  (`starter.cases.cases_awaiting`, which decodes what it lists).
- Storage: bytes per case, the difference of two storage snapshots (bench/targets.py) divided by the cases.
- Memory: resident memory per waiting case, the difference of two samples divided by the cases.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.api.workflowservice.v1 import CountWorkflowExecutionsRequest, ListWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starter import ops_queries
from starter.cases import cases_awaiting

# The SDK's page size (Client.list_workflows): the reviewer's `enroll awaiting-review` asks for this much.
LIST_PAGE_SIZE = 1000
# The frontend allows a namespace 10 visibility calls a second by default (frontend.namespaceRPS.visibility, burst
# ratio 1) and refuses the rest with RESOURCE_EXHAUSTED; the timed calls start at most 8 a second, so none is refused.
SPACING_SECONDS = 0.125
# Calls made back to back, without retries, to see that limit: how many of them the frontend refuses.
PROBE_CALLS = 40


def timings_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "runs": len(ordered),
        "p50": round(pick(0.50) * 1000, 1),
        "p95": round(pick(0.95) * 1000, 1),
        "p99": round(pick(0.99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


async def _timed(call: Callable[[], Awaitable[object]], runs: int) -> tuple[list[float], object]:
    """Each call's duration; calls start SPACING_SECONDS apart (or as soon as the previous one ends)."""
    seconds: list[float] = []
    answer: object = None
    for _ in range(runs):
        t0 = time.perf_counter()
        answer = await call()
        seconds.append(time.perf_counter() - t0)
        await asyncio.sleep(max(0.0, SPACING_SECONDS - (time.perf_counter() - t0)))
    return seconds, answer


async def rate_limit_probe(client: Client, query: str) -> dict[str, Any]:
    """PROBE_CALLS count calls back to back without retries: how many the frontend answers and refuses."""
    request = CountWorkflowExecutionsRequest(namespace=client.namespace, query=query)
    refused = 0
    await asyncio.sleep(2)  # a full bucket
    t0 = time.perf_counter()
    for _ in range(PROBE_CALLS):
        try:
            await client.workflow_service.count_workflow_executions(request, retry=False)
        except RPCError as err:
            if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
            refused += 1
    seconds = time.perf_counter() - t0
    await asyncio.sleep(2)  # let the bucket fill again for whatever comes next
    return {"calls": PROBE_CALLS, "refused": refused, "seconds": round(seconds, 2)}


def saved_queries(district_code: str) -> dict[str, str]:
    """The reviewer's list query for one district, and every ops saved query."""
    return {
        "reviewer_awaiting_review_in_district": ops_queries.awaiting_review(district_code),
        "ops_stuck_in_verification": ops_queries.stuck_in_verification(
            dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        ),
        "ops_result_not_yet_at_platform": ops_queries.result_not_yet_at_platform(),
        "ops_expired": ops_queries.expired(),
    }


async def wait_for_visibility(client: Client, cases: int, timeout: float) -> dict[str, Any]:
    """Until visibility lists every case as awaiting review (it trails the workflows), or `timeout` seconds."""
    query = f'{ops_queries.CASES} AND CaseStatus = "awaiting_review"'
    t0 = time.monotonic()
    while True:
        listed = (await client.count_workflows(query)).count
        if listed >= cases or time.monotonic() - t0 > timeout:
            return {"listed": listed, "seconds": round(time.monotonic() - t0, 1)}
        await asyncio.sleep(0.5)


async def time_visibility(client: Client, district_code: str, runs: int) -> dict[str, Any]:
    """Each saved query's first page and count, `runs` times each; and the reviewer's product call."""
    service, namespace = client.workflow_service, client.namespace
    figures: dict[str, Any] = {"page_size": LIST_PAGE_SIZE, "queries": {}}
    for name, query in saved_queries(district_code).items():

        async def first_page(query: str = query) -> int:
            request = ListWorkflowExecutionsRequest(namespace=namespace, page_size=LIST_PAGE_SIZE, query=query)
            return len((await service.list_workflow_executions(request)).executions)

        async def count(query: str = query) -> int:
            request = CountWorkflowExecutionsRequest(namespace=namespace, query=query)
            return int((await service.count_workflow_executions(request)).count)

        list_seconds, listed = await _timed(first_page, runs)
        count_seconds, counted = await _timed(count, runs)
        figures["queries"][name] = {
            "listed_on_first_page": listed,
            "count": counted,
            "list_first_page_ms": timings_ms(list_seconds),
            "count_ms": timings_ms(count_seconds),
        }

    async def reviewer_call() -> int:
        return len(await cases_awaiting(client, "awaiting_review", district_code))

    seconds, found = await _timed(reviewer_call, runs)
    figures["reviewer_cases_awaiting_call"] = {"cases": found, "ms": timings_ms(seconds)}
    figures["back_to_back_count_calls"] = await rate_limit_probe(client, ops_queries.awaiting_review(district_code))
    return figures


def bytes_per_case(before: dict[str, Any], after: dict[str, Any], cases: int) -> dict[str, float]:
    """Growth of each database between two storage snapshots, per case; and of all of them together."""
    per_case = {name: round((after[name]["bytes"] - before[name]["bytes"]) / cases) for name in before}
    per_case["all"] = sum(per_case.values())
    return per_case


def mib(value: float) -> float:
    return round(value / 2**20, 1)
