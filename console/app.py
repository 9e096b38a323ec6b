"""The review console: reviewers of a district's education bureau and service-point staff act on cases.

Server-rendered pages over the same pieces the `enroll` command line uses:
identity from a signed token (`enrollment.tokens`), cases read with the
`status` and `filled_elements` queries, messages sent with
`starter.cases.send_signal` (which waits for the case to record them and
reports a refusal). The case itself stays the authority: it checks the
district, the decision and the opinion again, and records every action and
refusal with the token id in its timeline. The console adds the per-role
pages, the district wall (a case of another district is "not found"),
CSRF protection and an audit log line for each action.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
import structlog
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from console.markup import Markup, fill, join, render, table, when
from enrollment import tokens
from enrollment.application import ApplicationId
from enrollment.case import (
    DECISIONS,
    CaseStatusView,
    FilledElement,
    OfflineRegistrationSignal,
    ReviewSignal,
    SchoolSelection,
)
from enrollment.policy import DistrictPolicy, policy_book
from starter.cases import CaseActionError, case_handle, case_status, cases_awaiting, send_signal
from workflows.enrollment_case import MAX_OPINION_LENGTH, EnrollmentCase

log = structlog.get_logger()


def audit(claims: tokens.Claims, application_id: str | None, action: str, outcome: str, **extra: object) -> None:
    """One line per action for the audit trail: who (subject, role, district, token id), what, on which case, how it ended.

    Never names or identity numbers. A fresh logger each time, so the current configuration applies.
    """
    structlog.get_logger().info(
        "console action", subject=claims.sub, role=claims.role, district=claims.district, application_id=application_id,
        action=action, outcome=outcome, token=claims.jti, **extra,
    )

SESSION_COOKIE = "enroll_console_session"
SIGNIN_COOKIE = "enroll_console_signin"
CONSOLE_ROLES = ("reviewer", "staff")
MAX_FORM_BYTES = 64 * 1024
MAX_MATERIALS = 30
MAX_MATERIAL_LENGTH = 100
QUERY_CONCURRENCY = 16
# After a successful action, how long to wait for the case to move on before showing the page.
SETTLE_SECONDS = 5.0

APPLICATION_ID = TypeAdapter(ApplicationId)
_SAFE_NEXT = re.compile(r"^/(queue|offline|cases/[A-Za-z0-9][A-Za-z0-9-]{5,39})$")

ROLE_LABELS = {"reviewer": "审核员 reviewer", "staff": "服务点工作人员 staff"}
STATUS_LABELS = {
    "submitted": "已提交",
    "verifying": "核验中",
    "not_eligible": "不符合受理条件",
    "awaiting_offline_registration": "待线下登记",
    "awaiting_school_selection": "待选择学校",
    "awaiting_review": "待审核",
    "awaiting_supplement": "待补充材料",
    "approved": "审核通过",
    "rejected": "审核不通过",
    "withdrawn": "已撤回",
    "expired": "已过期",
}
DECISION_LABELS = {"approve": "同意", "reject": "不同意", "request_supplement": "补充材料"}
OUTCOME_LABELS = {"matched": "一致", "mismatch": "不一致", "not_found": "未查到", "unavailable": "暂不可用", "not_required": "无需核验"}
VERIFIER_LABELS = {"hukou": "户籍 hukou", "residence_permit": "居住证 residence permit", "social_insurance": "社保 social insurance", "property": "房产 property"}
SIGNIN_REASONS = {
    "required": "请先登录。Please sign in.",
    "expired": "身份令牌已过期，请粘贴新的令牌。Your token has expired; paste a new one.",
    "invalid": "身份令牌无效，请重新登录。Your token is not valid here; sign in again.",
    "signed_out": "已退出。You are signed out.",
}

# The objects themselves, or zero-argument coroutine functions that make them (see create_app).
ClientSource = Any
PoolSource = Any


class Refusal(Exception):
    """A request the console answers with an error page: status code, heading and message."""

    def __init__(self, status: int, heading: str, message: str):
        super().__init__(message)
        self.status, self.heading, self.message = status, heading, message


@dataclass
class Resources:
    client: Client | None = None
    pool: Any = None
    http: httpx.AsyncClient | None = None
    owned: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _status_label(status: str) -> str:
    return f"{STATUS_LABELS.get(status, status)} {status}"


def _badge(kind: str, code: str, label: str) -> Markup:
    return fill('<span class="badge $cls">$label</span>', cls=f"{kind}-{code}", label=label)


def _status_badge(status: str) -> Markup:
    return _badge("s", status, _status_label(status))


def _outcomes(view: CaseStatusView | None, with_reasons: bool = False) -> Markup:
    if view is None:
        return Markup('<span class="muted">—</span>')
    parts = []
    for verifier, report in _in_order(view.verifications):
        label = f"{VERIFIER_LABELS.get(verifier, verifier).split()[0]} {OUTCOME_LABELS.get(report.outcome, report.outcome)} {report.outcome}"
        badge = _badge("o", report.outcome, label)
        if with_reasons and report.reason:
            badge = Markup(badge + fill(' <span class="muted">$r</span>', r=report.reason))
        parts.append(Markup(badge + Markup("<br>")))
    return join(parts) if parts else Markup('<span class="muted">—</span>')


def _in_order(verifications: dict) -> list:
    """Verifiers in a fixed order (the case keeps them in the order they answered)."""
    order = list(VERIFIER_LABELS)
    return sorted(verifications.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))


def _district_name(code: str | None) -> str:
    if not code:
        return "—"
    try:
        policy = policy_book().district(code)
    except Exception:  # a broken policy folder must not take the console down
        policy = None
    return f"{code} {policy.city_name}{policy.district_name}" if policy else code


def _policy(code: str) -> DistrictPolicy | None:
    try:
        return policy_book().district(code)
    except Exception:
        return None


def _csrf_token(secret: bytes, claims: tokens.Claims) -> str:
    """Per session: bound to the token id, so it changes with every sign-in and needs no server state."""
    return hmac.new(secret, f"console-csrf:{claims.jti}:{claims.sub}".encode(), hashlib.sha256).hexdigest()[:32]


def create_app(
    client: ClientSource,
    pool: PoolSource,
    token_secret: bytes,
    platform_url: str,
    *,
    http_timeout_seconds: float = 10.0,
) -> Starlette:
    """The console app.

    `client` and `pool` may be the objects themselves or zero-argument coroutine
    functions that make them; the latter are called at start-up, on the server's
    own event loop (a Temporal client and a psycopg pool belong to the loop they
    were made on), and what they made is closed at shutdown.
    """
    platform_url = platform_url.rstrip("/")
    held = Resources()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if isinstance(client, Client):
            held.client = client
        else:
            held.client = await client()
        if pool is None or not callable(pool) or hasattr(pool, "connection"):
            held.pool = pool
        else:
            made = pool()
            held.pool = await made if inspect.isawaitable(made) else made
            held.owned.append(held.pool.close)
        held.http = httpx.AsyncClient(timeout=http_timeout_seconds)
        held.owned.append(held.http.aclose)
        try:
            yield
        finally:
            for close in reversed(held.owned):
                with contextlib.suppress(Exception):
                    await close()
            held.owned.clear()

    # Sessions.

    def session(request: Request) -> tuple[tokens.Claims | None, str | None]:
        """The signed-in person's claims, or None and why not ("required", "expired", "invalid")."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None, "required"
        try:
            claims = tokens.verify(token_secret, token)
        except tokens.TokenError as err:
            return None, "expired" if str(err).startswith("token: expired") else "invalid"
        if claims.role not in CONSOLE_ROLES:
            return None, "invalid"
        return claims, None

    def to_signin(request: Request, reason: str) -> Response:
        target = request.url.path
        query = {"reason": reason}
        if request.method == "GET" and _SAFE_NEXT.match(target):
            query["next"] = target
        response = RedirectResponse(f"/signin?{urlencode(query)}", status_code=303)
        if reason != "required":
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def require(request: Request, role: str | None = None) -> tokens.Claims:
        claims, reason = session(request)
        if claims is None:
            raise _SignIn(reason or "required")
        if role is not None and claims.role != role:
            wanted = ROLE_LABELS[role]
            audit(claims, request.path_params.get("application_id"), _action_name(request), "forbidden")
            raise Refusal(403, "无权限 Forbidden", f"这一页面只供{wanted}使用。A {claims.role} cannot do what needs a {role}.")
        return claims

    async def form(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise Refusal(415, "表单格式错误 Unsupported form", "Forms are sent as application/x-www-form-urlencoded.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refusal(413, "表单过大 Form too large", f"A form may hold at most {MAX_FORM_BYTES // 1024} KiB.")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise Refusal(400, "表单错误 Bad form", "The form could not be read.") from None
        return {key: values[0] for key, values in parsed.items()}

    def check_csrf(claims: tokens.Claims, fields: dict[str, str], request: Request) -> None:
        if not hmac.compare_digest(fields.get("csrf", ""), _csrf_token(token_secret, claims)):
            audit(claims, request.path_params.get("application_id"), _action_name(request), "csrf_refused")
            raise Refusal(403, "表单已失效 Form check failed",
                          "表单校验失败（CSRF），请刷新页面后重试。The form did not come from this session of the console; reload the page and try again.")

    # Page assembly.

    def page(request: Request, title: str, body: Markup, claims: tokens.Claims | None = None, status: int = 200,
             flash: Markup | None = None) -> HTMLResponse:
        if claims is None:
            claims, _ = session(request)
        nav = Markup("")
        if claims is None:
            who = Markup('<span>未登录 Not signed in</span> <a href="/signin">登录 Sign in</a>')
        else:
            nav = (Markup('<a href="/queue">待审核 Review queue</a>') if claims.role == "reviewer"
                   else Markup('<a href="/offline">待线下登记 Offline registration</a>'))
            who = fill(
                '<span id="who">已登录 Signed in: <b>$sub</b> · $role · 区县 district $district</span>'
                '<form method="post" action="/signout"><input type="hidden" name="csrf" value="$csrf">'
                '<button type="submit">退出 Sign out</button></form>',
                sub=claims.sub, role=ROLE_LABELS.get(claims.role, claims.role), district=_district_name(claims.district),
                csrf=_csrf_token(token_secret, claims),
            )
        nav = Markup(nav + Markup('<a href="/result">结果查询 Result lookup</a>'))
        document = render("layout", title=title, nav=nav, who=who, flash=flash or Markup(""), body=body)
        return HTMLResponse(document, status_code=status, headers=_SECURITY_HEADERS)

    def error_page(request: Request, refusal: Refusal) -> HTMLResponse:
        return page(request, refusal.heading, render("error", heading=refusal.heading, message=refusal.message), status=refusal.status)

    def handled(endpoint):
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request)
            except _SignIn as needed:
                return to_signin(request, needed.reason)
            except Refusal as refusal:
                return error_page(request, refusal)
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
                log.warning("console backend error", path=request.url.path, error=type(err).__name__)
                return error_page(request, Refusal(503, "暂时无法访问 Unavailable",
                                                   "案件服务暂时不可用，请稍后再试。The case service cannot be reached right now; try again shortly."))
            except Exception:
                log.exception("console error", path=request.url.path)
                return error_page(request, Refusal(500, "内部错误 Internal error", "出现内部错误，已记录。Something went wrong; it has been logged."))

        return wrapper

    # Reading cases.

    def not_found(application_id: str) -> Refusal:
        return Refusal(404, "未找到 Not found", f"本区县没有申请编号为 {application_id} 的案件。No case {application_id} in your district.")

    def valid_application_id(request: Request) -> str:
        application_id = request.path_params["application_id"]
        try:
            return APPLICATION_ID.validate_python(application_id)
        except ValidationError:
            raise not_found(application_id) from None

    async def case_of_district(application_id: str, claims: tokens.Claims, action: str = "view") -> CaseStatusView:
        """The case's status view; "not found" both when there is none and when it is another district's."""
        try:
            view = await case_status(held.client, application_id)
        except CaseActionError:
            audit(claims, application_id, action, "not_found")
            raise not_found(application_id) from None
        if view.district_code != claims.district:
            audit(claims, application_id, action, "not_found")  # the same answer as no case, but the audit trail knows
            raise not_found(application_id)
        return view

    async def statuses(application_ids: list[str]) -> dict[str, CaseStatusView | None]:
        gate = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def one(application_id: str) -> CaseStatusView | None:
            async with gate:
                try:
                    return await case_status(held.client, application_id)
                except Exception:  # one unreadable case must not hide the others
                    return None

        found = await asyncio.gather(*(one(a) for a in application_ids))
        return dict(zip(application_ids, found))

    async def case_list(rows: list[dict], with_reasons: bool, table_id: str) -> Markup:
        rows = sorted(rows, key=lambda row: (row.get("started") or "", row["application_id"]))
        views = await statuses([row["application_id"] for row in rows])
        cells = []
        for row in rows:
            view = views.get(row["application_id"])
            cells.append(
                [
                    fill('<a class="mono" href="/cases/$id">$id</a>', id=row["application_id"]),
                    row.get("stage"),
                    row.get("registration_type"),
                    row.get("routing_phase"),
                    view.channel if view else None,
                    when(row.get("started")),
                    _outcomes(view, with_reasons),
                ]
            )
        headers = ["申请编号 Application", "学段 Stage", "类型 Type", "路由阶段 Phase", "渠道 Channel", "受理时间 Started (UTC+8)", "核验 Verification"]
        return table(headers, cells, "暂无案件。No cases.", table_id=table_id)

    # Endpoints.

    async def home(request: Request) -> Response:
        claims, _ = session(request)
        if claims is None:
            return RedirectResponse("/signin", status_code=303)
        return RedirectResponse("/queue" if claims.role == "reviewer" else "/offline", status_code=303)

    def signin_page(request: Request, reason: Markup | str | None, status: int = 200, next_path: str = "") -> Response:
        nonce = secrets.token_urlsafe(24)
        notice = fill('<div class="flash error" id="signin-reason">$r</div>', r=reason) if reason else Markup("")
        response = page(request, "登录 Sign in", render("signin", reason=notice, nonce=nonce, next=next_path), status=status)
        response.set_cookie(SIGNIN_COOKIE, nonce, max_age=1800, path="/signin", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def signin_form(request: Request) -> Response:
        reason = SIGNIN_REASONS.get(request.query_params.get("reason", ""))
        next_path = request.query_params.get("next", "")
        return signin_page(request, reason, next_path=next_path if _SAFE_NEXT.match(next_path) else "")

    async def signin(request: Request) -> Response:
        fields = await form(request)
        next_path = fields.get("next", "") if _SAFE_NEXT.match(fields.get("next", "")) else ""
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        if not nonce or not hmac.compare_digest(nonce, fields.get("nonce", "")):
            return signin_page(request, "登录表单已失效，请重试。The sign-in form expired; try again.", status=403, next_path=next_path)
        try:
            claims = tokens.verify(token_secret, fields.get("token", ""))
            if claims.role not in CONSOLE_ROLES:
                raise tokens.TokenError(f"token: the {claims.role} role has no business in the review console (reviewers and service-point staff only)")
        except tokens.TokenError as err:
            log.info("console sign-in refused", reason=str(err))
            return signin_page(request, f"无法登录 Cannot sign in — {err}", status=401, next_path=next_path)
        audit(claims, None, "sign_in", "ok")
        response = RedirectResponse(next_path or ("/queue" if claims.role == "reviewer" else "/offline"), status_code=303)
        response.set_cookie(SESSION_COOKIE, fields["token"].strip(), max_age=max(0, claims.exp - int(time.time())), path="/",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    async def signout(request: Request) -> Response:
        claims = require(request)
        check_csrf(claims, await form(request), request)
        audit(claims, None, "sign_out", "ok")
        response = RedirectResponse("/signin?reason=signed_out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def waiting_in_district(status: str, district_code: str) -> list[dict]:
        try:
            return await cases_awaiting(held.client, status, district_code)
        except CaseActionError as err:
            raise Refusal(400, "区县代码错误 Bad district", str(err)) from None

    async def queue(request: Request) -> Response:
        claims = require(request, "reviewer")
        rows = await waiting_in_district("awaiting_review", claims.district)
        body = render("queue", district=_district_name(claims.district), count=str(len(rows)),
                      table=await case_list(rows, with_reasons=False, table_id="queue"))
        return page(request, "待审核 Review queue", body, claims)

    async def offline(request: Request) -> Response:
        claims = require(request, "staff")
        rows = await waiting_in_district("awaiting_offline_registration", claims.district)
        body = render("offline", district=_district_name(claims.district), count=str(len(rows)),
                      table=await case_list(rows, with_reasons=True, table_id="offline"))
        return page(request, "待线下登记 Offline registration", body, claims)

    async def show_case(request: Request, claims: tokens.Claims, application_id: str, view: CaseStatusView,
                        flash: Markup | None = None, status: int = 200) -> Response:
        elements: list[FilledElement] = await case_handle(held.client, application_id).query(EnrollmentCase.filled_elements)
        archive = await archive_summary(application_id)
        csrf = _csrf_token(token_secret, claims)
        action = Markup("")
        if claims.role == "reviewer" and view.status == "awaiting_review":
            action = render("review_form", application_id=application_id, csrf=csrf, max_opinion=str(MAX_OPINION_LENGTH))
        elif claims.role == "staff" and view.status == "awaiting_offline_registration":
            action = render("register_form", application_id=application_id, csrf=csrf, school=_school_picker(view))
        verifications = table(
            ["核验 Verifier", "结果 Outcome", "原因 Reason", "要素 Elements"],
            [[VERIFIER_LABELS.get(name, name), _badge("o", report.outcome, f"{OUTCOME_LABELS.get(report.outcome, report.outcome)} {report.outcome}"),
              report.reason, str(len(report.elements))] for name, report in _in_order(view.verifications)],
            "尚无核验结果。No verification yet.", table_id="verifications",
        )
        body = render(
            "case",
            application_id=application_id,
            status_badge=_status_badge(view.status),
            action=action,
            status=_status_label(view.status),
            district=_district_name(view.district_code),
            stage=view.stage,
            registration_type=view.registration_type,
            routing_phase=view.routing_phase,
            channel=view.channel,
            school_year=str(view.school_year),
            policy_version=view.policy_version,
            school_choice=f"{view.school_choice.zone_id} / {view.school_choice.school_id}" if view.school_choice else None,
            platform_synced=view.platform_synced,
            eligibility=(fill('<p><b>不符合受理条件 Eligibility problems:</b> $p</p>', p="; ".join(view.eligibility_problems))
                         if view.eligibility_problems else Markup("")),
            verifications=verifications,
            filled_count=str(len(elements)),
            elements=table(["要素 Element", "值 Value", "来源 Source"], [[e.element, e.value, e.source] for e in elements],
                           "无自动填充要素。No elements filled.", table_id="elements"),
            materials=(Markup("<ul>") + join(fill("<li>$m</li>", m=m) for m in view.materials) + Markup("</ul>")
                       if view.materials else Markup('<p class="muted">无 None.</p>')),
            reviews=table(["时间 At (UTC+8)", "审核员 Reviewer", "决定 Decision", "办理意见 Opinion"],
                          [[r.at, r.reviewer_id, f"{DECISION_LABELS.get(r.decision, r.decision)} {r.decision}", r.opinion] for r in view.reviews],
                          "尚无审核记录。No review yet.", table_id="reviews"),
            timeline=table(["时间 At (UTC+8)", "步骤 Step", "操作人 Actor", "详情 Detail", "令牌 Credential"],
                           [[e.at, e.step, e.actor, e.detail, fill('<span class="mono">$c</span>', c=e.credential) if e.credential else None]
                            for e in view.timeline],
                           "—", table_id="timeline"),
            archive=archive,
        )
        return page(request, f"案件 {application_id}", body, claims, status=status, flash=flash)

    def _school_picker(view: CaseStatusView) -> Markup:
        policy = _policy(view.district_code)
        options = []
        if policy is not None:
            for zone in policy.zones:
                for school in zone.schools:
                    if view.stage in school.stages:
                        options.append(fill('<option value="$v">$label</option>', v=f"{zone.zone_id}|{school.school_id}",
                                            label=f"{zone.name} {zone.zone_id} / {school.name} {school.school_id}"))
        if options:
            return Markup('<label for="school_choice">学校（可选）School (optional)</label><select id="school_choice" name="school_choice">'
                          '<option value="">— 不选 none —</option>') + join(options) + Markup("</select>")
        return Markup(
            '<label for="zone">学区（可选）Zone (optional)</label><input type="text" id="zone" name="zone" maxlength="32">'
            '<label for="school">学校（可选）School (optional)</label><input type="text" id="school" name="school" maxlength="32">'
        )

    async def archive_summary(application_id: str) -> Markup:
        if held.pool is None:
            return Markup('<p class="muted">—</p>')
        try:
            async with held.pool.connection() as conn:
                row = await (await conn.execute("SELECT status, updated_at FROM cases WHERE application_id = %s", (application_id,))).fetchone()
                documents = await (await conn.execute(
                    "SELECT kind, archived_at FROM archive_documents WHERE application_id = %s ORDER BY kind", (application_id,))).fetchall()
                events = await (await conn.execute("SELECT count(*) FROM case_events WHERE application_id = %s", (application_id,))).fetchone()
        except Exception as err:
            log.warning("console case store unavailable", error=type(err).__name__)
            return Markup('<p class="muted">案件库暂时不可用。The case store cannot be reached right now.</p>')
        if row is None:
            return Markup('<p class="muted">案件库尚无记录。Not in the case store yet.</p>')
        summary = fill("<p>案件库状态 Stored status: $s · 更新 updated $u · 过程记录 $n steps</p>",
                       s=row[0], u=row[1], n=str(events[0] if events else 0))
        filed = table(["档案 Document", "归档时间 Filed at (UTC+8)"], [[kind, at] for kind, at in documents],
                      "尚未归档（案件办结后归档受理、审核、结果文书）。Filed when the case ends.", table_id="archive")
        return Markup(summary + filed)

    async def case_page(request: Request) -> Response:
        claims = require(request)
        application_id = valid_application_id(request)
        view = await case_of_district(application_id, claims)
        audit(claims, application_id, "view", "ok")
        return await show_case(request, claims, application_id, view)

    async def act(request: Request, claims: tokens.Claims, application_id: str, action: str, awaited: str, signal, payload,
                  actor: str) -> Response:
        try:
            recorded = await send_signal(held.client, application_id, signal, payload, actor=actor)
        except CaseActionError as err:
            audit(claims, application_id, action, "refused", reason=str(err))
            view = await case_of_district(application_id, claims)
            flash = fill('<div class="flash error" id="outcome">未执行 Not done — $reason</div>', reason=str(err))
            return await show_case(request, claims, application_id, view, flash=flash, status=409)
        audit(claims, application_id, action, "recorded", steps=[entry.step for entry in recorded])
        view = await settled(application_id, awaited)
        flash = fill('<div class="flash ok" id="outcome">已记录 Recorded: $steps · 案件现为 case is now $status</div>',
                     steps=", ".join(entry.step for entry in recorded), status=_status_label(view.status))
        return await show_case(request, claims, application_id, view, flash=flash)

    async def settled(application_id: str, left: str) -> CaseStatusView:
        """The case's view once it has left the state it was in (or after a few seconds)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            view = await case_status(held.client, application_id)
            if view.status != left or time.monotonic() > deadline:
                return view
            await asyncio.sleep(0.2)

    async def review(request: Request) -> Response:
        claims = require(request, "reviewer")
        fields = await form(request)
        check_csrf(claims, fields, request)
        application_id = valid_application_id(request)
        decision = fields.get("decision", "")
        action = f"review:{decision if decision in DECISIONS else 'invalid'}"
        await case_of_district(application_id, claims, action)
        payload = ReviewSignal(reviewer_id=claims.sub, district_code=claims.district, decision=decision,
                               opinion=fields.get("opinion", ""), credential=claims.jti)
        return await act(request, claims, application_id, action, "awaiting_review", EnrollmentCase.review, payload,
                         f"reviewer:{claims.sub}")

    async def register(request: Request) -> Response:
        claims = require(request, "staff")
        fields = await form(request)
        check_csrf(claims, fields, request)
        application_id = valid_application_id(request)
        view = await case_of_district(application_id, claims, "register_offline")
        materials = [line.strip() for line in fields.get("materials", "").splitlines() if line.strip()]
        zone, school = fields.get("zone", "").strip(), fields.get("school", "").strip()
        if fields.get("school_choice"):
            zone, _, school = fields["school_choice"].partition("|")
        problem = None
        if bool(zone) != bool(school):
            problem = "zone and school go together: give both or neither"
        elif len(materials) > MAX_MATERIALS or any(len(m) > MAX_MATERIAL_LENGTH for m in materials):
            problem = f"materials: at most {MAX_MATERIALS} lines of {MAX_MATERIAL_LENGTH} characters"
        if problem:
            audit(claims, application_id, "register_offline", "invalid", reason=problem)
            flash = fill('<div class="flash error" id="outcome">未执行 Not done — $p</div>', p=problem)
            return await show_case(request, claims, application_id, view, flash=flash, status=422)
        payload = OfflineRegistrationSignal(
            staff_id=claims.sub, district_code=claims.district, materials=materials, note=fields.get("note", "").strip(),
            school_choice=SchoolSelection(zone_id=zone, school_id=school) if zone else None, credential=claims.jti,
        )
        return await act(request, claims, application_id, "register_offline", "awaiting_offline_registration",
                         EnrollmentCase.register_offline, payload, f"staff:{claims.sub}")

    async def result_lookup(request: Request) -> Response:
        application_id = request.query_params.get("application_id", "").strip()
        if application_id:
            return RedirectResponse(f"/result/{quote(application_id, safe='')}", status_code=303)
        return page(request, "结果查询 Result lookup", render("result", application_id="", result=Markup("")))

    async def result(request: Request) -> Response:
        """What the platform shows the applicant: the latest result only, no personal data."""
        application_id = request.path_params["application_id"]
        try:
            APPLICATION_ID.validate_python(application_id)
        except ValidationError:
            body = render("result", application_id=application_id[:40],
                          result=Markup('<section class="card"><p id="result">申请编号格式不正确。Not an application id.</p></section>'))
            return page(request, "结果查询 Result lookup", body, status=404)
        try:
            response = await held.http.get(f"{platform_url}/v1/cases/{quote(application_id, safe='')}")
            response.raise_for_status()
            record = response.json()
        except (httpx.HTTPError, ValueError) as err:
            log.warning("console platform unavailable", error=type(err).__name__)
            body = render("result", application_id=application_id,
                          result=Markup('<section class="card"><p id="result">平台暂时无法访问，请稍后再试。The platform cannot be reached right now.</p></section>'))
            return page(request, "结果查询 Result lookup", body, status=503)
        results = record.get("result") if isinstance(record, dict) else None
        latest = results[-1].get("body", {}) if isinstance(results, list) and results and isinstance(results[-1], dict) else None
        if not isinstance(latest, dict):
            shown = Markup('<section class="card"><p id="result">暂无办理结果。No result yet.</p></section>')
        else:
            decision = latest.get("decision")
            shown = fill(
                '<section class="card" id="result"><dl class="facts">'
                '<dt>办理结果 Status</dt><dd id="result-status">$status</dd>'
                '<dt>决定 Decision</dt><dd>$decision</dd>'
                '<dt>办理意见 Opinion</dt><dd>$opinion</dd>'
                '<dt>办结时间 Decided at (UTC+8)</dt><dd>$decided_at</dd>'
                '</dl></section>',
                status=_status_label(str(latest.get("status"))),
                decision=f"{DECISION_LABELS.get(decision, decision)} {decision}" if decision else None,
                opinion=latest.get("opinion"),
                decided_at=when(latest.get("decided_at")) if latest.get("decided_at") else None,
            )
        return page(request, "结果查询 Result lookup", render("result", application_id=application_id, result=shown))

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/", handled(home), methods=["GET"]),
            Route("/signin", handled(signin_form), methods=["GET"]),
            Route("/signin", handled(signin), methods=["POST"]),
            Route("/signout", handled(signout), methods=["POST"]),
            Route("/queue", handled(queue), methods=["GET"]),
            Route("/offline", handled(offline), methods=["GET"]),
            Route("/cases/{application_id}", handled(case_page), methods=["GET"]),
            Route("/cases/{application_id}/review", handled(review), methods=["POST"]),
            Route("/cases/{application_id}/register", handled(register), methods=["POST"]),
            Route("/result", handled(result_lookup), methods=["GET"]),
            Route("/result/{application_id}", handled(result), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


class _SignIn(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _action_name(request: Request) -> str:
    last = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    return {"review": "review", "register": "register_offline", "queue": "queue", "offline": "offline"}.get(last, "view")


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
