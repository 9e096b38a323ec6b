"""Payload encryption and the codec server that lets authorised ops read cases in the UI."""

import base64
import datetime as dt
import json

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload

from codec_server.app import create_app
from enrollment import tokens
from enrollment.codec import ENCODING, EncryptionCodec, UnknownKeyError, parse_keys
from tests.support.keys import TEST_PAYLOAD_KEYS
from tests.support.served import ServedApp

KEYS = parse_keys(TEST_PAYLOAD_KEYS)
SECRET = b"codec-test-token-secret"
PLAIN = Payload(
    metadata={"encoding": b"json/plain"}, data='{"name": "王小明", "id_number": "11010519491231002X"}'.encode()
)


async def test_payloads_are_sealed_with_the_active_key_and_read_back():
    codec = EncryptionCodec(KEYS, "test-2")
    [sealed] = await codec.encode([PLAIN])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata["encryption-key-id"] == b"test-2"
    assert "王小明".encode() not in sealed.data and b"11010519491231002X" not in sealed.data
    assert await codec.decode([sealed]) == [PLAIN]


async def test_rotation_reads_what_the_old_key_wrote_and_refuses_unknown_keys():
    [old] = await EncryptionCodec({"test-1": KEYS["test-1"]}, "test-1").encode([PLAIN])
    assert await EncryptionCodec(KEYS, "test-2").decode([old]) == [PLAIN]
    with pytest.raises(UnknownKeyError):
        await EncryptionCodec({"test-2": KEYS["test-2"]}, "test-2").decode([old])


async def test_tampered_ciphertext_and_unencrypted_payloads():
    codec = EncryptionCodec(KEYS, "test-2")
    [sealed] = await codec.encode([PLAIN])
    forged = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(InvalidTag):
        await codec.decode([forged])
    assert await codec.decode([PLAIN]) == [PLAIN], "payloads from before encryption pass through"


async def test_ui_summaries_stay_readable_unless_they_look_personal():
    codec = EncryptionCodec(KEYS, "test-2")
    summary = Payload(
        metadata={"encoding": b"json/plain"}, data='"2027 primary · hukou · district 510104 · via platform"'.encode()
    )
    leaky = Payload(metadata={"encoding": b"json/plain"}, data=b'"student 11010519491231002X"')
    phone = Payload(metadata={"encoding": b"json/plain"}, data=b'"call 13812345678"')
    structured = Payload(metadata={"encoding": b"json/plain"}, data=b'{"status": "approved"}')
    kept, *sealed = await codec.encode([summary, leaky, phone, structured])
    assert kept == summary
    assert all(p.metadata["encoding"] == ENCODING for p in sealed)


def test_key_configuration_errors_name_the_setting():
    with pytest.raises(ValueError, match="ENROLL_PAYLOAD_KEYS: key 'short' must be an id and 32 bytes"):
        parse_keys("short:" + base64.b64encode(b"x" * 16).decode())
    with pytest.raises(ValueError, match="ENROLL_PAYLOAD_KEY_ID: 'nope' is not one of the configured keys"):
        EncryptionCodec(KEYS, "nope")


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


async def test_the_codec_server_decodes_only_for_ops_tokens():
    codec = EncryptionCodec(KEYS, "test-2")
    [sealed] = await codec.encode([PLAIN])
    ops = tokens.issue(SECRET, "ops-01", "ops", None, dt.timedelta(minutes=5))
    reviewer = tokens.issue(SECRET, "r-01", "reviewer", "510104", dt.timedelta(minutes=5))
    async with ServedApp(create_app(codec, SECRET, ["http://127.0.0.1:8233"])) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            anonymous = await http.post("/decode", json=wire([sealed]))
            assert anonymous.status_code == 401
            wrong_role = await http.post(
                "/decode", json=wire([sealed]), headers={"Authorization": f"Bearer {reviewer}"}
            )
            assert wrong_role.status_code == 403 and "reviewer token" in wrong_role.json()["error"]
            decoded = await http.post(
                "/decode", json=wire([sealed]), headers={"Authorization": f"Bearer {ops}", "X-Namespace": "default"}
            )
            assert decoded.status_code == 200
            [payload] = decoded.json()["payloads"]
            assert json.loads(base64.b64decode(payload["data"]))["name"] == "王小明"
            garbage = await http.post("/decode", content=b"not json", headers={"Authorization": f"Bearer {ops}"})
            assert garbage.status_code == 400
            preflight = await http.options(
                "/decode",
                headers={
                    "Origin": "http://127.0.0.1:8233",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
                },
            )
            assert (
                preflight.status_code == 200
                and preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
            )

        # A browser signs in once; the UI then sends the cookie with "include cross-origin credentials".
        async with httpx.AsyncClient(base_url=server.base_url) as browser:
            assert (await browser.get("/login", params={"token": reviewer})).status_code == 403
            signed_in = await browser.get("/login", params={"token": ops})
            assert signed_in.status_code == 200 and "httponly" in signed_in.headers["set-cookie"].lower()
            browser.cookies.set("enroll_codec_token", signed_in.cookies.get("enroll_codec_token") or ops)
            assert (await browser.post("/decode", json=wire([sealed]))).status_code == 200
