"""The review console over real HTTP, against a Temporal dev server, a worker process, the stand-ins and PostgreSQL.

Reviewers and service-point staff sign in with signed tokens, see their
district's cases, and act on them; the case stays the authority and records
every action with the token id. A reviewer of another district sees nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from markupsafe import Markup
from structlog.testing import capture_logs
from temporalio.client import Client

from console.app import SESSION_COOKIE
from console.pages import TEMPLATES
from enrollment import identity, tokens
from enrollment.statuses import STATUS_LABELS
from starter.cases import case_status
from tests.support.keys import TEST_TOKEN_SECRET, signed_token
from tests.support.processes import enroll, needs_temporal_cli, wait_for_status
from tests.support.served import ServedApp
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli

DISTRICT = "510104"
OTHER_DISTRICT = "510105"


@pytest.fixture(scope="module")
async def cases(environment, worker, dev_client: Client, population, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Three cases of district 510104: two awaiting review, one awaiting offline registration."""
    chosen = {
        "approve": next(a for a in population.by_scenario("hukou_verified") if a["district_code"] == DISTRICT),
        "refuse": next(a for a in population.by_scenario("non_hukou_verified") if a["district_code"] == DISTRICT),
        "offline": next(
            a for a in population.by_scenario("verification_failed_not_found") if a["district_code"] == DISTRICT
        ),
    }
    path = tmp_path_factory.mktemp("applications") / "console.jsonl"
    path.write_text("\n".join(json.dumps(a, ensure_ascii=False) for a in chosen.values()) + "\n", encoding="utf-8")
    submitted = enroll(environment, "submit", str(path))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    await wait_for_status(dev_client, chosen["approve"]["application_id"], "awaiting_review")
    await wait_for_status(dev_client, chosen["refuse"]["application_id"], "awaiting_review")
    await wait_for_status(dev_client, chosen["offline"]["application_id"], "awaiting_offline_registration")
    return chosen


def first_group(pattern: str, text: str) -> str:
    """Group 1 of the first match of `pattern` in `text`; fails naming the pattern when there is none."""
    match = re.search(pattern, text)
    assert match is not None, f"nothing matches {pattern!r}"
    return match.group(1)


def signed_in(console: ServedApp, bearer: str) -> httpx.Client:
    browser = httpx.Client(base_url=console.base_url, timeout=30)
    form = browser.get("/signin")
    assert form.status_code == 200
    nonce = first_group(r'name="nonce" value="([^"]+)"', form.text)
    done = browser.post("/signin", data={"token": bearer, "nonce": nonce})
    assert done.status_code == 303, done.text
    return browser


def csrf_of(page: httpx.Response) -> str:
    return first_group(r'name="csrf" value="([^"]+)"', page.text)


