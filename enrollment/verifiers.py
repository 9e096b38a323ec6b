"""The four verifications (数据核验), in one registry: who answers, where, on which queue, and what each fills.

Everything that names a verifier reads it from here: the workflow (which
activity and queue), the activities (which endpoint), the workers (which
queues to poll), the stand-ins (which routes to serve), the console and the
API (labels), the benchmark. Adding a verifier is one entry here (and its name
in `Verifier`) plus the activity that asks its department.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from enrollment.labels import Label

Verifier = Literal["hukou", "residence_permit", "social_insurance", "property"]
DepartmentName = Literal["public_security", "social_insurance", "natural_resources"]
Subject = Literal["student", "guardians"]


@dataclass(frozen=True)
class Department:
    """A department that shares its data with the enrollment system."""

    name: DepartmentName
    label: Label
    # The stand-ins serve the department under this prefix; production gives its own base URL.
    standin_prefix: str


@dataclass(frozen=True)
class VerifierSpec:
    name: Verifier
    department: Department
    label: Label
    # The department's verify endpoint, under its base URL.
    path: str
    # Whose records are asked for: the student's (hukou) or each guardian's.
    asks_about: Subject
    # Where the filled elements came from, as the reviewer and the archive show it.
    source: str
    # element -> field of the department's record (25 elements across the four).
    elements: dict[str, str]
    # The paper material this verification spares the family (4项材料免提交).
    exempts: Label

    @property
    def activity(self) -> str:
        """The activity type that asks the department."""
        return f"verify_{self.name}"

    @property
    def task_queue(self) -> str:
        """Each verifier has its own queue, so the server holds each department to its own call rate."""
        return f"enrollment-verification-{self.name.replace('_', '-')}"


PUBLIC_SECURITY = Department("public_security", Label("公安厅", "Public Security"), "/public-security")
SOCIAL_INSURANCE = Department(
    "social_insurance", Label("人力资源社会保障厅", "Human Resources and Social Security"), "/social-insurance"
)
NATURAL_RESOURCES = Department("natural_resources", Label("自然资源厅", "Natural Resources"), "/natural-resources")
DEPARTMENTS: tuple[Department, ...] = (PUBLIC_SECURITY, SOCIAL_INSURANCE, NATURAL_RESOURCES)

REGISTRY: dict[Verifier, VerifierSpec] = {
    spec.name: spec
    for spec in (
        VerifierSpec(
            name="hukou",
            department=PUBLIC_SECURITY,
            label=Label("户籍", "hukou"),
            path="/hukou/v1/verify",
            asks_about="student",
            source="public_security.hukou",
            elements={
                "student_name": "name",
                "gender": "gender",
                "ethnicity": "ethnicity",
                "birth_date": "birth_date",
                "birthplace": "birthplace",
                "hukou_address": "hukou_address",
                "household_head_name": "household_head_name",
                "relation_to_household_head": "relation_to_head",
                "hukou_entered_on": "entered_on",
            },
            exempts=Label("居民户口簿", "household register (hukou booklet)"),
        ),
        VerifierSpec(
            name="residence_permit",
            department=PUBLIC_SECURITY,
            label=Label("父母的居住证明", "parents' proof of residence"),
            path="/residence-permit/v1/verify",
            asks_about="guardians",
            source="public_security.residence_permit",
            elements={
                "residence_permit_number": "permit_number",
                "residence_address": "residence_address",
                "permit_issuing_authority": "issuing_authority",
                "permit_valid_from": "valid_from",
                "permit_valid_until": "valid_until",
            },
            exempts=Label("父母的居住证明", "parents' proof of residence"),
        ),
        VerifierSpec(
            name="social_insurance",
            department=SOCIAL_INSURANCE,
            label=Label("社保", "social insurance"),
            path="/v1/contributions/verify",
            asks_about="guardians",
            source="social_insurance.contributions",
            elements={
                "insured_employer": "employer",
                "insurance_type": "insurance_type",
                "insured_region": "insured_region_code",
                "first_insured_month": "first_insured_month",
                "months_paid": "months_paid",
            },
            exempts=Label("社会保险参保证明", "proof of social insurance enrolment"),
        ),
        VerifierSpec(
            name="property",
            department=NATURAL_RESOURCES,
            label=Label("房产", "property"),
            path="/property/v1/verify",
            asks_about="guardians",
            source="natural_resources.property",
            elements={
                "title_certificate_number": "certificate_number",
                "property_owner": "owner",
                "property_address": "property_address",
                "floor_area_m2": "floor_area_m2",
                "property_registered_on": "registered_on",
                "co_ownership": "co_ownership",
            },
            exempts=Label("不动产权证明", "proof of real-estate title"),
        ),
    )
}
VERIFIERS: tuple[Verifier, ...] = tuple(REGISTRY)

if set(VERIFIERS) != set(Verifier.__args__):  # type: ignore[attr-defined]
    raise RuntimeError("enrollment.verifiers: Verifier and REGISTRY must name the same verifiers")
