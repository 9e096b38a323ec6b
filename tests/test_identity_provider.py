"""The identity provider stand-in over real HTTP, driven by httpx and by the product's client (enrollment.oidc)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet
from pydantic import ValidationError

from enrollment import logs
from enrollment.oidc import TEMPORAL_AUDIENCE, IdentityError, IdentityProvider
from enrollment.proofs import TrustedKeys, check_proof
from stack.temporal_server import free_port
from standins.identity_provider import Lifetimes, RunningIdentityProvider, start_in_thread
from standins.identity_provider.accounts import GRANT_TOKEN_EXCHANGE, Client, hash_secret
from standins.identity_provider.keys import SigningKeys
from tests.support.identity import (
    CLIENT_SECRETS,
    CONSOLE,
    Authorization,
    approve_device,
    callback_params,
    cli_token,
    console_tokens,
    password,
    redeem,
    sign_in,
)
from tests.support.waiting import wait_until

API, CLI, UI = "enroll-api", "enroll-cli", "temporal-ui"
CASE = "case-SC2027-000001"
DIGEST = "0" * 64


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIdentityProvider]:
    running = start_in_thread(tmp_path_factory.mktemp("identity"), lifetimes=Lifetimes(device_interval=1))
    yield running
    running.stop()


@pytest.fixture
async def idp(provider: RunningIdentityProvider) -> AsyncIterator[IdentityProvider]:
    client = IdentityProvider(provider.base_url)
    yield client
    await client.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def admin(provider: RunningIdentityProvider) -> dict[str, str]:
    return {"Authorization": f"Bearer {provider.admin_secret}"}


async def set_disabled(provider: RunningIdentityProvider, sub: str, disabled: bool) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.patch(
            f"{provider.base_url}/admin/accounts/{sub}", json={"disabled": disabled}, headers=admin(provider)
        )
    assert answer.status_code == 200, answer.text


async def test_discovery_names_every_endpoint_and_the_jwks_holds_public_es256_keys(provider, browser):
    base = provider.base_url
    metadata = (await browser.get(f"{base}/.well-known/openid-configuration")).json()
    assert metadata["issuer"] == base
    for name, path in {
        "authorization_endpoint": "/authorize",
        "token_endpoint": "/token",
        "device_authorization_endpoint": "/device_authorization",
        "userinfo_endpoint": "/userinfo",
        "jwks_uri": "/jwks",
        "introspection_endpoint": "/introspect",
        "revocation_endpoint": "/revoke",
        "end_session_endpoint": "/signout",
    }.items():
        assert metadata[name] == base + path
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in metadata["grant_types_supported"]

    keys = (await browser.get(metadata["jwks_uri"])).json()["keys"]
    assert len(keys) == 1
    assert {keys[0]["kty"], keys[0]["crv"], keys[0]["alg"], keys[0]["use"]} == {"EC", "P-256", "ES256", "sig"}
    assert keys[0]["kid"] and "d" not in keys[0], "a key id on every key, and never the private part"


async def test_the_code_flow_with_pkce_gives_the_signed_in_person_tokens(provider, idp, browser):
    authorization = Authorization()
    callback = await sign_in(browser, provider.base_url, "r-510104-1", authorization)
    assert callback["state"] == authorization.state and callback["iss"] == provider.base_url
    answer = await redeem(browser, provider.base_url, callback["code"], authorization)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    tokens = answer.json()
    assert {"access_token", "refresh_token", "id_token"} <= tokens.keys() and tokens["expires_in"] == 600

    identity = await idp.verify_access_token(tokens["access_token"], {"reviewer"})
    assert (identity.sub, identity.role, identity.district, identity.client_id) == (
        "r-510104-1",
        "reviewer",
        "510104",
        CONSOLE,
    )
    id_token = jwt.decode(tokens["id_token"], KeySet.import_key_set(await idp.jwks()), algorithms=["ES256"])
    assert id_token.claims["aud"] == CONSOLE and id_token.claims["nonce"] == authorization.nonce
    assert id_token.claims["sid"] == identity.sid and id_token.claims["iss"] == provider.base_url

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    info = (await browser.get(f"{provider.base_url}/userinfo", headers=bearer)).json()
    assert info == {"sub": "r-510104-1", "role": "reviewer", "district": "510104"}


async def test_a_wrong_code_verifier_is_refused_and_uses_the_code_up(provider, browser):
    authorization = Authorization()
    callback = await sign_in(browser, provider.base_url, "r-510104-1", authorization)
    wrong = await redeem(browser, provider.base_url, callback["code"], authorization, code_verifier="x" * 43)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong.json()["error_description"]
    right = await redeem(browser, provider.base_url, callback["code"], authorization)
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant", "one try per code"


async def test_an_authorization_without_pkce_s256_is_refused(provider, browser):
    authorization = Authorization()
    for drop, change in (("code_challenge", {}), ("", {"code_challenge_method": "plain"})):
        params = {**authorization.params(), **change}
        params.pop(drop, None)
        answer = await browser.get(f"{provider.base_url}/authorize", params=params)
        callback = callback_params(answer)
        assert answer.headers["location"].startswith(authorization.redirect_uri)
        assert callback["error"] == "invalid_request" and "code" not in callback
        assert callback["state"] == authorization.state

    callback = await sign_in(browser, provider.base_url, "r-510104-1", authorization)
    data = {"grant_type": "authorization_code", "code": callback["code"], "redirect_uri": authorization.redirect_uri}
    answer = await browser.post(f"{provider.base_url}/token", data=data, auth=(CONSOLE, CLIENT_SECRETS[CONSOLE]))
    assert answer.status_code == 400 and answer.json() == {
        "error": "invalid_request",
        "error_description": "code_verifier: required",
    }


async def test_a_code_used_twice_is_refused_and_what_it_gave_is_taken_back(provider, idp, browser):
    authorization = Authorization()
    callback = await sign_in(browser, provider.base_url, "r-510104-2", authorization)
    first = await redeem(browser, provider.base_url, callback["code"], authorization)
    assert first.status_code == 200
    again = await redeem(browser, provider.base_url, callback["code"], authorization)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    tokens = first.json()
    assert not await idp.introspect(tokens["access_token"], CONSOLE, CLIENT_SECRETS[CONSOLE])
    with pytest.raises(IdentityError) as refused:
        await idp.refresh(tokens["refresh_token"], CONSOLE, CLIENT_SECRETS[CONSOLE])
    assert refused.value.error == "invalid_grant"


async def test_the_redirect_uri_must_be_registered_and_the_same_at_the_token_endpoint(provider, browser):
    base = provider.base_url
    for elsewhere in ("https://attacker.example/auth/callback", "http://127.0.0.1:8090/other"):
        answer = await browser.get(f"{base}/authorize", params=Authorization(redirect_uri=elsewhere).params())
        assert answer.status_code == 400 and "location" not in answer.headers, "never redirected to"
    # A loopback redirect URI matches on any port (RFC 8252 §7.3): a console on a free port.
    on_a_free_port = Authorization(redirect_uri="http://127.0.0.1:41999/auth/callback")
    callback = await sign_in(browser, base, "r-510104-1", on_a_free_port)
    answer = await redeem(
        browser, base, callback["code"], on_a_free_port, redirect_uri="http://127.0.0.1:8090/auth/callback"
    )
    assert answer.status_code == 400 and "redirect_uri" in answer.json()["error_description"]


async def test_a_wrong_password_gives_no_code_and_the_form_may_be_tried_again(provider, browser):
    authorization = Authorization()
    form = await browser.get(f"{provider.base_url}/authorize", params=authorization.params())
    request_id = form.text.split('name="request_id" value="')[1].split('"')[0]
    wrong = await browser.post(
        f"{provider.base_url}/authorize",
        data={"request_id": request_id, "username": "r-510104-1", "password": password("r-510104-2")},
    )
    assert wrong.status_code == 400 and 'id="error"' in wrong.text and "location" not in wrong.headers
    assert "idp_session" not in browser.cookies
    async with httpx.AsyncClient() as elsewhere:  # login CSRF: the form posted from another browser
        forged = await elsewhere.post(
            f"{provider.base_url}/authorize",
            data={"request_id": request_id, "username": "r-510104-1", "password": password("r-510104-1")},
        )
    assert forged.status_code == 400 and "location" not in forged.headers
    right = await browser.post(
        f"{provider.base_url}/authorize",
        data={"request_id": request_id, "username": "r-510104-1", "password": password("r-510104-1")},
    )
    assert callback_params(right)["state"] == authorization.state


async def test_the_provider_session_signs_in_again_without_a_password_until_signout(provider, idp, browser):
    base = provider.base_url
    authorization = Authorization()
    callback = await sign_in(browser, base, "s-510104-1", authorization)
    tokens = (await redeem(browser, base, callback["code"], authorization)).json()

    again = Authorization()
    silent = callback_params(await browser.get(f"{base}/authorize", params=again.params()))
    assert silent["state"] == again.state and "code" in silent, "the session cookie signed the person in"
    forced = await browser.get(f"{base}/authorize", params={**Authorization().params(), "prompt": "login"})
    assert forced.status_code == 200 and 'name="password"' in forced.text, "prompt=login asks again"

    signed_out = await browser.get(
        f"{base}/signout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "http://127.0.0.1:8090/",
            "state": "bye",
        },
    )
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "http://127.0.0.1:8090/?state=bye"
    assert not await idp.introspect(tokens["access_token"], CONSOLE, CLIENT_SECRETS[CONSOLE])
    form = await browser.get(f"{base}/authorize", params=Authorization().params())
    assert form.status_code == 200 and 'name="password"' in form.text, "signed out: the form again"


async def test_refresh_replaces_the_refresh_token_and_a_reused_one_ends_the_session(provider, idp):
    tokens = await console_tokens(provider.base_url, "r-510105-1")
    secret = CLIENT_SECRETS[CONSOLE]
    renewed = await idp.refresh(tokens["refresh_token"], CONSOLE, secret)
    assert renewed.refresh_token and renewed.refresh_token != tokens["refresh_token"]
    assert renewed.access_token != tokens["access_token"]
    assert (await idp.verify_access_token(renewed.access_token, {"reviewer"})).sub == "r-510105-1"
    assert "token" not in repr(renewed).replace("token_type", ""), "tokens are left out of repr"

    with pytest.raises(IdentityError) as reused:
        await idp.refresh(tokens["refresh_token"], CONSOLE, secret)
    assert reused.value.error == "invalid_grant" and tokens["refresh_token"] not in reused.value.reason
    with pytest.raises(IdentityError):
        await idp.refresh(renewed.refresh_token, CONSOLE, secret)
    assert not await idp.introspect(renewed.access_token, CONSOLE, secret)


async def test_the_device_flow_end_to_end(provider, idp, browser):
    flow = await idp.start_device_flow(CLI)
    assert flow.verification_uri == f"{provider.base_url}/device" and flow.interval == 1
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": flow.device_code}
    pending = await browser.post(f"{provider.base_url}/token", data={**grant, "client_id": CLI})
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"

    page = await browser.get(flow.verification_uri_complete or "")
    assert page.status_code == 200 and flow.user_code in page.text
    polling = asyncio.create_task(idp.poll_device_flow(flow, CLI))
    refused = await approve_device(browser, provider.base_url, flow.user_code, "s-510105-1", secret="wrong")
    assert refused.status_code == 400 and 'id="error"' in refused.text
    typed = flow.user_code.lower().replace("-", " ")  # as a person may type it
    approved = await approve_device(browser, provider.base_url, typed, "s-510105-1")
    assert approved.status_code == 200 and 'id="message"' in approved.text
    tokens = await asyncio.wait_for(polling, 10)

    identity = await idp.verify_access_token(tokens.access_token, {"staff"})
    assert (identity.sub, identity.district, identity.client_id) == ("s-510105-1", "510105", CLI)
    assert tokens.refresh_token and tokens.id_token is None
    renewed = await idp.refresh(tokens.refresh_token, CLI)  # a public client: no secret
    assert (await idp.verify_access_token(renewed.access_token, {"staff"})).sid == identity.sid
    used = await browser.post(f"{provider.base_url}/token", data={**grant, "client_id": CLI})
    assert used.json()["error"] == "expired_token", "a device code gives tokens once"


async def test_the_device_flow_asks_to_slow_down_and_ends_when_the_person_denies(provider, idp, browser):
    flow = await idp.start_device_flow(CLI)
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": flow.device_code}
    first = await browser.post(f"{provider.base_url}/token", data={**grant, "client_id": CLI})
    too_soon = await browser.post(f"{provider.base_url}/token", data={**grant, "client_id": CLI})
    assert (first.json()["error"], too_soon.json()["error"]) == ("authorization_pending", "slow_down")

    denied_flow = await idp.start_device_flow(CLI)
    await browser.post(f"{provider.base_url}/device", data={"user_code": denied_flow.user_code, "decision": "deny"})
    with pytest.raises(IdentityError) as denied:
        await idp.poll_device_flow(denied_flow, CLI)
    assert denied.value.error == "access_denied"


async def test_client_credentials_give_the_platform_its_own_token_reused_until_near_expiry(idp):
    token = await idp.client_credentials(API, CLIENT_SECRETS[API])
    assert await idp.client_credentials(API, CLIENT_SECRETS[API]) == token
    identity = await idp.verify_access_token(token, {"platform"})
    assert (identity.sub, identity.role, identity.district, identity.client_id) == (
        "client:enroll-api",
        "platform",
        None,
        API,
    )
    codec = await idp.verify_access_token(
        await idp.client_credentials("enroll-codec", "demo-codec-secret"), {"service"}
    )
    assert codec.role == "service"

    other = IdentityProvider(idp.issuer)
    with pytest.raises(IdentityError) as wrong:
        await other.client_credentials(API, "not-the-secret")
    await other.aclose()
    assert wrong.value.error == "invalid_client" and "not-the-secret" not in wrong.value.reason
    with pytest.raises(IdentityError) as public:
        await idp.client_credentials(CLI, "")
    assert public.value.error in ("invalid_client", "unauthorized_client")


async def test_token_exchange_signs_a_proof_for_exactly_one_message(provider, idp, browser):
    tokens = await console_tokens(provider.base_url, "r-510104-1")
    proof = await idp.exchange_for_proof(
        tokens["access_token"],
        case=CASE,
        action="review",
        digest=DIGEST,
        client_id=CONSOLE,
        client_secret=CLIENT_SECRETS[CONSOLE],
    )
    identity = await idp.verify_access_token(tokens["access_token"], {"reviewer"})
    decoded = jwt.decode(proof, KeySet.import_key_set(await idp.jwks()), algorithms=["ES256"])
    assert decoded.header["typ"] == "proof+jwt" and decoded.header["kid"]
    claims = decoded.claims
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"] != identity.jti
    assert {k: claims[k] for k in ("iss", "sub", "aud", "sid", "role", "district", "case", "action", "digest")} == {
        "iss": provider.base_url,
        "sub": "r-510104-1",
        "aud": "enrollment-case",
        "sid": identity.sid,
        "role": "reviewer",
        "district": "510104",
        "case": CASE,
        "action": "review",
        "digest": DIGEST,
    }
    keys = TrustedKeys(issuer=provider.base_url, jwks=await idp.jwks(), fetched_at=datetime.now(UTC))
    check = check_proof(
        proof,
        keys,
        case=CASE,
        action="review",
        digest=DIGEST,
        district="510104",
        now=datetime.fromtimestamp(claims["iat"], UTC),
        seen=[],
    )
    assert check.refusal is None and check.claims is not None and check.claims.sub == "r-510104-1"

    # Refused: another client's token, a malformed request, a token that is not one.
    api_token = await idp.client_credentials(API, CLIENT_SECRETS[API])
    for subject, fields, error in (
        (api_token, {}, "invalid_grant"),
        (tokens["access_token"], {"digest": "not-hex"}, "invalid_request"),
        (tokens["access_token"], {"action": "approve_everything"}, "invalid_request"),
        (tokens["access_token"], {"case": "SC2027-000001"}, "invalid_request"),
        ("garbage", {}, "invalid_grant"),
    ):
        arguments = {"case": CASE, "action": "review", "digest": DIGEST, **fields}
        with pytest.raises(IdentityError) as refused:
            await idp.exchange_for_proof(subject, client_id=CONSOLE, client_secret=CLIENT_SECRETS[CONSOLE], **arguments)
        assert refused.value.error == error, fields


async def test_the_api_acts_only_for_people_signed_in_on_the_command_line_and_says_so_in_the_proof(provider, idp):
    on_the_command_line = await cli_token(provider.base_url, "ops-1")
    as_the_api = {"client_id": API, "client_secret": CLIENT_SECRETS[API], "case": CASE, "digest": DIGEST}
    proof = await idp.exchange_for_proof(on_the_command_line, action="reverify", **as_the_api)
    claims = jwt.decode(proof, KeySet.import_key_set(await idp.jwks()), algorithms=["ES256"]).claims
    assert (claims["sub"], claims["role"], claims["act"]) == ("ops-1", "ops", {"sub": "client:enroll-api"})

    # Only to re-verify: not a reviewer's decision, though the reviewer signed in on the command line too.
    reviewer = await cli_token(provider.base_url, "r-510104-1")
    with pytest.raises(IdentityError) as refused:
        await idp.exchange_for_proof(reviewer, action="review", **as_the_api)
    assert refused.value.error == "invalid_grant"
    # Not for a token of another client (the console's), nor for a client's own token (the codec's).
    in_the_console = (await console_tokens(provider.base_url, "ops-1"))["access_token"]
    codec = await idp.client_credentials("enroll-codec", CLIENT_SECRETS["enroll-codec"])
    for subject in (in_the_console, codec):
        with pytest.raises(IdentityError) as refused:
            await idp.exchange_for_proof(subject, action="reverify", **as_the_api)
        assert refused.value.error == "invalid_grant"
    # And nobody acts for the API: the console may not exchange the API's token.
    api_token = await idp.client_credentials(API, CLIENT_SECRETS[API])
    with pytest.raises(IdentityError) as refused:
        await idp.exchange_for_proof(
            api_token,
            case=CASE,
            action="withdraw",
            digest=DIGEST,
            client_id=CONSOLE,
            client_secret=CLIENT_SECRETS[CONSOLE],
        )
    assert refused.value.error == "invalid_grant"


def test_a_public_client_acts_for_nobody():
    with pytest.raises(ValidationError, match="acts_for needs a secret"):
        Client.model_validate({"client_id": "tool", "grants": [GRANT_TOKEN_EXCHANGE], "acts_for": {CLI: ["reverify"]}})


async def test_a_disabled_account_is_inactive_at_once(provider, idp, browser):
    sub, secret = "r-510107-1", CLIENT_SECRETS[CONSOLE]
    tokens = await console_tokens(provider.base_url, sub)
    assert await idp.introspect(tokens["access_token"], CONSOLE, secret)

    url = f"{provider.base_url}/admin/accounts/{sub}"
    assert (await browser.patch(url, json={"disabled": True})).status_code == 401
    wrong = await browser.patch(url, json={"disabled": True}, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401
    await set_disabled(provider, sub, True)
    try:
        assert not await idp.introspect(tokens["access_token"], CONSOLE, secret)
        with pytest.raises(IdentityError):
            await idp.refresh(tokens["refresh_token"], CONSOLE, secret)
        with pytest.raises(IdentityError) as exchange:
            await idp.exchange_for_proof(
                tokens["access_token"],
                case=CASE,
                action="review",
                digest=DIGEST,
                client_id=CONSOLE,
                client_secret=secret,
            )
        assert exchange.value.error == "invalid_grant"
        form = await browser.get(f"{provider.base_url}/authorize", params=Authorization().params())
        request_id = form.text.split('name="request_id" value="')[1].split('"')[0]
        attempt = {"request_id": request_id, "username": sub, "password": password(sub)}
        assert (await browser.post(f"{provider.base_url}/authorize", data=attempt)).status_code == 400
    finally:
        await set_disabled(provider, sub, False)
    assert not await idp.introspect(tokens["access_token"], CONSOLE, secret), "its sessions stay ended"
    assert await idp.verify_access_token((await console_tokens(provider.base_url, sub))["access_token"], {"reviewer"})


async def test_revocation(provider, idp, browser):
    tokens = await console_tokens(provider.base_url, "r-510106-1")
    secret = CLIENT_SECRETS[CONSOLE]
    with pytest.raises(IdentityError) as foreign:
        await idp.revoke(tokens["access_token"], API, CLIENT_SECRETS[API])
    assert foreign.value.error == "unauthorized_client"
    assert await idp.introspect(tokens["access_token"], CONSOLE, secret)

    await idp.revoke(tokens["access_token"], CONSOLE, secret)
    assert not await idp.introspect(tokens["access_token"], CONSOLE, secret)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await browser.get(f"{provider.base_url}/userinfo", headers=bearer)).status_code == 401
    assert await idp.introspect(tokens["refresh_token"], CONSOLE, secret), "the session goes on"

    renewed = await idp.refresh(tokens["refresh_token"], CONSOLE, secret)
    assert renewed.refresh_token
    await idp.revoke(renewed.refresh_token, CONSOLE, secret)
    assert not await idp.introspect(renewed.access_token, CONSOLE, secret), "revoking a refresh token ends the session"
    with pytest.raises(IdentityError):
        await idp.refresh(renewed.refresh_token, CONSOLE, secret)
    await idp.revoke("never-issued", CONSOLE, secret)  # RFC 7009: answered 200


async def test_key_rotation_keeps_old_tokens_verifiable_and_survives_a_restart(tmp_path):
    fetched: list[str] = []

    async def count(request: httpx.Request) -> None:
        fetched.append(request.url.path)

    with start_in_thread(tmp_path / "state") as running:
        async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
            idp = IdentityProvider(running.base_url, http)
            before = await console_tokens(running.base_url, "r-510104-1")
            old = await idp.verify_access_token(before["access_token"], {"reviewer"})
            rotated = await http.post(f"{running.base_url}/admin/keys/rotate", headers=admin(running))
            new_kid = rotated.json()["kid"]
            after = await console_tokens(running.base_url, "r-510104-1")
            assert jws.extract_compact(after["access_token"].encode()).headers()["kid"] == new_kid

            assert fetched.count("/jwks") == 1
            assert (await idp.verify_access_token(after["access_token"], {"reviewer"})).sub == "r-510104-1"
            assert fetched.count("/jwks") == 2, "an unknown kid fetched the keys again"
            assert (await idp.verify_access_token(before["access_token"], {"reviewer"})).jti == old.jti
            assert len((await idp.jwks())["keys"]) == 2

            forged_key = ECKey.generate_key("P-256", {"alg": "ES256"}, auto_kid=True)
            forged = jwt.encode({"alg": "ES256", "kid": forged_key.kid, "typ": "at+jwt"}, {"sub": "x"}, forged_key)
            with pytest.raises(IdentityError):
                await idp.verify_access_token(forged, {"reviewer"})
            assert fetched.count("/jwks") == 2, "at most one refetch a minute for unknown kids"
        kids = [key["kid"] for key in (await idp_jwks(running.base_url))["keys"]]

    with start_in_thread(tmp_path / "state") as restarted:
        assert [key["kid"] for key in (await idp_jwks(restarted.base_url))["keys"]] == kids
    assert oct(os.stat(tmp_path / "state" / "signing-keys.json").st_mode & 0o777) == "0o600"


async def idp_jwks(base_url: str) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{base_url}/jwks")).json()


async def test_access_tokens_are_refused_for_every_broken_rule(provider, idp):
    """Tokens signed with the provider's own key (read from its state dir) but with one claim wrong."""
    keys = SigningKeys(provider.state_dir)
    tokens = await console_tokens(provider.base_url, "r-510104-1")
    good = jwt.decode(tokens["access_token"], keys.verification_keys()).claims

    def signed(typ: str = "at+jwt", **changes: object) -> str:
        return keys.sign({**good, **changes}, typ)

    cases = {
        "expired": signed(exp=good["iat"] - 120),
        "another issuer": signed(iss="http://elsewhere.example"),
        "another audience": signed(aud="enrollment-case"),
        "an ID token": signed("JWT"),
        "without a sid": signed(sid=None),
        "not a JWS": "not-a-token",
        "altered": altered(tokens["access_token"], {**good, "role": "ops"}),
    }
    reasons = {}
    for what, token in cases.items():
        with pytest.raises(IdentityError) as refused:
            await idp.verify_access_token(token, {"reviewer"})
        assert token not in refused.value.reason and refused.value.reason.startswith("token:"), what
        reasons[what] = refused.value.reason
    assert reasons["expired"] == "token: expired"
    assert len(set(reasons.values())) == len(reasons), reasons
    with pytest.raises(IdentityError, match="a reviewer may not"):
        await idp.verify_access_token(tokens["access_token"], {"staff", "ops"})


