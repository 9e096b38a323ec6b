"""The review console over real HTTP, against a Temporal dev server, a worker process, the stand-ins, the
identity provider stand-in and PostgreSQL.

Reviewers and service-point staff sign in at the identity provider (OpenID Connect code flow with
PKCE), see their district's cases, and act on them with proofs the provider signs for each message;
the case stays the authority and records every action with the proof's id. A reviewer of another
district sees nothing. Sessions live in PostgreSQL, end on sign-out, expiry or the provider's word,
and every view, action, sign-in and refusal is in the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from markupsafe import Markup
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs
from temporalio.client import Client

from console.app import SESSION_COOKIE, LookupLimits, SessionPolicy
from console.pages import TEMPLATES
from console.sessions import TokenSeal, id_hash
from console.signin import SIGNIN_COOKIE
from enrollment import identity
from enrollment.oidc import IdentityProvider
from enrollment.statuses import STATUS_LABELS
from standins.identity_provider import RunningIdentityProvider
from starter.cases import case_status
from store import audit, console_sessions
from store import cases as store
from store.cases import CaseSnapshot, save_progress
from tests.support.identity import CLIENT_SECRETS, CONSOLE
from tests.support.identity_console import (
    PRODUCT_LOOKUP,
    provider_form,
    served_console,
    set_disabled,
    signed_in,
    submit_provider_form,
)
from tests.support.processes import enroll, needs_temporal_cli, wait_for_status
from tests.support.served import ServedApp
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli

DISTRICT = "510104"
OTHER_DISTRICT = "510105"
REVIEWER = "r-510104-1"
SECOND_REVIEWER = "r-510104-2"
STAFF = "s-510104-1"
OUTSIDER = "r-510105-1"


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


@pytest.fixture
def another_console(dev_server, standins, database_url, identity_provider):
    """A console of the test's own, with other session or lookup settings than the module's."""

    @contextlib.asynccontextmanager
    async def served(**options: Any) -> AsyncIterator[ServedApp]:
        platform = f"{standins.base_url}/platform"
        async with served_console(
            dev_server.address, platform, database_url, identity_provider.base_url, **options
        ) as console:
            yield console

    return served


def first_group(pattern: str, text: str) -> str:
    """Group 1 of the first match of `pattern` in `text`; fails naming the pattern when there is none."""
    match = re.search(pattern, text)
    assert match is not None, f"nothing matches {pattern!r}"
    return match.group(1)


def csrf_of(page: httpx.Response) -> str:
    return first_group(r'name="csrf" value="([^"]+)"', page.text)


def text_of(page: httpx.Response) -> str:
    """The page without markup, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def set_cookie(response: httpx.Response, name: str) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}="))


async def trail(pool: AsyncConnectionPool, actor: str, action: str) -> list[audit.RecordedAuditEvent]:
    return [event for event in await audit.events_for_actor(pool, actor) if event.action == action]


