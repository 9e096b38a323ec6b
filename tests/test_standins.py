"""The stand-in departments and platform, over real HTTP, as the workflow's activities will call them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Any

import httpx
import pytest

from enrollment import identity
from enrollment.application import Application, age_on
from enrollment.policy import policy_book
from standins import VERIFIER_PATHS, Population, generate, judge, start_in_thread
from standins.__main__ import main as cli
from standins.population import DEFAULT_POLICIES, SCENARIOS
from tests.support.policies import district_policy

DATA_FIELDS = {
    "hukou": {
        "name",
        "gender",
        "ethnicity",
        "birth_date",
        "birthplace",
        "hukou_address",
        "hukou_region_code",
        "household_head_name",
        "relation_to_head",
        "entered_on",
    },
    "residence_permit": {
        "permit_number",
        "name",
        "residence_address",
        "residence_region_code",
        "issuing_authority",
        "valid_from",
        "valid_until",
    },
    "social_insurance": {
        "name",
        "employer",
        "insurance_type",
        "insured_region_code",
        "first_insured_month",
        "months_paid",
        "status",
    },
    "property": {"titles"},
}
TITLE_FIELDS = {
    "certificate_number",
    "owner",
    "property_address",
    "property_region_code",
    "floor_area_m2",
    "registered_on",
    "co_ownership",
}
UNKNOWN_NUMBER = identity.make("510104", dt.date(2020, 5, 1), 999, "male")


@pytest.fixture(scope="module")
def sample_population() -> Population:
    """This module's own population (seed 42), not the session's that the other tests' stand-ins serve."""
    return generate(seed=42, families=60, policies_dir=DEFAULT_POLICIES)


@pytest.fixture(scope="module")
def server(sample_population):
    with start_in_thread(sample_population) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        http.delete("/admin/faults").raise_for_status()
        http.post("/admin/reset").raise_for_status()
        yield http
    with httpx.Client(base_url=server.base_url) as http:
        http.delete("/admin/faults")


def verify(client, service, id_number, name, request_id="req-1", **kwargs):
    return client.post(
        VERIFIER_PATHS[service], json={"request_id": request_id, "id_number": id_number, "name": name}, **kwargs
    )


def person_with_all_records(population):
    for application in population.applications:
        for guardian in application["guardians"]:
            if all(guardian["id_number"] in population.records[s] for s in VERIFIER_PATHS):
                return guardian
    raise AssertionError("no guardian with records in all four departments")


# -- generator --------------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed(sample_population):
    again = generate(seed=42, families=60)
    assert dataclasses.asdict(again) == dataclasses.asdict(sample_population)
    assert generate(seed=43, families=60).applications != sample_population.applications


def test_every_application_validates_and_every_identity_number_parses(sample_population):
    for application in sample_population.applications:
        Application.model_validate(application)
    for records in sample_population.records.values():
        for number in records:
            identity.parse(number)
    for number, record in sample_population.records["hukou"].items():
        birth, gender = identity.parse(number)
        data = record["data"]
        assert (data["birth_date"], data["gender"]) == (birth.isoformat(), gender)
        assert number[:6] == data["hukou_region_code"]


def test_every_scenario_appears_and_expectations_follow_the_policy():
    population = generate(seed=7, families=20)
    book = policy_book(DEFAULT_POLICIES)
    seen = {population.expectations[a["application_id"]]["scenario"] for a in population.applications}
    assert seen == set(SCENARIOS)
    for application in population.applications:
        expected = population.expectations[application["application_id"]]
        district = district_policy(application["district_code"], book)
        required = district.required_verifications(application["registration_type"])
        outcomes = expected["expected_outcomes"]
        assert [v for v, o in outcomes.items() if o != "not_required"] == list(required)
        failed = {o for o in outcomes.values()} & {"mismatch", "not_found"}
        assert bool(failed) == expected["scenario"].startswith("verification_failed")
        rule = district.stages[application["stage"]]
        birth = dt.date.fromisoformat(application["student"]["birth_date"])
        age = age_on(birth, dt.date(application["school_year"], 8, 31))
        assert (rule.min_age <= age <= rule.max_age) == (expected["scenario"] != "not_eligible_age")
        assert (application["channel"] == "service_point") == (expected["scenario"] == "service_point")
        choice = application.get("school_choice")
        assert (choice is None) == (expected["scenario"] == "without_school_choice")
        if choice:
            assert district.school_choice_problem(application["stage"], choice["zone_id"], choice["school_id"]) is None
        assert application["school_year"] in district.open_school_years


