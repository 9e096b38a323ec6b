"""The reference endpoints (api/reference.py) against the real policies, registry and application model.

An app with only the reference router, served in process: the endpoints hold no case data and need no Temporal,
database or credentials, so neither does this test.
"""

from __future__ import annotations

import datetime as dt
from typing import get_args

import httpx
import pytest
from fastapi import FastAPI

import api.problems
from api.reference import STEPS, UNVERIFIED_MATERIALS, router
from enrollment.application import Application, RegistrationType, Stage, age_on
from enrollment.labels import Label
from enrollment.policy import DEFAULT_POLICIES_DIR, policy_book
from enrollment.settings import Settings
from enrollment.verifiers import REGISTRY, VERIFIERS
from standins.population import generate
from tests.support.policies import district_policy

DISTRICTS = policy_book().codes()
STAGES: tuple[Stage, ...] = get_args(Stage)
REGISTRATION_TYPES: tuple[RegistrationType, ...] = get_args(RegistrationType)
ID_PATTERN = "^[1-9][0-9]{16}[0-9Xx]$"


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = FastAPI()
    # The committed policies, whatever ENROLL_POLICIES_DIR says, so the expectations below read the same files.
    app.state.settings = Settings().model_copy(update={"policies_dir": DEFAULT_POLICIES_DIR})
    api.problems.install(app)
    app.include_router(router)
    return app


