"""The workers prove the product to the departments and the platform (ENROLL_OUTBOUND_AUTH): the settings refuse
an incomplete configuration, signed requests pass the stand-ins' gateway check (`serve --require-signature`) and
nothing else does, and a client certificate passes a real mutual-TLS server built from a throw-away CA."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
from temporalio.exceptions import ApplicationError
from yarl import URL

from activities.gateway import post_json
from api import signing
from enrollment import identity
from enrollment.settings import Settings, SettingsError
from stack.certificates import ensure_certificates
from standins import VERIFIER_PATHS, Population
from standins.__main__ import main as standins_cli
from standins.runner import RunningStandins, start_in_thread
from standins.threaded import ThreadedServer, listen
from tests.support.environment import settings_from as settings
from workers.build import new_http_client

CLIENT_ID = "enrollment-workers"
SECRET = "gateway-issued-secret-0123456789"
UNKNOWN_NUMBER = identity.make("510104", dt.date(2020, 5, 1), 999, "male")


# -- settings ---------------------------------------------------------------------------------------


async def test_no_outbound_authentication_by_default(monkeypatch):
    configured = settings(monkeypatch)
    assert configured.outbound_auth == "none"
    async with new_http_client(configured) as http:
        assert http.signer is None
        assert http.signing_headers("POST", URL(f"{configured.public_security_url}/v1/hukou/verify"), b"{}") == {}


@pytest.mark.parametrize(
    ("env", "named", "not_named"),
    [
        ({"ENROLL_OUTBOUND_AUTH": "mtls"}, ["ENROLL_OUTBOUND_CLIENT_CERT", "ENROLL_OUTBOUND_CLIENT_KEY"], []),
        (
            {"ENROLL_OUTBOUND_AUTH": "mtls", "ENROLL_OUTBOUND_CLIENT_CERT": "/run/certs/client.pem"},
            ["ENROLL_OUTBOUND_CLIENT_KEY"],
            ["ENROLL_OUTBOUND_CLIENT_CERT"],
        ),
        (
            {"ENROLL_OUTBOUND_AUTH": "mtls", "ENROLL_OUTBOUND_CLIENT_KEY": "/run/certs/client.key"},
            ["ENROLL_OUTBOUND_CLIENT_CERT"],
            ["ENROLL_OUTBOUND_CLIENT_KEY"],
        ),
        ({"ENROLL_OUTBOUND_AUTH": "signed"}, ["ENROLL_OUTBOUND_CLIENT_ID", "ENROLL_OUTBOUND_SIGNING_SECRET"], []),
        (
            {"ENROLL_OUTBOUND_AUTH": "signed", "ENROLL_OUTBOUND_CLIENT_ID": CLIENT_ID},
            ["ENROLL_OUTBOUND_SIGNING_SECRET"],
            ["ENROLL_OUTBOUND_CLIENT_ID"],
        ),
        (
            {"ENROLL_OUTBOUND_AUTH": "signed", "ENROLL_OUTBOUND_SIGNING_SECRET": SECRET},
            ["ENROLL_OUTBOUND_CLIENT_ID"],
            ["ENROLL_OUTBOUND_SIGNING_SECRET"],
        ),
    ],
)
def test_an_incomplete_configuration_is_refused_naming_each_variable(monkeypatch, env, named, not_named):
    with pytest.raises(SettingsError) as refused:
        settings(monkeypatch, **env)
    mode = env["ENROLL_OUTBOUND_AUTH"]
    assert refused.value.problems == [f"{name}: required when ENROLL_OUTBOUND_AUTH is {mode}" for name in named]
    assert not any(name in str(refused.value) for name in not_named)
    assert SECRET not in str(refused.value)


def test_an_incomplete_configuration_is_reported_with_every_other_wrong_variable(monkeypatch):
    with pytest.raises(SettingsError) as refused:
        settings(
            monkeypatch,
            ENROLL_OUTBOUND_AUTH="signed",
            ENROLL_HTTP_TIMEOUT_SECONDS="-1",
            ENROLL_OUTBOUND_CLIENT_ID=CLIENT_ID,
        )
    assert [problem.split(":")[0] for problem in refused.value.problems] == [
        "ENROLL_HTTP_TIMEOUT_SECONDS",
        "ENROLL_OUTBOUND_SIGNING_SECRET",
    ]


def test_an_unknown_mode_is_refused(monkeypatch):
    with pytest.raises(SettingsError, match="ENROLL_OUTBOUND_AUTH: must be none, mtls or signed"):
        settings(monkeypatch, ENROLL_OUTBOUND_AUTH="tls")


def test_complete_configurations_are_accepted_and_the_secret_kept_hidden(monkeypatch):
    signed = settings(
        monkeypatch,
        ENROLL_OUTBOUND_AUTH="signed",
        ENROLL_OUTBOUND_CLIENT_ID=CLIENT_ID,
        ENROLL_OUTBOUND_SIGNING_SECRET=SECRET,
    )
    assert signed.outbound_client_id == CLIENT_ID
    assert signed.outbound_signing_secret is not None and signed.outbound_signing_secret.get_secret_value() == SECRET
    assert SECRET not in repr(signed) and SECRET not in str(signed.model_dump())
    mtls = settings(
        monkeypatch,
        ENROLL_OUTBOUND_AUTH="mtls",
        ENROLL_OUTBOUND_CLIENT_CERT="/run/certs/client.pem",
        ENROLL_OUTBOUND_CLIENT_KEY="/run/certs/client.key",
    )
    assert mtls.outbound_client_cert == Path("/run/certs/client.pem") and mtls.outbound_ca is None


def test_unreadable_certificate_files_stop_the_client_naming_the_variables(monkeypatch, tmp_path):
    missing = settings(
        monkeypatch,
        ENROLL_OUTBOUND_AUTH="mtls",
        ENROLL_OUTBOUND_CLIENT_CERT=str(tmp_path / "client.pem"),
        ENROLL_OUTBOUND_CLIENT_KEY=str(tmp_path / "client.key"),
    )
    with pytest.raises(SettingsError, match="ENROLL_OUTBOUND_CLIENT_CERT, ENROLL_OUTBOUND_CLIENT_KEY: not a readable"):
        new_http_client(missing)
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(SettingsError, match="ENROLL_OUTBOUND_CA: not a readable CA certificate"):
        new_http_client(missing.model_copy(update={"outbound_ca": tmp_path / "ca.pem"}))


# -- signed requests against the stand-ins ------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(population: Population) -> Iterator[RunningStandins]:
    """The stand-ins as a gateway admitting the one client the workers are configured as."""
    with start_in_thread(population, signature_clients={CLIENT_ID: SECRET}) as running:
        yield running


def signed_settings(monkeypatch: pytest.MonkeyPatch, standins: RunningStandins, secret: str = SECRET) -> Settings:
    return settings(
        monkeypatch,
        ENROLL_STANDINS_URL=standins.base_url,
        ENROLL_OUTBOUND_AUTH="signed",
        ENROLL_OUTBOUND_CLIENT_ID=CLIENT_ID,
        ENROLL_OUTBOUND_SIGNING_SECRET=secret,
        ENROLL_HTTP_TIMEOUT_SECONDS="5",
    )


def enquiry(request_id: str = "outbound-1") -> dict[str, str]:
    return {"request_id": request_id, "id_number": UNKNOWN_NUMBER, "name": "王小明"}


async def test_the_workers_signed_calls_pass_the_gateway(monkeypatch, gateway):
    configured = signed_settings(monkeypatch, gateway)
    async with new_http_client(configured) as http:
        # The way every department and platform activity calls (activities/gateway.py).
        answer = await post_json(http, f"{gateway.base_url}{VERIFIER_PATHS['hukou']}", enquiry())
        assert answer["code"] == "1001"  # no such record: an answer, past the signature check
        pushed = await post_json(
            http,
            f"{configured.platform_url}/v1/cases/SC2027-900001/status",
            {"status": "verifying"},
            headers={"Idempotency-Key": "outbound-auth-1"},
        )
        assert pushed["code"] == "0000"
        # Only the departments and the platform see the signature: not another address on the same client.
        signed = http.signing_headers("POST", URL(f"{gateway.base_url}{VERIFIER_PATHS['property']}"), b"{}")
        assert signed[signing.CLIENT_HEADER] == CLIENT_ID
        assert http.signing_headers("GET", URL(f"{gateway.base_url}/healthz"), b"") == {}
        assert http.signing_headers("POST", URL(f"{gateway.base_url}/public-securityX/v1/verify"), b"{}") == {}


@pytest.mark.parametrize(
    "spelling",
    [
        "/%70ublic-security/hukou/v1/verify",
        "/public-security/./hukou/v1/verify",
        "/x/../public-security/hukou/v1/verify",
    ],
    ids=["percent-encoded", "dot", "dot-dot"],
)
async def test_the_signature_covers_the_path_as_sent_however_the_url_is_spelled(monkeypatch, gateway, spelling):
    """aiohttp sends a URL as yarl normalises it; the gateway checks the path it received, decoded. A base URL
    spelled with percent-encoding or dot segments must still pass."""
    async with new_http_client(signed_settings(monkeypatch, gateway)) as http:
        answer = await post_json(http, f"{gateway.base_url}{spelling}", enquiry(f"outbound-{uuid.uuid4().hex}"))
    assert answer["code"] == "1001"


async def _signed_post(http, url: str, body: bytes) -> tuple[int, dict, dict[str, str]]:
    """POST through the workers' own session with the headers the workers sign with; status, answer, headers."""
    headers = {"Content-Type": "application/json", **http.signing_headers("POST", URL(url), body)}
    async with http.session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json(), headers


