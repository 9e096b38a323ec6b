"""Message proofs: real proofs from the identity provider stand-in, checked by enrollment.proofs as a case would."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OctKey
from pydantic import BaseModel
from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from enrollment.oidc import IdentityProvider
from enrollment.proofs import ACTION_ROLES, ProofCheck, TrustedKeys, check_proof, message_digest
from standins.identity_provider import RunningIdentityProvider
from tests.support.identity import CLIENT_SECRETS, CONSOLE, console_tokens
from tests.support.stack import TEST_SERVER
from workers.build import workflow_runner

CASE = "case-SC2027-000042"


class Decision(BaseModel):
    """A message shaped like the case's: its own fields, and the proof (and 1.0 credential) it carries."""

    application_id: str
    decision: str
    opinion: str
    proof: str | None = None
    credential: str | None = None


MESSAGE = Decision(application_id="SC2027-000042", decision="approve", opinion="材料齐全")


@pytest.fixture
def provider(identity_provider: RunningIdentityProvider) -> RunningIdentityProvider:
    """The session's provider (conftest), under the short name these tests use."""
    return identity_provider


@pytest.fixture
async def idp(provider: RunningIdentityProvider) -> AsyncIterator[IdentityProvider]:
    client = IdentityProvider(provider.base_url)
    yield client
    await client.aclose()


async def trusted_keys(provider: RunningIdentityProvider) -> TrustedKeys:
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(f"{provider.base_url}/jwks")).json()
    return TrustedKeys(issuer=provider.base_url, jwks=jwks, fetched_at=datetime.now(UTC))


async def reviewer_proof(provider: RunningIdentityProvider, idp: IdentityProvider, **fields: str) -> str:
    """A proof from the provider, for r-510104-1 (a reviewer of 510104) reviewing MESSAGE in CASE."""
    tokens = await console_tokens(provider.base_url, "r-510104-1")
    arguments = {"case": CASE, "action": "review", "digest": message_digest(MESSAGE), **fields}
    return await idp.exchange_for_proof(
        tokens["access_token"], client_id=CONSOLE, client_secret=CLIENT_SECRETS[CONSOLE], **arguments
    )


def _payload(proof: str) -> dict[str, Any]:
    """The claims, unverified: to pick a `now` relative to when the proof was issued."""
    segment = proof.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return loaded


def at(proof: str, seconds: float = 0) -> datetime:
    return datetime.fromtimestamp(_payload(proof)["iat"] + seconds, UTC)


def check(proof: str | None, keys: TrustedKeys, **changes: Any) -> ProofCheck:
    arguments: dict[str, Any] = {
        "case": CASE,
        "action": "review",
        "digest": message_digest(MESSAGE),
        "district": "510104",
        "seen": [],
        **changes,
    }
    if "now" not in arguments:
        arguments["now"] = at(proof) if proof else datetime.now(UTC)
    return check_proof(proof, keys, **arguments)


def refused(result: ProofCheck, proof: str | None) -> str:
    assert result.claims is None and result.refusal is not None, result
    assert result.refusal.startswith("proof: ")
    assert not proof or proof not in result.refusal, "a refusal never echoes the token"
    return result.refusal


def test_the_message_digest_is_sha256_of_the_canonical_json_without_proof_or_credential():
    expected = hashlib.sha256(
        '{"application_id":"SC2027-000042","decision":"approve","opinion":"材料齐全"}'.encode()
    ).hexdigest()
    assert message_digest(MESSAGE) == expected
    proven = MESSAGE.model_copy(update={"proof": "x.y.z", "credential": "c-1"})
    assert message_digest(proven) == expected, "the proof is not part of what it proves"
    assert message_digest(MESSAGE.model_copy(update={"decision": "reject"})) != expected


def test_every_action_has_its_roles():
    assert dict(ACTION_ROLES) == {
        "review": {"reviewer"},
        "register_offline": {"staff"},
        "supplement": {"platform"},
        "withdraw": {"platform"},
        "select_school": {"platform"},
        "reverify": {"ops"},
        "claim": {"reviewer"},
        "reassign": {"supervisor"},
    }


