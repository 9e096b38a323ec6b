"""Mainland resident identity numbers (居民身份证号码), GB 11643-1999.

Eighteen characters: a six-digit region code, the birth date as YYYYMMDD, a
three-digit sequence whose parity gives the sex (odd male, even female), and a
check character computed by ISO 7064 MOD 11-2.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, hmac

from enrollment.crypto_profile import CryptoProfile

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")

# First two digits of the region code: provinces, autonomous regions,
# municipalities, and the codes GB/T 2260 gives to Taiwan, Hong Kong and Macao.
PROVINCE_CODES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    }
)


class IdentityNumberError(ValueError):
    """An identity number that breaks one rule of GB 11643; the message names the rule."""


def check_character(first_17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first_17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def parse(value: str) -> tuple[dt.date, str]:
    """Validate an identity number and return (birth date, gender) it encodes.

    Raises IdentityNumberError naming the rule that failed.
    """
    if len(value) != 18:
        raise IdentityNumberError("must be 18 characters (GB 11643)")
    if not _SHAPE.match(value):
        raise IdentityNumberError("must be 17 digits followed by a digit or X (GB 11643)")
    if value[:2] not in PROVINCE_CODES:
        raise IdentityNumberError(f"region code {value[:2]}xxxx is not a province of GB/T 2260")
    if value[2:6] == "0000":
        raise IdentityNumberError("region code must name a city or county, not only a province")
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise IdentityNumberError("birth date segment is not a real date") from None
    if birth.year < 1900:
        raise IdentityNumberError("birth date segment is before 1900")
    if value[17] != check_character(value[:17]):
        raise IdentityNumberError("check character does not match (ISO 7064 MOD 11-2)")
    gender = "male" if int(value[16]) % 2 == 1 else "female"
    return birth, gender


def make(region_code: str, birth_date: dt.date, sequence: int, gender: str) -> str:
    """Build a valid identity number; used by the synthetic population generator.

    The sequence's last digit is adjusted to the gender's parity.
    """
    sequence = sequence % 1000
    wanted_odd = gender == "male"
    if (sequence % 2 == 1) != wanted_odd:
        sequence = sequence + 1 if sequence < 999 else sequence - 1
    first_17 = f"{region_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first_17 + check_character(first_17)


def lookup_key(value: str, secret: bytes, profile: CryptoProfile) -> str:
    """Keyed hash of an identity number, for look-ups that must not store it in clear.

    HMAC-SHA256 in the standard profile, HMAC-SM3 in the gm profile: the two never match, so a
    deployment keeps one profile for the look-ups of a season (enrollment/crypto_profile.py).
    """
    mac = hmac.HMAC(secret, hashes.SM3() if profile == "gm" else hashes.SHA256())
    mac.update(value.encode())
    return mac.finalize().hex()


@dataclass(frozen=True)
class LookupSecret:
    """The look-up hash's secret (ENROLL_LOOKUP_KEY) with the profile that picks its hash, as processes pass it on."""

    secret: bytes = field(repr=False)
    profile: CryptoProfile


def mask(value: str) -> str:
    """What may be shown of an identity number: region prefix and check character only."""
    if len(value) < 8:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 4) + value[-1]
