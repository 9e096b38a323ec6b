"""People and services that call the API with an access token from the identity provider, not a signature."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import Request

from api.limits import retry_after
from api.problems import ApiProblem
from enrollment.oidc import Identity, IdentityError, IdentityProvider, IdentityUnavailable


def bearer_token(request: Request, who: str) -> str:
    """The request's bearer token; 401 naming `who` must send one when there is none."""
    authorization = request.headers.get("authorization", "")
    if not authorization.lower().startswith("bearer "):
        raise ApiProblem(401, [f"authorization: {who} bearer token is required"])
    return authorization[7:]


async def verified(request: Request, token: str, roles: Collection[str]) -> Identity:
    """Who the token was issued to, if the provider signed it and it is of one of `roles`; 403 otherwise."""
    provider: IdentityProvider = request.app.state.identity
    try:
        return await provider.verify_access_token(token, roles)
    except IdentityUnavailable:
        raise _provider_unavailable() from None
    except IdentityError as err:
        raise ApiProblem(403, [f"authorization: {err.reason}"]) from None


async def still_active(request: Request, token: str, client_id: str, client_secret: str) -> bool:
    """Whether the provider still holds the token active: a signature cannot say it was revoked."""
    provider: IdentityProvider = request.app.state.identity
    try:
        return await provider.introspect(token, client_id, client_secret)
    except IdentityUnavailable:
        raise _provider_unavailable() from None


def _provider_unavailable() -> ApiProblem:
    return ApiProblem(
        503, ["authorization: the identity provider cannot be reached; try again later"], headers=retry_after(5)
    )