async def test_sign_in_through_the_provider_and_sign_out(console, identity_provider, store_pool):
    bounced = httpx.get(f"{console.base_url}/queue")
    assert bounced.status_code == 303 and bounced.headers["location"] == "/signin?reason=required&next=%2Fqueue"
    browser = httpx.Client(base_url=console.base_url, timeout=30)
    first = browser.get("/", follow_redirects=True)
    assert first.url.path == "/signin" and "使用统一身份认证登录" in first.text

    # The button leads to the provider's authorization endpoint: code flow, PKCE S256, state and nonce.
    started = browser.post("/signin", data={"next": "/queue"})
    assert started.status_code == 303
    authorize = urlsplit(started.headers["location"])
    query = {name: values[0] for name, values in parse_qs(authorize.query).items()}
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{identity_provider.base_url}/authorize"
    assert query["client_id"] == CONSOLE and query["response_type"] == "code" and "openid" in query["scope"]
    assert query["code_challenge_method"] == "S256" and query["state"] and query["nonce"]
    assert query["redirect_uri"] == f"{console.base_url}/auth/callback"
    pending = set_cookie(started, SIGNIN_COOKIE)
    assert "HttpOnly" in pending and "SameSite=lax" in pending and "Path=/auth" in pending

    form = browser.get(started.headers["location"])
    done = submit_provider_form(browser, form, REVIEWER)
    assert done.status_code == 303 and done.headers["location"] == "/queue"
    cookie = set_cookie(done, SESSION_COOKIE)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    session_id = browser.cookies[SESSION_COOKIE]
    assert "." not in session_id and len(session_id) >= 40, "a random id, not a token"

    queue = browser.get("/queue")
    shown = text_of(queue)
    assert f"已登录 Signed in: {REVIEWER}" in shown and "审核员 reviewer" in shown and DISTRICT in shown
    policy = queue.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'") and f"form-action 'self' {identity_provider.base_url};" in policy

    # The session is a row found by the id's hash, holding the provider's tokens sealed with a key only the
    # cookie gives: whoever reads the table holds nothing the provider would take.
    row = await console_sessions.find(store_pool, id_hash(session_id))
    assert row is not None and (row.subject, row.role, row.district) == (REVIEWER, "reviewer", DISTRICT)
    assert row.access_token and row.refresh_token and row.id_token and row.ended_at is None
    provider = IdentityProvider(identity_provider.base_url)
    assert not await provider.introspect(row.access_token, CONSOLE, CLIENT_SECRETS[CONSOLE])
    assert TokenSeal("A" * 43).open(row) is None, "another session id opens nothing"
    opened = TokenSeal(session_id).open(row)
    assert opened is not None and opened.access_token and opened.access_token.count(".") == 2
    access_token = opened.access_token
    assert await provider.introspect(access_token, CONSOLE, CLIENT_SECRETS[CONSOLE])
    signed = (await trail(store_pool, REVIEWER, "sign_in"))[-1]
    assert (signed.outcome, signed.role, signed.district, signed.source) == ("ok", "reviewer", DISTRICT, "127.0.0.1")

    # Signing out ends the row, revokes the tokens and signs out of the provider too.
    out = browser.post("/signout", data={"csrf": csrf_of(queue)})
    assert out.status_code == 303 and out.headers["location"].startswith(f"{identity_provider.base_url}/signout?")
    assert "id_token_hint=" in out.headers["location"]
    back = browser.get(out.headers["location"])
    assert back.status_code == 303 and back.headers["location"].startswith(f"{console.base_url}/?state=")
    assert browser.get(back.headers["location"]).headers["location"] == "/signin?reason=signed_out"
    assert SESSION_COOKIE not in browser.cookies

    # The old cookie is refused afterwards: the session ended here and at the provider.
    replayed = httpx.get(f"{console.base_url}/queue", cookies={SESSION_COOKIE: session_id})
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/signin?reason=signed_out")
    ended = await console_sessions.find(store_pool, id_hash(session_id))
    assert ended is not None and ended.end_reason == "signed_out" and ended.access_token is None
    assert not await provider.introspect(access_token, CONSOLE, CLIENT_SECRETS[CONSOLE])
    await provider.aclose()
    assert (await trail(store_pool, REVIEWER, "sign_out"))[-1].outcome == "ok"

    # A callback this browser did not start (a code pushed on it from elsewhere) signs nobody in.
    stranger = httpx.get(f"{console.base_url}/auth/callback", params={"code": "made-up", "state": "made-up"})
    assert stranger.status_code == 400 and SESSION_COOKIE not in stranger.cookies
    assert "no sign-in of this browser is under way" in text_of(stranger)
    # A forged cookie is nobody.
    forged = httpx.get(f"{console.base_url}/queue", cookies={SESSION_COOKIE: "A" * 43})
    assert forged.status_code == 303 and forged.headers["location"].startswith("/signin?reason=required")


async def test_only_reviewers_and_staff_may_sign_in(console, store_pool):
    for sub in ("ops-1", "audit-1"):
        browser = httpx.Client(base_url=console.base_url, timeout=30)
        refused = submit_provider_form(browser, provider_form(browser, console), sub)
        assert refused.status_code == 403 and "may not do this" in text_of(refused), text_of(refused)
        assert SESSION_COOKIE not in browser.cookies and browser.get("/queue").status_code == 303
        event = (await trail(store_pool, sub, "sign_in"))[-1]
        assert event.outcome == "refused" and "may not do this" in str(event.detail["reason"])


async def test_the_queue_shows_the_district_cases_and_hides_them_from_other_districts(console, cases, store_pool):
    reviewer = signed_in(console, REVIEWER)
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

    outsider = signed_in(console, OUTSIDER)
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
    tried = [e for e in await audit.events_for_case(store_pool, target) if e.actor == OUTSIDER]
    assert [(e.action, e.outcome, e.district) for e in tried] == [
        ("view", "not_found", OTHER_DISTRICT),
        ("review:approve", "not_found", OTHER_DISTRICT),
    ]

    staff = signed_in(console, STAFF)
    assert staff.get("/queue").status_code == 403
    assert reviewer.get("/offline").status_code == 403
    assert (await trail(store_pool, STAFF, "queue"))[-1].outcome == "forbidden"


async def test_the_case_page_shows_the_district_reviewer_everything_but_full_identity_numbers(
    console, cases, dev_client, store_pool
):
    application = cases["approve"]
    reviewer = signed_in(console, REVIEWER)
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
    # Who saw this child's data: the view is in the audit trail, with where it was seen from.
    seen = (await audit.events_for_case(store_pool, application["application_id"]))[-1]
    assert (seen.actor, seen.role, seen.district, seen.action, seen.outcome, seen.source) == (
        REVIEWER,
        "reviewer",
        DISTRICT,
        "view",
        "ok",
        "127.0.0.1",
    )


