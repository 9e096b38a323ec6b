"""The HTTP exchange every department call shares, and how its failures are classed.

Transport errors, timeouts, 5xx and 429 are transient: they raise retryable
errors and the activity's retry policy decides how long to keep trying. Other
4xx mean the request itself is wrong, so retrying cannot help. An HTTP 200 is
not trusted either: the whole exchange must end within a deadline (the client's
timeouts apply to each read, so a body dripped a few bytes at a time would never
time out), the body is counted as it arrives and abandoned past a bound, and it
must be a JSON object before anything reads it. Such a bad answer is retryable
(`DepartmentBadResponse`, `DepartmentTimeout`): the next attempt may be sound.

Bodies hold identity numbers and names, so no error message and no log line here
quotes one: they name the URL, the HTTP status, the byte count and the problem.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError
from yarl import URL

from activities.outbound import OutboundClient
from enrollment.verification import (
    CODE_FOUND,
    CODE_NAME_MISMATCH,
    CODE_NOT_FOUND,
    Answer,
    Person,
    VerificationRequest,
    VerificationResult,
)
from enrollment.verifiers import REGISTRY, Verifier

MAX_RESPONSE_BYTES = 1 << 20
# The deadline for a whole exchange (pool, connect, send, every read) is this many times the client's
# read timeout (ENROLL_HTTP_TIMEOUT_SECONDS), or DEFAULT_DEADLINE_SECONDS for a client without one.
DEADLINE_FACTOR = 2.0
DEFAULT_DEADLINE_SECONDS = 60.0
# The only answer codes a verifier gives with HTTP 200 (docs/standins.md); anything else is not an answer.
ANSWER_CODES = frozenset({CODE_FOUND, CODE_NOT_FOUND, CODE_NAME_MISMATCH})
_QUOTABLE_CODE = re.compile(r"^[0-9]{4}$")

log = logging.getLogger(__name__)


def new_request_id() -> str:
    return uuid.uuid4().hex


def exchange_deadline(client: OutboundClient) -> float:
    """Seconds a whole exchange may take with this client: DEADLINE_FACTOR x its read timeout."""
    read = client.read_timeout
    return DEADLINE_FACTOR * read if read else DEFAULT_DEADLINE_SECONDS


def _retry_after(headers: Mapping[str, str]) -> timedelta | None:
    """The delay the party asks for, in seconds (0 to 60); None when it asks for none a retry can use."""
    try:
        seconds = float(headers["Retry-After"])
    except (KeyError, ValueError):
        return None
    if not seconds >= 0:  # negative, or NaN
        return None
    return timedelta(seconds=min(seconds, 60.0))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


class _Exchange:
    """What is known of one call so far, for the log line when it fails; never the body itself."""

    def __init__(self, url: str):
        self.url = url
        self.started = time.monotonic()
        self.status: int | None = None
        self.received = 0

    def failed(
        self,
        problem: str,
        error_type: str,
        *,
        level: int = logging.WARNING,
        non_retryable: bool = False,
        next_retry_delay: timedelta | None = None,
    ) -> ApplicationError:
        log.log(
            level,
            "department call failed: %s %s %s (http=%s, %d bytes read, %.0f ms)",
            error_type,
            self.url,
            problem,
            self.status if self.status is not None else "-",
            self.received,
            (time.monotonic() - self.started) * 1000,
        )
        return ApplicationError(
            f"{self.url} {problem}", type=error_type, non_retryable=non_retryable, next_retry_delay=next_retry_delay
        )


async def post_json(
    client: OutboundClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """POST a JSON body and return the JSON object answered, or raise a classed ApplicationError.

    `deadline`: seconds for the whole exchange; by default `exchange_deadline(client)`.
    """
    deadline = exchange_deadline(client) if deadline is None else deadline
    call = _Exchange(url)
    target = URL(url)  # parsed once: what is signed is what is sent
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    # An encoded body is refused, not inflated: a few KiB of gzip can decode to gigabytes, and the
    # bound below counts the bytes that cross the wire.
    headers = {
        **(headers or {}),
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        **client.signing_headers("POST", target, content),
    }
    try:
        async with asyncio.timeout(deadline):
            # A redirect is not followed: the request carries identity numbers and names, and its signature,
            # to the address configured for the party and nowhere else.
            async with client.session.post(target, data=content, headers=headers, allow_redirects=False) as response:
                call.status = response.status
                if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
                    response.close()
                    raise call.failed("answered with a content encoding it was not asked for", "DepartmentBadResponse")
                answered = bytearray()
                async for chunk in response.content.iter_any():
                    call.received += len(chunk)
                    if call.received > MAX_RESPONSE_BYTES:
                        response.close()  # the connection goes with it: the rest is never read
                        raise call.failed(f"answered more than {MAX_RESPONSE_BYTES} bytes", "DepartmentBadResponse")
                    answered += chunk
    except aiohttp.ServerTimeoutError as exc:
        raise call.failed(f"timed out ({type(exc).__name__})", "DepartmentTimeout", level=logging.INFO) from None
    except aiohttp.ClientError as exc:
        raise call.failed(f"unreachable ({type(exc).__name__})", "DepartmentUnreachable", level=logging.INFO) from None
    except TimeoutError:
        raise call.failed(f"sent no complete answer within {deadline:g} s", "DepartmentTimeout") from None
    except ApplicationError:
        raise
    except Exception as exc:
        # What the client raises outside its own error classes: a chunked body broken mid-way (RuntimeError, or
        # the parser's error quoting the bytes), a header it will not write (ValueError). Classed by kind only.
        raise call.failed(f"unreachable ({type(exc).__name__})", "DepartmentUnreachable", level=logging.INFO) from None

    status = response.status
    if status == 429:
        raise call.failed(
            "is rate limiting",
            "DepartmentRateLimited",
            level=logging.INFO,
            next_retry_delay=_retry_after(response.headers),
        )
    if status >= 500:
        raise call.failed(f"answered HTTP {status}", "DepartmentUnavailable", level=logging.INFO)
    if status >= 400:
        raise call.failed(f"refused the request: HTTP {status}", "DepartmentRejectedRequest", non_retryable=True)
    if not 200 <= status < 300:
        # A redirect (never followed) or an informational status is not an answer, whatever its body says.
        raise call.failed(f"answered HTTP {status}, not an answer", "DepartmentBadResponse")
    try:
        # Not only JSONDecodeError: bad UTF-8, NaN/Infinity, integers past Python's digit limit (all
        # ValueError) and nesting deep enough to exhaust the recursion limit are malformed too.
        answer = json.loads(answered, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise call.failed("answered malformed JSON", "DepartmentBadResponse") from None
    if not isinstance(answer, dict):
        raise call.failed("answered JSON that is not an object", "DepartmentBadResponse")
    return answer


def _record_call(party: str, path: str, outcome: str, seconds: float) -> None:
    """Calls and latencies per party and endpoint, on the workers' metrics endpoint (no ids in labels)."""
    if not activity.in_activity():
        return
    # Application ids in platform paths would make a label per case: keep version and word segments only.
    endpoint = "/".join(
        p for p in path.split("/") if p and (re.fullmatch(r"v[0-9]+", p) or not any(c.isdigit() for c in p))
    )
    meter = activity.metric_meter()
    attributes = {"party": party, "endpoint": endpoint, "outcome": outcome}
    meter.create_counter("enrollment_department_calls", "calls to departments and the platform").add(1, attributes)
    meter.create_histogram_float("enrollment_department_call_seconds", "call latency", "s").record(seconds, attributes)


