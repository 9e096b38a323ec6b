"""GB 11643 identity numbers: what intake accepts and refuses."""

import datetime as dt

import pytest

from enrollment import identity

# A number published in GB 11643's own worked example.
STANDARD_EXAMPLE = "11010519491231002X"


def test_standard_example_parses_to_its_birth_date_and_gender():
    assert identity.parse(STANDARD_EXAMPLE) == (dt.date(1949, 12, 31), "female")


@pytest.mark.parametrize("gender", ["male", "female"])
def test_made_numbers_round_trip(gender):
    number = identity.make("510104", dt.date(2020, 2, 29), 417, gender)
    assert identity.parse(number) == (dt.date(2020, 2, 29), gender)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("51010420190503124", "18 characters"),
        ("5101042019050312A2", "17 digits"),
        ("990104201905031242", "not a province"),
        ("510000201905031242", "city or county"),
        ("510104201902301242", "not a real date"),
        ("510104201905031241", "check character"),
        ("510104180005031242", "before 1900"),
    ],
)
def test_each_broken_rule_is_named(value, rule):
    with pytest.raises(identity.IdentityNumberError, match=rule):
        identity.parse(value)


def test_every_single_digit_change_is_caught_by_the_check_character():
    number = identity.make("510107", dt.date(2019, 7, 1), 12, "male")
    for position in range(17):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            altered = number[:position] + digit + number[position + 1 :]
            with pytest.raises(identity.IdentityNumberError):
                identity.parse(altered)


def test_mask_keeps_no_birth_date_or_sequence():
    masked = identity.mask(STANDARD_EXAMPLE)
    assert masked.startswith("110") and masked.endswith("X")
    assert "19491231" not in masked and len(masked) == 18


def test_lookup_key_depends_on_the_secret():
    for profile in ("standard", "gm"):
        keyed = identity.lookup_key(STANDARD_EXAMPLE, b"a", profile)
        assert keyed != identity.lookup_key(STANDARD_EXAMPLE, b"b", profile)
        assert STANDARD_EXAMPLE not in keyed