async def test_an_unsigned_call_is_refused(gateway):
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as plain:
        refused = await plain.post(VERIFIER_PATHS["hukou"], json=enquiry())
        assert (refused.status_code, refused.json()["code"]) == (401, "4010")
        assert f"{signing.CLIENT_HEADER}: required" in refused.json()["message"]
        assert refused.headers["WWW-Authenticate"] == "Signature"
        platform = await plain.post(
            "/platform/v1/cases/SC2027-900001/status", json={}, headers={"Idempotency-Key": "outbound-auth-2"}
        )
        assert platform.status_code == 401
        # The operator's and the tests' controls and the health check stay open.
        assert (await plain.get("/healthz")).status_code == 200
        assert (await plain.get("/admin/stats")).status_code == 200


async def test_a_wrong_secret_is_refused(monkeypatch, gateway):
    url = f"{gateway.base_url}{VERIFIER_PATHS['hukou']}"
    async with new_http_client(signed_settings(monkeypatch, gateway, secret="not-the-issued-secret")) as http:
        status, answer, _ = await _signed_post(http, url, json.dumps(enquiry()).encode())
        assert (status, answer["message"]) == (401, f"请求签名校验失败: {signing.MISMATCH}")
        # As an activity meets it: a refusal no retry can mend.
        with pytest.raises(ApplicationError) as refused:
            await post_json(http, url, enquiry("outbound-wrong-secret"))
    assert (refused.value.type, refused.value.non_retryable) == ("DepartmentRejectedRequest", True)


