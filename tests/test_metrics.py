"""The workers' Prometheus endpoint: the SDK's metrics and the product's, as ops scrape them."""

import httpx

from stack.temporal_server import free_port
from tests.support.people import People, review_by
from tests.support.stack import Stack, running_workers, settings_for, start_afresh, start_time_skipping
from workers.metrics import BacklogReporter, runtime_with_metrics


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_cases_verifications_department_calls_and_backlog_are_exported(
    standins, population, store_pool, slow_clock_provider
):
    # Waiting for the finished case lets the test server skip the waiting one's reminder days ahead, so its
    # proofs come from a provider whose proofs outlive that (tests/conftest.py).
    people = People(slow_clock_provider.base_url)
    port = free_port()
    runtime = runtime_with_metrics(f"127.0.0.1:{port}")
    environment = await start_time_skipping(runtime)
    await start_afresh(store_pool, standins)
    async with environment:
        stack = Stack(environment, standins, population, store_pool, people)
        async with running_workers(stack, settings_for(standins, identity_issuer=slow_clock_provider.base_url)):
            waiting = stack.application("hukou_verified", index=0)
            handle = await stack.submit(waiting)
            await stack.wait_for(handle, "awaiting_review")
            finished = stack.application("not_eligible_age", index=0)
            await stack.result(await stack.submit(finished))
            await BacklogReporter(store_pool, runtime.metric_meter).report_once()

            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            receipt = await people.send(
                handle,
                review_by(waiting.district_code, "approve", "同意"),
            )
            assert receipt.accepted, receipt
            await stack.result(handle)
    assert metric(scraped, "temporal_workflow_completed_total") is not None, "the SDK's own metrics"
    assert metric(scraped, "enrollment_case_transitions_total", status="awaiting_review") == 1
    assert metric(scraped, "enrollment_case_transitions_total", status="not_eligible") == 1
    assert metric(scraped, "enrollment_verifier_outcomes_total", verifier="hukou", outcome="matched") == 1
    assert (
        metric(
            scraped,
            "enrollment_department_calls_total",
            party="PublicSecurity",
            endpoint="hukou/v1/verify",
            outcome="ok",
        )
        == 1
    )
    platform_calls = metric(scraped, "enrollment_department_calls_total", party="Platform", outcome="ok")
    assert platform_calls is not None and platform_calls >= 1
    timed_calls = metric(scraped, "enrollment_department_call_seconds_count", party="PublicSecurity")
    assert timed_calls is not None and timed_calls >= 1
    assert metric(scraped, "enrollment_cases", status="awaiting_review") == 1
    assert metric(scraped, "enrollment_review_backlog_oldest_seconds") is not None
    assert "SC2027" not in scraped, "no case ids in metric labels"
