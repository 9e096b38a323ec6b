"""The scheme's attachments (附件) as data the platform can show: guide, materials, verification list, form.

- `GET /v1/guide`: the applicant's guide (附件2 申请人办事指南) for one district, stage and registration type;
- `GET /v1/materials`: the materials list (附件4 申请材料清单), with the materials a verification spares;
- `GET /v1/verification-items`: the data verification list (附件3 数据查询验证清单), the 25 elements;
- `GET /v1/schemas/application.json`: the registration form (附件5 报名表) as JSON Schema.

Everything is read from what a case itself applies: the district policies (the folder intake reads,
`ENROLL_POLICIES_DIR`), the verifier registry and the application model, so the platform never shows a rule that
a case does not follow. Nothing here is case data, so no endpoint asks who the caller is.
The reviewer's guide (附件1) is `docs/reviewer-guide.md`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, computed_field

from api.problems import MEDIA_TYPE, ApiProblem, Problem
from enrollment.application import Application, DistrictCode, RegistrationType, Stage
from enrollment.labels import Label
from enrollment.policy import Deadlines, DistrictPolicy, Zone, policy_book
from enrollment.verifiers import REGISTRY, Department, DepartmentName, Subject, Verifier, VerifierSpec

router = APIRouter(prefix="/v1", tags=["reference"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {MEDIA_TYPE: {}}} for status in (404, 422)
}
# The application's stage (学段) and registration type (报名类型: 户籍、非户籍), which enrollment/ does not label.
STAGE_LABELS: dict[Stage, Label] = {
    "primary": Label("小学一年级", "primary school grade 1"),
    "junior": Label("初中一年级", "junior middle school grade 1"),
}
REGISTRATION_TYPE_LABELS: dict[RegistrationType, Label] = {
    "hukou": Label("户籍", "hukou-local"),
    "non_hukou": Label("非户籍", "non-hukou"),
}
# The flow an applicant goes through (四、办理流程), in order; every guide shows it.
STEPS: tuple[tuple[str, Label, Label], ...] = (
    (
        "apply",
        Label("业务申请", "apply"),
        Label(
            "登录四川政务服务网（天府通办）或省升招系统，进入教育入学“一件事”办理专区，选择入学学段和报名类型，"
            "查看办事指南，在线填写报名表。",
            "Sign in to the Sichuan government service platform (Tianfu Tongban) or the provincial enrollment"
            " system, open the enrollment 'one thing' section, choose the stage and the registration type, read"
            " this guide and fill in the registration form online.",
        ),
    ),
    (
        "acceptance_conditions",
        Label("受理条件", "acceptance conditions"),
        Label(
            "系统核对申请学年是否开放、孩子在该学年8月31日的年龄是否符合本学段要求；不符合申请条件的，线上告知。",
            "The system checks that the school year is open and that the child's age on 31 August of that year"
            " fits the stage; an application that does not meet the conditions is told so online.",
        ),
    ),
    (
        "verification",
        Label("数据核验", "automatic verification"),
        Label(
            "系统向公安、人力资源社会保障、自然资源部门自动核验本区县对该报名类型要求的户籍、居住证、社保缴费和"
            "不动产信息；核验通过的，相应材料免提交，要素免填写。",
            "The system asks Public Security, Human Resources and Social Security and Natural Resources to verify"
            " the hukou, residence permit, social insurance and property records this district requires for the"
            " registration type; what they confirm need not be handed in or typed.",
        ),
    ),
    (
        "school_choice_or_service_point",
        Label("选择学校或前往招生服务点", "school choice or service point"),
        Label(
            "核验通过的，在选校期限内按本地政策选择报名片区和学校；符合申请条件但核验未通过的，线上告知，"
            "请在线下登记期限内携带材料前往当地教育主管部门招生服务点登记。逾期未办理的，申请过期。",
            "Verified: choose the enrollment zone and school the local policy offers, within the school-selection"
            " deadline. Eligible but not verified: you are told online to register with your materials at the"
            " local education bureau's enrollment service point, within the offline-registration deadline. An"
            " application left past its deadline expires.",
        ),
    ),
    (
        "review",
        Label("审核", "review"),
        Label(
            "当地教育主管部门审核人员审核并出具办理意见：同意、不同意或补充材料；要求补充材料的，请在补充期限内"
            "补充，补充后重新审核。",
            "A reviewer of the local education bureau reviews the case and issues a handling opinion: approve,"
            " reject or request a supplement; when asked, send the materials within the supplement deadline and"
            " the case is reviewed again.",
        ),
    ),
    (
        "result",
        Label("结果反馈", "result on the platform"),
        Label(
            "办结后，办理结果和办理意见自动反馈至四川政务服务网，在平台查询。",
            "When the bureau has decided, the result and the handling opinion reach the Sichuan government service"
            " platform automatically; look them up there.",
        ),
    ),
)
# Materials of the list that no verification covers, so no case is spared them (4项材料免提交 names four others).
UNVERIFIED_MATERIALS: tuple[tuple[Label, Label], ...] = (
    (
        Label("教育入学“一件事”报名表", "enrollment 'one thing' registration form"),
        Label(
            "在线填报（格式见 GET /v1/schemas/application.json）；到招生服务点办理的，由招生工作人员登记。",
            "Filled in online (its format: GET /v1/schemas/application.json); at a service point, the staff"
            " register it.",
        ),
    ),
)


class _Reference(BaseModel):
    model_config = ConfigDict(frozen=True)


class LabelModel(_Reference):
    """A display label in the two languages the platform shows."""

    zh: str
    en: str

    @classmethod
    def of(cls, label: Label) -> LabelModel:
        return cls(zh=label.zh, en=label.en)


class DepartmentModel(_Reference):
    name: DepartmentName
    label: LabelModel


class VerifierRef(_Reference):
    """One of the four verifications (数据核验) and the department that answers it."""

    verifier: Verifier
    label: LabelModel
    department: DepartmentModel


class VerificationItem(VerifierRef):
    source: str = Field(description="where the filled elements come from, as the reviewer and the archive show it")
    asks_about: Subject = Field(description="whose records are asked for: the student's or each guardian's")
    exempts: LabelModel = Field(description="the paper material a matched verification spares the family")
    elements: list[str] = Field(description="the form elements a matched verification fills")


class VerificationList(_Reference):
    """The data verification list (附件3 数据查询验证清单): 4 materials spared, 25 elements filled."""

    items: list[VerificationItem]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def element_count(self) -> int:
        return sum(len(item.elements) for item in self.items)


class Material(_Reference):
    label: LabelModel
    required: bool = Field(description="whether this district asks for it from this registration type")
    exempted_by: VerifierRef | None = Field(
        description="the verification that spares it when it matches (else it is brought to the service point);"
        " null: no verification covers it"
    )
    note: LabelModel | None = Field(default=None, description="how it is handed in")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exempted(self) -> bool:
        return self.exempted_by is not None


class MaterialList(_Reference):
    """The materials list (附件4 申请材料清单) of one registration type in one district."""

    district_code: str
    policy_version: str
    registration_type: RegistrationType
    materials: list[Material]


class SchoolYearAges(_Reference):
    """The birth dates the age bounds admit for one open school year, ages counted in full years on `age_on`."""

    school_year: int
    age_on: dt.date
    born_from: dt.date
    born_until: dt.date


class AcceptanceConditions(_Reference):
    """The acceptance conditions (受理条件) the case checks, and the verifications it asks for."""

    min_age: int
    max_age: int
    school_years: list[SchoolYearAges]
    required_verifications: list[VerifierRef]
    min_social_insurance_months: int


class GuideStep(_Reference):
    step: str
    label: LabelModel
    detail: LabelModel


class Guide(_Reference):
    """The applicant's guide (附件2 申请人办事指南) for one district, stage and registration type."""

    district_code: str
    district_name: str
    city_code: str
    city_name: str
    policy_version: str
    open_school_years: list[int]
    stage: Stage
    stage_label: LabelModel
    registration_type: RegistrationType
    registration_type_label: LabelModel
    acceptance_conditions: AcceptanceConditions
    materials: list[Material]
    steps: list[GuideStep]
    deadlines: Deadlines = Field(description="the policy's deadlines in days (reminder and escalation: for reviewers)")
    zones: list[Zone] = Field(description="enrollment zones (报名片区) with only the schools that enrol the stage")