class CallRate:
    """At most `per_second` calls start in any window of a little over a second, in this process.

    The server's task-queue limit spreads a verifier's activities over every worker, but an
    activity may make a call per guardian and a busy process may start several at once; this
    holds the calls themselves to the agreed rate. The tenth of a second beyond the second
    covers the call's way to the department.
    """

    WINDOW_SECONDS = 1.1

    def __init__(self, per_second: float):
        self._window = max(self.WINDOW_SECONDS, 1.0 / per_second)
        self._allowed = max(1, int(per_second))
        self._started: deque[float] = deque()
        self._turn = asyncio.Lock()

    async def wait_turn(self) -> None:
        async with self._turn:
            while True:
                now = time.monotonic()
                while self._started and self._started[0] <= now - self._window:
                    self._started.popleft()
                if len(self._started) < self._allowed:
                    self._started.append(now)
                    return
                await asyncio.sleep(self._started[0] + self._window - now)


class Department:
    """One outside party reached over HTTP at a base URL; activity classes for each party build on it."""

    # The verifiers this party answers for (enrollment.verifiers); a verifier's activity is the
    # method named after it (`verify_<name>`).
    VERIFIERS: tuple[Verifier, ...] = ()

    def __init__(
        self,
        client: OutboundClient,
        base_url: str,
        deadline: float | None = None,
        rate_limits: dict[str, float] | None = None,
    ):
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._deadline = deadline  # None: exchange_deadline(client)
        limits = rate_limits or {}
        self._call_rates = {
            REGISTRY[verifier].path: CallRate(limits[verifier]) for verifier in self.VERIFIERS if verifier in limits
        }

    def activities(self) -> dict[Verifier, Callable[[VerificationRequest], Awaitable[VerificationResult]]]:
        """Each verifier's activity, by verifier name."""
        return {verifier: getattr(self, REGISTRY[verifier].activity) for verifier in self.VERIFIERS}

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        if path in self._call_rates:
            await self._call_rates[path].wait_turn()
        started = time.monotonic()
        outcome = "ok"
        try:
            return await post_json(self._client, f"{self._base_url}{path}", body, headers, self._deadline)
        except ApplicationError as err:
            outcome = err.type or "error"
            raise
        finally:
            _record_call(type(self).__name__.removesuffix("Activities"), path, outcome, time.monotonic() - started)

    async def ask_about(self, path: str, person: Person) -> Answer:
        """Ask a verify endpoint about one person.

        The record in `data` is judged by enrollment.verification, whose models raise MalformedAnswer
        (naming fields, never values) for a record of the wrong shape; here only the envelope is checked.
        """
        request_id = new_request_id()
        url = f"{self._base_url}{path}"
        answer = await self.post(path, {"request_id": request_id, "id_number": person.id_number, "name": person.name})
        code = answer.get("code")
        if answer.get("request_id") != request_id or not isinstance(code, str):
            raise _Exchange(url).failed("answered without the request id or a code", "DepartmentBadResponse")
        if code not in ANSWER_CODES:
            # Not "not found": an answer nobody documented must not fail a family's verification.
            quoted = f" {code!r}" if _QUOTABLE_CODE.match(code) else ""
            raise _Exchange(url).failed(f"answered an unknown code{quoted}", "DepartmentBadResponse")
        data = answer.get("data")
        return Answer(code=code, data=data if isinstance(data, dict) else None)

    async def answers_for(self, request: VerificationRequest) -> list[Answer]:
        """The department's answers about whoever the verifier asks about: the student, or every guardian at once.

        The first failure is raised and the other calls are abandoned.
        """
        spec = REGISTRY[request.verifier]
        persons = [request.student] if spec.asks_about == "student" else request.guardians
        calls = [asyncio.ensure_future(self.ask_about(spec.path, person)) for person in persons]
        try:
            return list(await asyncio.gather(*calls))
        except BaseException:
            for call in calls:
                call.cancel()
            raise