def text_of(page: httpx.Response) -> str:
    """The page without markup, entities decoded, whitespace collapsed."""
    import html

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def test_sign_in_with_a_token_and_sign_out(console):
    assert httpx.get(f"{console.base_url}/queue").status_code == 303
    browser = httpx.Client(base_url=console.base_url, timeout=30)
    first = browser.get("/", follow_redirects=True)
    assert first.url.path == "/signin" and "身份令牌 Token" in first.text

    nonce = first_group(r'name="nonce" value="([^"]+)"', first.text)
    reviewer = signed_token("r-01", "reviewer", DISTRICT)
    done = browser.post("/signin", data={"token": reviewer, "nonce": nonce})
    assert done.status_code == 303 and done.headers["location"] == "/queue"
    cookie = next(h for h in done.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    queue = browser.get("/queue")
    shown = text_of(queue)
    assert "已登录 Signed in: r-01" in shown and "审核员 reviewer" in shown and "510104" in shown
    assert queue.headers["content-security-policy"].startswith("default-src 'none'")

    out = browser.post("/signout", data={"csrf": csrf_of(queue)})
    assert out.status_code == 303 and out.headers["location"] == "/signin?reason=signed_out"
    assert browser.get("/queue").status_code == 303

    # Refused tokens: expired, ops, altered, garbage. Each goes back to sign-in with the reason.
    for bad, reason in [
        (signed_token("r-01", "reviewer", DISTRICT, hours=-1), "token: expired"),
        (signed_token("ops-01", "ops", None), "token: the ops role has no business in the review console"),
        (reviewer[:-3] + ("AAA" if not reviewer.endswith("AAA") else "BBB"), "signature does not match"),
        ("not a token", "signature does not match"),
    ]:
        form = browser.get("/signin")
        nonce = first_group(r'name="nonce" value="([^"]+)"', form.text)
        refused = browser.post("/signin", data={"token": bad, "nonce": nonce})
        assert refused.status_code == 401 and reason in text_of(refused), reason
        assert SESSION_COOKIE not in browser.cookies

    # A sign-in form that did not come from this console.
    stranger = httpx.post(f"{console.base_url}/signin", data={"token": reviewer, "nonce": "made-up"})
    assert stranger.status_code == 403 and SESSION_COOKIE not in stranger.cookies

    # A session whose token expired meanwhile goes back to sign-in with the reason.
    stale = httpx.Client(
        base_url=console.base_url, cookies={SESSION_COOKIE: signed_token("r-01", "reviewer", DISTRICT, hours=-1)}
    )
    bounced = stale.get("/cases/SC2027-000001")
    assert (
        bounced.status_code == 303
        and bounced.headers["location"] == "/signin?reason=expired&next=%2Fcases%2FSC2027-000001"
    )
    assert "身份令牌已过期" in stale.get(bounced.headers["location"]).text


def test_the_queue_shows_the_district_cases_and_hides_them_from_other_districts(console, cases):
    reviewer = signed_in(console, signed_token("r-01", "reviewer", DISTRICT))
    queue = reviewer.get("/queue")
    assert queue.status_code == 200
    shown = text_of(queue)
    for key in ("approve", "refuse"):
        assert cases[key]["application_id"] in shown
    assert cases["offline"]["application_id"] not in shown, "not awaiting review"
    assert first_group(r'id="queue-count">(\d+)<', queue.text) == "2"
    assert "户籍 一致 matched" in shown and "phase_one" in shown and cases["approve"]["stage"] in shown
    rows = re.findall(r'href="/cases/([A-Za-z0-9-]+)"', queue.text)
    assert len(rows) == 2

    outsider = signed_in(console, signed_token("r-77", "reviewer", OTHER_DISTRICT))
    other_queue = outsider.get("/queue")
    assert other_queue.status_code == 200 and first_group(r'id="queue-count">(\d+)<', other_queue.text) == "0"
    target = cases["approve"]["application_id"]
    assert target not in other_queue.text
    hidden = outsider.get(f"/cases/{target}")
    missing = outsider.get("/cases/SC2027-999999")
    assert hidden.status_code == missing.status_code == 404
    assert text_of(hidden).replace(target, "X") == text_of(missing).replace("SC2027-999999", "X"), (
        "same answer as no case at all"
    )
    for name in (cases["approve"]["student"]["name"], *(g["name"] for g in cases["approve"]["guardians"])):
        assert name not in hidden.text
    acted = outsider.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(other_queue), "decision": "approve", "opinion": "同意"}
    )
    assert acted.status_code == 404

    staff = signed_in(console, signed_token("s-01", "staff", DISTRICT))
    assert staff.get("/queue").status_code == 403
    assert reviewer.get("/offline").status_code == 403


async def test_the_case_page_shows_the_district_reviewer_everything_but_full_identity_numbers(
    console, cases, dev_client
):
    application = cases["approve"]
    reviewer = signed_in(console, signed_token("r-01", "reviewer", DISTRICT))
    page = reviewer.get(f"/cases/{application['application_id']}")
    assert page.status_code == 200
    shown = text_of(page)
    view = await case_status(dev_client, application["application_id"])
    assert view.policy_version is not None, "a case awaiting review was accepted under a policy"
    assert "待审核 awaiting review" in shown and view.policy_version in shown and application["channel"] in shown
    assert "public_security.hukou" in shown and application["student"]["name"] in shown, "element values and sources"
    assert f"{view.auto_filled_count})" in shown
    assert all(entry.step in shown for entry in view.timeline) and "操作人 Actor" in shown
    for person in (application["student"], *application["guardians"]):
        assert person["id_number"] not in page.text
    assert 'action="/cases/' in page.text and 'value="approve"' in page.text and "办理意见" in shown


