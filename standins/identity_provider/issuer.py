"""Minting tokens and deciding whether one is still good: the part of the provider that holds the keys.

Access tokens (typ `at+jwt`, RFC 9068), ID tokens and message proofs (typ `proof+jwt`) are JWTs
signed by `SigningKeys` through joserfc. A token is *active* while its signature and lifetime hold,
its jti has not been revoked and its session has not ended (sign-out, revocation, a disabled account
all end sessions): /introspect, refresh and token exchange see that at once, a signature check does not.

Every issuance is logged (sub, client, grant, outcome, jti), never a token.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel, ValidationError

from standins.identity_provider.accounts import Client, Directory
from standins.identity_provider.grants import Grants, Session
from standins.identity_provider.keys import ALGORITHM, SigningKeys

log = structlog.get_logger("standins.identity_provider")

ACCESS_AUDIENCE = "enrollment"
# Tokens Temporal's frontend checks (global.authorization.audience in its config): never accepted by the
# product's services, and the product's are never accepted by Temporal.
TEMPORAL_AUDIENCE = "temporal"
PROOF_AUDIENCE = "enrollment-case"
ACCESS_TOKEN_TYPE = "at+jwt"
PROOF_TOKEN_TYPE = "proof+jwt"
ID_TOKEN_TYPE = "JWT"


class AccessClaims(BaseModel):
    """An access token's claims, as the provider put them there."""

    iss: str
    sub: str
    aud: str
    iat: int
    exp: int
    jti: str
    client_id: str
    sid: str
    role: str
    district: str | None