class JsonSchemaResponse(JSONResponse):
    media_type = "application/schema+json"


def _department(department: Department) -> DepartmentModel:
    return DepartmentModel(name=department.name, label=LabelModel.of(department.label))


def _verifier(spec: VerifierSpec) -> VerifierRef:
    return VerifierRef(verifier=spec.name, label=LabelModel.of(spec.label), department=_department(spec.department))


def _district_policy(
    request: Request, district_code: Annotated[DistrictCode, Query(description="the district, e.g. 510104")]
) -> DistrictPolicy:
    """The policy intake holds the district's cases to, from the same folder (the app's settings)."""
    policy = policy_book(request.app.state.settings.policies_dir).district(district_code)
    if policy is None:
        raise ApiProblem(404, [f"district_code: no enrollment policy for district {district_code}"])
    return policy


def _materials(policy: DistrictPolicy, registration_type: RegistrationType) -> list[Material]:
    required = policy.required_verifications(registration_type)
    verified = [
        Material(label=LabelModel.of(spec.exempts), required=spec.name in required, exempted_by=_verifier(spec))
        for spec in REGISTRY.values()
    ]
    unverified = [
        Material(label=LabelModel.of(label), required=True, exempted_by=None, note=LabelModel.of(note))
        for label, note in UNVERIFIED_MATERIALS
    ]
    return verified + unverified