async def test_forms_without_the_session_csrf_token_are_refused(console, cases, dev_client):
    target = cases["refuse"]["application_id"]
    reviewer = signed_in(console, signed_token("r-01", "reviewer", DISTRICT))
    before = await case_status(dev_client, target)
    for csrf in (None, "0" * 32, csrf_of(signed_in(console, signed_token("r-01", "reviewer", DISTRICT)).get("/queue"))):
        data = {"decision": "approve", "opinion": "同意"} | ({"csrf": csrf} if csrf else {})
        refused = reviewer.post(f"/cases/{target}/review", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    json_body = reviewer.post(f"/cases/{target}/review", json={"decision": "approve", "opinion": "同意"})
    assert json_body.status_code == 415
    after = await case_status(dev_client, target)
    assert after.status == "awaiting_review" and len(after.timeline) == len(before.timeline), "nothing reached the case"


async def test_a_refusal_is_shown_and_recorded(console, cases, dev_client):
    target = cases["refuse"]["application_id"]
    subject = signed_token("r-02", "reviewer", DISTRICT)
    reviewer = signed_in(console, subject)
    page = reviewer.get(f"/cases/{target}")
    refused = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "approve", "opinion": "   "}
    )
    assert refused.status_code == 409
    assert "未执行 Not done — opinion: a handling opinion (办理意见) of 1 to" in text_of(refused)
    # The receipt came after the case recorded the refusal: no waiting for its timeline.
    view = await case_status(dev_client, target)
    assert view.status == "awaiting_review"
    assert (view.timeline[-1].step, view.timeline[-1].actor, view.timeline[-1].credential) == (
        "review_refused",
        "reviewer:r-02",
        tokens.verify(TEST_TOKEN_SECRET, subject).jti,
    )
    wrong = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "maybe", "opinion": "再看看"}
    )
    assert wrong.status_code == 409 and "decision: must be one of approve, reject, request_supplement" in text_of(wrong)

    # What people type is shown as text, never as markup.
    markup = "<script>alert(1)</script><b>请补充</b>房产证明"
    asked = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "request_supplement", "opinion": markup}
    )
    assert (
        asked.status_code == 200
        and "<script>alert(1)" not in asked.text
        and "&lt;script&gt;alert(1)&lt;/script&gt;" in asked.text
    )
    assert "补充材料 request supplement" in text_of(asked) and "case is now 待补充材料 awaiting supplement" in text_of(
        asked
    )


async def test_approve_reaches_the_platform_once_and_is_audited(console, cases, dev_client, standins):
    target = cases["approve"]["application_id"]
    subject = signed_token("r-01", "reviewer", DISTRICT)
    jti = tokens.verify(TEST_TOKEN_SECRET, subject).jti
    staff = signed_in(console, signed_token("s-01", "staff", DISTRICT))
    staff_page = staff.get(f"/cases/{target}")
    assert staff_page.status_code == 200 and 'value="approve"' not in staff_page.text, (
        "staff see the case, not the review form"
    )
    assert (
        staff.post(
            f"/cases/{target}/review", data={"csrf": csrf_of(staff_page), "decision": "approve", "opinion": "同意"}
        ).status_code
        == 403
    )

    reviewer = signed_in(console, subject)
    page = reviewer.get(f"/cases/{target}")
    with capture_logs() as logs:
        done = reviewer.post(
            f"/cases/{target}/review",
            data={"csrf": csrf_of(page), "decision": "approve", "opinion": "材料齐全，同意入学"},
        )
    assert done.status_code == 200, text_of(done)
    shown = text_of(done)
    assert "已记录 Recorded · 案件现为 case is now 审核通过 approved" in shown and "材料齐全，同意入学" in shown
    assert 'value="approve"' not in done.text, "no second review form"

    view = await case_status(dev_client, target)
    assert view.status == "approved", "the receipt's status is the case's"
    entry = next(e for e in view.timeline if e.step == "reviewed:approve")
    assert (entry.actor, entry.credential) == ("reviewer:r-01", jti)
    record = await wait_until(
        lambda: httpx.get(f"{standins.base_url}/platform/v1/cases/{target}").json(),
        until=lambda record: record["result"],
        timeout=30,
        interval=0.3,
        message=f"the result of {target} at the platform",
    )
    assert [r["body"]["status"] for r in record["result"]] == ["approved"]
    assert record["result"][0]["body"]["reviewer_id"] == "r-01"

    actions = [line for line in logs if line["event"] == "console action" and line.get("application_id") == target]
    expected = {
        "subject": "r-01",
        "role": "reviewer",
        "district": DISTRICT,
        "action": "review:approve",
        "outcome": "recorded",
    }
    assert (expected | {"token": jti, "status": "approved"}).items() <= actions[-1].items()
    people = [cases["approve"]["student"], *cases["approve"]["guardians"]]
    assert not any(p["name"] in str(line) or p["id_number"] in str(line) for line in logs for p in people)

    again = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "reject", "opinion": "改主意"}
    )
    assert again.status_code == 409 and "Not done" in again.text


