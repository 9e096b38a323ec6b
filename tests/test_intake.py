"""Reading application files and refusing what no case should be made of."""

import json

from enrollment.policy import policy_book
from starter.intake import read_applications, validate
from tests.support.applications import VALID


def test_a_pretty_printed_single_application_is_read_whole(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(VALID, ensure_ascii=False, indent=2), encoding="utf-8")
    [(where, item, errors)] = list(read_applications(path))
    assert isinstance(item, dict), item
    assert where == "one.json" and errors == [] and item["application_id"] == VALID["application_id"]


def test_json_lines_are_judged_line_by_line(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(json.dumps(VALID).encode() + b"\n\n{broken\n\xff\xfe\n")
    rows = list(read_applications(path))
    assert [where for where, _, _ in rows] == ["batch.jsonl:1", "batch.jsonl:3", "batch.jsonl:4"]
    assert (
        rows[0][2] == []
        and rows[1][2][0].startswith("line: not valid JSON")
        and rows[2][2] == ["line: not valid UTF-8"]
    )


def test_a_school_the_district_does_not_offer_is_refused_at_intake():
    application, errors = validate(
        {**VALID, "school_choice": {"zone_id": "QY-Z01", "school_id": "QY-Z01-P01"}}, policy_book()
    )
    assert application is None
    assert errors == ["school_choice.zone_id: QY-Z01 is not an enrollment zone of district 510104"]


def test_a_district_without_a_policy_is_refused_at_intake():
    application, errors = validate({**VALID, "district_code": "510999", "school_choice": None}, policy_book())
    assert application is None and errors == ["district_code: no enrollment policy is configured for district 510999"]


def test_an_array_item_that_is_not_an_object_is_refused():
    assert validate(["not", "an", "object"], policy_book()) == (None, ["application: must be a JSON object"])
