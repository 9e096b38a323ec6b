"""One complete, valid application, for the tests of intake rules and policies to vary."""

from __future__ import annotations

import datetime as dt
from typing import Any

from enrollment import identity

STUDENT_ID = identity.make("510104", dt.date(2020, 3, 14), 101, "male")
FATHER_ID = identity.make("510104", dt.date(1988, 6, 2), 33, "male")
MOTHER_ID = identity.make("510106", dt.date(1990, 1, 20), 44, "female")

VALID: dict[str, Any] = {
    "application_id": "SC2027-000001",
    "school_year": 2027,
    "stage": "primary",
    "registration_type": "hukou",
    "channel": "enrollment_system",
    "district_code": "510104",
    "student": {"name": "王小明", "gender": "male", "birth_date": "2020-03-14", "id_number": STUDENT_ID},
    "guardians": [
        {"name": "王建国", "id_number": FATHER_ID, "relation": "father", "phone": "13812345678"},
        {"name": "李丽", "id_number": MOTHER_ID, "relation": "mother", "phone": "13987654321"},
    ],
    "school_choice": {"zone_id": "JJ-Z01", "school_id": "JJ-Z01-P01"},
}
