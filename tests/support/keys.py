"""The keys tests seal, sign and hash with, shared by in-process workers, product processes and the console."""

from __future__ import annotations

import dataclasses
import datetime as dt

from temporalio.contrib.pydantic import pydantic_data_converter

from enrollment import tokens
from enrollment.codec import EncryptionCodec, parse_keys

# Two keys, the second active: the processes read what either wrote (rotation).
TEST_PAYLOAD_KEYS = "test-1:" + "A" * 43 + "=,test-2:" + "B" * 43 + "="
TEST_PAYLOAD_ACTIVE = "test-2"
TEST_CODEC = EncryptionCodec(parse_keys(TEST_PAYLOAD_KEYS), TEST_PAYLOAD_ACTIVE)
TEST_CONVERTER = dataclasses.replace(pydantic_data_converter, payload_codec=TEST_CODEC)

# Signs the identity tokens of the product's processes and of the review console in tests.
TEST_TOKEN_SECRET = b"end-to-end-token-secret"

# Hashes identity numbers in the case store of the in-process workers.
LOOKUP_KEY = b"test-lookup-key"


def signed_token(subject: str, role: tokens.Role, district: str | None, hours: float = 1.0) -> str:
    """An identity token the test processes and the console accept (expired when hours < 0)."""
    return tokens.issue(TEST_TOKEN_SECRET, subject, role, district, dt.timedelta(hours=hours))
