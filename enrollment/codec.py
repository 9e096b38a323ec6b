"""Payload encryption: what the Temporal server and its UI store of a case is ciphertext, bound to that case.

Ciphers and keys. Every payload (applications, verification answers, messages, results) is encrypted
before it leaves the process, with AES-256-GCM in the `standard` profile or SM4-GCM in the `gm` profile
(ENROLL_CRYPTO_PROFILE, enrollment/crypto_profile.py). Keys are configured by id (ENROLL_PAYLOAD_KEYS);
the active one encrypts, every configured one decrypts. A key serves one cipher only, told by its length
(32 bytes AES-256-GCM, 16 bytes SM4-GCM), and each payload's metadata names its key and cipher, so
neither a key rotation nor a switch of profile mid-season stops old payloads from being read (as long
as their keys stay configured).

Binding to the case. The SDK gives the codec a serialization context naming the workflow a payload
belongs to, on the client (start, signal, query, update and their results) and in the workers (the
workflow's input, signals, updates, queries and results; an activity's input and result, under the
workflow that scheduled it). The encoder writes that workflow id in clear in the payload's metadata
and into the associated data (AAD), with the format version, the cipher and the key id. Decoding
under a context refuses a payload that names another workflow (copied from one case into another)
or none; changing the id in the metadata breaks the tag. Without a context (the codec server, whose
caller, the Temporal UI, sends no workflow id) the id in the metadata is the AAD, which still detects
any change. (A Temporal schedule would seal a workflow's input for the schedule's workflow id, not
the id of the run it starts: cases are not started by schedules.) Payloads written before this
binding (metadata without a cipher: AES-256-GCM, the key id as AAD) still decode everywhere, so
running cases and the recorded histories replay; they are not bound to a case, which is why an old
key is retired once the cases it wrote have closed.

Refusal. Towards the workers and clients, decode refuses
- a payload that is not encrypted, except the short JSON strings without personal data this codec
  itself leaves in clear when encoding (the summaries and details ops read in the UI: a case's stage,
  type, district and step), which the SDK's client reads back (a workflow's static summary). Such a
  payload converts to a `str` and nothing else, and every message a case takes is a model, so a
  string sent as a message still fails its conversion. Nothing else the SDK needs reaches the codec
  in clear: search attributes and, by default, headers are not passed to codecs, and every other
  payload (null results, failures' details, heartbeats, memos, user metadata) is written through
  this codec (but details an operator attaches to a termination with a tool that lacks it are
  refused like any other). The one other payload encode leaves in clear, the worker's answer to the UI's
  `__temporal_workflow_metadata` query (`messageType` temporal.api.sdk.v1.WorkflowMetadata), is read
  by the UI through the codec server; the SDK never decodes it, and letting it in would let in a
  forged message under its label (a `json/protobuf` payload converts to its protobuf message whatever
  the handler's type, a `json/plain` one labelled so would convert to the message itself);
- a payload encrypted with a key this process does not hold, for a cipher its key does not serve,
  with a broken tag (tampered, or sealed with another key under a configured id), or bound to
  another case than the context's.

A refused payload is not an exception: the worker decodes a whole activation before the workflow
sees any of it, and a codec that raises fails the workflow task, which the server retries for ever;
a forged signal, being in the history, would jam the case for good. Instead the payload becomes one
of encoding `binary/refused`, which no payload converter reads, so the failure surfaces where the
SDK converts the value: a signal whose arguments fail to convert is dropped with a log line, an
update is rejected before it reaches the history, a query answers with an error (temporalio 1.35,
worker/_workflow_instance.py `_process_signal_job`, `_apply_do_update`, `_apply_query_workflow`).
Only a handler taking `RawValue` is handed the marker as it is: the case's dynamic signal handler,
which never reads its arguments and records the signal's refusal.
Everywhere else the failure stays loud: a workflow's input or an activity's result that cannot be
converted fails the workflow task (retried until the keys are fixed), an activity's input fails the
activity attempt, a client's result raises at the caller. Every refusal is logged with the workflow
id and the reason, never the content.

The codec server decodes only (`reveal`): unencrypted payloads are shown as they are, and an
encrypted one that does not open raises PayloadRefused.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Self

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from enrollment.crypto_profile import KEY_BYTES, PAYLOAD_CIPHER, Cipher, CryptoProfile, cipher_for_key
from enrollment.logs import mask_text

log = structlog.get_logger()

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
CIPHER = "encryption-cipher"
WORKFLOW_ID = "encryption-workflow-id"
# What a refused payload decodes to: no payload converter knows this encoding, so converting it fails.
REFUSED_ENCODING = b"binary/refused"
REFUSED_REASON = "refused"
_FORMAT = "enroll-payload/2"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PRINTABLE_KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class PayloadRefused(ValueError):
    """A payload this codec will not decode; the message says why, never what it holds."""

    def __init__(self, reason: str, code: str):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id1:base64key,id2:base64key` -> {id: key}; each key 32 bytes (AES-256-GCM) or 16 bytes (SM4-GCM)."""
    keys = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, _, encoded = item.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError(f"ENROLL_PAYLOAD_KEYS: key {key_id!r} is not base64") from None
        if not key_id or cipher_for_key(key) is None:
            raise ValueError(
                f"ENROLL_PAYLOAD_KEYS: key {key_id!r} must be an id and 32 bytes of base64 (AES-256-GCM, "
                "the standard profile) or 16 bytes (SM4-GCM, the gm profile)"
            )
        keys[key_id] = key
    if not keys:
        raise ValueError("ENROLL_PAYLOAD_KEYS: no key given")
    return keys