async def test_forms_without_the_session_csrf_token_are_refused(console, cases, dev_client, store_pool):
    target = cases["refuse"]["application_id"]
    reviewer = signed_in(console, REVIEWER)
    before = await case_status(dev_client, target)
    for csrf in (None, "0" * 32, csrf_of(signed_in(console, REVIEWER).get("/queue"))):
        data = {"decision": "approve", "opinion": "同意"} | ({"csrf": csrf} if csrf else {})
        refused = reviewer.post(f"/cases/{target}/review", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    json_body = reviewer.post(f"/cases/{target}/review", json={"decision": "approve", "opinion": "同意"})
    assert json_body.status_code == 415
    after = await case_status(dev_client, target)
    assert after.status == "awaiting_review" and len(after.timeline) == len(before.timeline), "nothing reached the case"
    refusals = [e for e in await audit.events_for_case(store_pool, target) if e.outcome == "csrf_refused"]
    assert len(refusals) == 3 and {e.actor for e in refusals} == {REVIEWER}


async def test_a_refusal_is_shown_and_recorded_with_the_proof(console, cases, dev_client, store_pool):
    target = cases["refuse"]["application_id"]
    reviewer = signed_in(console, SECOND_REVIEWER)
    page = reviewer.get(f"/cases/{target}")
    refused = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "approve", "opinion": "   "}
    )
    assert refused.status_code == 409
    assert "未执行 Not done — opinion: a handling opinion (办理意见) of 1 to" in text_of(refused)
    # The receipt came after the case recorded the refusal: no waiting for its timeline.
    view = await case_status(dev_client, target)
    assert view.status == "awaiting_review"
    last = view.timeline[-1]
    assert (last.step, last.actor) == ("review_refused", f"reviewer:{SECOND_REVIEWER}")
    assert last.credential, "the id of the proof the provider signed for this message"
    wrong = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "maybe", "opinion": "再看看"}
    )
    assert wrong.status_code == 409 and "decision: must be one of approve, reject, request_supplement" in text_of(wrong)
    recorded = [e for e in await audit.events_for_case(store_pool, target) if e.actor == SECOND_REVIEWER]
    refusals = [(e.action, e.outcome) for e in recorded][-2:]
    assert refusals == [("review:approve", "refused"), ("review:invalid", "refused")]

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


async def test_approve_reaches_the_platform_once_and_is_audited(console, cases, dev_client, standins, store_pool):
    target = cases["approve"]["application_id"]
    staff = signed_in(console, STAFF)
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

    reviewer = signed_in(console, REVIEWER)
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
    assert entry.actor == f"reviewer:{REVIEWER}" and entry.credential
    record = await wait_until(
        lambda: httpx.get(f"{standins.base_url}/platform/v1/cases/{target}").json(),
        until=lambda record: record["result"],
        timeout=30,
        interval=0.3,
        message=f"the result of {target} at the platform",
    )
    assert [r["body"]["status"] for r in record["result"]] == ["approved"]
    assert record["result"][0]["body"]["reviewer_id"] == REVIEWER

    expected = {"actor": REVIEWER, "role": "reviewer", "district": DISTRICT, "action": "review:approve"}
    approved = (await audit.events_for_case(store_pool, target))[-1]
    assert expected.items() <= approved.model_dump().items()
    assert (approved.outcome, approved.detail) == ("recorded", {"status": "approved"})
    actions = [line for line in logs if line["event"] == "console action" and line.get("application_id") == target]
    assert any(line["action"] == "review:approve" and line["outcome"] == "recorded" for line in actions)
    people = [cases["approve"]["student"], *cases["approve"]["guardians"]]
    assert not any(p["name"] in str(line) or p["id_number"] in str(line) for line in logs for p in people)

    again = reviewer.post(
        f"/cases/{target}/review", data={"csrf": csrf_of(page), "decision": "reject", "opinion": "改主意"}
    )
    assert again.status_code == 409 and "Not done" in again.text


async def test_service_point_staff_register_an_offline_case(console, cases, dev_client):
    target = cases["offline"]["application_id"]
    staff = signed_in(console, STAFF)
    listing = staff.get("/offline")
    assert listing.status_code == 200
    shown = text_of(listing)
    assert target in shown and first_group(r'id="offline-count">(\d+)<', listing.text) == "1"
    assert "未查到 not found" in shown and "服务点工作人员 staff" in shown
    # The same paging, filters and search as the review queue, from the case store.
    assert queue_ids(staff.get(f"/offline?q={target}")) == [target]
    assert target in queue_ids(staff.get("/offline?sort=newest&days=0"))
    assert queue_ids(staff.get("/offline?hukou=matched&residence_permit=matched")) == []
    assert staff.get("/offline?stage=college").status_code == 400
    assert 'id="bulk-approve"' not in listing.text, "staff register; they do not bulk-approve"

    reviewer = signed_in(console, REVIEWER)
    assert (
        reviewer.post(
            f"/cases/{target}/register", data={"csrf": csrf_of(reviewer.get("/queue")), "materials": "户口簿"}
        ).status_code
        == 403
    )
    outsider = signed_in(console, "s-510105-1")
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
    assert entry.actor == f"staff:{STAFF}" and entry.detail == "2 materials; 现场核验原件" and entry.credential


