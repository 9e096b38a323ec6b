"""The review console in a real browser (Debian's Chromium through Playwright), against the real stack.

A reviewer signs in through the identity provider's own sign-in page (the
console's redirect, the provider's form, the redirect back with the code),
sees the district's queue, opens a case, approves it with a handling opinion,
and the result reaches the platform; a reviewer of another district neither
sees nor opens the case, and signs out of the console and the provider.
Screenshots of both sign-in pages, the queue and the case page go to
docs/screenshots/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from starter.cases import case_status
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.support.identity import password
from tests.support.processes import enroll, needs_temporal_cli, wait_for_status
from tests.support.served import ServedApp
from tests.support.waiting import wait_until

pytestmark = [
    needs_temporal_cli,
    needs_chromium,
]
playwright_api = pytest.importorskip("playwright.async_api")

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
DISTRICT = "510106"
REVIEWER = "r-510106-1"
# A reviewer of another district (510104).
SECOND_REVIEWER = "r-510106-2"
SUPERVISOR = "sup-510106-1"
OUTSIDER = "r-510104-1"


@pytest.fixture(scope="module")
async def browser():
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def sign_in(
    context, console: ServedApp, identity_provider, sub: str, screenshots: bool = False, lands_on: str = "/queue"
):
    """The console's sign-in button, then the provider's own page: account, password, and back to the queue."""
    page = await context.new_page()
    await page.goto(f"{console.base_url}/")
    assert page.url.endswith("/signin")
    if screenshots:
        await page.screenshot(path=str(SCREENSHOTS / "console-signin.png"), full_page=True)
    await page.click("form.signin button[type=submit]")
    await page.wait_for_url(f"{identity_provider.base_url}/authorize?*")
    if screenshots:
        await page.screenshot(path=str(SCREENSHOTS / "console-provider-signin.png"), full_page=True)
    await page.fill("#username", sub)
    await page.fill("#password", password(sub))
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{console.base_url}{lands_on}")
    return page


async def test_a_reviewer_approves_in_the_browser_and_another_district_sees_nothing(
    environment, worker, console, identity_provider, browser, population, standins, dev_client: Client, tmp_path
):
    chosen = [
        next(a for a in population.by_scenario("hukou_verified") if a["district_code"] == DISTRICT),
        next(a for a in population.by_scenario("non_hukou_verified") if a["district_code"] == DISTRICT),
    ]
    target = chosen[0]
    application_id = target["application_id"]
    path = tmp_path / "browser.jsonl"
    path.write_text("\n".join(json.dumps(a, ensure_ascii=False) for a in chosen) + "\n", encoding="utf-8")
    submitted = enroll(environment, "submit", str(path))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    for application in chosen:
        await wait_for_status(dev_client, application["application_id"], "awaiting_review")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # The district's reviewer: queue, case, approval.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await sign_in(context, console, identity_provider, REVIEWER, screenshots=True)
    assert REVIEWER in await page.inner_text("#who") and "审核员 reviewer" in await page.inner_text("#who")
    assert DISTRICT in await page.inner_text("#who")
    assert await page.inner_text("#queue-count") == "2"
    queue_text = await page.inner_text("#queue")
    assert all(a["application_id"] in queue_text for a in chosen) and "一致 matched" in queue_text
    await page.screenshot(path=str(SCREENSHOTS / "console-queue.png"), full_page=True)

    await page.click(f"#queue a[href='/cases/{application_id}']")
    await page.wait_for_url(f"{console.base_url}/cases/{application_id}")
    assert (await page.inner_text("#case-status")).strip() == "待审核 awaiting review"
    elements = await page.inner_text("#elements")
    assert target["student"]["name"] in elements and "public_security.hukou" in elements
    assert target["student"]["id_number"] not in await page.content()
    await page.fill("#opinion", "材料齐全，同意入学")
    await page.screenshot(path=str(SCREENSHOTS / "console-case.png"), full_page=True)

    await page.click("button[value=approve]")
    await page.wait_for_selector("#outcome")
    assert "已记录 Recorded · 案件现为 case is now 审核通过 approved" in await page.inner_text("#outcome")
    assert (await page.inner_text("#case-status")).strip() == "审核通过 approved"
    assert "材料齐全，同意入学" in await page.inner_text("#reviews")
    assert f"reviewer:{REVIEWER}" in await page.inner_text("#timeline")

    async with httpx.AsyncClient(base_url=standins.base_url) as platform:

        async def platform_record() -> dict[str, Any]:
            record: dict[str, Any] = (await platform.get(f"/platform/v1/cases/{application_id}")).json()
            return record

        record = await wait_until(
            platform_record,
            until=lambda record: record["result"],
            timeout=30,
            interval=0.3,
            message=f"the result of {application_id} at the platform",
        )
    assert [r["body"]["status"] for r in record["result"]] == ["approved"]
    assert record["result"][0]["body"]["opinion"] == "材料齐全，同意入学"
    await context.close()

    # A reviewer of another district: not in the queue, and the page is "not found".
    outsider = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await sign_in(outsider, console, identity_provider, OUTSIDER)
    assert await page.inner_text("#queue-count") == "0"
    assert application_id not in await page.content()
    response = await page.goto(f"{console.base_url}/cases/{application_id}")
    assert response.status == 404
    assert "未找到 Not found" in await page.inner_text("h1")
    assert target["student"]["name"] not in await page.content()

    # Signing out goes through the provider's sign-out and back; the console's pages then ask for sign-in.
    await page.click("header form button[type=submit]")
    await page.wait_for_url(f"{console.base_url}/signin?reason=signed_out")
    assert "已退出" in await page.inner_text("#signin-reason")
    await page.goto(f"{console.base_url}/queue")
    assert page.url.startswith(f"{console.base_url}/signin?reason=")
    await outsider.close()


async def test_the_workbench_filter_search_claim_overview_and_bulk_approval_in_the_browser(
    environment, worker, console, identity_provider, browser, population, dev_client: Client, tmp_path
):
    families = [a for a in population.by_scenario("hukou_verified") if a["district_code"] == DISTRICT][1:4]
    path = tmp_path / "workbench.jsonl"
    path.write_text("\n".join(json.dumps(a, ensure_ascii=False) for a in families) + "\n", encoding="utf-8")
    assert enroll(environment, "submit", str(path)).returncode == 0
    for application in families:
        await wait_for_status(dev_client, application["application_id"], "awaiting_review")
    first = families[0]["application_id"]

    reviewer = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page = await sign_in(reviewer, console, identity_provider, REVIEWER)
    await page.select_option("select[name=hukou]", "matched")
    await page.click("#queue-filters button[type=submit]")
    await page.wait_for_url("**/queue?*hukou=matched*")
    assert int(await page.inner_text("#queue-count")) >= len(families)
    await page.screenshot(path=str(SCREENSHOTS / "console-queue-filtered.png"), full_page=True)
    await page.fill("#queue-filters input[name=q]", first)
    await page.click("#queue-filters button[type=submit]")
    await page.wait_for_url(f"**/queue?q={first}*")
    assert await page.inner_text("#queue-count") == "1"

    await page.click(f"#queue a[href='/cases/{first}']")
    await page.click("#claim button[value=claim]")
    await page.wait_for_selector("#held-by")
    assert await page.inner_text("#held-by") == REVIEWER
    await page.screenshot(path=str(SCREENSHOTS / "console-claimed.png"), full_page=True)

    # A second reviewer of the district sees who holds it, and cannot take it.
    colleague = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    other = await sign_in(colleague, console, identity_provider, SECOND_REVIEWER)
    await other.goto(f"{console.base_url}/queue?held=unassigned")
    assert first not in await other.content()
    await other.goto(f"{console.base_url}/cases/{first}")
    assert await other.inner_text("#held-by") == REVIEWER
    assert await other.locator("#claim button[value=claim]").count() == 0
    await colleague.close()

    supervisor = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    overview = await sign_in(supervisor, console, identity_provider, SUPERVISOR, lands_on="/supervisor")
    assert int(await overview.inner_text("#backlog")) >= len(families)
    assert await overview.locator("#review-age rect.bar").count() == 3
    await overview.screenshot(path=str(SCREENSHOTS / "console-supervisor.png"), full_page=True)
    await overview.goto(f"{console.base_url}/cases/{first}")
    assert await overview.inner_text("#held-by") == REVIEWER and await overview.locator("#assignee").count() == 1
    await supervisor.close()

    await page.goto(f"{console.base_url}/queue")
    waiting = int(await page.inner_text("#queue-count"))
    await page.fill("#bulk-opinion", "材料齐全，同意入学")
    await page.click("#bulk-approve button[type=submit]")
    await page.wait_for_url("**/queue/bulk/*")
    # The page refreshes itself every two seconds until the job is done (no script: the console's CSP).
    await page.wait_for_selector("#bulk-progress:has-text('已完成')", timeout=60000)
    assert int(await page.inner_text("#bulk-approved")) == waiting and await page.inner_text("#bulk-refused") == "0"
    await page.screenshot(path=str(SCREENSHOTS / "console-bulk.png"), full_page=True)
    for application in families:
        view = await case_status(dev_client, application["application_id"])
        assert view.status == "approved" and len(view.reviews) == 1
    await reviewer.close()
