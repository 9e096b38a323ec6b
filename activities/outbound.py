"""How the workers' HTTP client proves the product to the departments and the provincial platform.

A government gateway (政务服务网关) admits only the systems registered with it, in one of two ways, chosen by
ENROLL_OUTBOUND_AUTH (enrollment/settings.py):

- `mtls`: a client certificate the gateway's CA issued, presented in the TLS handshake. httpx's own TLS does
  it, given a standard-library SSLContext holding the certificate chain (httpx 0.28's way: its `cert=` and
  `verify=<path>` arguments are deprecated).
- `signed`: every request signed with the id and secret the gateway issued, by the same scheme the product's
  own API checks (`api.signing`), and only the requests to the departments and the platform: the same client
  fetches the identity provider's public keys, which has no business seeing the signatures.

ENROLL_OUTBOUND_CA, in any mode, adds the CA of the gateway's server certificate to the usual trust store
(not in place of it: the identity provider may well have a public certificate).

Kept apart from workers/build.py, which only wires the workers: what the one client shared by every activity
presents and signs is what a security review reads, and tests/test_outbound_auth.py tests it on its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Generator, Iterable

import httpx

from api.signing import SignedRequests
from enrollment.settings import Settings, SettingsError


class SignedFor(httpx.Auth):
    """Signs the requests under the given base URLs with `signer`, and sends any other request as it is."""

    requires_request_body = True

    def __init__(self, signer: httpx.Auth, base_urls: Iterable[str]) -> None:
        self._signer = signer
        self._prefixes = tuple(url.rstrip("/") + "/" for url in base_urls)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if str(request.url).startswith(self._prefixes):
            yield from self._signer.auth_flow(request)
        else:
            yield request


def outbound_tls(settings: Settings) -> ssl.SSLContext:
    """httpx's default TLS context, plus ENROLL_OUTBOUND_CA and, for mtls, the client certificate.

    A SettingsError names the variable whose file cannot be used (not its content: a key is a secret).
    """
    context = httpx.create_ssl_context()
    if settings.outbound_ca is not None:
        try:
            context.load_verify_locations(cafile=settings.outbound_ca)
        except (OSError, ssl.SSLError) as error:
            raise SettingsError(
                [f"ENROLL_OUTBOUND_CA: not a readable CA certificate ({type(error).__name__})"]
            ) from None
    if settings.outbound_auth == "mtls":
        if settings.outbound_client_cert is None or settings.outbound_client_key is None:
            raise SettingsError(["ENROLL_OUTBOUND_CLIENT_CERT, ENROLL_OUTBOUND_CLIENT_KEY: required for mtls"])
        try:
            context.load_cert_chain(settings.outbound_client_cert, settings.outbound_client_key)
        except (OSError, ssl.SSLError) as error:
            problem = f"not a readable certificate and matching key ({type(error).__name__})"
            raise SettingsError([f"ENROLL_OUTBOUND_CLIENT_CERT, ENROLL_OUTBOUND_CLIENT_KEY: {problem}"]) from None
    return context


def outbound_auth(settings: Settings) -> httpx.Auth | None:
    """The request signing for `signed`, scoped to the departments and the platform; None otherwise."""
    if settings.outbound_auth != "signed":
        return None
    if settings.outbound_client_id is None or settings.outbound_signing_secret is None:
        raise SettingsError(["ENROLL_OUTBOUND_CLIENT_ID, ENROLL_OUTBOUND_SIGNING_SECRET: required for signed"])
    signer = SignedRequests(settings.outbound_client_id, settings.outbound_signing_secret.get_secret_value().encode())
    return SignedFor(
        signer,
        [
            settings.public_security_url,
            settings.social_insurance_url,
            settings.natural_resources_url,
            settings.platform_url,
        ],
    )