def look_up(console: ServedApp, application_id: str, id_number: str) -> httpx.Response:
    """The applicant's lookup as a browser makes it: the form (with its CSRF cookie), then the POST."""
    browser = httpx.Client(base_url=console.base_url, timeout=30)
    form = browser.get("/result")
    return browser.post(
        "/result", data={"csrf": csrf_of(form), "application_id": application_id, "id_number": id_number}
    )


async def test_the_result_lookup_needs_the_student_identity_number_and_tells_nothing_else(
    console, cases, dev_client, store_pool, population
):
    target = cases["approve"]
    application_id, number = target["application_id"], target["student"]["id_number"]
    assert (await case_status(dev_client, application_id)).status == "approved"
    with capture_logs() as logs:
        page = look_up(console, application_id, number)  # the platform has it: the approval test waited for that
        other = next(a for a in population.by_scenario("hukou_verified") if a["application_id"] != application_id)
        wrong_number = look_up(console, application_id, other["student"]["id_number"])
        guardian_number = look_up(console, application_id, target["guardians"][0]["id_number"])
        wrong_id = look_up(console, "SC2027-999999", number)
    shown = text_of(page)
    assert page.status_code == 200 and "审核通过 approved" in shown and "同意 approve" in shown
    assert "材料齐全，同意入学" in shown and "未登录 Not signed in" in shown
    for person in (target["student"], *target["guardians"]):
        assert person["name"] not in page.text and person["id_number"] not in page.text
    assert REVIEWER not in page.text, "the reviewer's account is not the applicant's business"

    # No enumeration: a wrong number and a wrong id get the very same answer.
    assert wrong_number.status_code == guardian_number.status_code == wrong_id.status_code == 404
    assert text_of(wrong_number) == text_of(guardian_number)
    assert text_of(wrong_number).replace(application_id, "X") == text_of(wrong_id).replace("SC2027-999999", "X")
    assert "未找到与申请编号和身份证号码相符的申请" in text_of(wrong_id)
    for answer in (page, wrong_number, wrong_id):
        assert number not in answer.text and identity.mask(number) not in answer.text, "the number is never shown"
    assert not any(number in str(line) for line in logs), "nor logged"
    lookups = [e for e in await audit.events_for_case(store_pool, application_id) if e.action == "result_lookup"]
    assert [(e.actor, e.role, e.outcome) for e in lookups][-3:] == [
        ("anonymous", "public", "found"),
        ("anonymous", "public", "not_found"),
        ("anonymous", "public", "not_found"),
    ]
    assert not any(number in e.model_dump_json() for e in lookups)

    pending = cases["refuse"]
    waiting = look_up(console, pending["application_id"], pending["student"]["id_number"])
    assert waiting.status_code == 200 and "暂无办理结果。No result yet." in waiting.text
    assert look_up(console, application_id, "110101200001011234").status_code == 422, "not an identity number"
    # The form is a POST with a CSRF cookie: a form from elsewhere, or an id in the URL, gets nothing.
    forged = httpx.post(
        f"{console.base_url}/result", data={"csrf": "x", "application_id": application_id, "id_number": number}
    )
    assert forged.status_code == 403 and "审核通过" not in forged.text
    assert httpx.get(f"{console.base_url}/result/{application_id}").status_code == 404
    form = httpx.get(f"{console.base_url}/result")
    assert 'method="post"' in form.text and "SameSite=strict" in set_cookie(form, "enroll_console_lookup")


async def test_result_lookups_are_rate_limited_per_address(another_console, cases):
    target = cases["refuse"]
    limits = LookupLimits(address_burst=2, address_per_minute=0.5)
    async with another_console(lookup_limits=limits) as console:
        answers = [look_up(console, target["application_id"], target["student"]["id_number"]) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1].headers["retry-after"]) >= 60 and "查询过于频繁" in answers[-1].text


