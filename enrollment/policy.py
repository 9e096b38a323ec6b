"""District enrollment policies: acceptance conditions (受理条件), deadlines, zones and schools.

Policies differ by city and district and may change during a season, so they
live in versioned data files under `policies/`, one per city with district
overrides, never in code. A case captures the policy it was accepted under and
keeps it to the end.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from enrollment.application import Application, RegistrationType, Stage, age_on
from enrollment.verifiers import Verifier

DEFAULT_POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"
DEFAULT_CLAIM_LEASE_HOURS = 4.0


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageRule(_Frozen):
    """Age bounds in full years on 31 August of the school year."""

    min_age: int = Field(ge=0, le=20)
    max_age: int = Field(ge=0, le=20)


class RegistrationRule(_Frozen):
    required_verifications: list[Verifier] = Field(min_length=1)
    min_social_insurance_months: int = Field(ge=0)


class Deadlines(_Frozen):
    """Days, possibly fractional (a pilot district may allow half a day)."""

    offline_registration_days: float = Field(gt=0)
    school_selection_days: float = Field(gt=0)
    supplement_days: float = Field(gt=0)
    review_reminder_days: float = Field(gt=0)
    review_escalation_days: float = Field(gt=0)

    @model_validator(mode="after")
    def _escalation_after_reminder(self) -> Deadlines:
        if self.review_escalation_days <= self.review_reminder_days:
            raise ValueError("review_escalation_days must be later than review_reminder_days")
        return self


class VerificationPatience(_Frozen):
    """How long a case keeps asking a department that does not answer, before it sends the family to the
    service point. A department that is down has not said the family's data is wrong: waiting a working
    day costs the family nothing, a trip to the service point costs it a morning (减跑动)."""

    default_hours: float = Field(default=24, gt=0)
    hours: dict[Verifier, float] = Field(default_factory=dict)

    @field_validator("hours")
    @classmethod
    def _positive(cls, hours: dict[Verifier, float]) -> dict[Verifier, float]:
        for verifier, value in hours.items():
            if value <= 0:
                raise ValueError(f"{verifier}: must be more than 0 hours")
        return hours

    def of(self, verifier: Verifier) -> dt.timedelta:
        return dt.timedelta(hours=self.hours.get(verifier, self.default_hours))


class School(_Frozen):
    school_id: str
    name: str
    stages: list[Stage]


class Zone(_Frozen):
    zone_id: str
    name: str
    schools: list[School]


class DistrictPolicy(_Frozen):
    """The effective policy of one district: city defaults with the district's overrides applied."""

    district_code: str
    district_name: str
    city_code: str
    city_name: str
    version: str
    open_school_years: list[int]
    stages: dict[Stage, StageRule]
    registration_types: dict[RegistrationType, RegistrationRule]
    deadlines: Deadlines
    verification_patience: VerificationPatience = VerificationPatience()
    # How long a reviewer's claim on a case holds unless renewed: a reviewer who leaves does not block it.
    claim_lease_hours: float = Field(default=DEFAULT_CLAIM_LEASE_HOURS, gt=0)
    zones: list[Zone]

    def required_verifications(self, registration_type: RegistrationType) -> list[Verifier]:
        return self.registration_types[registration_type].required_verifications

    def schools_for(self, stage: Stage) -> list[tuple[Zone, School]]:
        """Every (zone, school) of the district that enrols the stage, in policy order."""
        return [(zone, school) for zone in self.zones for school in zone.schools if stage in school.stages]

    def school_choice_problem(self, stage: Stage, zone_id: str, school_id: str) -> str | None:
        """Why a school choice is refused, or None when the district offers it for the stage."""
        zone = next((zone for zone in self.zones if zone.zone_id == zone_id), None)
        if zone is None:
            return f"zone_id: {zone_id} is not an enrollment zone of district {self.district_code}"
        school = next((school for school in zone.schools if school.school_id == school_id), None)
        if school is None:
            return f"school_id: {school_id} is not a school of zone {zone_id}"
        if stage not in school.stages:
            return f"school_id: {school_id} does not enrol the {stage} stage"
        return None


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class PolicyBook:
    """Every district policy found in a policies folder, keyed by district code."""

    def __init__(self, districts: dict[str, DistrictPolicy]):
        self._districts = districts

    @classmethod
    def load(cls, folder: Path = DEFAULT_POLICIES_DIR) -> PolicyBook:
        districts: dict[str, DistrictPolicy] = {}
        for path in sorted(folder.glob("*.json")):
            city = json.loads(path.read_text(encoding="utf-8"))
            for code, district in city["districts"].items():
                if code in districts:
                    raise ValueError(f"{path.name}: district {code} is defined in two policy files")
                effective = _deep_merge(city["defaults"], district.get("overrides", {}))
                districts[code] = DistrictPolicy(
                    district_code=code,
                    district_name=district["name"],
                    city_code=city["city_code"],
                    city_name=city["city_name"],
                    version=f"{city['city_code']}@{city['version']}",
                    open_school_years=city["open_school_years"],
                    zones=district["zones"],
                    **effective,
                )
        return cls(districts)

    def district(self, code: str) -> DistrictPolicy | None:
        return self._districts.get(code)

    def codes(self) -> list[str]:
        return sorted(self._districts)


@lru_cache(maxsize=8)
def _policy_book_as_of(folder: Path, _fingerprint: tuple[tuple[str, int, int], ...]) -> PolicyBook:
    return PolicyBook.load(folder)


def policy_book(folder: Path = DEFAULT_POLICIES_DIR) -> PolicyBook:
    """The policies in force: re-read when a file in the folder is added, removed or changed."""
    fingerprint = tuple(
        (path.name, path.stat().st_mtime_ns, path.stat().st_size) for path in sorted(folder.glob("*.json"))
    )
    return _policy_book_as_of(folder, fingerprint)


def eligibility_problems(application: Application, policy: DistrictPolicy) -> list[str]:
    """Reasons the application fails the acceptance conditions (受理条件); empty when it meets them.

    Pure and deterministic: the workflow calls it with the policy captured at intake.
    """
    problems = []
    if application.school_year not in policy.open_school_years:
        problems.append(
            f"school_year: {application.school_year} is not open for applications in {policy.district_name}"
        )
    rule = policy.stages[application.stage]
    reference = dt.date(application.school_year, 8, 31)
    age = age_on(application.student.birth_date, reference)
    if age < rule.min_age:
        problems.append(
            f"student.birth_date: {application.stage} stage requires age {rule.min_age} by {reference:%Y-%m-%d},"
            f" child is {age}"
        )
    elif age > rule.max_age:
        problems.append(
            f"student.birth_date: {application.stage} stage accepts age up to {rule.max_age} on {reference:%Y-%m-%d},"
            f" child is {age}"
        )
    return problems


def intake_problems(application: Application, book: PolicyBook) -> list[str]:
    """What the district's policy refuses before a case is started: an unknown district, a school it does not offer.

    With the application model's own rules, the one set of intake rules every channel applies.
    """
    policy = book.district(application.district_code)
    if policy is None:
        return [f"district_code: no enrollment policy is configured for district {application.district_code}"]
    choice = application.school_choice
    problem = choice and policy.school_choice_problem(application.stage, choice.zone_id, choice.school_id)
    return [f"school_choice.{problem}"] if problem else []