def new_key_spec(key_id: str, profile: CryptoProfile = "standard") -> str:
    """`id:base64key` with a fresh random key for the profile's cipher."""
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES[PAYLOAD_CIPHER[profile]])).decode()}"


MAX_UI_TEXT_BYTES = 1024


# The answer to the UI's metadata query: the workflow's current details and its handler names.
_UI_METADATA_TYPE = b"temporal.api.sdk.v1.WorkflowMetadata"


def _is_ui_text(payload: Payload) -> bool:
    """What encode leaves in clear for the UI: a short string, or the metadata answer, without personal data."""
    if payload.metadata.get("messageType") == _UI_METADATA_TYPE:
        text = payload.data.decode("utf-8", "replace")
        return mask_text(text) == text
    return _is_ui_string(payload)


def _is_ui_string(payload: Payload) -> bool:
    """A short JSON string without personal data: the only plain payload decode lets in (it converts to a str)."""
    if payload.metadata.get("encoding") != b"json/plain" or len(payload.data) > MAX_UI_TEXT_BYTES:
        return False
    if not payload.data.startswith(b'"') or "messageType" in payload.metadata:
        return False
    text = payload.data.decode("utf-8", "replace")
    return mask_text(text) == text


class _Sealer:
    """One key with the one cipher it serves: seal and open `nonce || ciphertext || tag`."""

    def __init__(self, key: bytes, cipher: Cipher):
        self.cipher = cipher
        self._key = key
        self._aes = AESGCM(key) if cipher == "AES-256-GCM" else None

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        if self._aes is not None:
            return nonce + self._aes.encrypt(nonce, plaintext, aad)
        encryptor = _Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return nonce + encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag

    def open(self, data: bytes, aad: bytes) -> bytes:
        """The plaintext; InvalidTag when anything sealed or authenticated was changed."""
        nonce, sealed = data[:_NONCE_BYTES], data[_NONCE_BYTES:]
        if len(nonce) != _NONCE_BYTES or len(sealed) < _TAG_BYTES:
            raise InvalidTag()
        if self._aes is not None:
            return self._aes.decrypt(nonce, sealed, aad)
        decryptor = _Cipher(algorithms.SM4(self._key), modes.GCM(nonce, sealed[-_TAG_BYTES:])).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(sealed[:-_TAG_BYTES]) + decryptor.finalize()


def _aad(cipher: str, key_id: str, workflow_id: str) -> bytes:
    return json.dumps([_FORMAT, cipher, key_id, workflow_id]).encode()