async def test_service_point_staff_register_an_offline_case(console, cases, dev_client):
    target = cases["offline"]["application_id"]
    staff = signed_in(console, signed_token("s-01", "staff", DISTRICT))
    listing = staff.get("/offline")
    assert listing.status_code == 200
    shown = text_of(listing)
    assert target in shown and first_group(r'id="offline-count">(\d+)<', listing.text) == "1"
    assert "未查到 not found" in shown and "服务点工作人员 staff" in shown

    reviewer = signed_in(console, signed_token("r-01", "reviewer", DISTRICT))
    assert (
        reviewer.post(
            f"/cases/{target}/register", data={"csrf": csrf_of(reviewer.get("/queue")), "materials": "户口簿"}
        ).status_code
        == 403
    )
    outsider = signed_in(console, signed_token("s-77", "staff", OTHER_DISTRICT))
    assert target not in outsider.get("/offline").text
    assert (
        outsider.post(
            f"/cases/{target}/register", data={"csrf": csrf_of(outsider.get("/offline")), "materials": "户口簿"}
        ).status_code
        == 404
    )

    page = staff.get(f"/cases/{target}")
    assert 'action="/cases/' in page.text and "线下登记 Offline registration" in page.text
    half = staff.post(
        f"/cases/{target}/register", data={"csrf": csrf_of(page), "materials": "居民户口簿", "zone": "Z1", "school": ""}
    )
    assert half.status_code == 422 and "zone and school go together" in half.text
    done = staff.post(
        f"/cases/{target}/register",
        data={
            "csrf": csrf_of(page),
            "materials": "居民户口簿\n\n居住证明\n",
            "note": "现场核验原件",
            "school_choice": "",
        },
    )
    assert done.status_code == 200, text_of(done)
    view = await case_status(dev_client, target)
    assert view.status in ("awaiting_review", "awaiting_school_selection")
    assert f"已记录 Recorded · 案件现为 case is now {STATUS_LABELS[view.status]}" in text_of(done)
    assert view.materials[-2:] == ["居民户口簿", "居住证明"]
    entry = next(e for e in view.timeline if e.step == "registered_offline")
    assert entry.actor == "staff:s-01" and entry.detail == "2 materials; 现场核验原件" and entry.credential


async def test_the_applicant_result_lookup_shows_the_result_only(console, cases, dev_client):
    target = cases["approve"]
    assert (await case_status(dev_client, target["application_id"])).status == "approved"
    page = await wait_until(
        lambda: httpx.get(f"{console.base_url}/result/{target['application_id']}"),
        until=lambda page: "审核通过 approved" in text_of(page),
        timeout=30,
        interval=0.3,
        message=f"the result page of {target['application_id']} showing the approval",
        describe=text_of,
    )
    shown = text_of(page)
    assert (
        page.status_code == 200
        and "同意 approve" in shown
        and "材料齐全，同意入学" in shown
        and "未登录 Not signed in" in shown
    )
    for person in (target["student"], *target["guardians"]):
        assert person["name"] not in page.text and person["id_number"] not in page.text
    assert "r-01" not in page.text, "the reviewer's account is not the applicant's business"

    pending = httpx.get(f"{console.base_url}/result/{cases['refuse']['application_id']}")
    assert pending.status_code == 200 and "暂无办理结果。No result yet." in pending.text
    assert httpx.get(f"{console.base_url}/result/<script>").status_code == 404
    looked_up = httpx.get(f"{console.base_url}/result", params={"application_id": target["application_id"]})
    assert looked_up.status_code == 303 and looked_up.headers["location"] == f"/result/{target['application_id']}"


def test_no_page_shows_a_full_identity_number_whatever_a_template_is_given(console, population):
    number = population.by_scenario("hukou_verified")[0]["student"]["id_number"]
    # An applicant types an identity number into the result lookup: the page echoes it, masked.
    typed = httpx.get(f"{console.base_url}/result/{number}")
    assert number not in typed.text and identity.mask(number) in typed.text
    # Any value a template renders, text or markup a view built, passes the environment's finalize hook.
    text = TEMPLATES.get_template("error.html").render(user=None, title="t", heading="h", message=f"身份证号 {number}")
    assert number not in text and f"身份证号 {identity.mask(number)}" in text
    markup = TEMPLATES.get_template("error.html").render(
        user=None, title="t", heading=Markup(f"<b>{number}</b>"), message="m"
    )
    assert number not in markup and f"<b>{identity.mask(number)}</b>" in markup, "markup stays markup, masked"
