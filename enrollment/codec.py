"""Payload encryption: what the Temporal server and its UI store of a case is ciphertext.

Every payload (applications, verification answers, signals, results) is
encrypted with AES-256-GCM before it leaves the process; the key id travels in
the payload's metadata, so keys can be rotated: new payloads use the active
key, old ones are still read with the key that wrote them. Payloads written
before encryption was switched on pass through unchanged.

Short plain-text strings stay readable: in this product they are only the
summaries and details ops see in the UI (a case's stage, type, district and
step), written without personal data. Anything structured is encrypted, and so
is any string that looks like it holds an identity number or a phone.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from enrollment.logs import mask_text

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12


class UnknownKeyError(KeyError):
    """A payload encrypted with a key this process was not given."""


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id1:base64key,id2:base64key` -> {id: 32-byte key}; every key must be 256 bits."""
    keys = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, _, encoded = item.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError(f"ENROLL_PAYLOAD_KEYS: key {key_id!r} is not base64") from None
        if not key_id or len(key) != 32:
            raise ValueError(f"ENROLL_PAYLOAD_KEYS: key {key_id!r} must be an id and 32 bytes of base64")
        keys[key_id] = key
    if not keys:
        raise ValueError("ENROLL_PAYLOAD_KEYS: no key given")
    return keys


def new_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


MAX_UI_TEXT_BYTES = 1024


# The answer to the UI's metadata query: the workflow's current details and its handler names.
_UI_METADATA_TYPE = b"temporal.api.sdk.v1.WorkflowMetadata"


def _is_ui_text(payload: Payload) -> bool:
    if payload.metadata.get("messageType") == _UI_METADATA_TYPE:
        text = payload.data.decode("utf-8", "replace")
        return mask_text(text) == text
    if payload.metadata.get("encoding") != b"json/plain" or len(payload.data) > MAX_UI_TEXT_BYTES:
        return False
    if not payload.data.startswith(b'"'):
        return False
    text = payload.data.decode("utf-8", "replace")
    return mask_text(text) == text


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: dict[str, bytes], active_key_id: str):
        if active_key_id not in keys:
            raise ValueError(f"ENROLL_PAYLOAD_KEY_ID: {active_key_id!r} is not one of the configured keys")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active_key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._active]
        encoded = []
        for payload in payloads:
            if _is_ui_text(payload):
                encoded.append(payload)
                continue
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self._active.encode())
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: self._active.encode()}, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(f"payload encrypted with key {key_id!r}, which is not configured")
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        decoded = Payload()
        decoded.ParseFromString(cipher.decrypt(nonce, sealed, key_id.encode()))
        return decoded

    @property
    def key_ids(self) -> Iterable[str]:
        return self._ciphers.keys()