def _case_of(context: SerializationContext) -> str | None:
    """The workflow id a context names: the target workflow's, or the one that scheduled the activity."""
    if isinstance(context, (WorkflowSerializationContext, ActivitySerializationContext)):
        return context.workflow_id or None
    return None


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, keys: Mapping[str, bytes], active_key_id: str | None, *, profile: CryptoProfile):
        """`active_key_id` None: the first key of the profile's cipher encrypts."""
        cipher = PAYLOAD_CIPHER[profile]
        ciphers = {key_id: cipher_for_key(key) for key_id, key in keys.items()}
        if None in ciphers.values() or not keys:
            raise ValueError("ENROLL_PAYLOAD_KEYS: every key must be 32 bytes (AES-256-GCM) or 16 bytes (SM4-GCM)")
        if active_key_id is None:
            active_key_id = next((key_id for key_id, serves in ciphers.items() if serves == cipher), None)
            if active_key_id is None:
                raise ValueError(
                    f"ENROLL_PAYLOAD_KEYS: ENROLL_CRYPTO_PROFILE={profile} encrypts with {cipher}, which needs a "
                    f"key of {KEY_BYTES[cipher]} bytes; none is configured"
                )
        if active_key_id not in keys:
            raise ValueError(f"ENROLL_PAYLOAD_KEY_ID: {active_key_id!r} is not one of the configured keys")
        if ciphers[active_key_id] != cipher:
            raise ValueError(
                f"ENROLL_PAYLOAD_KEY_ID: key {active_key_id!r} must be {KEY_BYTES[cipher]} bytes to encrypt with "
                f"{cipher} (ENROLL_CRYPTO_PROFILE={profile}); a key of another length can only decrypt"
            )
        self._sealers = {key_id: _Sealer(key, ciphers[key_id] or cipher) for key_id, key in keys.items()}
        self._active = active_key_id
        self.profile: CryptoProfile = profile
        # The workflow the SDK's serialization context names; None: no context, or one without a workflow.
        self.workflow_id: str | None = None

    def with_context(self, context: SerializationContext) -> Self:
        bound = copy.copy(self)
        bound.workflow_id = _case_of(context)
        return bound

    @property
    def key_ids(self) -> Iterable[str]:
        return self._sealers.keys()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        sealer = self._sealers[self._active]
        workflow_id = self.workflow_id or ""
        encoded = []
        for payload in payloads:
            if _is_ui_text(payload):
                encoded.append(payload)
                continue
            metadata = {"encoding": ENCODING, KEY_ID: self._active.encode(), CIPHER: sealer.cipher.encode()}
            if workflow_id:
                metadata[WORKFLOW_ID] = workflow_id.encode()
            data = sealer.seal(payload.SerializeToString(), _aad(sealer.cipher, self._active, workflow_id))
            encoded.append(Payload(metadata=metadata, data=data))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """For the workers and clients: a payload refused becomes `binary/refused` (see the module's docstring)."""
        decoded = []
        for payload in payloads:
            try:
                decoded.append(self._decode_one(payload))
            except PayloadRefused as refusal:
                log.warning(
                    "payload refused",
                    workflow_id=self.workflow_id,
                    reason=refusal.reason,
                    key_id=_loggable_key_id(payload),
                )
                decoded.append(Payload(metadata={"encoding": REFUSED_ENCODING, REFUSED_REASON: refusal.code.encode()}))
        return decoded

    async def reveal(self, payloads: Sequence[Payload]) -> list[Payload]:
        """For the codec server (the UI, ops' CLI): plain payloads as they are, encrypted ones opened.

        The UI sends no workflow id: the one in each payload's metadata is the AAD. Raises PayloadRefused.
        """
        return [self._open(payload, expected=None) if _is_encrypted(payload) else payload for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if not _is_encrypted(payload):
            if _is_ui_string(payload):
                return payload
            raise PayloadRefused("not encrypted", "unencrypted")
        return self._open(payload, expected=self.workflow_id)

    def _open(self, payload: Payload, expected: str | None) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        sealer = self._sealers.get(key_id)
        if sealer is None:
            raise PayloadRefused("encrypted with a key this process does not hold", "unknown-key")
        if CIPHER in payload.metadata:
            cipher = payload.metadata[CIPHER].decode("utf-8", "replace")
            workflow_id = payload.metadata.get(WORKFLOW_ID, b"").decode("utf-8", "replace")
            if cipher != sealer.cipher:
                raise PayloadRefused(f"names a cipher its key does not serve (key is {sealer.cipher})", "cipher")
            if expected is not None and workflow_id != expected:
                if workflow_id:
                    raise PayloadRefused("encrypted for another case", "other-case")
                raise PayloadRefused("not bound to a case", "unbound")
            aad = _aad(cipher, key_id, workflow_id)
        else:
            # Written before payloads were bound to their case: AES-256-GCM with the key id as AAD.
            if sealer.cipher != "AES-256-GCM":
                raise PayloadRefused("an unbound payload can only be AES-256-GCM", "cipher")
            aad = key_id.encode()
        try:
            plaintext = sealer.open(payload.data, aad)
        except InvalidTag:
            raise PayloadRefused("does not authenticate (altered, or sealed with another key)", "tampered") from None
        opened = Payload()
        try:
            opened.ParseFromString(plaintext)
        except DecodeError:
            raise PayloadRefused("authenticated but not a payload", "malformed") from None
        return opened


def _is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _loggable_key_id(payload: Payload) -> str | None:
    """The key id a payload names, when it looks like one: it comes from whoever sent the payload."""
    if not _is_encrypted(payload):
        return None
    key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
    return key_id if _PRINTABLE_KEY_ID.match(key_id) else "(not a key id)"
