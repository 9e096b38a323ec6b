"""The API tried from its own OpenAPI document (schemathesis): no 5xx, and every answer as the document says.

Schemathesis generates requests for every operation, valid and not, and the test signs each one as the
platform would, so the generated bodies reach the endpoints rather than stopping at the signature check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.callers import RegisteredClient
from api.signing import CLIENT_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, SignedRequests
from enrollment.identity import LookupSecret
from tests.support.api import served_api
from tests.support.served import ServedApp

SECRET = b"schema-test-secret"
EXAMPLES_PER_OPERATION = 25


class _Signed(requests.auth.AuthBase):
    """Sign a `requests` request the way api.signing.SignedRequests signs an httpx one."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        import httpx

        body = request.body.encode() if isinstance(request.body, str) else (request.body or b"")
        assert isinstance(body, bytes), f"only a whole body can be signed, not {type(body).__name__}"
        signed = httpx.Request(str(request.method), str(request.url), content=body)
        for step in SignedRequests("platform", SECRET).auth_flow(signed):
            signed = step
        for header in (CLIENT_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER):
            request.headers[header] = signed.headers[header]
        return request


@pytest.fixture(scope="module")
async def schema_target(dev_server, environment, worker, database_url) -> AsyncIterator[ServedApp]:
    platform = RegisteredClient(client_id="platform", kind="platform", secret=SecretStr(SECRET.decode()))
    lookup = LookupSecret(b"schema-key", "standard")
    async with served_api(dev_server.address, database_url, [platform], lookup) as served:
        yield served


async def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(schema_target):
    schema = schemathesis.openapi.from_url(f"{schema_target.base_url}/openapi.json")
    session = requests.Session()
    session.auth = _Signed()
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, negative_data_rejection]
    failures: list[str] = []
    answered: dict[int, int] = {}

    def run(operation: schemathesis.APIOperation) -> None:
        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def each(case: schemathesis.Case) -> None:
            response = case.call(base_url=schema_target.base_url, session=session)
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            case.validate_response(response, checks=checks)

        try:
            each()
        except Exception as failure:  # every operation is tried; the failures are reported together
            failures.append(f"{operation.label}: {str(failure)[:2000]}")

    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            await asyncio.to_thread(run, result.ok())
        else:
            failures.append(f"an operation schemathesis cannot read: {result.err()}")
    assert not failures, "\n\n".join(failures)
    # Signed requests reached the endpoints: bodies were judged, and some were valid enough to be answered.
    assert answered.get(422, 0) > 0 and answered.get(200, 0) > 0, answered