async def get(app: FastAPI, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reference.test") as client:
        return await client.get(path, params=params)


def label(value: Label) -> dict[str, str]:
    return {"zh": value.zh, "en": value.en}


@pytest.mark.parametrize("registration_type", REGISTRATION_TYPES)
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("district_code", DISTRICTS)
async def test_guide_is_the_district_policy(
    app: FastAPI, district_code: str, stage: Stage, registration_type: RegistrationType
) -> None:
    policy = district_policy(district_code)
    response = await get(
        app, "/v1/guide", district_code=district_code, stage=stage, registration_type=registration_type
    )
    assert response.status_code == 200, response.text
    guide = response.json()

    assert (guide["district_name"], guide["city_name"], guide["policy_version"]) == (
        policy.district_name,
        policy.city_name,
        policy.version,
    )
    conditions = guide["acceptance_conditions"]
    rule = policy.stages[stage]
    assert (conditions["min_age"], conditions["max_age"]) == (rule.min_age, rule.max_age)
    assert [item["verifier"] for item in conditions["required_verifications"]] == policy.required_verifications(
        registration_type
    )
    assert (
        conditions["min_social_insurance_months"]
        == policy.registration_types[registration_type].min_social_insurance_months
    )
    assert guide["deadlines"] == policy.deadlines.model_dump()
    assert [step["step"] for step in guide["steps"]] == [step for step, _, _ in STEPS]

    schools = [school for zone in guide["zones"] for school in zone["schools"]]
    assert schools and all(stage in school["stages"] for school in schools)
    offered = {school.school_id for zone in policy.zones for school in zone.schools if stage in school.stages}
    assert {school["school_id"] for school in schools} == offered


async def test_guide_birth_dates_are_the_age_bounds_the_case_applies(app: FastAPI) -> None:
    response = await get(app, "/v1/guide", district_code="510104", stage="primary", registration_type="hukou")
    conditions = response.json()["acceptance_conditions"]
    assert [year["school_year"] for year in conditions["school_years"]] == district_policy("510104").open_school_years
    day = dt.timedelta(days=1)
    for year in conditions["school_years"]:
        on, born_from, born_until = (dt.date.fromisoformat(year[key]) for key in ("age_on", "born_from", "born_until"))
        assert on == dt.date(year["school_year"], 8, 31)
        assert age_on(born_until, on) == conditions["min_age"] and age_on(born_until + day, on) < conditions["min_age"]
        assert age_on(born_from, on) == conditions["max_age"] and age_on(born_from - day, on) > conditions["max_age"]


async def test_unknown_district_is_a_problem_naming_district_code(app: FastAPI) -> None:
    response = await get(app, "/v1/guide", district_code="510199", stage="primary", registration_type="hukou")
    assert response.status_code == 404
    assert response.headers["content-type"] == api.problems.MEDIA_TYPE
    assert response.json()["errors"] == ["district_code: no enrollment policy for district 510199"]

    malformed = await get(app, "/v1/materials", district_code="５１０１０４", registration_type="hukou")
    assert malformed.status_code == 422
    assert any("district_code" in line for line in malformed.json()["errors"])


@pytest.mark.parametrize("registration_type", REGISTRATION_TYPES)
@pytest.mark.parametrize("district_code", DISTRICTS)
async def test_materials_mark_the_registry_exemptions(
    app: FastAPI, district_code: str, registration_type: RegistrationType
) -> None:
    response = await get(app, "/v1/materials", district_code=district_code, registration_type=registration_type)
    assert response.status_code == 200, response.text
    materials = response.json()["materials"]

    exempted = [material for material in materials if material["exempted"]]
    assert [material["label"] for material in exempted] == [label(spec.exempts) for spec in REGISTRY.values()]
    assert [material["exempted_by"]["verifier"] for material in exempted] == list(VERIFIERS)
    required = district_policy(district_code).required_verifications(registration_type)
    assert [material["exempted_by"]["verifier"] for material in exempted if material["required"]] == [
        name for name in VERIFIERS if name in required
    ]

    others = [material for material in materials if not material["exempted"]]
    assert [(material["label"], material["note"]) for material in others] == [
        (label(name), label(note)) for name, note in UNVERIFIED_MATERIALS
    ]
    assert all(material["exempted_by"] is None and material["required"] for material in others)


async def test_materials_need_a_district(app: FastAPI) -> None:
    response = await get(app, "/v1/materials", registration_type="hukou")
    assert response.status_code == 422
    assert response.json()["errors"] == ["query.district_code: Field required"]


async def test_verification_items_are_the_registry(app: FastAPI) -> None:
    response = await get(app, "/v1/verification-items")
    assert response.status_code == 200
    body = response.json()
    assert body["element_count"] == 25 == sum(len(spec.elements) for spec in REGISTRY.values())
    assert [
        (item["verifier"], item["department"]["label"], item["label"], item["source"], item["asks_about"])
        for item in body["items"]
    ] == [
        (spec.name, label(spec.department.label), label(spec.label), spec.source, spec.asks_about)
        for spec in REGISTRY.values()
    ]
    assert [item["elements"] for item in body["items"]] == [list(spec.elements) for spec in REGISTRY.values()]


async def test_application_schema_is_the_model_with_id_number_patterns(app: FastAPI) -> None:
    response = await get(app, "/v1/schemas/application.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/schema+json"
    schema = response.json()
    assert schema == Application.model_json_schema()
    for model in ("Student", "Guardian"):
        assert schema["$defs"][model]["properties"]["id_number"]["pattern"] == ID_PATTERN


async def test_application_schema_validates_generated_applications(app: FastAPI) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator((await get(app, "/v1/schemas/application.json")).json())
    applications = generate(seed=1, families=20).applications
    assert applications
    for application in applications:
        Application.model_validate(application)
        validator.validate(application)

    wrong = {**applications[0], "student": {**applications[0]["student"], "id_number": "51010420190101123"}}
    assert not validator.is_valid(wrong)


def test_id_number_pattern_is_documentation_only() -> None:
    """Intake still accepts what it accepted before the schema carried a pattern: a number with spaces around."""
    application = generate(seed=1, families=20).applications[0]
    guardian = application["guardians"][0]
    padded = {**application, "guardians": [{**guardian, "id_number": f" {guardian['id_number']} "}]}
    assert Application.model_validate(padded).guardians[0].id_number == guardian["id_number"]
