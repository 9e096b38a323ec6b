"""The workers' one HTTP client to the departments and the provincial platform, and how it proves the product.

A government gateway (政务服务网关) admits only the systems registered with it, in one of two ways, chosen by
ENROLL_OUTBOUND_AUTH (enrollment/settings.py):

- `mtls`: a client certificate the gateway's CA issued, presented in the TLS handshake, from a standard-library
  SSLContext holding the certificate chain.
- `signed`: every request signed with the id and secret the gateway issued, by the same scheme the product's
  own API checks (`api.signing`), and only the requests to the departments and the platform.

ENROLL_OUTBOUND_CA, in any mode, adds the CA of the gateway's server certificate to the usual trust store
(not in place of it: the identity provider may well have a public certificate).

The calls go to the configured base URLs and nowhere else: no redirect is followed (activities/gateway.py), and
neither the proxy variables of the environment nor a `.netrc` are read, so nothing outside the settings decides
where a family's data goes or what credentials ride along.

Why aiohttp and not httpx, which the rest of the product uses: a case makes about four calls here (three
verifications and the result in the benchmark, one more per notice), and on the workers' own client httpx spent
2 to 5 ms of CPU on each one (its connection pool checks every idle
connection's socket on each request), aiohttp 0.3 to 0.5 ms (`python -m bench.http_calls`). The identity
provider's keys, fetched rarely, go through httpx (`OutboundClient.identity_http`), as enrollment.oidc expects.

Kept apart from workers/build.py, which only wires the workers: what the one client shared by every activity
presents and signs is what a security review reads, and tests/test_outbound_auth.py tests it on its own.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import aiohttp
import httpx
from yarl import URL

from api.signing import signed_headers
from enrollment.settings import Settings, SettingsError

# Connections from one worker process to the departments and the platform, at most; a call beyond them waits
# for one to be free.
CONNECTIONS = 200


def outbound_tls(settings: Settings) -> ssl.SSLContext:
    """The default TLS context (certifi's trust store), plus ENROLL_OUTBOUND_CA and, for mtls, the client certificate.

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


class RequestSigner:
    """Signs the requests under the given base URLs as one gateway client; any other request goes unsigned.

    It signs the URL as aiohttp sends it (`yarl.URL`: dot segments resolved, the path quoted again) and as the
    gateway reads it back, decoded: a base URL with percent-encoding or `./` still passes the check.
    """

    def __init__(self, client_id: str, secret: bytes, base_urls: Iterable[str]) -> None:
        self._client_id = client_id
        self._secret = secret
        self._prefixes = tuple(str(URL(url.rstrip("/") + "/")) for url in base_urls)

    def headers_for(self, method: str, url: URL, body: bytes) -> dict[str, str]:
        if not str(url).startswith(self._prefixes):
            return {}
        return signed_headers(self._client_id, self._secret, method, url.path, url.raw_query_string, body)


def outbound_signer(settings: Settings) -> RequestSigner | None:
    """The request signing for `signed`, scoped to the departments and the platform; None otherwise."""
    if settings.outbound_auth != "signed":
        return None
    if settings.outbound_client_id is None or settings.outbound_signing_secret is None:
        raise SettingsError(["ENROLL_OUTBOUND_CLIENT_ID, ENROLL_OUTBOUND_SIGNING_SECRET: required for signed"])
    return RequestSigner(
        settings.outbound_client_id,
        settings.outbound_signing_secret.get_secret_value().encode(),
        [
            settings.public_security_url,
            settings.social_insurance_url,
            settings.natural_resources_url,
            settings.platform_url,
        ],
    )


class OutboundClient:
    """The connection pool every department and platform activity in a worker process shares.

    `read_timeout` bounds each connect and each read (ENROLL_HTTP_TIMEOUT_SECONDS); the gateway
    (activities/gateway.py) bounds the whole exchange. Bodies are never decompressed: the gateway refuses
    an encoded answer rather than inflate it. The session is opened on first use, inside the event loop
    that will run the calls.
    """

    def __init__(self, settings: Settings) -> None:
        # Both raise SettingsError now, when the worker starts, not at the first call.
        self._tls = outbound_tls(settings)
        self.signer = outbound_signer(settings)
        self.read_timeout: float | None = settings.http_timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        # The identity provider's keys: same trust store and certificate, never the gateway's signature.
        self.identity_http = httpx.AsyncClient(timeout=httpx.Timeout(self.read_timeout), verify=self._tls)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Idle connections are closed after 5 s, as httpx did: below the idle timeout of common servers,
                # so a call does not go out on a connection the other end is closing.
                connector=aiohttp.TCPConnector(limit=CONNECTIONS, ssl=self._tls, keepalive_timeout=5.0),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self.read_timeout,
                    sock_read=self.read_timeout,
                ),
                auto_decompress=False,
                # Every call stands alone: a cookie one department sets is not sent back with another case's call.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def signing_headers(self, method: str, url: URL, body: bytes) -> dict[str, str]:
        """What proves this request to the gateway: nothing unless ENROLL_OUTBOUND_AUTH is `signed`."""
        return self.signer.headers_for(method, url, body) if self.signer is not None else {}

    async def aclose(self) -> None:
        await self.identity_http.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()