async def test_a_person_disabled_at_the_provider_is_signed_out_within_the_recheck(
    another_console, identity_provider: RunningIdentityProvider, store_pool
):
    # The minute, shortened to a second. Requests come more often than that: each must not postpone the check.
    async with another_console(session_policy=SessionPolicy(recheck=dt.timedelta(seconds=1))) as console:
        reviewer = signed_in(console, SECOND_REVIEWER)
        assert reviewer.get("/queue").status_code == 200
        set_disabled(identity_provider, SECOND_REVIEWER, True)
        disabled_at = time.monotonic()
        try:
            answers: list[httpx.Response] = []
            while time.monotonic() - disabled_at < 3 and (not answers or answers[-1].status_code == 200):
                answers.append(reviewer.get("/queue"))
                await asyncio.sleep(0.3)
            signed_out_after = time.monotonic() - disabled_at
        finally:
            set_disabled(identity_provider, SECOND_REVIEWER, False)
        bounced = answers[-1]
        told = reviewer.get(bounced.headers["location"])
    assert bounced.status_code == 303 and bounced.headers["location"].startswith("/signin?reason=ended")
    assert signed_out_after < 2, "within the re-check interval, and a request's time"
    assert "账号已停用" in told.text
    ended = (await trail(store_pool, SECOND_REVIEWER, "session_end"))[-1]
    assert ended.outcome == "ended" and "not active" in str(ended.detail["reason"])


async def test_sessions_end_when_idle_and_at_their_lifetime(another_console, store_pool):
    policy = SessionPolicy(lifetime=dt.timedelta(seconds=4), idle=dt.timedelta(seconds=2))
    async with another_console(session_policy=policy) as console:
        idle = signed_in(console, REVIEWER)
        assert idle.get("/queue").status_code == 200
        await asyncio.sleep(2.2)
        idle_answer = idle.get("/queue")
        busy = signed_in(console, STAFF)
        busy_answers = []
        for _ in range(6):  # used every 0.8 s: never idle, but past its lifetime after 4 s
            busy_answers.append(busy.get("/offline"))
            await asyncio.sleep(0.8)
    assert idle_answer.status_code == 303 and idle_answer.headers["location"].startswith("/signin?reason=expired")
    assert busy_answers[0].status_code == 200 and busy_answers[-1].status_code == 303
    assert busy_answers[-1].headers["location"].startswith("/signin?reason=expired")
    assert (await trail(store_pool, REVIEWER, "session_end"))[-1].outcome == "idle"
    assert (await trail(store_pool, STAFF, "session_end"))[-1].outcome == "expired", "its lifetime, not idleness"


async def test_the_access_token_is_refreshed_before_it_expires(another_console, store_pool):
    # A margin longer than the access token lives: every request refreshes, as one near expiry would.
    async with another_console(session_policy=SessionPolicy(refresh_margin=dt.timedelta(minutes=11))) as console:
        reviewer = signed_in(console, REVIEWER)
        seal = TokenSeal(reviewer.cookies[SESSION_COOKIE])
        rows = []
        for _ in range(3):
            rows.append(await console_sessions.find(store_pool, seal.row))
            assert reviewer.get("/queue").status_code == 200
    first, second, third = (seal.open(row) if row else None for row in rows)
    assert first and second and third and third.ended_at is None
    assert len({first.access_token, second.access_token, third.access_token}) == 3
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3, "rotated at each use"


async def test_a_session_whose_tokens_are_in_clear_is_ended_not_used(another_console, store_pool, identity_provider):
    """A row written before tokens were sealed, or by anyone who can write the table: its tokens are not taken,
    and the one found in clear is revoked, since the table showed it."""
    async with another_console() as console:
        reviewer = signed_in(console, REVIEWER)
        seal = TokenSeal(reviewer.cookies[SESSION_COOKIE])
        row = await console_sessions.find(store_pool, seal.row)
        opened = seal.open(row) if row else None
        assert opened is not None and opened.access_token
        async with store_pool.connection() as conn:
            await conn.execute(
                "UPDATE console_sessions SET access_token = %s WHERE id_hash = %s", (opened.access_token, seal.row)
            )
        answer = reviewer.get("/queue")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?reason=ended")
    ended = await console_sessions.find(store_pool, seal.row)
    assert ended is not None and ended.end_reason == "ended" and ended.access_token is None
    provider = IdentityProvider(identity_provider.base_url)
    assert not await provider.introspect(opened.access_token, CONSOLE, CLIENT_SECRETS[CONSOLE])
    await provider.aclose()


async def test_signing_in_again_replaces_the_session(another_console, store_pool):
    # Re-checked at every request: the new session must stay active at the provider, whose own
    # session (the browser's, reused without the form) the old and the new share.
    async with another_console(session_policy=SessionPolicy(recheck=dt.timedelta(0))) as console:
        reviewer = signed_in(console, REVIEWER)
        old = reviewer.cookies[SESSION_COOKIE]
        started = reviewer.post("/signin", data={"next": ""})
        reused = reviewer.get(started.headers["location"])
        assert reused.status_code == 303 and "/auth/callback?" in reused.headers["location"], "no form the second time"
        done = reviewer.get(reused.headers["location"])
        assert done.status_code == 303 and reviewer.cookies[SESSION_COOKIE] != old
        assert reviewer.get("/queue").status_code == 200
        stale = httpx.get(f"{console.base_url}/queue", cookies={SESSION_COOKIE: old})
    assert stale.status_code == 303 and stale.headers["location"].startswith("/signin?reason=ended")
    replaced = await console_sessions.find(store_pool, id_hash(old))
    assert replaced is not None and replaced.end_reason == "replaced"


