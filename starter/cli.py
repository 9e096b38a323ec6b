"""`enroll`: the command line for submitting applications and acting on cases.

Output is a readable table or `key: value` block for people, and JSON with
`--json` (one line per application for `submit`) for ops scripts. Exit status is 0 when everything
asked for was done, 1 when something was refused or invalid, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import httpx
import psycopg
import structlog
from pydantic import ValidationError
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from api.callers import registered_clients
from api.signing import SignedRequests
from enrollment import deployment_secrets, logs
from enrollment.application import describe_errors
from enrollment.case import OfflineRegistration, Reverification, Review, SchoolSelection
from enrollment.client import connect
from enrollment.oidc import IdentityError
from enrollment.policy import policy_book
from enrollment.search_attributes import ALL as ALL_SEARCH_ATTRIBUTES
from enrollment.search_attributes import ensure_registered
from enrollment.settings import Settings
from enrollment.statuses import CASE_STATUSES, DECISIONS
from starter.audit_commands import add_audit_commands
from starter.cases import CaseActionError, case_status, cases_awaiting, send_message
from starter.intake import Intake, submit_file, submit_one
from starter.output import Output, progress
from starter.reverify import RESULTS, CaseResult, Window, cases_in, reverify
from starter.signin import CLI_CLIENT, SignedIn, login, logout, signed_in
from store import audit, roles
from store.cases import case_record, list_cases
from store.database import embedded, migrate, open_pool, resolve_url

SETUP_ATTEMPTS = 30
log = structlog.get_logger()


def _out(args) -> Output:
    return Output(as_json=args.json)


SUBMIT_COLUMNS = ("source", "result", "application_id", "errors")


# Who `enroll submit` hands applications in as: an operator's import, recorded like an API client's.
SUBMIT_CLIENT_ID = "enroll-submit"


async def _submit(args, settings: Settings) -> int:
    client = await connect(settings)
    pool = await open_pool(resolve_url(settings.reveal_database_url()), max_size=4)
    intake = Intake(client, pool, deployment_secrets.lookup_key(settings), SUBMIT_CLIENT_ID)
    try:
        return await _submit_with(args, settings, intake)
    finally:
        await pool.close()


async def _submit_with(args, settings: Settings, intake: Intake) -> int:
    policies = policy_book(settings.policies_dir)
    out = _out(args)
    raw = Path(args.file).read_bytes()
    # Lines count applications in JSON Lines; a JSON array's total is only known once read.
    total = None if raw.lstrip()[:1] in (b"[", b"{") else sum(1 for line in raw.splitlines() if line.strip())
    widths = {"source": 24, "result": 9, "application_id": 16}
    out.header(SUBMIT_COLUMNS, widths)
    counts: dict[str, int] = {}
    async for result in submit_file(functools.partial(submit_one, intake), Path(args.file), policies):
        counts[result.result] = counts.get(result.result, 0) + 1
        out.row(result.as_dict(), SUBMIT_COLUMNS, widths)
        done = sum(counts.values())
        if not args.json and (done % 100 == 0):
            progress(done, total, "submitted")
    print(
        json.dumps({"summary": counts})
        if args.json
        else "summary: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        file=sys.stderr,
    )
    return 0 if set(counts) <= {"started"} else 1


# Who may read what: a bureau's people their own district's cases, ops and auditors every district's.
BUREAU_ROLES = ("reviewer", "staff")
READER_ROLES = ("reviewer", "staff", "ops", "auditor")


def _may_read_district(person: SignedIn, district_code: str) -> None:
    identity = person.identity
    if identity.role in BUREAU_ROLES and identity.district != district_code:
        raise CaseActionError(
            f"district: a {identity.role} of {identity.district} cannot read cases of {district_code}"
        )


def _audit_event(person: SignedIn, case_id: str | None, action: str, outcome: str) -> audit.AuditEvent:
    """What a person read or did at the command line, as the audit trail records it (who saw this child's data)."""
    identity = person.identity
    return audit.AuditEvent(
        actor=identity.sub,
        role=identity.role,
        district=identity.district,
        source="enroll command line",
        case_id=case_id,
        action=action,
        outcome=outcome,
        detail={"session": identity.sid},
    )


async def _audited(settings: Settings, person: SignedIn, case_id: str | None, action: str, outcome: str) -> None:
    """One event into the audit trail, through a connection of its own."""
    pool = await open_pool(resolve_url(settings.reveal_database_url()), max_size=1)
    try:
        await audit.record(pool, _audit_event(person, case_id, action, outcome))
    finally:
        await pool.close()


async def _status(args, settings: Settings) -> int:
    person = await signed_in(args.token, settings, READER_ROLES)
    view = await case_status(await connect(settings), args.application_id)
    try:
        _may_read_district(person, view.district_code)
    except CaseActionError:
        await _audited(settings, person, args.application_id, "cli_status", "refused")
        raise
    await _audited(settings, person, args.application_id, "cli_status", "ok")
    document = view.model_dump(mode="json")
    _out(args).document(document, timeline=document["timeline"])
    return 0


async def _awaiting_review(args, settings: Settings) -> int:
    person = await signed_in(args.token, settings, READER_ROLES)
    _may_read_district(person, args.district)
    cases = await cases_awaiting(await connect(settings), "awaiting_review", args.district)
    await _audited(settings, person, None, f"cli_awaiting_review:{args.district}", "ok")
    _out(args).table(
        sorted(cases, key=lambda c: c["started"] or ""),
        ["application_id", "stage", "registration_type", "routing_phase", "started"],
    )
    return 0


async def _message(args, settings: Settings, person: SignedIn, message: Review | OfflineRegistration) -> int:
    """Send a person's proven message and print the case's receipt; a refusal exits 1 with the reason."""
    receipt = await send_message(await connect(settings), args.application_id, message, person.prove)
    action = "review" if isinstance(message, Review) else "register_offline"
    await _audited(settings, person, args.application_id, action, "ok" if receipt.accepted else "refused")
    if not receipt.accepted:
        raise CaseActionError(f"refused: {receipt.reason}")
    _out(args).document({"application_id": args.application_id, "accepted": True, "status": receipt.status})
    return 0


async def _review(args, settings: Settings) -> int:
    reviewer = await signed_in(args.token, settings, ("reviewer",))
    message = Review(
        reviewer_id=reviewer.identity.sub,
        district_code=reviewer.identity.district or "",  # never empty: a reviewer acts for a district
        decision=args.decision,
        opinion=args.opinion,
    )
    return await _message(args, settings, reviewer, message)


async def _register_offline(args, settings: Settings) -> int:
    if bool(args.zone) != bool(args.school):
        raise CaseActionError("--zone and --school go together: give both or neither")
    staff = await signed_in(args.token, settings, ("staff",))
    choice = SchoolSelection(zone_id=args.zone, school_id=args.school) if args.zone else None
    message = OfflineRegistration(
        staff_id=staff.identity.sub,
        district_code=staff.identity.district or "",  # never empty: staff act for a district
        materials=args.material or [],
        note=args.note,
        school_choice=choice,
    )
    return await _message(args, settings, staff, message)


async def _login(args, settings: Settings) -> int:
    identity = await login(settings)
    _out(args).document({"signed_in": identity.sub, "role": identity.role, "district": identity.district})
    return 0


async def _access_token(args, settings: Settings) -> int:
    """The signed-in person's access token, for `temporal --codec-auth "Bearer ..."` and the codec's /login."""
    person = await signed_in(args.token, settings, READER_ROLES)
    print(person.access_token)
    return 0


async def _temporal_token(args, settings: Settings) -> int:
    """The signed-in person's own token for a Temporal frontend that checks tokens, exchanged at the provider
    for their command-line token: `export TEMPORAL_API_KEY=$(enroll temporal-token)`, then the `temporal`
    and `enroll` commands read with the person's rights there (ops: read only; other roles: none)."""
    person = await signed_in(args.token, settings, ("ops",))
    try:
        tokens = await person.provider.exchange_for_temporal(person.access_token, CLI_CLIENT)
    except IdentityError as err:
        raise CaseActionError(f"temporal token: {err}") from None
    print(tokens.access_token)
    return 0


async def _logout(args, settings: Settings) -> int:
    _out(args).document({"signed_out": await logout(settings)})
    return 0


async def _setup(args, settings: Settings) -> int:
    """Prepare a deployment: search attributes on the namespace, migrations on the case store.

    Idempotent, and patient with servers that are still coming up, since it runs at every start-up.
    """
    for attempt in range(1, SETUP_ATTEMPTS + 1):
        try:
            client = await connect(settings)
            await ensure_registered(client)
            owner_url = resolve_url(settings.reveal_database_url())
            applied = await migrate(owner_url)
            logins = await _service_logins(settings, owner_url)
            break
        except (RuntimeError, RPCError, psycopg.OperationalError) as err:
            if attempt == SETUP_ATTEMPTS:
                raise
            print(f"enroll setup: attempt {attempt} failed ({err}); retrying", file=sys.stderr)
            await asyncio.sleep(2)
    _out(args).document(
        {
            "search_attributes": [key.name for key in ALL_SEARCH_ATTRIBUTES],
            "migrations_applied": applied,
            "database_logins": logins,
        }
    )
    return 0


async def _service_logins(settings: Settings, owner_url: str) -> list[str]:
    """Each service's own PostgreSQL login, for the services given a password (ENROLL_<SERVICE>_DB_PASSWORD)."""
    passwords = {
        "worker": settings.worker_db_password,
        "console": settings.console_db_password,
        "api": settings.api_db_password,
        "auditor": settings.auditor_db_password,
    }
    return [
        await roles.ensure_login_role(owner_url, service, password.get_secret_value())
        for service, password in passwords.items()
        if password is not None
    ]


async def _archive(args, settings: Settings) -> int:
    person = await signed_in(args.token, settings, READER_ROLES)
    pool = await open_pool(resolve_url(settings.reveal_database_url()), max_size=1)
    try:
        record = await case_record(pool, args.application_id)
    finally:
        await pool.close()
    if record is None:
        raise CaseActionError(f"application_id: the case store holds nothing for {args.application_id}")
    _may_read_district(person, record["case"]["district_code"])
    await _audited(settings, person, args.application_id, "cli_archive", "ok")
    out = _out(args)
    if out.as_json:
        out.document(record)
    else:
        out.document(record["case"], timeline=record["events"])
        out.table(
            [{"kind": d["kind"], "archived_at": d["archived_at"]} for d in record["archive"]], ["kind", "archived_at"]
        )
    return 0


async def _cases(args, settings: Settings) -> int:
    person = await signed_in(args.token, settings, READER_ROLES)
    _may_read_district(person, args.district)
    await _audited(settings, person, None, f"cli_cases:{args.district}", "ok")
    pool = await open_pool(resolve_url(settings.reveal_database_url()), max_size=1)
    try:
        rows = await list_cases(pool, args.district, args.status)
        _out(args).table(
            rows, ["application_id", "status", "stage", "registration_type", "routing_phase", "channel", "updated_at"]
        )
    finally:
        await pool.close()
    return 0


async def _platform_record(args, settings: Settings) -> int:
    person = await signed_in(args.token, settings, ("ops", "auditor"))
    await _audited(settings, person, args.application_id, "cli_platform_record", "ok")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{settings.platform_url}/v1/cases/{args.application_id}")
        response.raise_for_status()
        _out(args).document(response.json())
    return 0


async def _call(args, settings: Settings) -> int:
    """One request to the HTTP API, signed as a registered client (its secret from ENROLL_API_CLIENTS_FILE)."""
    client = registered_clients(settings).get(args.client)
    if client is None:
        raise CaseActionError(f"--client: {args.client} is not in ENROLL_API_CLIENTS_FILE")
    body = Path(args.body).read_bytes() if args.body else None
    auth = SignedRequests(client.client_id, client.secret.get_secret_value().encode())
    async with httpx.AsyncClient(base_url=args.api_url, auth=auth, timeout=30) as api:
        headers = {"content-type": "application/json"} if body is not None else {}
        response = await api.request(args.method, args.path, content=body, headers=headers)
    print(f"HTTP {response.status_code} {response.headers.get('content-type', '')}", file=sys.stderr)
    print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    return 0 if response.status_code < 400 else 1


async def _reverify(args, settings: Settings) -> int:
    """Ask again for the cases an outage sent offline in a time window: ops only, paced, a result per case."""
    person = await signed_in(args.token, settings, ("ops",))
    window = Window(since=args.since, until=args.until, district_code=args.district)
    pool = await open_pool(resolve_url(settings.reveal_database_url()), max_size=1)
    try:
        cases = await cases_in(pool, window)
        out = _out(args)
        if args.dry_run:
            out.table([{"application_id": case} for case in cases], ["application_id"])
            return 0
        done: list[CaseResult] = []

        def show(result: CaseResult) -> None:
            done.append(result)
            progress(len(done), len(cases), "re-verified")

        message = Reverification(requested_by=person.identity.sub, reason=args.reason)
        results = await reverify(await connect(settings), cases, person.prove, message, args.rate, on_result=show)
        for result in results:
            await audit.record(pool, _audit_event(person, result.application_id, "reverify", result.result))
    finally:
        await pool.close()
    out.table([vars(result) for result in results], ["application_id", "result", "status", "reason"])
    counts = {kind: sum(r.result == kind for r in results) for kind in RESULTS}
    print("; ".join(f"{kind} {count}" for kind, count in counts.items()), file=sys.stderr)
    return 1 if counts["failed"] else 0


class _Parser(argparse.ArgumentParser):
    """Usage errors say what was wrong, never repeat what was typed: the stray word may be a token."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message = "unrecognized arguments (not repeated here; see --help)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="enroll", description="Sichuan enrollment 'one thing' cases.")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON for scripts instead of readable tables")
    common.add_argument("--token", help="an access token from the identity provider (default: `enroll login`'s)")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common])

    submit = command("submit", help="submit a JSON or JSON Lines file of applications")
    submit.add_argument("file")
    submit.set_defaults(handler=_submit)

    status = command("status", help="show a case's status")
    status.add_argument("application_id")
    status.set_defaults(handler=_status)

    awaiting = command("awaiting-review", help="list cases awaiting review in a district")
    awaiting.add_argument("--district", required=True)
    awaiting.set_defaults(handler=_awaiting_review)

    review = command("review", help="send a reviewer's decision (办理意见)")
    review.add_argument("application_id")
    review.add_argument("--decision", required=True, choices=DECISIONS)
    review.add_argument("--opinion", required=True)
    review.set_defaults(handler=_review)

    offline = command("register-offline", help="register a case at the service point")
    offline.add_argument("application_id")
    offline.add_argument("--material", action="append", help="a material registered (repeatable)")
    offline.add_argument("--note", default="")
    offline.add_argument("--zone")
    offline.add_argument("--school")
    offline.set_defaults(handler=_register_offline)

    call = command("call", help="a signed request to the HTTP API as a registered client (ENROLL_API_CLIENTS_FILE)")
    call.add_argument("method", choices=("GET", "POST"))
    call.add_argument("path", help="e.g. /v1/applications or /v1/applications/SC2027-000001")
    call.add_argument("--client", required=True, help="the registered client id, e.g. platform")
    call.add_argument("--body", help="a JSON file to send (POST)")
    call.add_argument("--api-url", default="http://127.0.0.1:8000")
    call.set_defaults(handler=_call, application_id=None)

    platform = command("platform-record", help="what the platform holds for a case")
    platform.add_argument("application_id")
    platform.set_defaults(handler=_platform_record)

    archive = command("archive", help="a case's archive and event log from the case store")
    archive.add_argument("application_id")
    archive.set_defaults(handler=_archive)

    listing = command("cases", help="cases of a district from the case store, newest first")
    listing.add_argument("--district", required=True)
    listing.add_argument("--status", choices=CASE_STATUSES)
    listing.set_defaults(handler=_cases)

    again = command("reverify", help="ops: ask again for the cases an outage sent offline in a time window")
    again.add_argument("--from", dest="since", required=True, type=dt.datetime.fromisoformat, help="ISO time, zoned")
    again.add_argument("--to", dest="until", required=True, type=dt.datetime.fromisoformat, help="ISO time, zoned")
    again.add_argument("--district", help="only this district's cases")
    again.add_argument("--rate", type=float, default=5.0, help="cases started a second (default 5)")
    again.add_argument("--reason", default="", help="why, for the cases' timelines (e.g. the outage's ticket)")
    again.add_argument("--dry-run", action="store_true", help="list the cases, send nothing")
    again.set_defaults(handler=_reverify, application_id=None)

    setup = command("setup", help="register search attributes and migrate the case store")
    setup.set_defaults(handler=_setup)

    add_audit_commands(commands)

    signin = command("login", help="sign in at the identity provider (prints a code to enter in a browser)")
    signin.set_defaults(handler=_login, application_id=None)

    token = command("access-token", help="print the signed-in person's access token (for the codec server)")
    token.set_defaults(handler=_access_token, application_id=None)

    temporal_token = command(
        "temporal-token", help="print the signed-in ops person's own token for Temporal (as TEMPORAL_API_KEY)"
    )
    temporal_token.set_defaults(handler=_temporal_token, application_id=None)

    signout = command("logout", help="sign out: revoke this machine's tokens at the identity provider")
    signout.set_defaults(handler=_logout, application_id=None)

    worker = command("worker", help="run the workers (same as python -m workers)")
    worker.add_argument("--role", choices=("case", "verification"), action="append")
    worker.set_defaults(handler=None)

    api = command("api", help="serve the HTTP API (same as python -m api)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(handler=None)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure()
    if args.command == "worker":
        from workers.__main__ import main as run_workers

        run_workers([part for role in args.role or [] for part in ("--role", role)])
        return 0
    if args.command == "api":
        from api.__main__ import main as run_api

        run_api(["--host", args.host, "--port", str(args.port)])
        return 0
    try:
        return asyncio.run(args.handler(args, Settings.from_env()))
    except (CaseActionError, RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        print(f"enroll {args.command}: {err}", file=sys.stderr)
    except IdentityError as err:
        print(f"enroll {args.command}: identity provider: {err.reason}", file=sys.stderr)
    except (httpx.HTTPError, OSError) as err:
        print(f"enroll {args.command}: cannot reach {type(err).__name__}: {err}", file=sys.stderr)
    except RuntimeError as err:
        # Client.connect raises RuntimeError when the server cannot be reached.
        print(f"enroll {args.command}: {err}", file=sys.stderr)
    except ValidationError as err:
        print(f"enroll {args.command}: " + "; ".join(describe_errors(err)), file=sys.stderr)
    except ValueError as err:
        print(f"enroll {args.command}: {err}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
    finally:
        embedded.stop_if_started_here()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal client's native runtime threads can crash CPython's finalisation of a
    # short-lived process (temporalio/sdk-python#300); everything is flushed, so skip it.
    os._exit(code)
