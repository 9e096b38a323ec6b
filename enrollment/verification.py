"""The four verifications: what each department answers and how an answer is judged.

Which of the 25 auto-filled elements (25个要素免填写) each fills is in the registry,
`enrollment.verifiers`.

Judging is pure so the same rules serve the activities and their tests. A
department's "not found" or "name does not match" is an answer, not a failure:
it becomes an outcome here and is never retried.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from enrollment.application import RegistrationType
from enrollment.verifiers import REGISTRY, Verifier

# Answer codes shared by the departments' data-sharing interfaces.
CODE_FOUND = "0000"
CODE_NOT_FOUND = "1001"
CODE_NAME_MISMATCH = "1002"


class MalformedAnswer(ValueError):
    """A department's record that does not have the documented shape; the message names fields, never values."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def parse(cls, data: dict[str, Any] | None) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            fields = sorted(
                {".".join(str(part) for part in error["loc"]) or "record" for error in exc.errors(include_input=False)}
            )
            raise MalformedAnswer(f"{cls.__name__} malformed at {', '.join(fields)}") from None


class HukouRecord(_Record):
    name: str
    gender: str
    ethnicity: str
    birth_date: dt.date
    birthplace: str
    hukou_address: str
    hukou_region_code: str
    household_head_name: str
    relation_to_head: str
    entered_on: dt.date


class ResidencePermitRecord(_Record):
    permit_number: str
    name: str
    residence_address: str
    residence_region_code: str
    issuing_authority: str
    valid_from: dt.date
    valid_until: dt.date


class InsuranceRecord(_Record):
    name: str
    employer: str
    insurance_type: str
    insured_region_code: str
    first_insured_month: str
    months_paid: int = Field(ge=0)
    status: Literal["active", "suspended"]


class PropertyTitle(_Record):
    certificate_number: str
    owner: str
    property_address: str
    property_region_code: str
    floor_area_m2: float
    registered_on: dt.date
    co_ownership: str


class PropertyRecord(_Record):
    titles: list[PropertyTitle]


class Person(BaseModel):
    name: str
    id_number: str


class VerificationRequest(BaseModel):
    """One verifier's check of one case; the persons it asks about follow from the verifier."""

    application_id: str
    verifier: Verifier
    registration_type: RegistrationType
    district_code: str
    city_code: str
    min_social_insurance_months: int = 0
    student: Person
    guardians: list[Person]


class VerificationResult(BaseModel):
    verifier: Verifier
    outcome: Literal["matched", "mismatch", "not_found"]
    reason: str | None = None
    elements: dict[str, str] = Field(default_factory=dict, description="element -> value, only when matched")


class Answer(BaseModel):
    """One person's answer from a department: its code and, when found, the record."""

    code: str
    data: dict[str, Any] | None = None


def _elements(verifier: Verifier, record: BaseModel) -> dict[str, str]:
    values = record.model_dump(mode="json")
    return {element: str(values[field]) for element, field in REGISTRY[verifier].elements.items()}


def _none_found(verifier: Verifier, answers: list[Answer]) -> VerificationResult | None:
    """The outcome when no answer holds a usable record, or None when at least one does."""
    if any(answer.code == CODE_FOUND for answer in answers):
        return None
    if any(answer.code == CODE_NAME_MISMATCH for answer in answers):
        return VerificationResult(
            verifier=verifier, outcome="mismatch", reason="name does not match the identity number"
        )
    return VerificationResult(verifier=verifier, outcome="not_found", reason="no record")


def judge_hukou(request: VerificationRequest, answer: Answer) -> VerificationResult:
    if (early := _none_found("hukou", [answer])) is not None:
        return early
    record = HukouRecord.parse(answer.data)
    in_district = record.hukou_region_code == request.district_code
    if request.registration_type == "hukou" and not in_district:
        return VerificationResult(
            verifier="hukou", outcome="mismatch", reason="hukou is registered outside the applied district"
        )
    if request.registration_type == "non_hukou" and in_district:
        return VerificationResult(
            verifier="hukou", outcome="mismatch", reason="hukou is in the applied district: apply as hukou-local"
        )
    return VerificationResult(verifier="hukou", outcome="matched", elements=_elements("hukou", record))


def judge_residence_permits(request: VerificationRequest, answers: list[Answer], today: dt.date) -> VerificationResult:
    if (early := _none_found("residence_permit", answers)) is not None:
        return early
    permits = [ResidencePermitRecord.parse(a.data) for a in answers if a.code == CODE_FOUND]
    local = [p for p in permits if p.residence_region_code == request.district_code]
    if not local:
        return VerificationResult(
            verifier="residence_permit", outcome="mismatch", reason="no residence permit in the applied district"
        )
    valid = [p for p in local if p.valid_from <= today <= p.valid_until]
    if not valid:
        return VerificationResult(
            verifier="residence_permit", outcome="mismatch", reason="residence permit is not valid today"
        )
    best = max(valid, key=lambda permit: permit.valid_until)
    return VerificationResult(
        verifier="residence_permit", outcome="matched", elements=_elements("residence_permit", best)
    )


def judge_social_insurance(request: VerificationRequest, answers: list[Answer]) -> VerificationResult:
    if (early := _none_found("social_insurance", answers)) is not None:
        return early
    records = [InsuranceRecord.parse(a.data) for a in answers if a.code == CODE_FOUND]
    in_city = [r for r in records if r.insured_region_code[:4] == request.city_code[:4] and r.status == "active"]
    if not in_city:
        return VerificationResult(
            verifier="social_insurance", outcome="mismatch", reason="no active insurance in the applied city"
        )
    best = max(in_city, key=lambda record: record.months_paid)
    if best.months_paid < request.min_social_insurance_months:
        return VerificationResult(
            verifier="social_insurance",
            outcome="mismatch",
            reason=f"{best.months_paid} months paid, policy requires {request.min_social_insurance_months}",
        )
    return VerificationResult(
        verifier="social_insurance", outcome="matched", elements=_elements("social_insurance", best)
    )


def judge_property(request: VerificationRequest, answers: list[Answer]) -> VerificationResult:
    if (early := _none_found("property", answers)) is not None:
        return early
    titles = [t for a in answers if a.code == CODE_FOUND for t in PropertyRecord.parse(a.data).titles]
    local = [t for t in titles if t.property_region_code == request.district_code]
    if not local:
        reason = "no property title in the applied district" if titles else "no property title"
        return VerificationResult(verifier="property", outcome="mismatch" if titles else "not_found", reason=reason)
    earliest = min(local, key=lambda title: title.registered_on)
    return VerificationResult(verifier="property", outcome="matched", elements=_elements("property", earliest))
