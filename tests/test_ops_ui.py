"""What ops do every day: the saved queries against the dev server, and the Temporal UI in a real browser."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from starter import ops_queries
from starter.cases import case_status
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.support.keys import TEST_CONVERTER
from tests.support.people import review_by
from tests.support.processes import enroll, needs_temporal_cli, product_environment, start_dev_server, start_worker
from tests.support.stack import start_afresh
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
async def ops_stack(tmp_path_factory, standins, population, database_url, store_pool, people):
    """Dev server, worker and stand-ins, with one case resting in each state ops look for."""
    await start_afresh(store_pool, standins)
    folder = tmp_path_factory.mktemp("ops")
    # The same policies, with an offline-registration deadline of seconds, so a case expires during the test.
    policies = folder / "policies"
    shutil.copytree(Path(__file__).resolve().parent.parent / "policies", policies)
    for path in policies.glob("*.json"):
        city = json.loads(path.read_text(encoding="utf-8"))
        city["defaults"]["deadlines"]["offline_registration_days"] = 0.00005
        path.write_text(json.dumps(city, ensure_ascii=False), encoding="utf-8")
    server = await start_dev_server(folder)
    environment = product_environment(
        server.address, standins.base_url, database_url, ENROLL_POLICIES_DIR=str(policies)
    )
    worker = start_worker(environment, folder / "worker.log")
    cases = {
        "awaiting_review": population.by_scenario("hukou_verified")[0],
        "expired": population.by_scenario("verification_failed_not_found")[0],
        "stuck": population.by_scenario("hukou_verified")[1],
        "unsynced": population.by_scenario("hukou_verified")[2],
    }

    def submit(application) -> None:
        path = folder / f"{application['application_id']}.json"
        path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
        assert enroll(environment, "submit", str(path)).returncode == 0

    client = await Client.connect(server.address, data_converter=TEST_CONVERTER)

    async def status(app_id: str) -> str:
        return (await case_status(client, app_id)).status

    resting = {"awaiting_review": "awaiting_review", "expired": "expired", "unsynced": "awaiting_review"}

    async def resting_statuses() -> dict[str, str]:
        return {name: await status(cases[name]["application_id"]) for name in resting}

    try:
        for name in resting:
            submit(cases[name])
        await wait_until(
            resting_statuses,
            until=lambda seen: seen == resting,
            timeout=60,
            interval=0.2,
            message=f"cases at rest: {resting}",
        )
        httpx.put(f"{standins.base_url}/admin/faults/hukou", json={"outage": True}).raise_for_status()
        submit(cases["stuck"])
        # The bureau approves while the platform is down: the result cannot be delivered yet.
        httpx.put(f"{standins.base_url}/admin/faults/platform", json={"outage": True}).raise_for_status()
        unsynced = cases["unsynced"]
        district = unsynced["district_code"]
        receipt = await people.send(
            client.get_workflow_handle(f"case-{unsynced['application_id']}"),
            review_by(district, "approve", "同意"),
        )
        assert receipt.accepted, receipt
        await wait_until(
            lambda: status(unsynced["application_id"]),
            until=lambda seen: seen == "approved",
            timeout=30,
            interval=0.2,
            message=f"{unsynced['application_id']} approved while the platform is down",
        )
        yield server, client, cases
    finally:
        httpx.delete(f"{standins.base_url}/admin/faults")
        worker.terminate()
        worker.wait(60)
        server.stop()


async def listed(client: Client, query: str) -> set[str]:
    return {execution.id async for execution in client.list_workflows(query)}


async def eventually_listed(client: Client, query: str, workflow_id: str) -> set[str]:
    """What the query lists once the visibility store has caught up with `workflow_id`."""
    return await wait_until(
        lambda: listed(client, query),
        until=lambda found: workflow_id in found,
        timeout=30,
        interval=0.2,
        message=f"{workflow_id} listed by {query}",
    )


async def test_each_saved_query_finds_its_cases_and_only_them(ops_stack):
    _, client, cases = ops_stack
    ids = {name: f"case-{application['application_id']}" for name, application in cases.items()}
    district = cases["awaiting_review"]["district_code"]

    found = await eventually_listed(client, ops_queries.awaiting_review(district), ids["awaiting_review"])
    assert ids["awaiting_review"] in found and ids["expired"] not in found
    other = "510703" if district != "510703" else "510104"
    assert ids["awaiting_review"] not in await listed(client, ops_queries.awaiting_review(other))

    found = await eventually_listed(client, ops_queries.stuck_in_verification(dt.datetime.now(dt.UTC)), ids["stuck"])
    assert found == {ids["stuck"]}
    assert ids["stuck"] not in await listed(
        client, ops_queries.stuck_in_verification(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    )

    found = await eventually_listed(client, ops_queries.result_not_yet_at_platform(), ids["unsynced"])
    assert found == {ids["unsynced"]}, "only the case whose result the platform has not accepted"

    found = await eventually_listed(client, ops_queries.expired(), ids["expired"])
    assert found == {ids["expired"]}


@needs_chromium
async def test_the_temporal_ui_lists_cases_by_status_and_shows_one_legibly(ops_stack):
    from playwright.async_api import async_playwright

    server, client, cases = ops_stack
    case_id = f"case-{cases['awaiting_review']['application_id']}"
    await eventually_listed(client, ops_queries.awaiting_review(cases["awaiting_review"]["district_code"]), case_id)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
        )
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        query = httpx.QueryParams({"query": 'CaseStatus="awaiting_review"'})
        await page.goto(f"{server.ui_url}/namespaces/default/workflows?{query}")
        link = page.locator(f'a[href*="{case_id}"]').first
        await link.wait_for(timeout=30_000)
        listing = await page.content()
        assert cases["expired"]["application_id"] not in listing, "the filter shows only cases awaiting review"
        await page.screenshot(path=str(SCREENSHOTS / "ui-awaiting-review.png"), full_page=True)

        await link.click()
        await page.get_by_text("encryption-key-id").first.wait_for(timeout=30_000)
        history = await page.inner_text("body")
        assert "EnrollmentCase" in history and "encryption-key-id" in history, "the input is shown encrypted"
        await page.get_by_role("tab", name="User Metadata").click()
        district = cases["awaiting_review"]["district_code"]
        await page.get_by_text("hukou verification").first.wait_for(timeout=30_000)

        async def everything_shown() -> str:
            # Summary, details and current details are rendered markdown, in frames of their own.
            return "\n".join([await frame.inner_text("body") for frame in page.frames])

        shown = await wait_until(
            everything_shown,
            until=lambda shown: "phase_one" in shown and "School year" in shown,
            timeout=30,
            interval=0.5,
            message="the case's current details and details panel rendered",
        )
        assert f"district {district}" in shown, "the summary names the district"
        assert "awaiting_review" in shown and "phase_one" in shown, "the current details name the step and the phase"
        assert "School year" in shown and "Intake" in shown, "the details panel describes the case"
        for person in [cases["awaiting_review"]["student"], *cases["awaiting_review"]["guardians"]]:
            assert person["name"] not in shown and person["id_number"] not in shown, (
                "the UI shows no personal data in clear"
            )
        await page.screenshot(path=str(SCREENSHOTS / "ui-case.png"), full_page=True)
        await browser.close()