def _school_years(policy: DistrictPolicy, stage: Stage) -> list[SchoolYearAges]:
    """Born from 1 September (year - max_age - 1) to 31 August (year - min_age): the ages `age_on` admits."""
    rule = policy.stages[stage]
    return [
        SchoolYearAges(
            school_year=year,
            age_on=dt.date(year, 8, 31),
            born_from=dt.date(year - rule.max_age - 1, 9, 1),
            born_until=dt.date(year - rule.min_age, 8, 31),
        )
        for year in policy.open_school_years
    ]


def _zones(policy: DistrictPolicy, stage: Stage) -> list[Zone]:
    zones = [
        zone.model_copy(update={"schools": [school for school in zone.schools if stage in school.stages]})
        for zone in policy.zones
    ]
    return [zone for zone in zones if zone.schools]


@router.get("/guide", responses=PROBLEMS)
def guide(
    policy: Annotated[DistrictPolicy, Depends(_district_policy)], stage: Stage, registration_type: RegistrationType
) -> Guide:
    """The applicant's guide for a stage and registration type, from the district's policy in force."""
    rule = policy.stages[stage]
    registration = policy.registration_types[registration_type]
    return Guide(
        district_code=policy.district_code,
        district_name=policy.district_name,
        city_code=policy.city_code,
        city_name=policy.city_name,
        policy_version=policy.version,
        open_school_years=policy.open_school_years,
        stage=stage,
        stage_label=LabelModel.of(STAGE_LABELS[stage]),
        registration_type=registration_type,
        registration_type_label=LabelModel.of(REGISTRATION_TYPE_LABELS[registration_type]),
        acceptance_conditions=AcceptanceConditions(
            min_age=rule.min_age,
            max_age=rule.max_age,
            school_years=_school_years(policy, stage),
            required_verifications=[_verifier(REGISTRY[name]) for name in registration.required_verifications],
            min_social_insurance_months=registration.min_social_insurance_months,
        ),
        materials=_materials(policy, registration_type),
        steps=[
            GuideStep(step=step, label=LabelModel.of(label), detail=LabelModel.of(detail))
            for step, label, detail in STEPS
        ],
        deadlines=policy.deadlines,
        zones=_zones(policy, stage),
    )


@router.get("/materials", responses=PROBLEMS)
def materials(
    policy: Annotated[DistrictPolicy, Depends(_district_policy)], registration_type: RegistrationType
) -> MaterialList:
    """The materials a registration type calls for in a district, and the verification that spares each.

    The district is required: the scheme asks for property proof only "根据需要" and leaves each city and district
    to say which proofs a type needs (青羊区 asks none of hukou-local families, 武侯区 asks it of non-hukou ones),
    so a list without a district would be one no case is held to.
    """
    return MaterialList(
        district_code=policy.district_code,
        policy_version=policy.version,
        registration_type=registration_type,
        materials=_materials(policy, registration_type),
    )


@router.get("/verification-items")
def verification_items() -> VerificationList:
    """Each verification in registry order: its department, whose records it asks for, and the elements it fills."""
    return VerificationList(
        items=[
            VerificationItem(
                verifier=spec.name,
                label=LabelModel.of(spec.label),
                department=_department(spec.department),
                source=spec.source,
                asks_about=spec.asks_about,
                exempts=LabelModel.of(spec.exempts),
                elements=list(spec.elements),
            )
            for spec in REGISTRY.values()
        ]
    )


@router.get(
    "/schemas/application.json",
    response_class=JsonSchemaResponse,
    responses={
        200: {
            "description": "the application (报名表) as JSON Schema (draft 2020-12), as intake validates it",
            "content": {JsonSchemaResponse.media_type: {"schema": {"type": "object"}}},
        }
    },
)
def application_schema() -> JsonSchemaResponse:
    """The registration form as JSON Schema, generated from the model intake validates with.

    The schema cannot hold every rule (the identity number's check character, its match with the birth date
    and gender, a school the district offers): intake still answers those with `field.path: rule` lines.
    """
    return JsonSchemaResponse(Application.model_json_schema())
