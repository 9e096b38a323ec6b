"""The district policies the tests read, for a district the test knows to exist."""

from __future__ import annotations

from enrollment.policy import DistrictPolicy, PolicyBook, policy_book


def district_policy(code: str, book: PolicyBook | None = None) -> DistrictPolicy:
    """The policy of district `code` in `book` (the policies in force when not given); fails if there is none."""
    policy = (book if book is not None else policy_book()).district(code)
    assert policy is not None, f"no policy for district {code}"
    return policy
