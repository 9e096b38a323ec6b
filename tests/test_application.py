"""Intake validation: bad applications are refused with the field and the rule, and nothing else."""

import copy

import pytest
from pydantic import ValidationError

from enrollment.application import Application, describe_errors
from tests.support.applications import STUDENT_ID, VALID


def errors_for(change) -> list[str]:
    data = copy.deepcopy(VALID)
    change(data)
    with pytest.raises(ValidationError) as caught:
        Application.model_validate(data)
    return describe_errors(caught.value)


def test_a_complete_application_is_accepted():
    application = Application.model_validate(VALID)
    assert application.application_id == "SC2027-000001"
    assert application.student.id_number == STUDENT_ID


def test_lowercase_check_character_is_normalised():
    data = copy.deepcopy(VALID)
    data["guardians"][1]["id_number"] = "11010519491231002x"  # a woman's number (even sequence digit): the mother
    assert Application.model_validate(data).guardians[1].id_number.endswith("X")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["student"].update(birth_date="2020-03-15"),
            "student.id_number: birth date in the identity number does not match",
        ),
        (lambda d: d["student"].update(gender="female"), "student.id_number: sequence digit"),
        (
            lambda d: d["student"].update(id_number=STUDENT_ID[:-1] + ("0" if STUDENT_ID[-1] != "0" else "1")),
            "student.id_number: check character",
        ),
        (lambda d: d["guardians"][0].update(id_number="12345"), "guardians.0.id_number: must be 18 characters"),
        (lambda d: d["guardians"][1].update(phone="2345"), "guardians.1.phone"),
        (lambda d: d["guardians"][1].update(relation="uncle"), "guardians.1.relation"),
        (lambda d: d.update(guardians=[]), "guardians: List should have at least 1 item"),
        (
            lambda d: d["guardians"].append(copy.deepcopy(d["guardians"][0])),
            "guardians: each guardian must have a different id_number",
        ),
        (lambda d: d.update(stage="senior"), "stage:"),
        (lambda d: d.update(channel="fax"), "channel:"),
        (lambda d: d.update(district_code="110105"), "district_code:"),
        (lambda d: d.update(school_year="next"), "school_year:"),
        (lambda d: d["student"].update(birth_date="2020-02-30"), "student.birth_date:"),
        (lambda d: d["student"].update(name="<script>alert(1)</script>"), "student.name: name may hold only"),
        (lambda d: d["student"].update(name="王" * 41), "student.name:"),
        (lambda d: d.pop("student"), "student: Field required"),
        (lambda d: d.update(unexpected="x"), "unexpected: Extra inputs are not permitted"),
        (lambda d: d.update(school_choice={"zone_id": "jj z1; drop", "school_id": "X1"}), "school_choice.zone_id:"),
    ],
)
def test_each_broken_rule_names_its_field(change, expected):
    assert any(line.startswith(expected) or expected in line for line in errors_for(change)), errors_for(change)


def test_errors_never_echo_the_submitted_identity_number():
    lines = errors_for(lambda d: d["student"].update(birth_date="2020-03-15"))
    assert not any(STUDENT_ID in line for line in lines)


def test_a_minority_name_with_a_middle_dot_is_accepted():
    data = copy.deepcopy(VALID)
    data["guardians"][0]["name"] = "阿依古丽·买买提"
    assert Application.model_validate(data).guardians[0].name == "阿依古丽·买买提"
