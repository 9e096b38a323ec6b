"""Temporal's remote codec protocol, decode only (POST /decode), for authorised ops.

The UI and `temporal` CLI send payloads here to be shown in clear. Who may ask is the
`authorize` callable's decision (ops and auditors signed in at the identity provider,
`codec_server.identity`); every answered request goes to `on_decode` with who asked, how many
payloads and the namespace, for the audit trail (never what was decoded). The CLI sends the token as a bearer header
(`--codec-auth`); a browser signs in once at /login and the UI then sends the cookie ("include
cross-origin credentials").

There is no encoding: POST /encode is refused to everyone, so this server cannot be used to
craft a payload a case would take for a genuine message. Browsers are not even offered it: the
CORS rules cover /decode and /login only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from temporalio.api.common.v1 import Payloads

from enrollment.case import application_id_of
from enrollment.codec import WORKFLOW_ID, EncryptionCodec, PayloadRefused

log = structlog.get_logger()
MAX_REQUEST_BYTES = 4 << 20


COOKIE = "enroll_codec_token"
ENCODE_REFUSED = (
    "encode: this codec server only decodes; messages to a case are sent through the product, "
    "which encrypts them for that case"
)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: the token's subject, role and id; `expires_at` (epoch seconds) if it says."""

    sub: str
    role: str
    jti: str
    expires_at: int | None = None


class NotAuthorized(Exception):
    """`authorize` refuses a token; the message says why (it is returned to the caller and logged)."""


Authorize = Callable[[str], Awaitable[Caller]]


@dataclass(frozen=True)
class Decoded:
    """One answered /decode: who asked, how many payloads, the namespace the UI or CLI names, and the
    applications the payloads belong to (each is sealed to its case), so the trail answers who saw a case."""

    caller: Caller
    payloads: int
    namespace: str | None
    applications: tuple[str, ...]


OnDecode = Callable[[Decoded], Awaitable[None]]


async def log_decode(decoded: Decoded) -> None:
    """The default `on_decode`: a log line per answered request."""
    caller = decoded.caller
    log.info(
        "codec decode",
        subject=caller.sub,
        token=caller.jti,
        namespace=decoded.namespace,
        payloads=decoded.payloads,
        applications=list(decoded.applications),
    )


def _applications(payloads: Payloads) -> tuple[str, ...]:
    bound = {
        payload.metadata[WORKFLOW_ID].decode("utf-8", "replace")
        for payload in payloads.payloads
        if WORKFLOW_ID in payload.metadata
    }
    return tuple(sorted(application_id_of(case) for case in bound))


def _presented_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:]
    return request.cookies.get(COOKIE)


def create_app(
    codec: EncryptionCodec,
    authorize: Authorize,
    cors_origins: list[str],
    on_decode: OnDecode = log_decode,
) -> Starlette:
    """The decode-only codec server.

    `authorize` turns a presented token into its Caller or raises NotAuthorized (403, its message the
    reason); `on_decode` is awaited before each decoded answer is sent, so an audit writer that fails
    fails the request (500) and nothing is shown unaudited. Both run on the server's event loop: a
    verifier holding an HTTP client should open it there (on first use), not in the process that
    built the app.
    """

    async def login(request: Request) -> Response:
        token = request.query_params.get("token", "")
        try:
            caller = await authorize(token)
        except NotAuthorized as err:
            log.warning("codec sign-in refused", reason=str(err))
            return JSONResponse({"error": str(err)}, status_code=403)
        response = JSONResponse({"signed_in": caller.sub, "until": caller.expires_at})
        # The cookie lasts as long as the token (a session cookie if the caller does not say); SameSite=None lets
        # the UI's origin send it; browsers accept Secure cookies from localhost over http.
        max_age = None if caller.expires_at is None else max(0, caller.expires_at - int(time.time()))
        response.set_cookie(COOKIE, token, max_age=max_age, httponly=True, secure=True, samesite="none")
        log.info("codec sign-in", subject=caller.sub, token=caller.jti)
        return response

    async def decode(request: Request) -> Response:
        token = _presented_token(request)
        if not token:
            return JSONResponse({"error": "authorization: a token of the ops role is required"}, status_code=401)
        try:
            caller = await authorize(token)
        except NotAuthorized as err:
            log.warning("codec request refused", reason=str(err))
            return JSONResponse({"error": str(err)}, status_code=403)
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return JSONResponse({"error": f"body: larger than {MAX_REQUEST_BYTES} bytes"}, status_code=413)
        payloads = Payloads()
        try:
            json_format.Parse(body, payloads)
        except (json_format.ParseError, UnicodeDecodeError):
            return JSONResponse({"error": "body: not a JSON Payloads message"}, status_code=400)
        try:
            decoded = await codec.reveal(payloads.payloads)
        except PayloadRefused as refusal:  # an unknown key id, a forged ciphertext: say which, not what
            log.warning("codec request failed", subject=caller.sub, token=caller.jti, reason=refusal.reason)
            return JSONResponse({"error": f"payloads: cannot decode ({refusal.reason})"}, status_code=422)
        await on_decode(Decoded(caller, len(decoded), request.headers.get("x-namespace"), _applications(payloads)))
        return Response(json_format.MessageToJson(Payloads(payloads=decoded)), media_type="application/json")

    async def encode(request: Request) -> Response:
        log.warning("codec encode refused")
        return JSONResponse({"error": ENCODE_REFUSED}, status_code=403)

    cors = Middleware(
        CORSMiddleware,
        allow_origins=cors_origins,
        allow_methods=["POST"],
        allow_headers=["authorization", "content-type", "x-namespace"],
        allow_credentials=True,
    )
    return Starlette(
        routes=[
            # Before the CORS mount, and answering its preflight too: a browser is not even offered /encode.
            Route("/encode", encode, methods=["POST", "OPTIONS"]),
            Mount(
                "",
                routes=[Route("/decode", decode, methods=["POST"]), Route("/login", login, methods=["GET"])],
                middleware=[cors],
            ),
        ]
    )