class Issuer:
    """The provider's URL, keys, directory and grants, and the tokens made from them."""

    def __init__(self, url: str, keys: SigningKeys, directory: Directory, grants: Grants):
        self.url = url
        self.keys = keys
        self.directory = directory
        self.grants = grants

    def person_tokens(
        self, session: Session, client: Client, grant: str, nonce: str | None = None, refresh: bool = True
    ) -> dict[str, Any]:
        """The token response for a signed-in person: access token, refresh token, and an ID token
        when the flow is OpenID Connect's (`nonce` given)."""
        account = self.directory.accounts[session.sub]
        if client.audience == TEMPORAL_AUDIENCE:
            access = self.temporal_token(session, client, client.temporal.people[account.role], grant)
        else:
            access = self._access_token(session, client.client_id, account.role, account.district, grant)
        response: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.grants.lifetimes.access_token,
        }
        if refresh:
            response["refresh_token"] = self.grants.issue_refresh(session, client.client_id)
        if nonce is not None:
            now = int(time.time())
            id_claims = {
                "iss": self.url,
                "sub": session.sub,
                "aud": client.client_id,
                "nonce": nonce,
                "iat": now,
                "exp": now + self.grants.lifetimes.id_token,
                "sid": session.sid,
                "role": account.role,
                "district": account.district,
            }
            response["id_token"] = self.keys.sign(id_claims, ID_TOKEN_TYPE)
            response["scope"] = "openid"
        return response

    def client_token(self, client: Client) -> dict[str, Any]:
        """The token response of client_credentials: the client acting for itself, under a session of its own."""
        assert client.role is not None
        session = self.grants.start_session(client.subject)
        access = self._access_token(session, client.client_id, client.role, None, "client_credentials")
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.grants.lifetimes.access_token}

    def client_temporal_token(self, client: Client) -> dict[str, Any]:
        """client_credentials for Temporal's frontend: the client's own token, with its `temporal.own` permissions."""
        session = self.grants.start_session(client.subject)
        access = self.temporal_token(session, client, client.temporal.own, "client_credentials")
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.grants.lifetimes.access_token}

    def temporal_token(self, session: Session, client: Client, permissions: list[str], grant: str) -> str:
        """An access token for Temporal's frontend: `permissions` in the form its default claim mapper reads
        (`<namespace>:<role>`). The frontend checks only signature, audience and lifetime, so it lives no
        longer than any access token."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": session.sub,
            "aud": TEMPORAL_AUDIENCE,
            "iat": now,
            "exp": now + self.grants.lifetimes.access_token,
            "jti": secrets.token_urlsafe(16),
            "client_id": client.client_id,
            "sid": session.sid,
            "permissions": list(permissions),
        }
        token = self.keys.sign(claims, ACCESS_TOKEN_TYPE)
        log.info(
            "token issued",
            sub=session.sub,
            client=client.client_id,
            grant=grant,
            outcome="issued",
            jti=claims["jti"],
            token_type="temporal",
        )
        return token

    def proof(
        self, subject: AccessClaims, case: str, action: str, digest: str, actor: Client | None = None
    ) -> dict[str, Any]:
        """Token exchange's answer: a proof signed for exactly this message to this case, by this subject;
        with `actor`, the client that asked for it on the subject's behalf, named as `act` (RFC 8693 4.1)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": subject.sub,
            "aud": PROOF_AUDIENCE,
            "iat": now,
            "exp": now + self.grants.lifetimes.proof,
            "jti": secrets.token_urlsafe(16),
            "sid": subject.sid,
            "role": subject.role,
            "district": subject.district,
            "case": case,
            "action": action,
            "digest": digest,
        }
        if actor is not None:
            claims["act"] = {"sub": actor.subject}
        token = self.keys.sign(claims, PROOF_TOKEN_TYPE)
        log.info(
            "token issued",
            sub=subject.sub,
            client=subject.client_id,
            actor=actor.client_id if actor else None,
            grant="token-exchange",
            outcome="issued",
            jti=claims["jti"],
            token_type="message-proof",
            case=case,
            action=action,
        )
        return {
            "access_token": token,
            "issued_token_type": "urn:enrollment:token-type:message-proof",
            "token_type": "N_A",
            "expires_in": self.grants.lifetimes.proof,
        }

    def active(self, token: str) -> AccessClaims | None:
        """The access token's claims if it is one of ours and still active, else None."""
        try:
            decoded = jwt.decode(token, self.keys.verification_keys(), algorithms=[ALGORITHM])
            if decoded.header.get("typ") != ACCESS_TOKEN_TYPE:
                return None
            JWTClaimsRegistry(
                iss={"essential": True, "value": self.url},
                aud={"essential": True, "value": ACCESS_AUDIENCE},
                exp={"essential": True},
            ).validate(decoded.claims)
            claims = AccessClaims.model_validate(decoded.claims)
        except (JoseError, ValueError, ValidationError):
            return None
        if self.grants.access_revoked(claims.jti) or self.grants.session(claims.sid) is None:
            return None
        return claims

    def id_token_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an ID token of ours, expired or not: sign-out takes one as a hint of whose session
        to end, so only its signature and issuer must hold."""
        if not token:
            return None
        try:
            decoded = jwt.decode(token, self.keys.verification_keys(), algorithms=[ALGORITHM])
        except (JoseError, ValueError):
            return None
        if decoded.header.get("typ") != ID_TOKEN_TYPE or decoded.claims.get("iss") != self.url:
            return None
        return decoded.claims

    def _access_token(self, session: Session, client_id: str, role: str, district: str | None, grant: str) -> str:
        now = int(time.time())
        claims = AccessClaims(
            iss=self.url,
            sub=session.sub,
            aud=ACCESS_AUDIENCE,
            iat=now,
            exp=now + self.grants.lifetimes.access_token,
            jti=secrets.token_urlsafe(16),
            client_id=client_id,
            sid=session.sid,
            role=role,
            district=district,
        )
        token = self.keys.sign(claims.model_dump(), ACCESS_TOKEN_TYPE)
        log.info("token issued", sub=session.sub, client=client_id, grant=grant, outcome="issued", jti=claims.jti)
        return token
