"""Payload encryption (both profiles), payloads bound to their case, and the decode-only codec server."""

import base64
import hmac
import json
import os

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from structlog.testing import capture_logs
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

from codec_server.app import Decoded, create_app
from codec_server.identity import provider_tokens
from enrollment import identity
from enrollment.case import Review, application_id_of
from enrollment.codec import (
    CIPHER,
    ENCODING,
    KEY_ID,
    REFUSED_ENCODING,
    WORKFLOW_ID,
    EncryptionCodec,
    PayloadRefused,
    new_key_spec,
    parse_keys,
)
from enrollment.settings import Settings, SettingsError
from tests.support.identity import console_tokens
from tests.support.keys import TEST_PAYLOAD_KEYS
from tests.support.served import ServedApp

KEYS = parse_keys(TEST_PAYLOAD_KEYS)
SM4_KEYS = parse_keys(
    "gm-1:" + base64.b64encode(b"\x01" * 16).decode() + ",gm-2:" + base64.b64encode(b"\x02" * 16).decode()
)
PLAIN = Payload(
    metadata={"encoding": b"json/plain"}, data='{"name": "王小明", "id_number": "11010519491231002X"}'.encode()
)
CASE_A = WorkflowSerializationContext(namespace="default", workflow_id="enrollment-SC2027-000001")
CASE_B = WorkflowSerializationContext(namespace="default", workflow_id="enrollment-SC2027-000002")


def standard(active: str = "test-2", keys: dict[str, bytes] = KEYS) -> EncryptionCodec:
    return EncryptionCodec(keys, active, profile="standard")


def gm(active: str | None = None, keys: dict[str, bytes] | None = None) -> EncryptionCodec:
    return EncryptionCodec(keys or SM4_KEYS, active, profile="gm")


def refusal(payload: Payload) -> str | None:
    """The reason code of a refused payload (what decode puts in its place), None for a decoded one."""
    if payload.metadata.get("encoding") != REFUSED_ENCODING:
        return None
    return payload.metadata["refused"].decode()


async def test_payloads_are_sealed_with_the_active_key_for_their_case_and_read_back():
    codec = standard().with_context(CASE_A)
    [sealed] = await codec.encode([PLAIN])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID] == b"test-2"
    assert sealed.metadata[CIPHER] == b"AES-256-GCM"
    assert sealed.metadata[WORKFLOW_ID] == b"enrollment-SC2027-000001", "the case is named in clear"
    assert "王小明".encode() not in sealed.data and b"11010519491231002X" not in sealed.data
    assert await codec.decode([sealed]) == [PLAIN]
    activity = ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="check",
        activity_task_queue="q",
        workflow_id=CASE_A.workflow_id,
        workflow_type="EnrollmentCase",
        is_local=False,
    )
    assert await standard().with_context(activity).decode([sealed]) == [PLAIN], "an activity of the case reads it"


