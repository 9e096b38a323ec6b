"""Temporal's remote codec protocol (POST /encode, POST /decode) behind ops identity tokens.

The UI and `temporal` CLI send payloads here to be shown in clear; only a
token of the `ops` role, signed by this deployment, gets an answer, and every
decode is logged with who asked (never what was decoded). The CLI sends the
token as a bearer header (`--codec-auth`); a browser signs in once at /login
and the UI then sends the cookie ("include cross-origin credentials").
"""

from __future__ import annotations

import time

import structlog
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from enrollment import tokens

log = structlog.get_logger()
MAX_REQUEST_BYTES = 4 << 20


COOKIE = "enroll_codec_token"


def _presented_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:]
    return request.cookies.get(COOKIE)


def create_app(codec: PayloadCodec, token_secret: bytes, cors_origins: list[str]) -> Starlette:
    async def login(request: Request) -> Response:
        token = request.query_params.get("token", "")
        try:
            claims = tokens.verify(token_secret, token, role="ops")
        except tokens.TokenError as err:
            return JSONResponse({"error": str(err)}, status_code=403)
        response = JSONResponse({"signed_in": claims.sub, "until": claims.exp})
        # SameSite=None lets the UI's origin send it; browsers accept Secure cookies from localhost over http.
        response.set_cookie(
            COOKIE, token, max_age=max(0, claims.exp - int(time.time())), httponly=True, secure=True, samesite="none"
        )
        log.info("codec sign-in", subject=claims.sub, token=claims.jti)
        return response

    async def handle(request: Request) -> Response:
        action = request.url.path.rsplit("/", 1)[-1]
        token = _presented_token(request)
        if not token:
            return JSONResponse({"error": "authorization: a token of the ops role is required"}, status_code=401)
        try:
            claims = tokens.verify(token_secret, token, role="ops")
        except tokens.TokenError as err:
            log.warning("codec request refused", action=action, reason=str(err))
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
            converted = await (codec.encode if action == "encode" else codec.decode)(payloads.payloads)
        except Exception as err:  # an unknown key id, a forged ciphertext: say which, not what
            log.warning("codec request failed", action=action, subject=claims.sub, error=type(err).__name__)
            return JSONResponse({"error": f"payloads: cannot {action} ({type(err).__name__})"}, status_code=422)
        log.info(
            "codec request",
            action=action,
            subject=claims.sub,
            token=claims.jti,
            namespace=request.headers.get("x-namespace"),
            payloads=len(converted),
        )
        return Response(json_format.MessageToJson(Payloads(payloads=converted)), media_type="application/json")

    return Starlette(
        routes=[
            Route("/encode", handle, methods=["POST"]),
            Route("/decode", handle, methods=["POST"]),
            Route("/login", login, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=cors_origins,
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type", "x-namespace"],
                allow_credentials=True,
            )
        ],
    )
