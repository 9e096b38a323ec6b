"""Phase two as the scheme describes it: the platform accepts (受理) and dispatches to the API;
phase one: the front end.

The stand-in platform and enrollment-system front end hand applications in through the product's API with
their own client credentials, over real HTTP, and the platform keeps the API's answer as the acknowledgement.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from api.callers import RegisteredClient
from enrollment.identity import LookupSecret
from standins.applicants import FrontDoor
from standins.population import Population
from standins.runner import RunningStandins, start_in_thread
from tests.support.api import served_api
from tests.support.served import ServedApp

CLIENTS = [
    RegisteredClient(client_id="platform", kind="platform", secret=SecretStr("platform-secret")),
    RegisteredClient(client_id="enrollment-system", kind="enrollment_system", secret=SecretStr("front-end-secret")),
]


@pytest.fixture(scope="module")
async def dispatching_api(dev_server, environment, worker, database_url) -> AsyncIterator[ServedApp]:
    async with served_api(dev_server.address, database_url, CLIENTS, LookupSecret(b"front-ends", "standard")) as served:
        yield served


@pytest.fixture(scope="module")
def applicant_side(
    dispatching_api: ServedApp, population: Population, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStandins]:
    """A second stand-in server, whose platform and front end know the API and their credentials."""
    clients_file = Path(tmp_path_factory.mktemp("clients")) / "clients.json"
    listed = [{**client.model_dump(), "secret": client.secret.get_secret_value()} for client in CLIENTS]
    clients_file.write_text(json.dumps({"clients": listed}), encoding="utf-8")
    front_door = FrontDoor.from_clients_file(dispatching_api.base_url, clients_file)
    running = start_in_thread(population, front_door=front_door)
    yield running
    running.stop()


async def test_the_platform_accepts_dispatches_and_keeps_the_answer_as_acknowledgement(applicant_side, population):
    chosen = [population.by_scenario("hukou_verified")[5], population.by_scenario("not_eligible_age")[3]]
    async with httpx.AsyncClient(base_url=applicant_side.base_url, timeout=60) as standins:
        answer = (await standins.post("/platform/admin/accept", json={"applications": chosen})).json()
        results = answer["results"]
        assert [result["status_code"] for result in results] == [201, 201]
        assert [result["answer"]["acceptance"]["eligible"] for result in results] == [True, False]
        record = (await standins.get(f"/platform/v1/cases/{chosen[0]['application_id']}")).json()
    assert len(record["acceptance"]) == 1
    assert record["dispatch"][0]["body"]["answer"]["case_id"] == f"case-{chosen[0]['application_id']}"


async def test_the_enrollment_systems_front_end_hands_in_for_phase_one(applicant_side, population):
    chosen = population.by_scenario("non_hukou_verified")[6]
    async with httpx.AsyncClient(base_url=applicant_side.base_url, timeout=60) as standins:
        answer = (await standins.post("/enrollment-system/admin/apply", json={"applications": [chosen]})).json()
    [result] = answer["results"]
    assert result["status_code"] == 201 and result["answer"]["acceptance"]["eligible"] is True


async def test_without_an_api_the_applicant_side_says_so(standins):
    async with httpx.AsyncClient(base_url=standins.base_url) as client:
        refused = await client.post("/platform/admin/accept", json={"applications": []})
    assert refused.status_code == 503