async def test_the_gm_profile_seals_with_sm4_gcm():
    codec = gm().with_context(CASE_A)
    [sealed] = await codec.encode([PLAIN])
    assert sealed.metadata[CIPHER] == b"SM4-GCM" and sealed.metadata[KEY_ID] == b"gm-1"
    assert "王小明".encode() not in sealed.data
    assert await codec.decode([sealed]) == [PLAIN]
    # It is SM4-GCM under that key (not AES): open it by hand with the AAD the module documents.
    nonce, body, tag = sealed.data[:12], sealed.data[12:-16], sealed.data[-16:]
    decryptor = Cipher(algorithms.SM4(SM4_KEYS["gm-1"]), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(
        json.dumps(["enroll-payload/2", "SM4-GCM", "gm-1", CASE_A.workflow_id]).encode()
    )
    opened = Payload()
    opened.ParseFromString(decryptor.update(body) + decryptor.finalize())
    assert opened == PLAIN
    # The library's SM4 is GB/T 32907's: its published example.
    example = bytes.fromhex("0123456789abcdeffedcba9876543210")
    encryptor = Cipher(algorithms.SM4(example), modes.ECB()).encryptor()
    assert (encryptor.update(example) + encryptor.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"


def test_hmac_sm3_lookups_differ_from_hmac_sha256():
    number, secret = "11010519491231002X", b"lookup-secret"
    sha = identity.lookup_key(number, secret, "standard")
    sm3_key = identity.lookup_key(number, secret, "gm")
    assert sha != sm3_key and len(sha) == len(sm3_key) == 64
    assert sha == hmac.new(secret, number.encode(), "sha256").hexdigest(), "the standard profile's keys are unchanged"
    # SM3 is GB/T 32905's (its example "abc"), and the gm look-up is HMAC (RFC 2104) over it.
    digest = hashes.Hash(hashes.SM3())
    digest.update(b"abc")
    assert digest.finalize().hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"

    def sm3(data: bytes) -> bytes:
        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()

    block = secret.ljust(64, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in block) + number.encode())
    assert sm3(bytes(b ^ 0x5C for b in block) + inner).hex() == sm3_key


async def test_rotation_and_a_profile_switch_read_what_the_old_keys_wrote():
    [old] = await standard("test-1", {"test-1": KEYS["test-1"]}).with_context(CASE_A).encode([PLAIN])
    assert await standard().with_context(CASE_A).decode([old]) == [PLAIN]
    # Mid-season switch to gm: the AES keys stay configured to read, the first SM4 key encrypts.
    switched = gm(keys={**KEYS, **SM4_KEYS}).with_context(CASE_A)
    [new] = await switched.encode([PLAIN])
    assert new.metadata[KEY_ID] == b"gm-1" and new.metadata[CIPHER] == b"SM4-GCM"
    assert await switched.decode([old, new]) == [PLAIN, PLAIN]
    # A key no longer configured: refused, not raised.
    without_old = standard("test-2", {"test-2": KEYS["test-2"]}).with_context(CASE_A)
    [refused] = await without_old.decode([old])
    assert refusal(refused) == "unknown-key"
    with pytest.raises(PayloadRefused, match="key this process does not hold"):
        await standard("test-2", {"test-2": KEYS["test-2"]}).reveal([old])


async def test_payloads_written_before_the_binding_still_decode():
    """The format of release 1.0 (AES-256-GCM, key id as AAD, no cipher or case in the metadata)."""
    nonce = os.urandom(12)
    legacy = Payload(
        metadata={"encoding": ENCODING, KEY_ID: b"test-1"},
        data=nonce + AESGCM(KEYS["test-1"]).encrypt(nonce, PLAIN.SerializeToString(), b"test-1"),
    )
    assert await standard().with_context(CASE_A).decode([legacy]) == [PLAIN]
    assert await standard().reveal([legacy]) == [PLAIN]


def test_key_configuration_errors_name_the_setting_and_the_rule(monkeypatch):
    with pytest.raises(ValueError, match=r"ENROLL_PAYLOAD_KEYS: key 'short' must be an id and 32 bytes .* or 16 bytes"):
        parse_keys("short:" + base64.b64encode(b"x" * 24).decode())
    with pytest.raises(ValueError, match="ENROLL_PAYLOAD_KEY_ID: 'nope' is not one of the configured keys"):
        standard("nope")
    with pytest.raises(ValueError, match=r"ENROLL_PAYLOAD_KEY_ID: key 'test-2' must be 16 bytes .*SM4-GCM"):
        gm("test-2", {**KEYS, **SM4_KEYS})
    with pytest.raises(ValueError, match=r"ENROLL_PAYLOAD_KEY_ID: key 'gm-1' must be 32 bytes .*AES-256-GCM"):
        standard("gm-1", {**KEYS, **SM4_KEYS})
    with pytest.raises(
        ValueError, match=r"ENROLL_PAYLOAD_KEYS: ENROLL_CRYPTO_PROFILE=gm .* 16 bytes; none is configured"
    ):
        gm(keys=KEYS)
    assert len(parse_keys(new_key_spec("k", "gm"))["k"]) == 16 and len(parse_keys(new_key_spec("k"))["k"]) == 32
    monkeypatch.setenv("ENROLL_CRYPTO_PROFILE", "sm2")
    with pytest.raises(SettingsError, match=r"ENROLL_CRYPTO_PROFILE: must be standard .* or gm"):
        Settings.from_env()
    monkeypatch.setenv("ENROLL_CRYPTO_PROFILE", "gm")
    assert Settings.from_env().crypto_profile == "gm"


async def test_tampered_payloads_are_refused():
    codec = standard().with_context(CASE_A)
    [sealed] = await codec.encode([PLAIN])
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    renamed = Payload(metadata={**sealed.metadata, WORKFLOW_ID: CASE_B.workflow_id.encode()}, data=sealed.data)
    downgraded = Payload(metadata={"encoding": ENCODING, KEY_ID: b"test-2"}, data=sealed.data)
    other_cipher = Payload(metadata={**sealed.metadata, CIPHER: b"SM4-GCM"}, data=sealed.data)
    truncated = Payload(metadata=sealed.metadata, data=sealed.data[:10])
    [sm4] = await gm().with_context(CASE_A).encode([PLAIN])
    same_id_other_key = Payload(metadata={**sm4.metadata, KEY_ID: b"test-2"}, data=sm4.data)
    decoded = await codec.decode([flipped, downgraded, other_cipher, truncated, same_id_other_key])
    assert [refusal(p) for p in decoded] == ["tampered", "tampered", "cipher", "tampered", "cipher"]
    # Without a context (the codec server) the case in the metadata is the AAD: renaming it breaks the tag.
    for forged in (flipped, renamed, downgraded):
        with pytest.raises(PayloadRefused, match="does not authenticate"):
            await standard().reveal([forged])
    [with_another_key] = (
        await EncryptionCodec({"test-2": os.urandom(32)}, "test-2", profile="standard")
        .with_context(CASE_A)
        .encode([PLAIN])
    )
    assert refusal((await codec.decode([with_another_key]))[0]) == "tampered"


async def test_a_payload_moved_to_another_case_is_refused():
    [for_a] = await standard().with_context(CASE_A).encode([PLAIN])
    [unbound] = await standard().encode([PLAIN])
    assert WORKFLOW_ID not in unbound.metadata
    in_b = standard().with_context(CASE_B)
    assert [refusal(p) for p in await in_b.decode([for_a, unbound])] == ["other-case", "unbound"]
    assert await standard().with_context(CASE_A).decode([for_a]) == [PLAIN]
    assert await standard().reveal([for_a, unbound]) == [PLAIN, PLAIN], "the UI names no case: the payload's is used"


async def test_unencrypted_payloads_are_refused_except_the_ui_strings_the_codec_leaves_in_clear():
    codec = standard().with_context(CASE_A)
    summary = Payload(
        metadata={"encoding": b"json/plain"}, data='"2027 primary · hukou · district 510104 · via platform"'.encode()
    )
    ui_metadata = b"temporal.api.sdk.v1.WorkflowMetadata"
    metadata_answer = Payload(
        metadata={"encoding": b"json/protobuf", "messageType": ui_metadata},
        data=b'{"currentDetails": "**awaiting_review** \\u00b7 primary"}',
    )
    [as_json] = pydantic_data_converter.payload_converter.to_payloads(
        [Review(reviewer_id="r-01", district_code="510104", decision="approve", opinion="同意")]
    )
    labelled = Payload(metadata={**as_json.metadata, "messageType": ui_metadata}, data=as_json.data)
    structured = Payload(metadata={"encoding": b"json/plain"}, data=b'{"decision": "approve"}')
    null = Payload(metadata={"encoding": b"binary/null"})
    [kept, *sealed] = await codec.encode([summary, metadata_answer])
    assert kept == summary and sealed == [metadata_answer], "encode leaves both readable for the UI"
    decoded = await codec.decode([summary, metadata_answer, labelled, as_json, structured, PLAIN, null])
    assert decoded[0] == summary, "a UI string comes back: it can only ever convert to a str"
    assert [refusal(p) for p in decoded[1:]] == ["unencrypted"] * 6, "a message under the metadata answer's label too"
    plain = [summary, metadata_answer, structured]
    assert await standard().reveal(plain) == plain, "the codec server shows plain payloads as they are"


async def test_a_refused_payload_fails_conversion_and_is_logged_without_its_content():
    review = Review(reviewer_id="r-01", district_code="510104", decision="approve", opinion="王小明 同意")
    [raw] = pydantic_data_converter.payload_converter.to_payloads([review])
    with capture_logs() as logs:
        [refused] = await standard().with_context(CASE_A).decode([raw])
    assert logs == [
        {
            "event": "payload refused",
            "log_level": "warning",
            "workflow_id": CASE_A.workflow_id,
            "reason": "not encrypted",
            "key_id": None,
        }
    ]
    assert "王小明" not in repr(logs) and "approve" not in repr(logs)
    with pytest.raises(KeyError, match="binary/refused"):
        pydantic_data_converter.payload_converter.from_payloads([refused], [Review])


async def test_ui_summaries_stay_readable_unless_they_look_personal():
    codec = standard()
    summary = Payload(
        metadata={"encoding": b"json/plain"}, data='"2027 primary · hukou · district 510104 · via platform"'.encode()
    )
    leaky = Payload(metadata={"encoding": b"json/plain"}, data=b'"student 11010519491231002X"')
    phone = Payload(metadata={"encoding": b"json/plain"}, data=b'"call 13812345678"')
    structured = Payload(metadata={"encoding": b"json/plain"}, data=b'{"status": "approved"}')
    kept, *sealed = await codec.encode([summary, leaky, phone, structured])
    assert kept == summary
    assert all(p.metadata["encoding"] == ENCODING for p in sealed)
    [leaky_back] = await codec.with_context(CASE_A).decode([leaky])
    assert refusal(leaky_back) == "unencrypted", "a personal string sent in clear is not taken for UI text"


def wire(payloads: list[Payload]) -> dict:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


async def test_the_codec_server_decodes_only_for_authorised_callers_and_reports_each_decode(identity_provider):
    """Ops signed in at the identity provider may decode; a reviewer may not; nobody may encode."""
    [sealed] = await standard().with_context(CASE_A).encode([PLAIN])
    forged = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    ops = (await console_tokens(identity_provider.base_url, "ops-1"))["access_token"]
    reviewer = (await console_tokens(identity_provider.base_url, "r-510104-1"))["access_token"]
    decodes: list[Decoded] = []

    async def on_decode(decoded: Decoded) -> None:
        decodes.append(decoded)

    authorize = provider_tokens(identity_provider.base_url)
    app = create_app(standard(), authorize, ["http://127.0.0.1:8233"], on_decode=on_decode)
    async with ServedApp(app) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            as_ops = {"Authorization": f"Bearer {ops}", "X-Namespace": "default"}
            anonymous = await http.post("/decode", json=wire([sealed]))
            assert anonymous.status_code == 401
            wrong_role = await http.post(
                "/decode", json=wire([sealed]), headers={"Authorization": f"Bearer {reviewer}"}
            )
            assert wrong_role.status_code == 403 and "reviewer" in wrong_role.json()["error"]
            decoded = await http.post("/decode", json=wire([sealed]), headers=as_ops)
            assert decoded.status_code == 200
            [payload] = decoded.json()["payloads"]
            assert json.loads(base64.b64decode(payload["data"]))["name"] == "王小明"
            [report] = decodes
            caller = report.caller
            assert (caller.sub, caller.role, report.payloads, report.namespace) == ("ops-1", "ops", 1, "default")
            assert caller.jti and report.applications == (application_id_of(CASE_A.workflow_id),)
            tampered = await http.post("/decode", json=wire([forged]), headers=as_ops)
            assert tampered.status_code == 422 and "does not authenticate" in tampered.json()["error"]
            garbage = await http.post("/decode", content=b"not json", headers=as_ops)
            assert garbage.status_code == 400
            assert len(decodes) == 1, "only answered decodes are reported"

            # No encoding, for anyone: the server cannot be used to craft a message a case would take.
            encode = await http.post("/encode", json=wire([PLAIN]), headers=as_ops)
            assert encode.status_code == 403 and "only decodes" in encode.json()["error"]

            preflight = {
                "Origin": "http://127.0.0.1:8233",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            }
            allowed = await http.options("/decode", headers=preflight)
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
            not_offered = await http.options("/encode", headers=preflight)
            assert not_offered.status_code != 200 and "access-control-allow-origin" not in not_offered.headers

        # A browser signs in once; the UI then sends the cookie with "include cross-origin credentials".
        async with httpx.AsyncClient(base_url=server.base_url) as browser:
            assert (await browser.get("/login", params={"token": reviewer})).status_code == 403
            signed_in = await browser.get("/login", params={"token": ops})
            assert signed_in.status_code == 200 and "httponly" in signed_in.headers["set-cookie"].lower()
            browser.cookies.set("enroll_codec_token", signed_in.cookies.get("enroll_codec_token") or ops)
            assert (await browser.post("/decode", json=wire([sealed]))).status_code == 200
