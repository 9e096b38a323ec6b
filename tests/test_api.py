"""The front door over real HTTP: signed clients, hand-in answered by the case, one child one application, refusals.

The API runs in this process on a free port against the module's dev server, the case store and a worker
process; every request is signed as a registered client would sign it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError

from api.callers import RegisteredClient
from api.signing import MISMATCH, SignedRequests
from api.temporal import NO_TOKEN
from codec_server.app import Caller, Decoded
from codec_server.identity import audit_reporter
from enrollment.identity import LookupSecret
from enrollment.temporal_tokens import TemporalCredentials
from stack.temporal_server import DevServer, free_port
from standins.population import Population
from store import audit
from store import intake as intake_store
from tests.support.api import served_api
from tests.support.identity import CLIENT_SECRETS
from tests.support.identity import console_tokens as people_tokens
from tests.support.keys import TEST_CONVERTER
from tests.support.policies import district_policy
from tests.support.served import ServedApp
from tests.support.waiting import wait_until

SECRETS = {"platform": "platform-secret", "enrollment-system": "front-end-secret"}
# The worker process hashes with this key too (tests/support/processes.py).
LOOKUP_KEY = LookupSecret(b"end-to-end-test-key", "standard")


def registered(districts: list[str]) -> list[RegisteredClient]:
    return [
        RegisteredClient(client_id="platform", kind="platform", secret=SecretStr(SECRETS["platform"])),
        RegisteredClient(
            client_id="enrollment-system", kind="enrollment_system", secret=SecretStr(SECRETS["enrollment-system"])
        ),
        *(
            RegisteredClient(
                client_id=f"sp-{code}", kind="service_point", district_code=code, secret=SecretStr(f"sp-{code}")
            )
            for code in districts
        ),
    ]


def serve(
    dev_server: DevServer, database_url: str, districts: list[str], address: str | None = None, **limits: Any
) -> ServedApp:
    return served_api(address or dev_server.address, database_url, registered(districts), LOOKUP_KEY, **limits)


@pytest.fixture(scope="module")
def districts(population: Population) -> list[str]:
    return sorted({application["district_code"] for application in population.applications})


@pytest.fixture(scope="module")
async def front_door(dev_server, environment, worker, database_url, districts) -> AsyncIterator[ServedApp]:
    async with serve(dev_server, database_url, districts) as served:
        yield served


def caller(served: ServedApp, client_id: str) -> httpx.AsyncClient:
    secret = SECRETS.get(client_id, client_id)
    return httpx.AsyncClient(base_url=served.base_url, auth=SignedRequests(client_id, secret.encode()), timeout=30)


def application(population: Population, scenario: str, index: int, channel: str = "platform", **changes: Any) -> dict:
    return {**population.by_scenario(scenario)[index], "channel": channel, **changes}


def is_problem(response: httpx.Response, status: int) -> list[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"]
    return body["errors"]


async def case_exists(dev_client: Client, application_id: str) -> bool:
    try:
        await dev_client.get_workflow_handle(f"case-{application_id}").describe()
    except RPCError:
        return False
    return True


async def test_the_contract_is_published_and_health_is_told_anonymously(front_door):
    async with httpx.AsyncClient(base_url=front_door.base_url) as anonymous:
        paths = (await anonymous.get("/openapi.json")).json()["paths"]
        assert {
            "/v1/applications",
            "/v1/applications/batch",
            "/v1/applications/{application_id}",
            "/v1/applications/{application_id}/result",
            "/v1/applications/{application_id}/school-choice",
            "/v1/applications/{application_id}/supplement",
            "/v1/applications/{application_id}/withdrawal",
            "/v1/guide",
            "/v1/materials",
            "/v1/verification-items",
            "/v1/schemas/application.json",
            "/healthz",
            "/readyz",
        } <= set(paths)
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get("/readyz")).json() == {"status": "ready"}


async def test_requests_without_a_valid_signature_are_refused_and_change_nothing(front_door, population, dev_client):
    body = application(population, "hukou_verified", 0)
    async with httpx.AsyncClient(base_url=front_door.base_url) as anonymous:
        errors = is_problem(await anonymous.post("/v1/applications", json=body), 401)
        assert errors == ["X-Client-Id: required (requests are signed; see the README's front door)"]
        is_problem(await anonymous.get(f"/v1/applications/{body['application_id']}"), 401)
    async with httpx.AsyncClient(
        base_url=front_door.base_url, auth=SignedRequests("platform", b"not-the-secret")
    ) as forger:
        errors = is_problem(await forger.post("/v1/applications", json=body), 401)
        assert errors == [MISMATCH]
    async with httpx.AsyncClient(base_url=front_door.base_url, auth=SignedRequests("nobody", b"x")) as stranger:
        # An unknown client is refused exactly as a wrong secret: the answer does not tell which ids exist.
        assert is_problem(await stranger.post("/v1/applications", json=body), 401) == [MISMATCH]
    assert not await case_exists(dev_client, body["application_id"])

    async with caller(front_door, "platform") as platform:
        signed = platform.build_request("GET", "/v1/applications/SC2027-NOSUCH")
        for step in SignedRequests("platform", SECRETS["platform"].encode()).auth_flow(signed):
            signed = step
        first = await platform.send(signed, auth=None)
        assert first.status_code == 404
        replayed = await platform.send(signed, auth=None)
        assert is_problem(replayed, 401) == ["X-Nonce: already used (a replayed request)"]
        stale = signed.headers.copy()
        stale["X-Timestamp"] = str(int(stale["X-Timestamp"]) - 3600)
        stale["X-Nonce"] = "a-fresh-nonce-0123456789"
        errors = is_problem(await platform.get("/v1/applications/SC2027-NOSUCH", headers=stale, auth=None), 401)
        assert errors == ["X-Timestamp: more than 300 s from the server's clock"]


async def test_a_hand_in_is_answered_by_the_case_and_is_idempotent(front_door, population, dev_client):
    body = application(population, "hukou_verified", 1)
    app_id = body["application_id"]
    async with caller(front_door, "platform") as platform:
        created = await platform.post("/v1/applications", json=body)
        assert created.status_code == 201, created.text
        answer = created.json()
        assert answer["case_id"] == f"case-{app_id}" and answer["status_url"] == f"/v1/applications/{app_id}"
        assert created.headers["location"] == answer["status_url"]
        assert answer["acceptance"] == {"eligible": True, "problems": []}
        assert answer["routing_phase"] == "phase_one"

        again = await platform.post("/v1/applications", json=body)
        assert again.status_code == 200 and again.json()["case_id"] == answer["case_id"]
        other = {**body, "guardians": body["guardians"][:1], "school_choice": None}
        if other == body:
            other = {**body, "school_choice": None}
        errors = is_problem(await platform.post("/v1/applications", json=other), 409)
        assert errors == [f"application_id: {app_id} was already handed in with other content"]

        status = await platform.get(answer["status_url"])
        assert status.status_code == 200 and status.json()["application_id"] == app_id
        text = status.text
        assert body["student"]["id_number"] not in text and body["student"]["name"] not in text

        concurrent_body = application(population, "non_hukou_verified", 1)
        answers = await asyncio.gather(*(platform.post("/v1/applications", json=concurrent_body) for _ in range(10)))
    assert sorted(response.status_code for response in answers) == [200] * 9 + [201]
    assert {response.json()["case_id"] for response in answers} == {f"case-{concurrent_body['application_id']}"}


async def test_an_ineligible_application_is_told_so_at_once(front_door, population):
    body = application(population, "not_eligible_age", 0)
    async with caller(front_door, "platform") as platform:
        answer = (await platform.post("/v1/applications", json=body)).json()
    assert answer["acceptance"]["eligible"] is False
    assert answer["acceptance"]["problems"][0].startswith("student.birth_date:")


async def test_an_invalid_application_is_refused_naming_the_rule_and_nothing_is_written(
    front_door, population, dev_client, store_pool
):
    good = application(population, "hukou_verified", 2)
    wrong_number = good["student"]["id_number"][:-1] + ("0" if good["student"]["id_number"][-1] != "0" else "1")
    bad = {**good, "student": {**good["student"], "id_number": wrong_number}}
    async with caller(front_door, "platform") as platform:
        response = await platform.post("/v1/applications", json=bad)
        errors = is_problem(response, 422)
        assert errors and errors[0].startswith("student.id_number:")
        assert wrong_number not in response.text and good["student"]["name"] not in response.text

        unknown = is_problem(await platform.post("/v1/applications", json={**good, "nickname": "小明"}), 422)
        assert unknown == ["nickname: Extra inputs are not permitted"]
        wrong_channel = is_problem(
            await platform.post("/v1/applications", json={**good, "channel": "service_point"}), 422
        )
        assert wrong_channel == ["channel: must be platform for this client"]
        guardian_is_child = {**good, "guardians": [{**good["guardians"][0], "id_number": good["student"]["id_number"]}]}
        errors = is_problem(await platform.post("/v1/applications", json=guardian_is_child), 422)
        assert errors == ["guardians: a guardian's id_number cannot be the student's"]

        broken = await platform.post(
            "/v1/applications", content=b'{"application_id": ', headers={"content-type": "application/json"}
        )
        assert is_problem(broken, 422) == ["body: not valid JSON"]
        deep = b"[" * 5000 + b"]" * 5000
        nested = await platform.post("/v1/applications", content=deep, headers={"content-type": "application/json"})
        assert nested.status_code in (400, 422) and nested.headers["content-type"] == "application/problem+json"
        huge_number = {**good, "school_year": 10**4000}
        assert is_problem(await platform.post("/v1/applications", json=huge_number), 422)
        too_big = await platform.post(
            "/v1/applications", content=b" " * (2 << 20), headers={"content-type": "application/json"}
        )
        assert is_problem(too_big, 413) == [f"body: at most {1 << 20} bytes"]

    assert not await case_exists(dev_client, good["application_id"])
    async with store_pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT count(*) FROM hand_ins WHERE application_id = %s", (good["application_id"],))
        ).fetchone()
    assert rows == (0,)


async def test_a_child_holds_one_open_application_until_it_is_withdrawn(front_door, population):
    first = application(population, "without_school_choice", 0)
    second = {**first, "application_id": first["application_id"] + "B"}
    async with caller(front_door, "platform") as platform, caller(front_door, "enrollment-system") as front_end:
        assert (await platform.post("/v1/applications", json=first)).status_code == 201
        refused = is_problem(await platform.post("/v1/applications", json=second), 409)
        year = first["school_year"]
        assert refused == [
            f"student.id_number: the child already has an open application for {year}",
            f"application_id: the open application is {first['application_id']}",
        ]
        elsewhere = {**second, "application_id": first["application_id"] + "C", "channel": "enrollment_system"}
        told = is_problem(await front_end.post("/v1/applications", json=elsewhere), 409)
        assert told == [f"student.id_number: the child already has an open application for {year}"]

        withdrawal = await platform.post(
            f"/v1/applications/{first['application_id']}/withdrawal", json={"reason": "搬家"}
        )
        assert withdrawal.status_code == 200 and withdrawal.json()["accepted"] is True

        async def handed_in_again() -> int:
            return (await platform.post("/v1/applications", json=second)).status_code

        assert (
            await wait_until(handed_in_again, until=lambda s: s == 201, timeout=30, message="a new application") == 201
        )


async def test_a_client_sees_only_its_own_cases_and_a_service_point_its_district(front_door, population):
    body = application(population, "non_hukou_verified", 2)
    district = body["district_code"]
    other = next(d for d in sorted({a["district_code"] for a in population.applications}) if d != district)
    async with caller(front_door, "platform") as platform:
        assert (await platform.post("/v1/applications", json=body)).status_code == 201
    url = f"/v1/applications/{body['application_id']}"
    async with caller(front_door, "enrollment-system") as front_end:
        assert is_problem(await front_end.get(url), 404) == [
            f"application_id: no case {body['application_id']} for this client"
        ]
        # Acting on another system's case is refused the same way, and the case is not touched.
        withdrawal = await front_end.post(f"{url}/withdrawal", json={"reason": "not mine to withdraw"})
        assert is_problem(withdrawal, 404) == [f"application_id: no case {body['application_id']} for this client"]
    async with caller(front_door, "platform") as platform:
        steps = [entry["step"] for entry in (await platform.get(url)).json()["timeline"]]
        assert "withdrawal_requested" not in steps and "withdrawal_refused" not in steps
    async with caller(front_door, f"sp-{district}") as service_point:
        assert (await service_point.get(url)).status_code == 200
    async with caller(front_door, f"sp-{other}") as elsewhere:
        is_problem(await elsewhere.get(url), 404)
        foreign = application(population, "service_point", 0, channel="service_point", district_code=district)
        errors = is_problem(await elsewhere.post("/v1/applications", json=foreign), 422)
        assert f"district_code: this service point hands in applications of {other} only" in errors


async def test_the_applicant_chooses_a_school_through_the_platform(front_door, population):
    body = application(population, "without_school_choice", 1)
    url = f"/v1/applications/{body['application_id']}"
    async with caller(front_door, "platform") as platform:
        assert (await platform.post("/v1/applications", json=body)).status_code == 201
        await wait_until(
            lambda: platform.get(url),
            until=lambda r: r.json()["status"] == "awaiting_school_selection",
            timeout=30,
            message="the case waiting for a school",
            describe=lambda r: r.text,
        )
        wrong = is_problem(
            await platform.post(f"{url}/school-choice", json={"zone_id": "XX-Z09", "school_id": "XX"}), 409
        )
        assert wrong[0].startswith("zone_id: XX-Z09 is not an enrollment zone")
        zone, school = district_policy(body["district_code"]).schools_for(body["stage"])[0]
        taken = await platform.post(
            f"{url}/school-choice", json={"zone_id": zone.zone_id, "school_id": school.school_id}
        )
        assert taken.json() == {"accepted": True, "reason": None, "status": "awaiting_review"}
        result = (await platform.get(f"{url}/result")).json()
        assert result["decided"] is False and result["status"] == "awaiting_review"


async def test_a_service_point_imports_a_batch_with_one_result_each(front_door, population):
    district = population.by_scenario("service_point")[1]["district_code"]
    good = application(population, "service_point", 1, channel="service_point")
    invalid = {**good, "application_id": "SC2027-BATCH-BAD", "student": {**good["student"], "gender": "x"}}
    async with caller(front_door, f"sp-{district}") as service_point:
        response = await service_point.post("/v1/applications/batch", json={"applications": [good, invalid, good]})
    items = response.json()["items"]
    assert [item["status_code"] for item in items] == [201, 422, 200] or [i["status_code"] for i in items] == [
        200,
        422,
        201,
    ]
    assert items[1]["errors"] == ["student.gender: Input should be 'male' or 'female'"]


async def test_temporal_unreachable_is_a_503_and_the_same_request_later_succeeds(
    dev_server, environment, worker, database_url, districts, population, front_door
):
    body = application(population, "hukou_verified", 3)
    unreachable = f"127.0.0.1:{free_port()}"
    async with (
        serve(dev_server, database_url, districts, address=unreachable) as cut_off,
        caller(cut_off, "platform") as platform,
    ):
        response = await platform.post("/v1/applications", json=body)
        assert is_problem(response, 503) and response.headers["retry-after"] == "5"
        assert (await httpx.AsyncClient(base_url=cut_off.base_url).get("/readyz")).status_code == 503
    async with caller(front_door, "platform") as platform:
        assert (await platform.post("/v1/applications", json=body)).status_code == 201


async def test_the_identity_provider_down_at_connect_is_a_503_too(
    dev_server, environment, database_url, districts, population
):
    """The API's Temporal connection needs a token from the provider first: while the provider is down,
    callers get 503 and /readyz says why, as when Temporal itself is down."""
    down = f"http://127.0.0.1:{free_port()}"
    credentials = TemporalCredentials(down, "enroll-api", CLIENT_SECRETS["enroll-api"])

    async def with_a_token() -> Client:
        return await credentials.connect(target_host=dev_server.address, data_converter=TEST_CONVERTER)

    body = application(population, "hukou_verified", 4)
    served = served_api(dev_server.address, database_url, registered(districts), LOOKUP_KEY, temporal=with_a_token)
    async with served, caller(served, "platform") as platform:
        response = await platform.post("/v1/applications", json=body)
        assert is_problem(response, 503) and response.headers["retry-after"] == "5"
        ready = await httpx.AsyncClient(base_url=served.base_url).get("/readyz")
    assert is_problem(ready, 503) == [f"temporal: {NO_TOKEN}"]
    assert not await case_exists(await Client.connect(dev_server.address), body["application_id"])


async def test_a_client_past_its_rate_gets_429_with_retry_after(dev_server, environment, database_url, districts):
    strict = serve(dev_server, database_url, districts, requests_per_second=0.5, burst=2)
    async with strict, caller(strict, "platform") as platform:
        codes = [(await platform.get("/v1/applications/SC2027-NOSUCH")).status_code for _ in range(2)]
        assert codes == [404, 404]
        limited = await platform.get("/v1/applications/SC2027-NOSUCH")
    assert is_problem(limited, 429) == ["rate: too many requests from this client"]
    assert int(limited.headers["retry-after"]) >= 1
    assert json.loads(limited.text)["status"] == 429


async def test_nonces_are_forgotten_once_the_signature_window_refuses_them_anyway(store_pool):
    assert await intake_store.remember_nonce(store_pool, "platform", "forgetting-nonce-000001")
    assert not await intake_store.remember_nonce(store_pool, "platform", "forgetting-nonce-000001")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert await intake_store.forget_nonces_before(store_pool, later) >= 1
    assert await intake_store.remember_nonce(store_pool, "platform", "forgetting-nonce-000001")


async def test_the_codec_servers_decodes_reach_the_audit_trail_and_nobody_else_may_report(
    front_door, identity_provider, store_pool
):
    """The codec server holds no database: it reports each decode here as itself, one event per case seen."""
    report = audit_reporter(identity_provider.base_url, front_door.base_url, "enroll-codec", "demo-codec-secret")
    ops = Caller(sub="ops-1", role="ops", jti="token-id-1", expires_at=None)
    await report(Decoded(ops, 2, "default", ("SC2027-AUDIT-1", "SC2027-AUDIT-2")))
    for application in ("SC2027-AUDIT-1", "SC2027-AUDIT-2"):
        [event] = await audit.events_for_case(store_pool, application, 10)
        assert (event.actor, event.role, event.action, event.outcome) == ("ops-1", "ops", "codec_decode", "ok")
        assert event.detail["reported_by"] == "client:enroll-codec" and event.detail["token"] == "token-id-1"

    forged = {"actor": "ops-1", "role": "ops", "case_id": "SC2027-AUDIT-3", "action": "codec_decode", "outcome": "ok"}
    async with httpx.AsyncClient(base_url=front_door.base_url) as http:
        anonymous = await http.post("/v1/audit-events", json=forged)
        person = await people_tokens(identity_provider.base_url, "ops-1")
        as_a_person = await http.post(
            "/v1/audit-events", json=forged, headers={"authorization": f"Bearer {person['access_token']}"}
        )
    assert is_problem(anonymous, 401) and is_problem(as_a_person, 403)
    assert await audit.events_for_case(store_pool, "SC2027-AUDIT-3", 10) == []
