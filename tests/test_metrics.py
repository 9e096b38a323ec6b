"""The workers' Prometheus endpoint: the SDK's metrics and the product's, as ops scrape them."""

import httpx
from temporalio.testing import WorkflowEnvironment

from enrollment.case import Review
from enrollment.search_attributes import ensure_registered
from stack.temporal_server import free_port
from tests.conftest import TEST_SERVER, Stack, empty_store, running_workers, settings_for
from tests.processes import TEST_CONVERTER
from workers.metrics import BacklogReporter, runtime_with_metrics
from workflows.enrollment_case import EnrollmentCase


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_cases_verifications_department_calls_and_backlog_are_exported(standins, population, store_pool):
    port = free_port()
    runtime = runtime_with_metrics(f"127.0.0.1:{port}")
    environment = await WorkflowEnvironment.start_time_skipping(data_converter=TEST_CONVERTER, runtime=runtime, test_server_existing_path=TEST_SERVER)
    await ensure_registered(environment.client)
    await empty_store(store_pool)
    async with environment:
        stack = Stack(environment, standins, population, store_pool)
        stack.admin.delete("/admin/faults")
        stack.admin.post("/admin/reset")
        async with running_workers(stack, settings_for(standins)):
            waiting = stack.application("hukou_verified", index=0)
            handle = await stack.submit(waiting)
            await stack.wait_for(handle, "awaiting_review")
            finished = stack.application("not_eligible_age", index=0)
            await stack.result(await stack.submit(finished))
            await BacklogReporter(store_pool, runtime.metric_meter).report_once()

            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            await handle.execute_update(EnrollmentCase.review, Review(reviewer_id="r-01", district_code=waiting.district_code, decision="approve", opinion="同意"))
            await stack.result(handle)
    assert metric(scraped, "temporal_workflow_completed_total") is not None, "the SDK's own metrics"
    assert metric(scraped, "enrollment_case_transitions_total", status="awaiting_review") == 1
    assert metric(scraped, "enrollment_case_transitions_total", status="not_eligible") == 1
    assert metric(scraped, "enrollment_verifier_outcomes_total", verifier="hukou", outcome="matched") == 1
    assert metric(scraped, "enrollment_department_calls_total", party="PublicSecurity", endpoint="hukou/v1/verify", outcome="ok") == 1
    assert metric(scraped, "enrollment_department_calls_total", party="Platform", outcome="ok") >= 1
    assert metric(scraped, "enrollment_department_call_seconds_count", party="PublicSecurity") >= 1
    assert metric(scraped, "enrollment_cases", status="awaiting_review") == 1
    assert metric(scraped, "enrollment_review_backlog_oldest_seconds") is not None
    assert "SC2027" not in scraped, "no case ids in metric labels"