def altered(token: str, claims: dict) -> str:
    """The token with other claims put in, its signature kept."""
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


async def test_forms_refuse_repeated_parameters_and_other_bodies(provider, browser):
    token = f"{provider.base_url}/token"
    twice = await browser.post(
        token,
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(API, CLIENT_SECRETS[API]),
    )
    assert twice.status_code == 400 and twice.json()["error_description"] == "grant_type: sent more than once"
    as_json = await browser.post(token, json={"grant_type": "client_credentials"}, auth=(API, CLIENT_SECRETS[API]))
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    unauthenticated = await browser.post(token, data={"grant_type": "client_credentials"}, auth=(API, "wrong"))
    assert unauthenticated.status_code == 401 and unauthenticated.headers["www-authenticate"].startswith("Basic")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logs.configure() points the root logger at the test's captured stderr; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    structlog.reset_defaults()


async def test_logs_say_who_and_what_but_never_a_password_or_token(provider, idp, browser, capsys, restore_logging):
    logs.configure(json_output=True)
    base, secret = provider.base_url, CLIENT_SECRETS[CONSOLE]
    authorization = Authorization()
    form = await browser.get(f"{base}/authorize", params=authorization.params())
    request_id = form.text.split('name="request_id" value="')[1].split('"')[0]
    wrong_password = "demo-wrong-password-1"
    await browser.post(
        f"{base}/authorize", data={"request_id": request_id, "username": "r-510108-1", "password": wrong_password}
    )
    await browser.post(
        f"{base}/authorize", data={"request_id": request_id, "username": wrong_password, "password": "x"}
    )
    answer = await browser.post(
        f"{base}/authorize",
        data={"request_id": request_id, "username": "r-510108-1", "password": password("r-510108-1")},
    )
    code = callback_params(answer)["code"]
    tokens = (await redeem(browser, base, code, authorization)).json()
    renewed = await idp.refresh(tokens["refresh_token"], CONSOLE, secret)
    proof = await idp.exchange_for_proof(
        renewed.access_token, case=CASE, action="review", digest=DIGEST, client_id=CONSOLE, client_secret=secret
    )
    api_token = await idp.client_credentials(API, CLIENT_SECRETS[API])
    flow = await idp.start_device_flow(CLI)
    await approve_device(browser, base, flow.user_code, "s-510108-1")
    device_tokens = await idp.poll_device_flow(flow, CLI)
    await idp.revoke(renewed.access_token, CONSOLE, secret)

    text = capsys.readouterr().err
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    secrets_seen = [
        wrong_password,
        password("r-510108-1"),
        password("s-510108-1"),
        secret,
        CLIENT_SECRETS[API],
        code,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        renewed.access_token,
        renewed.refresh_token or "",
        proof,
        api_token,
        flow.device_code,
        flow.user_code,
        device_tokens.access_token,
        device_tokens.refresh_token or "",
    ]
    for value in secrets_seen:
        assert value and value not in text
    refused = [e for e in events if e["event"] == "sign-in" and e["outcome"] == "refused"]
    assert [e["sub"] for e in refused] == ["r-510108-1", None], "a name that is no account is not logged"
    identity = await idp.verify_access_token(renewed.access_token, {"reviewer"})
    issued = [e for e in events if e["event"] == "token issued"]
    assert {(e["grant"], e["client"]) for e in issued} >= {
        ("authorization_code", CONSOLE),
        ("refresh_token", CONSOLE),
        ("token-exchange", CONSOLE),
        ("client_credentials", API),
        ("device_code", CLI),
    }
    assert any(e["jti"] == identity.jti and e["sub"] == "r-510108-1" for e in issued)


