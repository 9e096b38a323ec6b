"""Hostile HTTP 200s from the departments and the platform, met by the real activities over real HTTP.

Each hostile mode of the stand-ins (docs/standins.md) at rate 1.0, against every verifier activity and a
platform activity: the activity fails within a bound, with a retryable error whose type names the problem,
and neither the failure Temporal records, nor the traceback the worker logs, nor any log line quotes the
personal data of the request. Once the fault is gone the same call succeeds, as a retry would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Literal

import httpx
import pytest
from aiohttp import web
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.gateway import DEADLINE_FACTOR, MAX_RESPONSE_BYTES, Department, post_json
from activities.natural_resources import NaturalResourcesActivities
from activities.outbound import OutboundClient
from activities.platform import PlatformActivities, PlatformMessage, PlatformReceipt
from activities.public_security import PublicSecurityActivities
from activities.social_insurance import SocialInsuranceActivities
from enrollment.verification import Person, VerificationRequest, VerificationResult
from enrollment.verifiers import Verifier
from standins.hostile import HUGE_BODY_BYTES
from tests.support.policies import district_policy
from tests.support.stack import settings_for
from workers.build import new_http_client

CLIENT_TIMEOUT = 1.0  # ENROLL_HTTP_TIMEOUT_SECONDS for these tests
BOUND = 3 * CLIENT_TIMEOUT  # no hostile answer may hold an activity longer than this
Target = Verifier | Literal["platform"]
TARGETS: tuple[Target, ...] = ("hukou", "residence_permit", "social_insurance", "property", "platform")
MODES = ("bad_json", "wrong_schema", "huge_body", "slow_drip")
EXPECTED_TYPE = {
    "bad_json": "DepartmentBadResponse",
    "wrong_schema": "MalformedAnswer",
    "huge_body": "DepartmentBadResponse",
    "slow_drip": "DepartmentTimeout",
}
# activities/platform.py checks the platform's receipt itself: a 0000 with a malformed receipt is a bad response.
PLATFORM_WRONG_SCHEMA_TYPE = "DepartmentBadResponse"


@pytest.fixture(scope="module")
def family(population) -> dict:
    """A non-hukou family (two guardians with permits and insurance) and every personal value it holds."""
    application = next(a for a in population.by_scenario("non_hukou_verified") if len(a["guardians"]) == 2)
    people = [application["student"], *application["guardians"]]
    secrets = {value for person in people for value in (person["id_number"], person["name"])}
    for records in population.records.values():
        for person in people:
            record = records.get(person["id_number"])
            if record:  # what the departments hold about them: addresses, employers, certificate numbers...
                secrets |= {v for v in _strings(record["data"]) if len(v) >= 2 and not v.isascii()}
    expected = population.expectations[application["application_id"]]["expected_outcomes"]
    return {"application": application, "secrets": secrets, "expected_outcomes": expected}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.fixture
def admin(standins):
    with httpx.Client(base_url=standins.base_url, timeout=10) as client:
        client.delete("/admin/faults").raise_for_status()
        yield client
        client.delete("/admin/faults").raise_for_status()


@pytest.fixture
def settings(standins):
    return settings_for(standins, http_timeout_seconds=CLIENT_TIMEOUT)


@pytest.fixture
async def http(settings):
    client = new_http_client(settings)  # the client the workers use, built from the same setting
    yield client
    await client.aclose()


def call_for(target: Target, http: OutboundClient, settings, family: dict, key: str):
    """The activity (a bound method of the product's activity class) and its argument for a target."""
    application = family["application"]
    if target == "platform":
        message = PlatformMessage(
            application_id=application["application_id"],
            idempotency_key=key,
            body={
                "status": "approved",
                "student_name": application["student"]["name"],
                "student_id_number": application["student"]["id_number"],
            },
        )
        return PlatformActivities(http, settings.platform_url).sync_result, message
    district = district_policy(application["district_code"])
    request = VerificationRequest(
        application_id=application["application_id"],
        verifier=target,
        registration_type=application["registration_type"],
        district_code=application["district_code"],
        city_code=district.city_code,
        min_social_insurance_months=district.registration_types[
            application["registration_type"]
        ].min_social_insurance_months,
        student=Person(name=application["student"]["name"], id_number=application["student"]["id_number"]),
        guardians=[Person(name=g["name"], id_number=g["id_number"]) for g in application["guardians"]],
    )
    activity = {
        "hukou": PublicSecurityActivities(http, settings.public_security_url).verify_hukou,
        "residence_permit": PublicSecurityActivities(http, settings.public_security_url).verify_residence_permit,
        "social_insurance": SocialInsuranceActivities(http, settings.social_insurance_url).verify_social_insurance,
        "property": NaturalResourcesActivities(http, settings.natural_resources_url).verify_property,
    }[target]
    return activity, request


def as_temporal_records_it(error: BaseException) -> tuple[ApplicationError, bytes]:
    """The failure Temporal stores for an activity that raised `error` (the project's data converter),
    read back as a workflow sees it, and its serialized form."""
    failure = Failure()
    converter = pydantic_data_converter
    converter.failure_converter.to_failure(error, converter.payload_converter, failure)
    seen = converter.failure_converter.from_failure(failure, converter.payload_converter)
    assert isinstance(seen, ApplicationError), f"recorded as {type(seen).__name__}"
    assert not failure.HasField("cause"), "no underlying exception (a parser's, quoting the body) rides along"
    return seen, failure.SerializeToString()


def assert_no_personal_data(secrets: set[str], *texts: str | bytes) -> None:
    for text in texts:
        haystack = text if isinstance(text, bytes) else text.encode()
        leaked = sorted(s for s in secrets if s.encode() in haystack)
        assert not leaked, f"personal data leaked: {leaked}"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", MODES)
async def test_hostile_answer_fails_the_activity_retryably_bounded_and_without_personal_data(
    mode, target, admin, http, settings, family, caplog
):
    admin.put(f"/admin/faults/{target}", json={f"{mode}_rate": 1.0, "drip_seconds": 30}).raise_for_status()
    activity, argument = call_for(target, http, settings, family, key=f"hostile-{mode}-{uuid.uuid4().hex}")

    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as caught:
        await ActivityEnvironment().run(activity, argument)
    elapsed = time.monotonic() - started

    seen, recorded = as_temporal_records_it(caught.value)
    expected = PLATFORM_WRONG_SCHEMA_TYPE if (target, mode) == ("platform", "wrong_schema") else EXPECTED_TYPE[mode]
    assert isinstance(seen, ApplicationError) and seen.type == expected, (type(caught.value), seen)
    assert not seen.non_retryable
    assert elapsed < BOUND, f"{mode} held the activity {elapsed:.1f} s"
    if mode == "slow_drip":  # the deadline for the whole exchange ended it, not the client's per-read timeout
        assert f"no complete answer within {DEADLINE_FACTOR * CLIENT_TIMEOUT:g} s" in seen.message
    if mode == "wrong_schema" and target != "platform":
        assert "malformed at" in seen.message  # names the fields
    worker_log = "".join(traceback.format_exception(caught.value))  # what the worker logs with the failure
    assert_no_personal_data(family["secrets"], seen.message, recorded, worker_log, caplog.text)
    assert admin.get("/admin/stats").json()["stats"][target]["hostile"].get(mode, 0) >= 1

    # The fault gone, the same call (a retry) succeeds on the same client and its connection pool.
    admin.delete("/admin/faults").raise_for_status()
    result = await ActivityEnvironment().run(activity, argument)
    if target == "platform":
        # The platform recorded the push before spoiling its answer: the retry's key finds it.
        assert isinstance(result, PlatformReceipt) and result.duplicate
    else:
        expected_outcome = family["expected_outcomes"][target]
        assert isinstance(result, VerificationResult)
        assert result.outcome == expected_outcome or expected_outcome == "not_required"


async def test_huge_body_is_abandoned_at_the_cap(admin, http, settings, family):
    """The activity stops reading once the bound is passed, and holds no more than about that in memory, while
    the stand-in offers 5 MiB to each guardian's call."""
    admin.put("/admin/faults/property", json={"huge_body_rate": 1.0}).raise_for_status()
    activity, request = call_for("property", http, settings, family, key="-")
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activity, request)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (
        caught.value.type == "DepartmentBadResponse" and f"more than {MAX_RESPONSE_BYTES} bytes" in caught.value.message
    )
    guardians = len(family["application"]["guardians"])
    assert peak < guardians * 3 * MAX_RESPONSE_BYTES, f"peak {peak} B of {HUGE_BODY_BYTES} offered"
    assert elapsed < CLIENT_TIMEOUT