async def test_an_unreachable_provider_is_said_so(dev_server, standins, database_url):
    platform = f"{standins.base_url}/platform"
    async with served_console(dev_server.address, platform, database_url, "http://127.0.0.1:9") as console:
        answer = httpx.post(f"{console.base_url}/signin", data={"next": ""})
    assert answer.status_code == 503 and "统一身份认证暂时无法访问" in answer.text


def test_no_page_shows_a_full_identity_number_whatever_a_template_is_given(console, population):
    number = population.by_scenario("hukou_verified")[0]["student"]["id_number"]
    # An applicant types an identity number into the application id box: the page echoes it, masked.
    typed = look_up(console, number, number)
    assert typed.status_code == 422 and number not in typed.text and identity.mask(number) in typed.text
    # Any value a template renders, text or markup a view built, passes the environment's finalize hook.
    text = TEMPLATES.get_template("error.html").render(user=None, title="t", heading="h", message=f"身份证号 {number}")
    assert number not in text and f"身份证号 {identity.mask(number)}" in text
    markup = TEMPLATES.get_template("error.html").render(
        user=None, title="t", heading=Markup(f"<b>{number}</b>"), message="m"
    )
    assert number not in markup and f"<b>{identity.mask(number)}</b>" in markup, "markup stays markup, masked"


async def submitted_to_review(
    environment: dict[str, str], dev_client: Client, applications: list[dict[str, Any]], folder: Any
) -> None:
    """Hand the applications in with `enroll submit` and wait until each awaits review."""
    path = folder / "applications.jsonl"
    path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in applications), encoding="utf-8")
    submitted = enroll(environment, "submit", str(path))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    for application in applications:
        await wait_for_status(dev_client, application["application_id"], "awaiting_review")


