"""One Starlette app standing in for the four verifying departments and the provincial platform.

Handlers are async and simulate latency with asyncio.sleep, so thousands of concurrent calls cost
little. Logs carry service, path, request id, codes and latency only: bodies hold personal data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import signing
from enrollment import identity
from enrollment.verifiers import REGISTRY, Verifier
from standins import hostile
from standins.applicants import FrontDoor
from standins.faults import SERVICES, FaultUpdate, ServiceFaults, ServiceStats
from standins.population import Population, answer

log = logging.getLogger("standins")

VERIFIER_PATHS = {name: spec.department.standin_prefix + spec.path for name, spec in REGISTRY.items()}
PLATFORM_KINDS = ("acceptance", "dispatch", "status", "notice", "result")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_APPLICATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{5,39}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_NOT_PARSED = object()

MESSAGES = {
    "0000": "成功",
    "1001": "无此记录",
    "1002": "姓名与身份证号码不一致",
    "4000": "请求参数错误",
    "4010": "请求签名校验失败",
    "4040": "资源不存在",
    "4090": "Idempotency-Key 已用于其他请求",
    "4290": "请求过于频繁，请稍后重试",
    "5000": "系统内部错误",
    "5030": "服务暂不可用",
    "5040": "处理超时",
}


class _State:
    """Everything the app mutates: fault switches, statistics and what the platform received."""

    def __init__(self, records: Mapping[str, Mapping[str, Any]]):
        self.records = {service: dict(records.get(service, {})) for service in VERIFIER_PATHS}
        self.faults = {service: ServiceFaults(service) for service in SERVICES}
        self.receipt_counter = 0
        self.reset()

    def reset(self) -> None:
        self.stats = {service: ServiceStats() for service in SERVICES}
        self.cases: dict[str, dict[str, Any]] = {}
        self.receipts: dict[str, tuple[str, str, str]] = {}  # idempotency key -> (application, kind, receipt)


class _Call:
    """One call to a faultable service: answers through `reply` so stats and the log line are never skipped."""

    def __init__(self, state: _State, service: str, request: Request):
        self.state, self.service, self.request = state, service, request
        self.started = time.perf_counter()
        self.request_id: str | None = None
        self.hostile: str | None = None  # the hostile mode drawn for this call, applied to an HTTP 200 answer
        self.person: tuple[str, str] | None = None  # (name, identity number) asked about, for wrong_schema
        state.stats[service].arrive(time.monotonic())

    def reply(self, status: int, code: str, message: str | None = None, headers=None, **fields) -> Response:
        stats = self.state.stats[self.service]
        mode = self.hostile if status == 200 else None
        if mode is None:
            stats.answered(code)
        else:
            stats.spoiled(mode)
        log.info(
            "%s %s request_id=%s http=%d code=%s%s %.0fms",
            self.service,
            self.request.url.path,
            self.request_id or "-",
            status,
            code,
            f" hostile={mode}" if mode else "",
            (time.perf_counter() - self.started) * 1000,
        )
        body = {"code": code, "message": message or MESSAGES[code], "request_id": self.request_id, **fields}
        rng, config = self.state.faults[self.service].rng, self.state.faults[self.service].config
        if mode == "bad_json":
            return hostile.bad_json(body, rng, stats.sent)
        if mode == "wrong_schema":
            body = hostile.wrong_schema(self.service, body, rng, self.person)
        elif mode == "huge_body":
            return hostile.huge_body(body, stats.sent)
        elif mode == "slow_drip":
            return hostile.slow_drip(body, config.drip_seconds, stats.sent)
        response = JSONResponse(body, status_code=status, headers=headers)
        stats.sent(len(response.body))
        return response

    def bad(self, field: str, problem: str) -> Response:
        return self.reply(400, "4000", f"{MESSAGES['4000']}: {field} {problem}", field=field)

    async def faults(self) -> Response | None:
        """Outage, rate limit, latency, timeout and injected error, in that order; None lets the call through.

        A call let through may carry a hostile mode, drawn last, that spoils its HTTP 200 answer.
        """
        faults = self.state.faults[self.service]
        config = faults.config
        if config.outage:
            return self.reply(503, "5030")
        retry_after = faults.admit(time.monotonic())
        if retry_after is not None:
            return self.reply(429, "4290", headers={"Retry-After": str(retry_after)})
        await _sleep(self.request, faults.latency_seconds())
        if faults.roll(config.timeout_rate):
            await _sleep(self.request, config.timeout_seconds)
            return self.reply(504, "5040")
        if faults.roll(config.error_rate):
            return self.reply(500, "5000")
        self.hostile = faults.hostile_mode()
        return None


async def _sleep(request: Request, seconds: float) -> None:
    """Sleep, but stop early if the client hangs up, so abandoned calls do not pile up."""
    if seconds <= 0:
        return

    async def hang_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _NOT_PARSED


def _valid_request_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _REQUEST_ID.match(value) else None


# Never behind the signature requirement: the test and operator controls, and the health check.
UNSIGNED_PATHS = ("/admin/", "/platform/admin/", "/enrollment-system/admin/")


class RequireSignature:
    """Refuses, with 401, a department or platform call not signed by one of `clients` ({client_id: secret}),
    as a government gateway does (`serve --require-signature`): unsigned, wrongly signed, outside the
    timestamp window, or a nonce already seen. The check is api/signing.py's, the one the product's own API
    makes; nonces are remembered in memory for twice the window."""

    def __init__(self, app: ASGIApp, clients: Mapping[str, str]) -> None:
        self.app = app
        self._secrets = {client_id: secret.encode() for client_id, secret in clients.items()}
        self._seen: set[tuple[str, str]] = set()
        self._expiries: deque[tuple[float, tuple[str, str]]] = deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/healthz" or path.startswith(UNSIGNED_PATHS):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        request = Request(scope)
        try:
            self._check(request, bytes(body))
        except signing.SignatureError as err:
            log.info("refused %s %s: %s", request.method, path, err)
            refusal = _admin(401, "4010", f"{MESSAGES['4010']}: {err}")
            refusal.headers["WWW-Authenticate"] = "Signature"
            await refusal(scope, receive, send)
            return
        replayed = False

        async def body_then_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, body_then_receive, send)

    def _check(self, request: Request, body: bytes) -> None:
        signed = signing.SignedHeaders.parse(dict(request.headers))
        secret = self._secrets.get(signed.client_id)
        if secret is None:
            raise signing.SignatureError(signing.MISMATCH)  # as the API answers: no telling which ids exist
        signing.verify(signed, secret, request.method, request.url.path, request.url.query, body)
        now = time.monotonic()
        while self._expiries and self._expiries[0][0] <= now:
            self._seen.discard(self._expiries.popleft()[1])
        key = (signed.client_id, signed.nonce)
        if key in self._seen:
            raise signing.SignatureError(f"{signing.NONCE_HEADER}: already used (a replayed request)")
        self._seen.add(key)
        self._expiries.append((now + 2 * signing.WINDOW_SECONDS, key))


def create_app(
    population: Population | Mapping[str, Any],
    front_door: FrontDoor | None = None,
    signature_clients: Mapping[str, str] | None = None,
) -> Starlette:
    """The stand-in app serving `population` (a Population, or the parsed population.json).

    With `front_door` (the product's API and the platform's and front end's credentials) the platform and
    the enrollment-system front end also hand applications in: `/platform/admin/accept` and
    `/enrollment-system/admin/apply`. With `signature_clients` ({client_id: secret}) every department and
    platform call must be signed by one of them (`RequireSignature`).
    """
    records = population.records if isinstance(population, Population) else population["records"]
    state = _State(records)

    def verifier(service: Verifier):
        async def verify(request: Request) -> Response:
            call = _Call(state, service, request)
            body = await _read_json(request)
            if isinstance(body, dict):
                call.request_id = _valid_request_id(body.get("request_id"))
            refused = await call.faults()
            if refused is not None:
                return refused
            if body is _NOT_PARSED:
                return call.bad("body", "不是合法的 JSON")
            if not isinstance(body, dict):
                return call.bad("body", "必须是 JSON 对象")
            if call.request_id is None:
                return call.bad("request_id", "缺失或格式错误 (1-64 位字母、数字或 ._:-)")
            number = body.get("id_number")
            if not isinstance(number, str) or not number.strip():
                return call.bad("id_number", "缺失")
            number = number.strip().upper()
            try:
                identity.parse(number)
            except identity.IdentityNumberError as exc:
                return call.bad("id_number", f"不是有效的公民身份号码 ({exc})")
            name = body.get("name")
            if not isinstance(name, str) or not name.strip() or len(name.strip()) > 40:
                return call.bad("name", "缺失或格式错误")
            call.person = (name.strip(), number)
            found = answer(state.records[service], number, name.strip())  # the answer `judge` expects
            return call.reply(200, found.code, data=found.data)

        return verify

    async def platform_push(request: Request) -> Response:
        call = _Call(state, "platform", request)
        body = await _read_json(request)
        call.request_id = (
            _valid_request_id(request.headers.get("x-request-id"))
            or (_valid_request_id(body.get("request_id")) if isinstance(body, dict) else None)
            or uuid.uuid4().hex
        )
        application_id, kind = request.path_params["application_id"], request.path_params["kind"]
        if kind not in PLATFORM_KINDS:
            return call.reply(404, "4040", f"{MESSAGES['4040']}: kind 须为 {'/'.join(PLATFORM_KINDS)}", field="kind")
        refused = await call.faults()
        if refused is not None:
            return refused
        key = request.headers.get("idempotency-key")
        if key is None or not _IDEMPOTENCY_KEY.match(key):
            return call.bad("Idempotency-Key", "请求头缺失或格式错误")
        if not _APPLICATION_ID.match(application_id):
            return call.bad("application_id", "格式错误")
        if body is _NOT_PARSED:
            return call.bad("body", "不是合法的 JSON")
        if not isinstance(body, dict):
            return call.bad("body", "必须是 JSON 对象")
        case = state.cases.setdefault(application_id, _empty_case())
        seen = state.receipts.get(key)
        if seen is not None:
            if seen[:2] != (application_id, kind):
                return call.reply(409, "4090", field="Idempotency-Key")
            case["duplicates_refused"] += 1
            return call.reply(200, "0000", receipt_id=seen[2], duplicate=True)
        state.receipt_counter += 1
        receipt_id = f"RC{state.receipt_counter:010d}"
        state.receipts[key] = (application_id, kind, receipt_id)
        case[kind].append(
            {
                "idempotency_key": key,
                "receipt_id": receipt_id,
                "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "body": body,
            }
        )
        return call.reply(200, "0000", receipt_id=receipt_id, duplicate=False)

    async def platform_case(request: Request) -> JSONResponse:
        application_id = request.path_params["application_id"]
        case = state.cases.get(application_id, _empty_case())
        return JSONResponse({"code": "0000", "message": MESSAGES["0000"], "application_id": application_id, **case})

    async def put_faults(request: Request) -> JSONResponse:
        service = request.path_params["service"]
        if service not in SERVICES:
            return _admin(404, "4040", f"service 须为 {'/'.join(SERVICES)}", field="service")
        body = await _read_json(request)
        if not isinstance(body, dict):
            return _admin(400, "4000", "body 必须是 JSON 对象", field="body")
        try:
            update = FaultUpdate.model_validate(body)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _admin(400, "4000", f"{where}: {first['msg']}", field=where)
        state.faults[service].update(update)
        log.info("faults %s set: %s", service, sorted(update.model_fields_set))
        return _admin(200, "0000", service=service, faults=state.faults[service].as_dict())

    async def get_faults(request: Request) -> JSONResponse:
        return _admin(200, "0000", faults={s: f.as_dict() for s, f in state.faults.items()})

    async def delete_faults(request: Request) -> JSONResponse:
        for faults in state.faults.values():
            faults.reset()
        return await get_faults(request)

    async def get_stats(request: Request) -> JSONResponse:
        return _admin(200, "0000", stats={s: st.as_dict() for s, st in state.stats.items()})

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return _admin(200, "0000")

    def applicant_side(channel: str):
        async def hand_in(request: Request) -> JSONResponse:
            if front_door is None or channel not in front_door.senders:
                return _admin(503, "5030", "no API configured for handing in (serve --api-url --api-clients)")
            body = await _read_json(request)
            applications = body.get("applications") if isinstance(body, dict) else None
            if not isinstance(applications, list) or not all(isinstance(a, dict) for a in applications):
                return _admin(400, "4000", 'body 须为 {"applications": [...]}', field="applications")
            accepted_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            results = await front_door.hand_in(channel, applications)
            if channel == "platform":
                # The platform keeps its acceptance (受理) and the enrollment system's answer to the dispatch.
                for result in results:
                    case = state.cases.setdefault(str(result["application_id"]), _empty_case())
                    case["acceptance"].append({"received_at": accepted_at, "body": {"accepted_at": accepted_at}})
                    case["dispatch"].append({"received_at": accepted_at, "body": result})
            return _admin(200, "0000", results=results)

        return hand_in

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "records": {s: len(r) for s, r in state.records.items()}})

    routes = [Route(path, verifier(service), methods=["POST"]) for service, path in VERIFIER_PATHS.items()]
    routes += [
        Route("/platform/v1/cases/{application_id}/{kind}", platform_push, methods=["POST"]),
        Route("/platform/v1/cases/{application_id}", platform_case, methods=["GET"]),
        Route("/admin/faults/{service}", put_faults, methods=["PUT"]),
        Route("/admin/faults", get_faults, methods=["GET"]),
        Route("/admin/faults", delete_faults, methods=["DELETE"]),
        Route("/admin/stats", get_stats, methods=["GET"]),
        Route("/admin/reset", reset, methods=["POST"]),
        Route("/platform/admin/accept", applicant_side("platform"), methods=["POST"]),
        Route("/enrollment-system/admin/apply", applicant_side("enrollment_system"), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    middleware = [Middleware(RequireSignature, clients=signature_clients)] if signature_clients is not None else []
    app = Starlette(routes=routes, middleware=middleware)
    app.state.standins = state
    return app


def _empty_case() -> dict[str, Any]:
    return {**{kind: [] for kind in PLATFORM_KINDS}, "duplicates_refused": 0}


def _admin(status: int, code: str, message: str | None = None, **fields) -> JSONResponse:
    return JSONResponse({"code": code, "message": message or MESSAGES[code], **fields}, status_code=status)