# -- what the stand-ins do not send, from a real server answering what a test gives it --------------------


@contextlib.asynccontextmanager
async def answering(
    answer: Callable[[dict], tuple[bytes, dict[str, str]]], status: int = 200, headers_seen: list | None = None
) -> AsyncIterator[str]:
    """An HTTP server on a free port answering every POST with `status` and `answer(the JSON sent)`, its body in
    64 KiB chunks as a network would bring them; yields its URL. Each request's headers go to `headers_seen`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if headers_seen is not None:
            headers_seen.append(dict(request.headers))
        content, headers = answer(await request.json())
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        for start in range(0, len(content), 64 * 1024):
            await response.write(content[start : start + 64 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_encoded_body_is_refused_not_inflated(http):
    import gzip

    bomb = gzip.compress(b'{"code":"0000","padding":"' + b"0" * (64 * MAX_RESPONSE_BYTES) + b'"}')  # ~64 KiB
    async with answering(lambda sent: (bomb, {"Content-Encoding": "gzip"})) as department:
        with pytest.raises(ApplicationError) as caught:
            await post_json(http, f"{department}/verify", {})
    assert caught.value.type == "DepartmentBadResponse" and "content encoding" in caught.value.message


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b'{"months_paid": NaN}', b'{"n": ' + b"9" * 5000 + b"}", b'{"a": "\xff"}'],
    ids=["deep-nesting", "nan", "huge-integer", "bad-utf8"],
)
async def test_json_python_would_choke_on_is_a_bad_response(http, content):
    async with answering(lambda sent: (content, {})) as department:
        with pytest.raises(ApplicationError) as caught:
            await post_json(http, f"{department}/verify", {})
    assert (caught.value.type, caught.value.non_retryable) == ("DepartmentBadResponse", False)


async def test_an_undocumented_code_is_not_taken_for_not_found(http):
    def answer(sent: dict) -> tuple[bytes, dict[str, str]]:
        return json.dumps({"code": "9999", "request_id": sent["request_id"], "data": None}).encode(), {}

    async with answering(answer) as department:
        with pytest.raises(ApplicationError) as caught:
            await Department(http, department).ask_about("/verify", Person(name="张三", id_number="x"))
    assert caught.value.type == "DepartmentBadResponse" and "unknown code '9999'" in caught.value.message


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed_with_the_familys_data(http, status):
    """A department (or whoever answers at its address) redirecting elsewhere gets no second request: the name
    and identity number go to the configured address only, and the call fails retryably."""
    received: list[dict] = []

    def elsewhere(sent: dict) -> tuple[bytes, dict[str, str]]:
        received.append(sent)
        return json.dumps({"code": "0000", "request_id": sent.get("request_id"), "data": None}).encode(), {}

    def redirect(sent: dict) -> tuple[bytes, dict[str, str]]:
        # With a body that reads as an answer: a status that is not 2xx is not one, whatever the body says.
        body = json.dumps({"code": "0000", "request_id": sent["request_id"], "data": None}).encode()
        return body, {"Location": f"{other}/collect"}

    async with answering(elsewhere) as other, answering(redirect, status=status) as department:
        with pytest.raises(ApplicationError) as caught:
            await Department(http, department).ask_about("/verify", Person(name="张三", id_number="x"))
    assert received == []
    assert (caught.value.type, caught.value.non_retryable) == ("DepartmentBadResponse", False)


async def test_a_cookie_a_department_sets_is_not_sent_with_the_next_call(http):
    """Calls stand alone: nothing one answer sets rides along with another case's call."""
    headers_seen: list[dict[str, str]] = []

    def answer(sent: dict) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"code": "0000", "request_id": sent["request_id"], "data": None}).encode()
        return body, {"Set-Cookie": "tracker=case-one; Path=/"}

    async with answering(answer, headers_seen=headers_seen) as department:
        for person in (Person(name="张三", id_number="x"), Person(name="李四", id_number="y")):
            await Department(http, department).ask_about("/verify", person)
    assert len(headers_seen) == 2 and not any("Cookie" in headers for headers in headers_seen)


