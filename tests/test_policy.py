"""District policies: loading the versioned files and the acceptance conditions (受理条件)."""

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from enrollment.application import Application, Stage, age_on
from enrollment.policy import DEFAULT_POLICIES_DIR, PolicyBook, eligibility_problems, policy_book
from tests.support.applications import VALID
from tests.support.policies import district_policy


def test_every_district_has_zones_and_a_versioned_policy():
    book = policy_book()
    assert book.codes() == ["510104", "510105", "510106", "510107", "510108", "510703", "510704"]
    for code in book.codes():
        policy = district_policy(code, book)
        assert policy.version.startswith(policy.city_code + "@")
        assert policy.zones and all(zone.schools for zone in policy.zones)


def test_district_overrides_apply_on_top_of_city_defaults():
    assert district_policy("510104").required_verifications("hukou") == ["hukou", "property"]
    assert district_policy("510105").required_verifications("hukou") == ["hukou"]
    assert district_policy("510106").registration_types["non_hukou"].min_social_insurance_months == 6
    assert district_policy("510104").registration_types["non_hukou"].min_social_insurance_months == 12
    assert district_policy("510107").deadlines.review_reminder_days == 2
    assert district_policy("510107").deadlines.supplement_days == 10


def test_age_counts_full_years():
    assert age_on(dt.date(2021, 8, 31), dt.date(2027, 8, 31)) == 6
    assert age_on(dt.date(2021, 9, 1), dt.date(2027, 8, 31)) == 5


@pytest.mark.parametrize(
    ("birth", "stage", "problem"),
    [
        (dt.date(2021, 8, 31), "primary", None),
        (dt.date(2021, 9, 1), "primary", "requires age 6 by 2027-08-31, child is 5"),
        (dt.date(2018, 8, 31), "primary", "accepts age up to 8"),
        (dt.date(2015, 5, 1), "junior", None),
        (dt.date(2018, 5, 1), "junior", "requires age 11"),
    ],
)
def test_age_rule_of_the_stage(birth, stage, problem):
    base = Application.model_validate(VALID)
    case = base.model_copy(update={"stage": stage, "student": base.student.model_copy(update={"birth_date": birth})})
    problems = eligibility_problems(case, district_policy("510104"))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0] and problems[0].startswith("student.birth_date:")


def test_a_closed_school_year_is_not_eligible():
    case = Application.model_validate(VALID).model_copy(update={"school_year": 2030})
    problems = eligibility_problems(case, district_policy("510104"))
    assert problems and problems[0].startswith("school_year: 2030 is not open")


def test_school_choice_must_be_a_zone_and_school_of_the_district_for_the_stage():
    policy = district_policy("510104")

    def problem(stage: Stage, zone_id: str, school_id: str) -> str:
        found = policy.school_choice_problem(stage, zone_id, school_id)
        assert found is not None, f"{zone_id}/{school_id} for {stage} was accepted"
        return found

    assert policy.school_choice_problem("primary", "JJ-Z01", "JJ-Z01-P01") is None
    assert "not an enrollment zone" in problem("primary", "QY-Z01", "QY-Z01-P01")
    assert "not a school of zone" in problem("primary", "JJ-Z01", "JJ-Z02-P01")
    assert "does not enrol the junior stage" in problem("junior", "JJ-Z01", "JJ-Z01-P01")


def test_a_policy_file_with_escalation_before_reminder_is_refused(tmp_path):
    source = json.loads((DEFAULT_POLICIES_DIR / "510700-mianyang.json").read_text(encoding="utf-8"))
    source["defaults"]["deadlines"]["review_escalation_days"] = 1
    (tmp_path / "510700.json").write_text(json.dumps(source))
    with pytest.raises(ValidationError, match="review_escalation_days must be later"):
        PolicyBook.load(tmp_path)
