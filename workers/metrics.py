"""Prometheus metrics on the workers: the SDK's own, and the product's.

The product's instruments live where the events happen (workflow transitions
and verifier outcomes in the workflow, call latencies and platform failures in
the activities, through the SDK's metric meter, so one endpoint serves
everything). The review backlog is read from the case store on a timer.
"""

from __future__ import annotations

import asyncio

import structlog
from psycopg_pool import AsyncConnectionPool
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = structlog.get_logger()


def runtime_with_metrics(bind_address: str) -> Runtime:
    """A Temporal runtime that serves Prometheus metrics at http://<bind_address>/metrics."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind_address, counters_total_suffix=True, durations_as_seconds=True)
        )
    )


class BacklogReporter:
    """Cases by status, and the age of the oldest case waiting for a reviewer, from the case store."""

    def __init__(self, pool: AsyncConnectionPool, meter: MetricMeter, interval_seconds: float = 30.0):
        self._pool = pool
        self._interval = interval_seconds
        self._cases = meter.create_gauge("enrollment_cases", "cases in the case store by status")
        self._oldest = meter.create_gauge(
            "enrollment_review_backlog_oldest_seconds", "age of the oldest case waiting for review", "s"
        )
        self._seen: set[str] = set()

    async def report_once(self) -> None:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT status, count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at)), 0)"
                    " FROM cases GROUP BY status"
                )
            ).fetchall()
        counts = {status: (count, age) for status, count, age in rows}
        for status in self._seen | set(counts):
            self._cases.set(counts.get(status, (0, 0))[0], {"status": status})
        self._seen |= set(counts)
        self._oldest.set(int(counts.get("awaiting_review", (0, 0))[1]))

    async def run(self) -> None:
        while True:
            try:
                await self.report_once()
            except Exception as err:  # the store being down must not stop the worker
                log.warning("backlog metrics not updated", error=type(err).__name__)
            await asyncio.sleep(self._interval)