@contextlib.asynccontextmanager
async def sending_raw(head: bytes, body: bytes, split_at: int) -> AsyncIterator[str]:
    """A TCP server that reads a request and answers with `head`, then `body` (its first `split_at` bytes, and the
    rest a moment later, when `split_at` is not 0), then holds the connection open."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + (body[:split_at] if split_at else body))
        await writer.drain()
        if split_at:
            await asyncio.sleep(0.2)
            writer.write(body[split_at:])
            await writer.drain()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.mark.parametrize("split_at", [0, 12], ids=["at-once", "bad-chunk-later"])
async def test_a_chunked_body_broken_mid_way_fails_classed_bounded_and_quoting_nothing(http, caplog, split_at):
    """A chunk whose size line is not a number, after a good chunk, sent with the head or while the client reads:
    the call fails retryably within the bound, and neither the failure nor a log line quotes the bytes."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b'7\r\n{"code"\r\nzz\xe5\xbc\xa0\r\n'
    started = time.monotonic()
    async with sending_raw(head, body, split_at) as department:
        with caplog.at_level(logging.DEBUG), pytest.raises(ApplicationError) as caught:
            await post_json(http, f"{department}/verify", {"name": "张三"})
    assert time.monotonic() - started < BOUND
    assert caught.value.type in ("DepartmentUnreachable", "DepartmentTimeout") and not caught.value.non_retryable
    for text in (caught.value.message, caplog.text):
        assert "zz" not in text and "张" not in text


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [("7", 7.0), ("3600", 60.0), ("-5", None), ("-1e308", None), ("1e308", 60.0), ("nan", None), ("soon", None)],
)
async def test_a_rate_limit_asks_for_a_delay_of_0_to_60_seconds_or_none(http, retry_after, delay):
    async with answering(lambda sent: (b"{}", {"Retry-After": retry_after}), status=429) as department:
        with pytest.raises(ApplicationError) as caught:
            await post_json(http, f"{department}/verify", {})
    assert caught.value.type == "DepartmentRateLimited" and not caught.value.non_retryable
    asked = caught.value.next_retry_delay
    assert (asked.total_seconds() if asked is not None else None) == delay
