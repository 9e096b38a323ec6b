"""The HTTP exchange every department call shares, and how its failures are classed.

Transport errors, timeouts, 5xx and 429 are transient: they raise retryable
errors and the activity's retry policy decides how long to keep trying. Other
4xx mean the request itself is wrong, so retrying cannot help. A response is
read up to a bound and must be a JSON object before anything trusts it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import httpx
from temporalio.exceptions import ApplicationError

from enrollment.verification import Answer, Person

MAX_RESPONSE_BYTES = 1 << 20


def new_request_id() -> str:
    return uuid.uuid4().hex


def _retry_after(response: httpx.Response) -> timedelta | None:
    try:
        return timedelta(seconds=min(float(response.headers["Retry-After"]), 60.0))
    except (KeyError, ValueError):
        return None


async def post_json(client: httpx.AsyncClient, url: str, body: dict, headers: dict[str, str] | None = None) -> dict:
    """POST a JSON body and return the JSON object answered, or raise a classed ApplicationError."""
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise ApplicationError(f"response from {url} exceeds {MAX_RESPONSE_BYTES} bytes", type="DepartmentBadResponse")
    except httpx.TimeoutException as exc:
        raise ApplicationError(f"{url} timed out ({type(exc).__name__})", type="DepartmentTimeout") from None
    except httpx.TransportError as exc:
        raise ApplicationError(f"{url} unreachable ({type(exc).__name__})", type="DepartmentUnreachable") from None

    status = response.status_code
    if status == 429:
        raise ApplicationError(f"{url} is rate limiting", type="DepartmentRateLimited", next_retry_delay=_retry_after(response))
    if status >= 500:
        raise ApplicationError(f"{url} answered HTTP {status}", type="DepartmentUnavailable")
    if status >= 400:
        raise ApplicationError(f"{url} refused the request: HTTP {status}", type="DepartmentRejectedRequest", non_retryable=True)
    try:
        answer = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApplicationError(f"{url} answered malformed JSON", type="DepartmentBadResponse") from None
    if not isinstance(answer, dict):
        raise ApplicationError(f"{url} answered JSON that is not an object", type="DepartmentBadResponse")
    return answer


class Department:
    """One outside party reached over HTTP at a base URL; activity classes for each party build on it."""

    def __init__(self, client: httpx.AsyncClient, base_url: str):
        self._client = client
        self._base_url = base_url.rstrip("/")

    async def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> dict:
        return await post_json(self._client, f"{self._base_url}{path}", body, headers)

    async def ask_about(self, path: str, person: Person) -> Answer:
        """Ask a verify endpoint about one person."""
        request_id = new_request_id()
        answer = await self.post(path, {"request_id": request_id, "id_number": person.id_number, "name": person.name})
        if answer.get("request_id") != request_id or not isinstance(answer.get("code"), str):
            raise ApplicationError(f"{path} answered without the request id or a code", type="DepartmentBadResponse")
        data = answer.get("data")
        return Answer(code=answer["code"], data=data if isinstance(data, dict) else None)

    async def ask_about_each(self, path: str, persons: list[Person]) -> list[Answer]:
        return list(await asyncio.gather(*(self.ask_about(path, person) for person in persons)))
