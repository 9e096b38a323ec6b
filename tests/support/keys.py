"""The keys tests seal and hash with, shared by in-process workers, product processes and the console."""

from __future__ import annotations

import dataclasses

from temporalio.contrib.pydantic import pydantic_data_converter

from enrollment.codec import EncryptionCodec, parse_keys
from enrollment.identity import LookupSecret

# Two keys, the second active: the processes read what either wrote (rotation).
TEST_PAYLOAD_KEYS = "test-1:" + "A" * 43 + "=,test-2:" + "B" * 43 + "="
TEST_PAYLOAD_ACTIVE = "test-2"
TEST_CODEC = EncryptionCodec(parse_keys(TEST_PAYLOAD_KEYS), TEST_PAYLOAD_ACTIVE, profile="standard")
TEST_CONVERTER = dataclasses.replace(pydantic_data_converter, payload_codec=TEST_CODEC)

# Hashes identity numbers in the case store of the in-process workers.
LOOKUP_KEY = LookupSecret(b"test-lookup-key", "standard")