async def test_a_proof_from_the_provider_is_accepted_for_its_message(provider, idp):
    proof = await reviewer_proof(provider, idp)
    keys = await trusted_keys(provider)
    result = check(proof, keys)
    assert result.refusal is None and not result.unknown_key and result.claims is not None
    claims = result.claims
    assert (claims.sub, claims.role, claims.district, claims.case, claims.action) == (
        "r-510104-1",
        "reviewer",
        "510104",
        CASE,
        "review",
    )
    assert claims.digest == message_digest(MESSAGE) and claims.exp == claims.iat + 300
    assert check(proof, keys, now=at(proof, 299)).claims is not None, "good until its last second"
    assert check(proof, keys, now=at(proof, -29)).claims is not None, "30 s leeway for clocks ahead"


async def test_the_platform_proves_an_applicants_message_without_a_district(provider, idp):
    token = await idp.client_credentials("enroll-api", CLIENT_SECRETS["enroll-api"])
    proof = await idp.exchange_for_proof(
        token,
        case=CASE,
        action="select_school",
        digest=message_digest(MESSAGE),
        client_id="enroll-api",
        client_secret=CLIENT_SECRETS["enroll-api"],
    )
    result = check(proof, await trusted_keys(provider), action="select_school", district="510107")
    assert result.claims is not None and result.claims.role == "platform" and result.claims.district is None


async def test_each_rule_refuses_a_provider_proof_with_its_own_reason(provider, idp):
    proof = await reviewer_proof(provider, idp)
    keys = await trusted_keys(provider)
    header = jws.extract_compact(proof.encode()).headers()
    impostor = ECKey.generate_key("P-256", {"alg": "ES256", "kid": header["kid"]})
    forged = jwt.encode(header, _payload(proof), impostor)
    staff_tokens = await console_tokens(provider.base_url, "s-510104-1")
    staff_proof = await idp.exchange_for_proof(
        staff_tokens["access_token"],
        case=CASE,
        action="review",
        digest=message_digest(MESSAGE),
        client_id=CONSOLE,
        client_secret=CLIENT_SECRETS[CONSOLE],
    )
    altered = MESSAGE.model_copy(update={"decision": "reject"})

    reasons = {
        "missing": refused(check(None, keys), None),
        "forged": refused(check(forged, keys, now=at(proof)), forged),
        "expired": refused(check(proof, keys, now=at(proof, 300)), proof),
        "another case": refused(check(proof, keys, case="case-SC2027-000043"), proof),
        "another action": refused(check(proof, keys, action="register_offline"), proof),
        "an altered message": refused(check(proof, keys, digest=message_digest(altered)), proof),
        "replayed": refused(check(proof, keys, seen=["other", _payload(proof)["jti"]]), proof),
        "a role that may not": refused(check(staff_proof, keys), staff_proof),
        "another district": refused(check(proof, keys, district="510107"), proof),
    }
    assert "forged" in reasons["forged"] and "expired" in reasons["expired"]
    assert "another case" in reasons["another case"] and "altered" in reasons["an altered message"]
    assert "replayed" in reasons["replayed"] and "a staff may not review" in reasons["a role that may not"]
    assert "district" in reasons["another district"] and "missing" in reasons["missing"]
    assert len(set(reasons.values())) == len(reasons), "each rule says which it is"


async def test_a_proof_signed_with_a_key_the_case_lacks_asks_for_the_keys_again(provider, idp):
    before = await trusted_keys(provider)
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{provider.base_url}/admin/keys/rotate", headers={"Authorization": f"Bearer {provider.admin_secret}"}
        )
    proof = await reviewer_proof(provider, idp)
    stale = check(proof, before)
    assert stale.unknown_key and stale.claims is None and "key" in refused(stale, proof)
    nothing_yet = check(proof, before.model_copy(update={"jwks": {"keys": []}}))
    assert nothing_yet.unknown_key, "a case that holds no keys yet asks for them"
    assert check(proof, await trusted_keys(provider)).claims is not None


