"""Signed identity tokens for the people who act on cases: reviewers, service-point staff, ops.

A token says who (subject), in which role, for which district, until when;
it is signed with HMAC-SHA256 under ENROLL_TOKEN_SECRET by whoever issues
accounts (`enroll token issue`). Tools that send messages to cases (the
`enroll` command line, the codec server) verify it and take the sender's
identity from it, never from what the sender types, and the case records the
token id with the action for the audit trail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Literal

from pydantic import BaseModel, ValidationError, model_validator

Role = Literal["reviewer", "staff", "ops"]


class TokenError(ValueError):
    """A token that cannot be used; the message says why (never echoes the token)."""


class Claims(BaseModel):
    sub: str
    role: Role
    district: str | None = None
    exp: int
    jti: str

    @model_validator(mode="after")
    def _district_for_bureau_roles(self) -> Claims:
        if self.role in ("reviewer", "staff") and not self.district:
            raise ValueError(f"a {self.role} token must name a district")
        return self


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def issue(
    secret: bytes,
    subject: str,
    role: Role,
    district: str | None,
    valid_for: dt.timedelta,
    now: dt.datetime | None = None,
) -> str:
    now = now or dt.datetime.now(dt.UTC)
    claims = Claims(
        sub=subject, role=role, district=district, exp=int((now + valid_for).timestamp()), jti=uuid.uuid4().hex[:16]
    )
    body = _b64(claims.model_dump_json(exclude_none=True).encode())
    return f"{body}.{_signature(secret, body)}"


def verify(secret: bytes, token: str, role: Role | None = None, now: dt.datetime | None = None) -> Claims:
    """The token's claims if it is authentic, unexpired and (when given) of the role; else TokenError."""
    body, _, signature = token.strip().partition(".")
    if not body or not signature or not hmac.compare_digest(signature, _signature(secret, body)):
        raise TokenError("token: signature does not match (not issued by this deployment, or altered)")
    try:
        claims = Claims.model_validate(json.loads(_unb64(body)))
    except (ValueError, ValidationError):
        raise TokenError("token: claims are malformed") from None
    now = now or dt.datetime.now(dt.UTC)
    if claims.exp <= now.timestamp():
        raise TokenError(f"token: expired at {dt.datetime.fromtimestamp(claims.exp, dt.UTC):%Y-%m-%d %H:%M} UTC")
    if role is not None and claims.role != role:
        raise TokenError(f"token: a {claims.role} token cannot do what needs a {role}")
    return claims