async def test_a_replayed_or_altered_request_is_refused(monkeypatch, gateway):
    url = f"{gateway.base_url}{VERIFIER_PATHS['social_insurance']}"
    body = json.dumps(enquiry("outbound-3")).encode()
    async with new_http_client(signed_settings(monkeypatch, gateway)) as http, httpx.AsyncClient(timeout=5) as plain:
        status, _, proof = await _signed_post(http, url, body)
        assert status == 200
        again = await plain.post(url, content=body, headers=proof)
        assert (again.status_code, again.json()["message"]) == (
            401,
            f"请求签名校验失败: {signing.NONCE_HEADER}: already used (a replayed request)",
        )
        altered = await plain.post(url, content=body.replace(b"outbound-3", b"outbound-4"), headers=proof)
        assert altered.status_code == 401 and signing.MISMATCH in altered.json()["message"]


def test_the_command_line_refuses_a_bad_client_file_without_quoting_a_secret(tmp_path, capsys):
    clients = tmp_path / "gateway-clients.json"
    clients.write_text(json.dumps({"Not An Id": SECRET}))
    with pytest.raises(SystemExit) as stopped:
        standins_cli(["serve", "--data", str(tmp_path / "data"), "--require-signature", str(clients)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--require-signature: client id 'Not An Id'" in error and SECRET not in error
    assert not (tmp_path / "data").exists()  # refused before generating anything


# -- mutual TLS against a real TLS server ---------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the server does not trust
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA with a server and a client certificate, and a stranger's CA and client certificate
    (the project's own certificate authority, stack/certificates.py, twice)."""
    gateway = ensure_certificates(tmp_path_factory.mktemp("gateway-pki"), clients=(CLIENT_ID,))
    stranger = ensure_certificates(tmp_path_factory.mktemp("stranger-pki"), clients=(CLIENT_ID,))
    client, someone_else = gateway.client(CLIENT_ID), stranger.client(CLIENT_ID)
    return Pki(
        gateway.ca,
        gateway.frontend.cert,
        gateway.frontend.key,
        client.cert,
        client.key,
        someone_else.cert,
        someone_else.key,
    )


async def _answer(scope, receive, send) -> None:
    """The whole gateway: any request that got through the handshake is answered with a JSON object."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"code": "0000", "request_id": "tls"}'})


@pytest.fixture(scope="module")
def tls_gateway(pki: Pki) -> Iterator[str]:
    """uvicorn over TLS on a free port, requiring a client certificate from the throw-away CA; yields its URL."""
    server = ThreadedServer(listen("127.0.0.1", 0), "tls-gateway")
    server.serve(
        _answer,
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        ssl_ca_certs=str(pki.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    with server.start():
        yield f"https://127.0.0.1:{server.port}"


def mtls_settings(monkeypatch: pytest.MonkeyPatch, pki: Pki, url: str, **env: str) -> Settings:
    defaults = {
        "ENROLL_PUBLIC_SECURITY_URL": f"{url}/public-security",
        "ENROLL_OUTBOUND_AUTH": "mtls",
        "ENROLL_OUTBOUND_CLIENT_CERT": str(pki.client_cert),
        "ENROLL_OUTBOUND_CLIENT_KEY": str(pki.client_key),
        "ENROLL_OUTBOUND_CA": str(pki.ca),
        "ENROLL_HTTP_TIMEOUT_SECONDS": "5",
    }
    return settings(monkeypatch, **{**defaults, **env})


async def test_the_workers_client_certificate_passes_mutual_tls(monkeypatch, pki, tls_gateway):
    configured = mtls_settings(monkeypatch, pki, tls_gateway)
    async with new_http_client(configured) as http:
        answered = await post_json(http, f"{configured.public_security_url}/v1/hukou/verify", enquiry())
        assert answered["code"] == "0000"
        async with http.session.get(f"{tls_gateway}/healthz") as health:
            assert health.status == 200


async def test_a_client_without_the_certificate_is_refused_at_the_handshake(pki, tls_gateway):
    # Trusts the server, presents nothing. Under TLS 1.2 the server's refusal ends the handshake itself
    # (httpx's ConnectError), where the same client with the certificate is answered ...
    for certificate in (None, (pki.client_cert, pki.client_key)):
        context = ssl.create_default_context(cafile=pki.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        if certificate is not None:
            context.load_cert_chain(*certificate)
        async with httpx.AsyncClient(verify=context, timeout=5) as tls12:
            if certificate is None:
                with pytest.raises(httpx.ConnectError):
                    await tls12.get(f"{tls_gateway}/healthz")
            else:
                assert (await tls12.get(f"{tls_gateway}/healthz")).status_code == 200
    # ... under TLS 1.3 the client's side of the handshake is done before the server checks its certificate, so
    # the refusal comes as the connection dropped instead of an answer: no request gets through either way.
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki.ca), timeout=5) as anonymous:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await anonymous.get(f"{tls_gateway}/healthz")


async def test_a_certificate_from_another_ca_is_refused(monkeypatch, pki, tls_gateway):
    stranger = mtls_settings(
        monkeypatch,
        pki,
        tls_gateway,
        ENROLL_OUTBOUND_CLIENT_CERT=str(pki.stranger_cert),
        ENROLL_OUTBOUND_CLIENT_KEY=str(pki.stranger_key),
    )
    async with new_http_client(stranger) as http:
        with pytest.raises(ApplicationError) as refused:
            await post_json(http, f"{stranger.public_security_url}/v1/hukou/verify", enquiry())
    assert refused.value.type == "DepartmentUnreachable"


async def test_without_the_gateway_ca_the_server_is_not_trusted(monkeypatch, pki, tls_gateway):
    untrusting = mtls_settings(monkeypatch, pki, tls_gateway).model_copy(update={"outbound_ca": None})
    async with new_http_client(untrusting) as http:
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match="CERTIFICATE_VERIFY_FAILED"):
            async with http.session.get(f"{tls_gateway}/healthz"):
                pass