async def test_the_command_line_serves_the_provider(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.identity_provider", "--port", str(port), "--state", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient() as http:

            async def discovery() -> dict | None:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration")).json()
                except httpx.HTTPError:
                    return None

            metadata = await wait_until(discovery, until=bool, timeout=20, message="the provider's discovery")
        assert metadata["issuer"] == f"http://127.0.0.1:{port}"
        assert (tmp_path / "admin-secret").stat().st_mode & 0o777 == 0o600
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert (tmp_path / "admin-secret").read_text() not in output


# Tokens for Temporal's frontend (audience `temporal`, a `permissions` claim its default claim mapper reads)


async def temporal_claims(idp: IdentityProvider, token: str) -> dict[str, object]:
    published: Any = await idp.jwks()  # the JWKS document as served
    decoded = jwt.decode(token, KeySet.import_key_set(published), algorithms=["ES256"])
    return dict(decoded.claims)


async def test_a_service_gets_its_own_temporal_token_which_the_product_refuses(idp):
    workers = await idp.client_credentials("enroll-workers", CLIENT_SECRETS["enroll-workers"], TEMPORAL_AUDIENCE)
    claims = await temporal_claims(idp, workers)
    assert (claims["sub"], claims["aud"], claims["permissions"]) == (
        "client:enroll-workers",
        "temporal",
        ["default:write"],
    )
    setup = await idp.client_credentials("enroll-setup", CLIENT_SECRETS["enroll-setup"], TEMPORAL_AUDIENCE)
    assert (await temporal_claims(idp, setup))["permissions"] == ["temporal-system:admin"]
    console = await idp.client_credentials(CONSOLE, CLIENT_SECRETS[CONSOLE], TEMPORAL_AUDIENCE)
    assert (await temporal_claims(idp, console))["permissions"] == ["default:write"]
    # A Temporal token is no token for the product's services.
    with pytest.raises(IdentityError, match=r"claim (aud|role) is missing or wrong"):
        await idp.verify_access_token(workers, {"service", "platform"})


async def test_temporal_tokens_go_only_to_clients_given_rights_there(provider, idp, browser):
    def client_credentials(client_id: str, **form: str) -> httpx.Response:
        data = {"grant_type": "client_credentials", **form}
        return httpx.post(f"{provider.base_url}/token", data=data, auth=(client_id, CLIENT_SECRETS[client_id]))

    # The codec server decodes payloads and has no business at Temporal.
    codec = await asyncio.to_thread(client_credentials, "enroll-codec", audience="temporal")
    assert codec.status_code == 400 and codec.json()["error"] == "invalid_target"
    # The workers' and the console's own tokens are for Temporal alone.
    for client_id in ("enroll-workers", CONSOLE):
        product = await asyncio.to_thread(client_credentials, client_id)
        assert product.status_code == 400 and product.json()["error"] == "invalid_target", client_id
    elsewhere = await asyncio.to_thread(client_credentials, "enroll-workers", audience="https://elsewhere.example")
    assert elsewhere.status_code == 400 and elsewhere.json() == {
        "error": "invalid_target",
        "error_description": "audience: must be enrollment or temporal",
    }


async def test_a_person_exchanges_their_command_line_token_for_their_roles_temporal_token(provider, idp):
    ops = await idp.exchange_for_temporal(await cli_token(provider.base_url, "ops-1"), CLI)
    claims = await temporal_claims(idp, ops.access_token)
    assert (claims["sub"], claims["aud"], claims["permissions"]) == ("ops-1", "temporal", ["temporal-system:read"])

    # A reviewer has no rights at Temporal: decisions go through the console, which holds them.
    with pytest.raises(IdentityError) as reviewer:
        await idp.exchange_for_temporal(await cli_token(provider.base_url, "r-510104-1"), CLI)
    assert reviewer.value.error == "invalid_target"
    # Only the client a token was issued to exchanges it: the command line may not exchange a console token.
    in_the_console = (await console_tokens(provider.base_url, "ops-1"))["access_token"]
    with pytest.raises(IdentityError) as other_client:
        await idp.exchange_for_temporal(in_the_console, CLI)
    assert other_client.value.error == "invalid_grant"


async def test_the_temporal_ui_signs_in_ops_without_pkce_and_refuses_a_reviewer(provider, idp, browser):
    for sub, expected in (("ops-1", 200), ("r-510104-1", 400)):
        authorization = Authorization(redirect_uri="http://127.0.0.1:8233/auth/sso/callback", client_id=UI)
        params = {k: v for k, v in authorization.params().items() if not k.startswith("code_challenge")}
        async with httpx.AsyncClient() as person:
            form = await person.get(f"{provider.base_url}/authorize", params=params)
            request_id = re.search(r'name="request_id" value="([^"]+)"', form.text)
            assert form.status_code == 200 and request_id, form.text
            answer = await person.post(
                f"{provider.base_url}/authorize",
                data={"request_id": request_id.group(1), "username": sub, "password": password(sub)},
            )
            code = callback_params(answer)["code"]
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": authorization.redirect_uri}
        tokens = await browser.post(f"{provider.base_url}/token", data=data, auth=(UI, CLIENT_SECRETS[UI]))
        assert tokens.status_code == expected, tokens.text
        if expected == 200:
            claims = await temporal_claims(idp, tokens.json()["access_token"])
            assert (claims["aud"], claims["permissions"]) == ("temporal", ["temporal-system:read"])
            assert (await temporal_claims(idp, tokens.json()["id_token"]))["aud"] == UI
        else:
            assert tokens.json() == {
                "error": "access_denied",
                "error_description": "a reviewer has no access to Temporal",
            }


def test_only_a_confidential_client_may_go_without_pkce_and_temporal_rights_are_well_formed():
    with pytest.raises(ValidationError, match="a public client must use PKCE"):
        Client.model_validate({"client_id": "tool", "grants": [], "require_pkce": False})
    with pytest.raises(ValidationError, match=r"audience temporal needs temporal\.people"):
        Client.model_validate(
            {"client_id": "ui", "secret_hash": hash_secret("x"), "grants": [], "audience": "temporal"}
        )
    with pytest.raises(ValidationError, match="namespace"):
        Client.model_validate(
            {
                "client_id": "svc",
                "secret_hash": hash_secret("x"),
                "grants": ["client_credentials"],
                "temporal": {"own": ["default:everything"]},
            }
        )
