"""Message proofs: what a case checks before a message may change it.

A message that changes a case carries `proof`, a JWT the identity provider signed for exactly that
message (RFC 8693 token exchange, see docs/identity.md): who sent it (sub, role, district), to which
case, as which action, and the SHA-256 digest of the message itself. The case checks it here.

This module runs inside Temporal's workflow sandbox, on every replay, so it is pure: no I/O, no
clock (`now` is passed in, the workflow's time), no randomness, nothing global that changes. The
provider's public keys come in as `TrustedKeys`, which the case fetched through an activity and keeps
in its history. The signature is verified by joserfc; the claims are checked rule by rule, so a
refusal names the rule that failed and never echoes the token.

The sandbox must pass `cryptography` through (the case worker passes every module through): its
OpenSSL backend is imported lazily, on the first signature checked, and cannot be imported twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, ValidationError

PROOF_AUDIENCE = "enrollment-case"
PROOF_TYPE = "proof+jwt"
ALGORITHM = "ES256"
# Clocks of the provider and the workers differ a little: a proof may say it was issued this much
# after the case's `now`. Expiry gets no leeway: a proof lives 5 minutes, which is leeway enough.
IAT_LEEWAY = timedelta(seconds=30)

# Who may send which message. The provider signs a proof for anyone signed in; the case decides.
ACTION_ROLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "review": frozenset({"reviewer"}),
        "register_offline": frozenset({"staff"}),
        "supplement": frozenset({"platform"}),
        "withdraw": frozenset({"platform"}),
        "select_school": frozenset({"platform"}),
        "reverify": frozenset({"ops"}),
        "claim": frozenset({"reviewer"}),
        "reassign": frozenset({"supervisor"}),
    }
)
# Roles that belong to one district, whose proofs must name the case's district.
DISTRICT_ROLES = frozenset({"reviewer", "staff", "supervisor"})


class TrustedKeys(BaseModel):
    """The provider's public keys as the case holds them: its issuer URL and its JWKS document."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    jwks: dict[str, Any]
    fetched_at: datetime


class ProofClaims(BaseModel):
    model_config = ConfigDict(frozen=True)

    iss: str
    sub: str
    aud: str | list[str]
    iat: int
    exp: int
    jti: str
    sid: str
    role: str
    district: str | None
    case: str
    action: str
    digest: str


class ProofCheck(BaseModel):
    """The proof's claims when it is accepted; otherwise why not. `unknown_key`: the proof names a key
    the case does not hold, so the caller may fetch the provider's keys once more and check again."""

    model_config = ConfigDict(frozen=True)

    claims: ProofClaims | None = None
    refusal: str | None = None
    unknown_key: bool = False


def message_digest(message: BaseModel) -> str:
    """SHA-256 (hex) of the message's canonical JSON, without the proof itself (and the 1.0 credential)."""
    fields = message.model_dump(mode="json", exclude={"proof", "credential"})
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _refused(reason: str, unknown_key: bool = False) -> ProofCheck:
    return ProofCheck(refusal=f"proof: {reason}", unknown_key=unknown_key)


def check_proof(
    proof: str | None,
    keys: TrustedKeys,
    *,
    case: str,
    action: str,
    digest: str,
    district: str,
    now: datetime,
    seen: Collection[str],
) -> ProofCheck:
    """Whether `proof` lets this message (`digest`) be taken as `action` by the case `case` of `district`.

    `seen` holds the jti of every proof the case has accepted: a proof is good for one message.
    """
    if not proof:
        return _refused("missing: the message carries no proof of who sent it")
    try:
        header = jws.extract_compact(proof.encode()).headers()
    except (JoseError, ValueError):
        return _refused("not a signed token (JWS compact serialization)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return _refused("names no signing key (kid)")
    if kid not in {key.get("kid") for key in keys.jwks.get("keys", [])}:
        return _refused("signed with a key the case does not know", unknown_key=True)
    try:
        token = jwt.decode(proof, KeySet.import_key_set({"keys": keys.jwks.get("keys", [])}), algorithms=[ALGORITHM])
    except BadSignatureError:
        return _refused("signature does not verify (forged or altered)")
    except (JoseError, ValueError):
        return _refused("not a valid ES256 signed token")
    if token.header.get("typ") != PROOF_TYPE:
        return _refused(f"not a message proof (typ must be {PROOF_TYPE})")
    try:
        claims = ProofClaims.model_validate(token.claims)
    except ValidationError:
        return _refused("claims are missing or malformed")
    return _check_claims(claims, keys.issuer, case, action, digest, district, now, seen)


def _check_claims(
    claims: ProofClaims,
    issuer: str,
    case: str,
    action: str,
    digest: str,
    district: str,
    now: datetime,
    seen: Collection[str],
) -> ProofCheck:
    audiences = [claims.aud] if isinstance(claims.aud, str) else claims.aud
    moment = now.timestamp()
    if claims.iss != issuer:
        return _refused("issued by another issuer than the case trusts")
    if PROOF_AUDIENCE not in audiences:
        return _refused(f"not meant for a case (aud must be {PROOF_AUDIENCE})")
    if moment >= claims.exp:
        return _refused("expired; ask the identity provider for a new one")
    if claims.iat > moment + IAT_LEEWAY.total_seconds():
        return _refused("issued in the future")
    if claims.case != case:
        return _refused("signed for another case (replayed onto this one)")
    if claims.action != action:
        return _refused(f"signed for another action than {action}")
    if claims.digest != digest:
        return _refused("signed for another message (this one was altered)")
    if claims.jti in seen:
        return _refused("already used (replayed)")
    if claims.role not in ACTION_ROLES.get(action, frozenset()):
        return _refused(f"a {claims.role} may not {action}")
    if claims.role in DISTRICT_ROLES and claims.district != district:
        return _refused("signed for a person of another district than the case's")
    return ProofCheck(claims=claims)