class LocalIssuer:
    """Proofs signed with a key of the test's own, trusted like the provider's: any claim can be wrong."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"}, auto_kid=True)
        self.keys = TrustedKeys(
            issuer="https://idp.example",
            jwks={"keys": [self.key.as_dict(private=False)]},
            fetched_at=datetime.now(UTC),
        )
        self.now = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)

    def claims(self, **changes: Any) -> dict[str, Any]:
        iat = int(self.now.timestamp())
        claims = {
            "iss": "https://idp.example",
            "sub": "r-510104-1",
            "aud": "enrollment-case",
            "iat": iat,
            "exp": iat + 300,
            "jti": "proof-1",
            "sid": "session-1",
            "role": "reviewer",
            "district": "510104",
            "case": CASE,
            "action": "review",
            "digest": message_digest(MESSAGE),
            **changes,
        }
        return {name: value for name, value in claims.items() if value is not ...}

    def sign(self, typ: str = "proof+jwt", **changes: Any) -> str:
        return jwt.encode({"alg": "ES256", "kid": self.key.kid, "typ": typ}, self.claims(**changes), self.key)

    def check(self, proof: str | None) -> ProofCheck:
        return check(proof, self.keys, now=self.now)


def test_a_well_formed_local_proof_is_accepted():
    issuer = LocalIssuer()
    assert issuer.check(issuer.sign()).claims is not None


@pytest.mark.parametrize(
    ("what", "make", "reason"),
    [
        ("not a JWS", lambda i: "not-a-token", "not a signed token"),
        ("no kid", lambda i: jwt.encode({"alg": "ES256"}, i.claims(), i.key), "names no signing key"),
        (
            "HMAC with the public key's kid",
            lambda i: jwt.encode({"alg": "HS256", "kid": i.key.kid}, i.claims(), OctKey.generate_key(256)),
            "not a valid ES256",
        ),
        ("an access token", lambda i: i.sign("at+jwt"), "not a message proof"),
        ("another issuer", lambda i: i.sign(iss="https://elsewhere.example"), "another issuer"),
        ("another audience", lambda i: i.sign(aud="enrollment"), "not meant for a case"),
        ("issued in the future", lambda i: i.sign(iat=int(i.now.timestamp()) + 31), "issued in the future"),
        ("no jti", lambda i: i.sign(jti=...), "malformed"),
        ("an unknown action", lambda i: i.sign(action="approve_everything"), "another action"),
    ],
)
def test_locally_signed_proofs_break_one_rule_each(what, make, reason):
    issuer = LocalIssuer()
    proof = make(issuer)
    assert reason in refused(issuer.check(proof), proof), what


def test_an_unknown_action_is_refused_even_when_the_proof_names_it():
    issuer = LocalIssuer()
    proof = issuer.sign(action="approve_everything")
    result = check_proof(
        proof,
        issuer.keys,
        case=CASE,
        action="approve_everything",
        digest=message_digest(MESSAGE),
        district="510104",
        now=issuer.now,
        seen=(),
    )
    assert "may not approve_everything" in refused(result, proof)


def test_the_check_uses_the_time_it_is_given_not_the_clock():
    issuer = LocalIssuer()
    proof = issuer.sign()
    assert check(proof, issuer.keys, now=issuer.now + timedelta(seconds=299)).claims is not None
    assert check(proof, issuer.keys, now=issuer.now + timedelta(days=3650)).claims is None
    assert check(proof, issuer.keys, now=datetime.now(UTC)).claims is None, "the proof's time, not the clock's"


@workflow.defn(sandboxed=True)
class ProofCheckingWorkflow:
    """Checks a proof as the case does: inside the workflow sandbox, at the workflow's time."""

    @workflow.run
    async def run(self, proof: str, keys: TrustedKeys, digest: str) -> ProofCheck:
        return check_proof(
            proof, keys, case=CASE, action="review", digest=digest, district="510104", now=workflow.now(), seen=[]
        )


async def test_the_check_runs_in_the_workflow_sandbox_as_the_tests_case_worker_runs_it(provider, idp):
    proof = await reviewer_proof(provider, idp)
    keys = await trusted_keys(provider)
    runner = workflow_runner(sandboxed=True)
    async with (
        await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter, test_server_existing_path=TEST_SERVER
        ) as env,
        Worker(env.client, task_queue="proofs", workflows=[ProofCheckingWorkflow], workflow_runner=runner),
    ):
        result = await env.client.execute_workflow(
            ProofCheckingWorkflow.run,
            args=[proof, keys, message_digest(MESSAGE)],
            id="proof-check",
            task_queue="proofs",
            execution_timeout=timedelta(seconds=30),
        )
    assert result.refusal is None and result.claims is not None and result.claims.sub == "r-510104-1"
