"""Signed requests: how a registered calling system proves who it is on every request, and that it is not a replay.

The scheme is the app-key signature that provincial government gateways
(政务服务网关) use with the systems they connect: each client has an id and a
secret issued by the bureau; every request carries the client id, a timestamp,
a fresh nonce and an HMAC-SHA256 over the method, path, query, timestamp,
nonce and the SHA-256 of the body. The server recomputes it, refuses a
timestamp outside the window, and remembers nonces for the window, so a
captured request cannot be sent again. Written here because no kept library
implements this gateway scheme; the cryptography is the standard library's
`hmac` and `hashlib`.

`signed_headers` signs one request; `SignedRequests` signs for httpx clients (the
stand-in platform, `enroll`, the tests and the benchmark), the workers' client
calls it itself (activities/outbound.py); `verify` is the server's check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import httpx

CLIENT_HEADER = "X-Client-Id"
TIMESTAMP_HEADER = "X-Timestamp"
NONCE_HEADER = "X-Nonce"
SIGNATURE_HEADER = "X-Signature"
# A request is valid this many seconds either side of the server's clock.
WINDOW_SECONDS = 300
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
MISMATCH = f"{SIGNATURE_HEADER}: does not match the request (unknown client, wrong secret, or the request was altered)"


def canonical_query(query: str) -> str:
    """The query string with its parameters sorted, so both ends sign the same text."""
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def string_to_sign(method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    parts = [method.upper(), path, canonical_query(query), timestamp, nonce, hashlib.sha256(body).hexdigest()]
    return "\n".join(parts).encode()


def signature(secret: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def signed_headers(client_id: str, secret: bytes, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
    """The headers that sign one request as `client_id`: a fresh nonce and the current time, each call."""
    timestamp = str(int(time.time()))
    nonce = secrets.token_urlsafe(24)
    message = string_to_sign(method, path, query, timestamp, nonce, body)
    return {
        CLIENT_HEADER: client_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(secret, message),
    }


class SignedRequests(httpx.Auth):
    """httpx authentication that signs every request as one registered client."""

    requires_request_body = True

    def __init__(self, client_id: str, secret: bytes):
        self._client_id = client_id
        self._secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(
            signed_headers(
                self._client_id,
                self._secret,
                request.method,
                request.url.path,
                request.url.query.decode(),
                request.content,
            )
        )
        yield request


class SignatureError(Exception):
    """Why a request's proof of origin is refused: names the header and the rule, never a value."""


@dataclass(frozen=True)
class SignedHeaders:
    client_id: str
    timestamp: str
    nonce: str
    signature: str

    @classmethod
    def parse(cls, headers: dict[str, str]) -> SignedHeaders:
        """The four headers, checked for shape only; SignatureError names the first one missing or malformed."""
        found = {
            name: headers.get(name.lower(), "")
            for name in (CLIENT_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
        }
        for name, value in found.items():
            if not value:
                raise SignatureError(f"{name}: required (requests are signed; see the README's front door)")
        if not CLIENT_ID.match(found[CLIENT_HEADER]):
            raise SignatureError(f"{CLIENT_HEADER}: not a registered client id")
        if not found[TIMESTAMP_HEADER].isascii() or not found[TIMESTAMP_HEADER].isdigit():
            raise SignatureError(f"{TIMESTAMP_HEADER}: must be Unix seconds")
        if not NONCE.match(found[NONCE_HEADER]):
            raise SignatureError(f"{NONCE_HEADER}: must be 16 to 64 letters, digits, '-' or '_'")
        return cls(found[CLIENT_HEADER], found[TIMESTAMP_HEADER], found[NONCE_HEADER], found[SIGNATURE_HEADER])


def verify(
    signed: SignedHeaders, secret: bytes, method: str, path: str, query: str, body: bytes, now: float | None = None
) -> None:
    """Raise SignatureError unless the signature is the client's and the timestamp is within the window."""
    now = time.time() if now is None else now
    if abs(now - int(signed.timestamp)) > WINDOW_SECONDS:
        raise SignatureError(f"{TIMESTAMP_HEADER}: more than {WINDOW_SECONDS} s from the server's clock")
    expected = signature(secret, string_to_sign(method, path, query, signed.timestamp, signed.nonce, body))
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureError(MISMATCH)