def queue_ids(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return re.findall(r'href="/cases/([A-Za-z0-9-]+)"', page.text)


def queue_count(page: httpx.Response) -> int:
    return int(first_group(r'id="queue-count">(\d+)<', page.text))


async def test_the_queue_pages_filters_and_searches_a_districts_cases_from_the_store(console, cases, store_pool):
    """120 service-point cases written into the store as their cases would: one indexed query a page."""
    began = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    guardians = {}
    for i in range(120):
        guardians[i] = identity.make(DISTRICT, dt.date(1985, 1, 1) + dt.timedelta(days=i), 100 + i, "female")
        snapshot = CaseSnapshot(
            application_id=f"SC2027-Q{i:05d}",
            workflow_id=f"case-SC2027-Q{i:05d}",
            status="awaiting_review",
            progress=1,
            routing_phase="phase_one",
            channel="service_point",
            stage="junior" if i % 3 == 0 else "primary",
            registration_type="hukou",
            district_code=DISTRICT,
            school_year=2027,
            policy_version="510100@2027.2",
            auto_filled_count=9,
            platform_synced=False,
            student_id_number=identity.make(DISTRICT, dt.date(2020, 1, 1) + dt.timedelta(days=i), 100 + i, "male"),
            guardian_id_numbers=[guardians[i]],
            submitted_at=began,
            first_seq=0,
            events=[],
            status_since=began + dt.timedelta(hours=i),
            verification_outcomes={"hukou": "mismatch" if i % 10 == 0 else "matched"},
            materials_count=i % 4,
            reminded=i % 5 == 0,
            escalated=i % 20 == 0,
        )
        await save_progress(store_pool, snapshot, PRODUCT_LOOKUP)
    reviewer = signed_in(console, REVIEWER)
    ours = "/queue?channel=service_point"

    first = reviewer.get(ours)
    assert queue_count(first) == 120 and len(queue_ids(first)) == 50
    assert queue_ids(first)[:2] == ["SC2027-Q00000", "SC2027-Q00001"], "oldest first"
    assert "数据截至 as of" in text_of(first) and 'rel="next"' in first.text
    last = reviewer.get(f"{ours}&page=3")
    assert queue_ids(last) == [f"SC2027-Q{i:05d}" for i in range(100, 120)] and 'rel="next"' not in last.text
    assert queue_ids(reviewer.get(f"{ours}&sort=newest"))[0] == "SC2027-Q00119"

    assert queue_count(reviewer.get(f"{ours}&hukou=mismatch")) == 12
    assert queue_count(reviewer.get(f"{ours}&stage=junior")) == 40
    assert queue_count(reviewer.get(f"{ours}&reminded=yes")) == 24
    assert queue_count(reviewer.get(f"{ours}&escalated=yes&stage=junior")) == 2
    assert queue_count(reviewer.get(f"{ours}&days=5.5")) == 13, "waiting at least 5.5 days: the first 13"
    escalated = reviewer.get(f"{ours}&escalated=yes")
    assert escalated.text.count('class="escalated"') == 6

    assert queue_ids(reviewer.get("/queue?q=SC2027-Q00042")) == ["SC2027-Q00042"]
    assert queue_ids(reviewer.get(f"/queue?q={guardians[7]}")) == ["SC2027-Q00007"], "by the guardian's number"
    outsider = signed_in(console, OUTSIDER)
    assert queue_ids(outsider.get(f"/queue?q={guardians[7]}")) == [], "never another district's case"
    [searched] = [e for e in await audit.events_for_case(store_pool, "SC2027-Q00007") if e.action == "queue_search"]
    assert (searched.actor, searched.detail) == (REVIEWER, {"by": "identity number", "found": 1})
    assert guardians[7] not in json.dumps(
        [e.model_dump(mode="json") for e in await trail(store_pool, OUTSIDER, "queue_search")]
    )

    for bad in ("q=not-a-thing!", "stage=college", "hukou=maybe", "days=-7.25", "page=two", "sort=random"):
        refused = reviewer.get(f"/queue?{bad}")
        name, value = bad.split("=")
        assert refused.status_code == 400 and f"{name}:" in refused.text and value not in text_of(refused), bad


async def test_a_bulk_approval_decides_each_clean_case_once_and_skips_what_changed(
    console, environment, worker, dev_client, population, store_pool, tmp_path
):
    district, reviewer_id = "510106", "r-510106-1"
    fresh = [
        {**a, "channel": "enrollment_system"}
        for a in population.by_scenario("hukou_verified")
        if a["district_code"] == district
    ][:4]
    await submitted_to_review(environment, dev_client, fresh, tmp_path)
    reviewer = signed_in(console, reviewer_id)
    # One is decided on its own page; the store is then made to show it waiting still (a stale row).
    decided = fresh[3]["application_id"]
    page = reviewer.get(f"/cases/{decided}")
    approval = {"csrf": csrf_of(page), "decision": "approve", "opinion": "同意"}
    assert reviewer.post(f"/cases/{decided}/review", data=approval).status_code == 200
    record = await store.case_record(store_pool, decided)
    assert record is not None
    await save_progress(
        store_pool,
        CaseSnapshot.model_validate(
            {
                **record["case"],
                "status": "awaiting_review",
                "progress": 999,
                "student_id_number": identity.make(district, dt.date(2020, 2, 2), 7, "male"),
                "guardian_id_numbers": [],
                "first_seq": 999,
                "events": [],
                "verification_outcomes": {"hukou": "matched"},
            }
        ),
        PRODUCT_LOOKUP,
    )

    queue = reviewer.get("/queue?channel=enrollment_system")
    assert queue_count(queue) == 4
    empty = reviewer.post("/queue/bulk?channel=enrollment_system", data={"csrf": csrf_of(queue), "opinion": ""})
    assert empty.status_code == 422
    started = reviewer.post(
        "/queue/bulk?channel=enrollment_system",
        data={"csrf": csrf_of(queue), "opinion": "材料齐全，同意入学"},
        follow_redirects=False,
    )
    assert started.status_code == 303
    job_page = started.headers["location"]
    done = await wait_until(
        lambda: asyncio.to_thread(reviewer.get, job_page),
        until=lambda page: "已完成 Finished" in page.text,
        timeout=60,
        interval=0.5,
        message="the bulk approval finished",
    )
    rows = re.findall(r'<tr class="r-(\w+)"><td><a class="mono" href="/cases/([^"]+)"', done.text)
    results = {app_id: outcome for outcome, app_id in rows}
    assert results == {a["application_id"]: "approved" for a in fresh[:3]} | {decided: "skipped"}, results
    assert "the case is now approved" in text_of(done)
    for application in fresh:
        view = await case_status(dev_client, application["application_id"])
        assert view.status == "approved" and len(view.reviews) == 1, "one decision per case"
    first = fresh[0]["application_id"]
    job_id = job_page.rsplit("/", 1)[-1]
    events = [e for e in await audit.events_for_case(store_pool, first) if e.detail.get("bulk") == job_id]
    assert [(e.actor, e.action, e.outcome) for e in events] == [(reviewer_id, "review:approve", "recorded")]

    assert signed_in(console, OUTSIDER).get(job_page).status_code == 404, "only its reviewer sees a job"
    assert signed_in(console, STAFF).post("/queue/bulk", data={"csrf": "x", "opinion": "同意"}).status_code == 403


async def test_two_reviewers_one_claims_a_case_and_the_other_sees_it_held(
    console, cases, environment, worker, dev_client, population, tmp_path
):
    taken = {case["application_id"] for case in cases.values()}
    application = next(
        a
        for a in population.by_scenario("non_hukou_verified")
        if a["district_code"] == DISTRICT and a["application_id"] not in taken
    )
    app_id = application["application_id"]
    await submitted_to_review(environment, dev_client, [application], tmp_path)
    first, second = signed_in(console, REVIEWER), signed_in(console, SECOND_REVIEWER)

    page = first.get(f"/cases/{app_id}")
    assert 'id="held-by-nobody"' in page.text
    claimed = first.post(f"/cases/{app_id}/claim", data={"csrf": csrf_of(page), "action": "claim"})
    assert claimed.status_code == 200 and first_group(r'id="held-by">([^<]+)<', claimed.text) == REVIEWER

    seen = second.get(f"/cases/{app_id}")
    assert first_group(r'id="held-by">([^<]+)<', seen.text) == REVIEWER
    assert 'value="claim"' not in seen.text, "no claim button on a case another reviewer holds"
    refused = second.post(
        f"/cases/{app_id}/review", data={"csrf": csrf_of(seen), "decision": "approve", "opinion": "同意"}
    )
    assert refused.status_code == 409 and f"claimed by {REVIEWER}" in text_of(refused)
    mine = await wait_until(
        lambda: asyncio.to_thread(first.get, "/queue?held=me"),
        until=lambda queue: app_id in queue_ids(queue),
        timeout=20,
        interval=0.3,
        message="the claim in the queue",
    )
    assert REVIEWER in text_of(mine)
    assert app_id not in queue_ids(second.get("/queue?held=unassigned"))
    assert app_id not in queue_ids(second.get("/queue?held=me"))

    released = first.post(f"/cases/{app_id}/claim", data={"csrf": csrf_of(page), "action": "release"})
    assert released.status_code == 200 and 'id="held-by-nobody"' in released.text
    approved = second.post(
        f"/cases/{app_id}/review", data={"csrf": csrf_of(seen), "decision": "approve", "opinion": "同意入学"}
    )
    assert approved.status_code == 200, text_of(approved)
    assert (await case_status(dev_client, app_id)).reviews[-1].reviewer_id == SECOND_REVIEWER


async def test_the_supervisor_sees_the_districts_backlog_and_gives_a_held_case_to_another_reviewer(
    console, environment, worker, dev_client, population, tmp_path
):
    district, reviewer_id, supervisor_id = "510106", "r-510106-1", "sup-510106-1"
    application = next(a for a in population.by_scenario("non_hukou_verified") if a["district_code"] == district)
    app_id = application["application_id"]
    await submitted_to_review(environment, dev_client, [application], tmp_path)
    reviewer, supervisor = signed_in(console, reviewer_id), signed_in(console, supervisor_id)
    page = reviewer.get(f"/cases/{app_id}")
    assert reviewer.post(f"/cases/{app_id}/claim", data={"csrf": csrf_of(page), "action": "claim"}).status_code == 200

    seen = supervisor.get(f"/cases/{app_id}")
    assert first_group(r'id="held-by">([^<]+)<', seen.text) == reviewer_id and 'id="reassign"' in seen.text
    bad = supervisor.post(f"/cases/{app_id}/reassign", data={"csrf": csrf_of(seen), "assignee": "no one!"})
    assert bad.status_code == 422 and "assignee:" in bad.text and "no one!" not in bad.text
    given = supervisor.post(f"/cases/{app_id}/reassign", data={"csrf": csrf_of(seen), "assignee": "r-510106-9"})
    assert given.status_code == 200 and first_group(r'id="held-by">([^<]+)<', given.text) == "r-510106-9"
    blocked = reviewer.post(
        f"/cases/{app_id}/review", data={"csrf": csrf_of(page), "decision": "approve", "opinion": "同意"}
    )
    assert blocked.status_code == 409 and "claimed by r-510106-9" in text_of(blocked)
    back = supervisor.post(f"/cases/{app_id}/reassign", data={"csrf": csrf_of(seen), "assignee": reviewer_id})
    assert back.status_code == 200
    decided = reviewer.post(
        f"/cases/{app_id}/review", data={"csrf": csrf_of(page), "decision": "approve", "opinion": "同意入学"}
    )
    assert decided.status_code == 200, text_of(decided)
    assert reviewer.post(f"/cases/{app_id}/reassign", data={"csrf": csrf_of(page), "assignee": "x"}).status_code == 403

    overview = await wait_until(
        lambda: asyncio.to_thread(supervisor.get, "/supervisor"),
        until=lambda page: reviewer_id in page.text,
        timeout=20,
        interval=0.3,
        message="the decision in the supervisor's table",
    )
    assert int(first_group(r'id="backlog">(\d+)<', overview.text)) == queue_count(reviewer.get("/queue"))
    assert '<svg id="review-age"' in overview.text and '<svg id="by-status"' in overview.text
    assert overview.text.count('<rect class="bar') == 3 + len(STATUS_LABELS)
    assert reviewer.get("/supervisor").status_code == 403