def test_cli_generate_writes_the_three_files(tmp_path, capsys):
    assert cli(["generate", "--seed", "42", "--families", "60", "--out", str(tmp_path)]) == 0
    loaded = Population.load(tmp_path)
    assert dataclasses.asdict(loaded) == dataclasses.asdict(generate(42, 60))
    lines = (tmp_path / "applications.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 60 and json.loads(lines[0])["application_id"].startswith("SC")
    assert "wrote 60 applications" in capsys.readouterr().out


# -- verifiers --------------------------------------------------------------------------------


def test_each_verifier_answers_0000_with_the_documented_data(client, sample_population):
    guardian = person_with_all_records(sample_population)
    for service in VERIFIER_PATHS:
        answer = verify(client, service, guardian["id_number"], guardian["name"], request_id=f"ok-{service}")
        body = answer.json()
        assert answer.status_code == 200 and body["code"] == "0000", service
        assert body["request_id"] == f"ok-{service}"
        assert set(body["data"]) == DATA_FIELDS[service]
        assert body["data"] == sample_population.records[service][guardian["id_number"]]["data"]
    titles = verify(client, "property", guardian["id_number"], guardian["name"]).json()["data"]["titles"]
    assert titles and all(set(t) == TITLE_FIELDS and isinstance(t["floor_area_m2"], float) for t in titles)
    insurance = verify(client, "social_insurance", guardian["id_number"], guardian["name"]).json()["data"]
    assert isinstance(insurance["months_paid"], int) and insurance["status"] in ("active", "suspended")


@pytest.mark.parametrize("service", list(VERIFIER_PATHS))
def test_unknown_number_is_1001_and_wrong_name_is_1002(client, sample_population, service):
    guardian = person_with_all_records(sample_population)
    unknown = verify(client, service, UNKNOWN_NUMBER, "张三").json()
    assert (unknown["code"], unknown["data"]) == ("1001", None)
    wrong = verify(client, service, guardian["id_number"], guardian["name"] + "某").json()
    assert (wrong["code"], wrong["data"], wrong["request_id"]) == ("1002", None, "req-1")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"request_id": "r", "id_number": ', "body"),
        (json.dumps({"id_number": UNKNOWN_NUMBER, "name": "张三"}).encode(), "request_id"),
        (json.dumps({"request_id": "r", "name": "张三"}).encode(), "id_number"),
        (json.dumps({"request_id": "r", "id_number": UNKNOWN_NUMBER[:-1] + "0", "name": "张三"}).encode(), "id_number"),
        (json.dumps({"request_id": "r", "id_number": UNKNOWN_NUMBER, "name": ""}).encode(), "name"),
    ],
)
def test_bad_body_is_400_naming_the_field(client, body, field):
    answer = client.post(VERIFIER_PATHS["hukou"], content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "4000" and answer.json()["field"] == field and field in answer.json()["message"]


def test_expectations_agree_with_what_the_server_answers(client, sample_population):
    """Rebuild each family's records from HTTP answers alone; `judge` must then give the expected outcomes."""
    book = policy_book(DEFAULT_POLICIES)
    for application in sample_population.applications:
        people = [application["student"], *application["guardians"]]
        # service -> id number -> what the service said about that person
        seen: dict[str, dict[str, dict[str, Any]]] = {service: {} for service in VERIFIER_PATHS}
        for service in VERIFIER_PATHS:
            for person in people:
                body = verify(client, service, person["id_number"], person["name"]).json()
                if body["code"] == "0000":
                    seen[service][person["id_number"]] = {"name": person["name"], "data": body["data"]}
                elif body["code"] == "1002":
                    seen[service][person["id_number"]] = {"name": None, "data": None}
        expected = sample_population.expectations[application["application_id"]]["expected_outcomes"]
        assert judge(application, seen, district_policy(application["district_code"], book)) == expected


def test_personal_data_never_reaches_the_log(client, sample_population, caplog):
    guardian = person_with_all_records(sample_population)
    with caplog.at_level(logging.DEBUG):
        verify(client, "hukou", guardian["id_number"], guardian["name"], request_id="log-check")
        verify(client, "hukou", guardian["id_number"][:-1], guardian["name"])
    assert "log-check" in caplog.text
    assert guardian["id_number"][:-1] not in caplog.text and guardian["name"] not in caplog.text


# -- platform ---------------------------------------------------------------------------------


def test_platform_push_is_idempotent(client):
    url = "/platform/v1/cases/SC2027-000001/acceptance"
    first = client.post(url, json={"accepted_at": "2027-05-01"}, headers={"Idempotency-Key": "k-1"}).json()
    again = client.post(url, json={"accepted_at": "2027-05-01"}, headers={"Idempotency-Key": "k-1"}).json()
    assert (first["code"], first["duplicate"], again["duplicate"]) == ("0000", False, True)
    assert again["receipt_id"] == first["receipt_id"]
    client.post(
        "/platform/v1/cases/SC2027-000001/result", json={"result": "admitted"}, headers={"Idempotency-Key": "k-2"}
    )
    case = client.get("/platform/v1/cases/SC2027-000001").json()
    assert [e["receipt_id"] for e in case["acceptance"]] == [first["receipt_id"]]
    assert case["acceptance"][0]["body"] == {"accepted_at": "2027-05-01"}
    assert case["result"][0]["idempotency_key"] == "k-2" and case["duplicates_refused"] == 1
    assert case["dispatch"] == case["status"] == case["notice"] == []


def test_platform_requires_idempotency_key_and_object_body(client):
    missing = client.post("/platform/v1/cases/SC2027-000001/notice", json={"text": "x"})
    assert (missing.status_code, missing.json()["code"], missing.json()["field"]) == (400, "4000", "Idempotency-Key")
    not_object = client.post("/platform/v1/cases/SC2027-000001/notice", json=[1], headers={"Idempotency-Key": "k"})
    assert (not_object.status_code, not_object.json()["field"]) == (400, "body")
    assert client.get("/platform/v1/cases/SC2027-000001").json()["notice"] == []


# -- faults and stats -------------------------------------------------------------------------


def test_outage_answers_503_at_once(client, sample_population):
    client.put("/admin/faults/hukou", json={"outage": True, "latency": {"median_ms": 2000, "p99_ms": 4000}})
    started = time.monotonic()
    answer = verify(client, "hukou", UNKNOWN_NUMBER, "张三")
    assert (answer.status_code, answer.json()["code"]) == (503, "5030")
    assert time.monotonic() - started < 1
    push = client.post("/platform/v1/cases/SC2027-000001/status", json={}, headers={"Idempotency-Key": "o"})
    assert push.status_code == 200  # other services are unaffected


def test_error_rate_one_answers_500(client):
    client.put("/admin/faults/platform", json={"error_rate": 1.0})
    answer = client.post("/platform/v1/cases/SC2027-000001/status", json={}, headers={"Idempotency-Key": "e"})
    assert (answer.status_code, answer.json()["code"]) == (500, "5000")
    assert client.get("/platform/v1/cases/SC2027-000001").json()["status"] == []


def test_timeout_makes_the_client_time_out(client):
    client.put("/admin/faults/social_insurance", json={"timeout_rate": 1.0, "timeout_seconds": 30})
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        verify(client, "social_insurance", UNKNOWN_NUMBER, "张三", timeout=0.3)
    assert time.monotonic() - started < 2


def test_latency_follows_the_configured_median(client):
    client.put("/admin/faults/property", json={"latency": {"median_ms": 60, "p99_ms": 60}, "seed": 1})
    started = time.monotonic()
    verify(client, "property", UNKNOWN_NUMBER, "张三")
    assert 0.05 <= time.monotonic() - started < 1


def test_rate_limit_answers_429_with_retry_after(client):
    client.put("/admin/faults/residence_permit", json={"rate_limit_per_second": 3})
    answers = [verify(client, "residence_permit", UNKNOWN_NUMBER, "张三") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[3].json()["code"] == "4290" and int(answers[3].headers["Retry-After"]) >= 1


def test_bad_fault_switch_is_400_naming_the_field(client):
    answer = client.put("/admin/faults/hukou", json={"error_rate": 1.5})
    assert (answer.status_code, answer.json()["field"]) == (400, "error_rate")
    assert client.put("/admin/faults/nowhere", json={}).status_code == 404
    assert client.get("/admin/faults").json()["faults"]["hukou"]["error_rate"] == 0.0


def test_stats_count_calls_by_code_and_peak_second(client, sample_population):
    guardian = person_with_all_records(sample_population)
    for _ in range(3):
        verify(client, "hukou", guardian["id_number"], guardian["name"])
    verify(client, "hukou", UNKNOWN_NUMBER, "张三")
    stats = client.get("/admin/stats").json()["stats"]
    hukou = stats["hukou"]
    assert {k: hukou[k] for k in ("total", "by_code", "peak_calls_per_second", "hostile")} == {
        "total": 4,
        "by_code": {"0000": 3, "1001": 1},
        "peak_calls_per_second": 4,
        "hostile": {},
    }
    assert hukou["bytes_sent"] > 0
    assert stats["property"]["total"] == 0
    client.post("/admin/reset")
    assert client.get("/admin/stats").json()["stats"]["hukou"]["total"] == 0


# -- hostile answers ---------------------------------------------------------------------------


def _is_json(content: bytes) -> bool:
    try:
        json.loads(content)
    except ValueError:
        return False
    return True


def test_bad_json_answers_200_that_is_not_json(client, sample_population):
    guardian = person_with_all_records(sample_population)
    client.put("/admin/faults/hukou", json={"bad_json_rate": 1.0, "seed": 3})
    kinds = set()
    for _ in range(8):
        answer = verify(client, "hukou", guardian["id_number"], guardian["name"])
        assert answer.status_code == 200
        with pytest.raises(ValueError):
            json.loads(answer.content)
        kinds.add(answer.headers["content-type"].split(";")[0])
    assert kinds == {"application/json", "text/html"}  # truncated JSON and a proxy's error page
    stats = client.get("/admin/stats").json()["stats"]["hukou"]
    assert stats["hostile"] == {"bad_json": 8} and stats["by_code"] == {}


@pytest.mark.parametrize("service", [*VERIFIER_PATHS, "platform"])
def test_wrong_schema_answers_0000_with_data_of_the_wrong_shape(client, sample_population, service):
    guardian = person_with_all_records(sample_population)
    client.put(f"/admin/faults/{service}", json={"wrong_schema_rate": 1.0})
    for _ in range(4):
        if service == "platform":
            body = client.post(
                "/platform/v1/cases/SC2027-000001/notice", json={}, headers={"Idempotency-Key": "ws"}
            ).json()
            assert body["code"] == "0000"
            assert not isinstance(body.get("receipt_id"), str) and not isinstance(body["duplicate"], bool)
            continue
        body = verify(client, service, guardian["id_number"], guardian["name"], request_id="ws-1").json()
        assert (body["code"], body["request_id"]) == ("0000", "ws-1")
        data = body["data"]
        assert not isinstance(data, dict) or (
            set(data) != DATA_FIELDS[service]
            if service != "property"
            else not isinstance(data["titles"], list) or set(data["titles"][0]) != TITLE_FIELDS
        )
    if service == "platform":  # the platform recorded the push before spoiling its answer
        assert len(client.get("/platform/v1/cases/SC2027-000001").json()["notice"]) == 1


def test_huge_body_is_valid_json_of_several_mib(client, sample_population):
    guardian = person_with_all_records(sample_population)
    client.put("/admin/faults/property", json={"huge_body_rate": 1.0})
    answer = verify(client, "property", guardian["id_number"], guardian["name"])
    assert answer.status_code == 200 and "content-length" not in answer.headers
    assert len(answer.content) > 5 * 1024 * 1024
    body = answer.json()
    assert (
        body["code"] == "0000" and body["data"] == sample_population.records["property"][guardian["id_number"]]["data"]
    )
    assert client.get("/admin/stats").json()["stats"]["property"]["bytes_sent"] == len(answer.content)


def test_slow_drip_outlasts_a_per_read_timeout(client, sample_population):
    guardian = person_with_all_records(sample_population)
    client.put("/admin/faults/social_insurance", json={"slow_drip_rate": 1.0, "drip_seconds": 1.2})
    started = time.monotonic()
    # A 0.5 s timeout in httpx is per read: every few bytes reset it, so the whole answer gets through.
    answer = verify(client, "social_insurance", guardian["id_number"], guardian["name"], timeout=0.5)
    assert time.monotonic() - started >= 1.1
    assert answer.json()["data"] == sample_population.records["social_insurance"][guardian["id_number"]]["data"]


def test_hostile_switches_are_validated_seeded_and_reset(client):
    for field, value in [
        ("bad_json_rate", 1.5),
        ("slow_drip_rate", -0.1),
        ("drip_seconds", 0),
        ("huge_body_rate", "x"),
    ]:
        answer = client.put("/admin/faults/hukou", json={field: value})
        assert (answer.status_code, answer.json()["field"]) == (400, field)
    faults = client.put("/admin/faults/hukou", json={"bad_json_rate": 0.5, "seed": 11}).json()["faults"]
    assert faults["bad_json_rate"] == 0.5 and faults["drip_seconds"] == 30.0

    def spoiled():
        answers = [verify(client, "hukou", UNKNOWN_NUMBER, "张三") for _ in range(12)]
        return [answer.status_code == 200 and not _is_json(answer.content) for answer in answers]

    first = spoiled()
    client.put("/admin/faults/hukou", json={"seed": 11})
    assert spoiled() == first and True in first and False in first
    client.delete("/admin/faults")
    assert client.get("/admin/faults").json()["faults"]["hukou"]["bad_json_rate"] == 0.0


def test_can_start_and_stop_several_times(sample_population):
    for _ in range(3):
        with start_in_thread(sample_population) as running:
            assert httpx.get(f"{running.base_url}/healthz").json()["status"] == "ok"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{running.base_url}/healthz", timeout=1)
