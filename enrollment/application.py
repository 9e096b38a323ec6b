"""The application a parent submits, validated before any case is started.

Every rule raises an error whose location names the field and whose message
names the rule, so a rejected application tells the applicant what to fix.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from enrollment import identity

Stage = Literal["primary", "junior"]
RegistrationType = Literal["hukou", "non_hukou"]
Channel = Literal["platform", "enrollment_system", "service_point"]
Gender = Literal["male", "female"]
Relation = Literal["father", "mother", "guardian"]

# Chinese names, including the middle dot of minority names (买买提·艾力), and
# Latin letters for foreign-born guardians; digits, markup and control
# characters never belong in a name.
_NAME = re.compile(r"^[\u3400-\u9fff\uf900-\ufaffA-Za-z][\u3400-\u9fff\uf900-\ufaffA-Za-z·・. '-]*$")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
ApplicationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{5,39}$")]
# [0-9], not \d: \d also matches Arabic-Indic and full-width digits.
DistrictCode = Annotated[str, StringConstraints(pattern=r"^51[0-9]{4}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^1[3-9][0-9]{9}$")]
PlaceId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
# The pattern is for the JSON Schema only (GET /v1/schemas/application.json): the validators below check the
# number itself and accept surrounding spaces, which a StringConstraints pattern would refuse with its own message.
IdentityNumber = Annotated[
    str,
    Field(
        json_schema_extra={
            "pattern": "^[1-9][0-9]{16}[0-9Xx]$",
            "description": "resident identity number (居民身份证号码), GB 11643-1999: region code, birth date"
            " YYYYMMDD, sequence (odd male, even female), ISO 7064 MOD 11-2 check character (0-9 or X)",
        }
    ),
]


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise PydanticCustomError(
            "name_characters", "name may hold only Chinese or Latin letters, '·', spaces, '.', \"'\" and '-'"
        )
    return value


def _check_identity_number(value: str) -> str:
    value = value.strip().upper()
    try:
        identity.parse(value)
    except identity.IdentityNumberError as exc:
        raise PydanticCustomError("gb11643", str(exc)) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Student(_Strict):
    name: Name
    gender: Gender
    birth_date: dt.date
    id_number: IdentityNumber

    _name = field_validator("name")(_check_name)

    @field_validator("id_number")
    @classmethod
    def _matches_declared_person(cls, value: str, info: ValidationInfo) -> str:
        value = _check_identity_number(value)
        birth, gender = identity.parse(value)
        declared_birth = info.data.get("birth_date")
        declared_gender = info.data.get("gender")
        if declared_birth is not None and birth != declared_birth:
            raise PydanticCustomError("id_birth_date", "birth date in the identity number does not match birth_date")
        if declared_gender is not None and gender != declared_gender:
            raise PydanticCustomError(
                "id_gender", "sequence digit of the identity number does not match gender (odd male, even female)"
            )
        return value


class Guardian(_Strict):
    name: Name
    id_number: IdentityNumber
    relation: Relation
    phone: Phone

    _name = field_validator("name")(_check_name)
    _id = field_validator("id_number")(_check_identity_number)


class SchoolChoice(_Strict):
    zone_id: PlaceId
    school_id: PlaceId


class Application(_Strict):
    """One application to enrol one child, as the parent filled it in."""

    application_id: ApplicationId
    school_year: int = Field(ge=2024, le=2100)
    stage: Stage
    registration_type: RegistrationType
    channel: Channel
    district_code: DistrictCode
    student: Student
    guardians: list[Guardian] = Field(min_length=1, max_length=4)
    school_choice: SchoolChoice | None = None

    @field_validator("guardians")
    @classmethod
    def _guardians_fit_the_family(cls, guardians: list[Guardian], info: ValidationInfo) -> list[Guardian]:
        """The people must make sense together: distinct, none of them the child, ages that fit the relation."""
        numbers = [guardian.id_number for guardian in guardians]
        if len(set(numbers)) != len(numbers):
            raise PydanticCustomError("distinct_guardians", "each guardian must have a different id_number")
        student: Student | None = info.data.get("student")
        school_year: int | None = info.data.get("school_year")
        if student is None or school_year is None:
            return guardians  # already refused for its own fields
        if student.id_number in numbers:
            raise PydanticCustomError("guardian_is_student", "a guardian's id_number cannot be the student's")
        on = dt.date(school_year, 8, 31)
        for number, guardian in enumerate(guardians, start=1):
            birth, gender = identity.parse(guardian.id_number)
            expected = {"father": "male", "mother": "female"}.get(guardian.relation)
            if expected is not None and gender != expected:
                raise PydanticCustomError(
                    "relation_gender",
                    "guardian {n}: a {relation}'s id_number must be a {gender}'s",
                    {"n": number, "relation": guardian.relation, "gender": "man" if expected == "male" else "woman"},
                )
            if guardian.relation in ("father", "mother") and age_on(birth, student.birth_date) < MIN_PARENT_AGE_GAP:
                raise PydanticCustomError(
                    "parent_age",
                    "guardian {n}: a parent must be at least {gap} years older than the student",
                    {"n": number, "gap": MIN_PARENT_AGE_GAP},
                )
            if age_on(birth, on) < ADULT_AGE:
                raise PydanticCustomError(
                    "guardian_age",
                    "guardian {n}: must be {adult} or older on 31 August of the school year",
                    {"n": number, "adult": ADULT_AGE},
                )
        return guardians


# A parent at least this many years older than the child; any guardian an adult.
MIN_PARENT_AGE_GAP = 14
ADULT_AGE = 18


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Age in full years on a day."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


_PLAIN_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _path_part(part: str | int) -> str:
    # Unknown keys are the sender's text: shown only when they look like a field name, never
    # when they could carry personal data, line breaks or megabytes.
    return str(part) if isinstance(part, int) or _PLAIN_FIELD_NAME.match(part) else "<unexpected field>"


def error_lines(errors: Iterable[Mapping[str, Any]], whole: str = "application") -> list[str]:
    """One line per broken rule: 'field.path: rule' (`whole` when the rule is about the whole document).

    Only the location and the rule's message are read: input values are never echoed (they may be personal data).
    """
    return [f"{'.'.join(_path_part(part) for part in item['loc']) or whole}: {item['msg']}" for item in errors]


def describe_errors(error: ValidationError) -> list[str]:
    return error_lines(error.errors(include_input=False, include_url=False))
