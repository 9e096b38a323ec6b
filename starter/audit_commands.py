"""`enroll audit`: read, verify and purge the audit trail (store/audit.py).

    enroll audit case SC2027-000001            # what was done on a case
    enroll audit person r-01 --since 2027-05-01 --until 2027-05-31
    enroll audit verify                        # exit 1 when the hash chain is broken
    enroll audit purge [--retention-days 365]  # as the database's owner

Reading and verifying need a signed-in auditor and DATABASE_URL with an auditor's role (enroll_auditor);
purging needs the owner's. Dates are China's calendar days, both ends included; a time without a zone is China time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from enrollment.china_time import CHINA
from enrollment.settings import Settings
from starter.output import Output
from starter.signin import signed_in
from store import audit
from store.database import open_pool, resolve_url

READER = "an enroll_auditor login (or the owner)"
# Who may read the trail: it says who saw which child's case, which is for auditors to know.
AUDIT_READERS = ("auditor",)
EVENT_COLUMNS = ("seq", "at", "actor", "role", "district", "case_id", "action", "outcome", "source", "detail")


def add_audit_commands(subparsers: Any) -> None:
    """Add `audit case|person|verify|purge` to `enroll`'s subcommands (the `add_subparsers()` object)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON for scripts instead of readable tables")
    common.add_argument("--token", help="an auditor's access token (default: `enroll login`'s)")
    group = subparsers.add_parser("audit", help="the audit trail: a case's or a person's events, verify, purge")
    commands = group.add_subparsers(dest="audit_command", required=True)

    case = commands.add_parser("case", help="a case's audit events, oldest first", parents=[common])
    case.add_argument("application_id")
    case.add_argument("--limit", type=int, default=200, help="the latest this many events (default 200)")
    case.set_defaults(handler=_case)

    person = commands.add_parser("person", help="what one account (subject) did", parents=[common])
    person.add_argument("subject", help="the account subject, e.g. r-01, or a client id")
    person.add_argument("--since", type=_day_or_moment, help="from this date or time (China time)")
    person.add_argument("--until", type=_day_or_moment, help="to this date (included) or time (excluded)")
    person.add_argument("--limit", type=int, default=200, help="the latest this many events (default 200)")
    person.set_defaults(handler=_person, application_id=None)

    verify = commands.add_parser("verify", help="recompute the hash chain; exit 1 when it is broken", parents=[common])
    verify.set_defaults(handler=_verify, application_id=None)

    purge = commands.add_parser(
        "purge", help="delete events older than the retention (the owner's DATABASE_URL)", parents=[common]
    )
    purge.add_argument(
        "--retention-days",
        type=int,
        help=f"keep this many days (default $ENROLL_AUDIT_RETENTION_DAYS or {audit.MINIMUM_RETENTION_DAYS};"
        f" at least {audit.MINIMUM_RETENTION_DAYS})",
    )
    purge.set_defaults(handler=_purge, application_id=None)


def _day_or_moment(text: str) -> tuple[dt.datetime, bool]:
    """(the moment, whether a whole day was given) from `2027-05-01` or `2027-05-01T08:30[+08:00]`."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return dt.datetime.combine(day, dt.time(), CHINA), True
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a date (2027-05-01) or a time (2027-05-01T08:30)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=CHINA)), False


def _until(given: tuple[dt.datetime, bool] | None) -> dt.datetime | None:
    """The exclusive end: the day after a date, so the date itself is included."""
    if given is None:
        return None
    moment, whole_day = given
    return moment + dt.timedelta(days=1) if whole_day else moment


def _rows(events: list[audit.RecordedAuditEvent], as_json: bool) -> list[dict[str, Any]]:
    rows = [event.model_dump(mode="json") for event in events]
    if not as_json:
        for row in rows:
            detail = row["detail"]
            row["detail"] = json.dumps(detail, ensure_ascii=False, separators=(",", ":")) if detail else None
    return rows


@contextlib.asynccontextmanager
async def _store(settings: Settings, needs: str) -> AsyncIterator[AsyncConnectionPool]:
    """A one-connection pool on the case store; a refused privilege as a ValueError naming the role `needs`."""
    pool = await open_pool(resolve_url(settings.reveal_database_url()), max_size=1)
    try:
        yield pool
    except psycopg.errors.InsufficientPrivilege:
        raise ValueError(f"DATABASE_URL's role may not do this; it needs {needs} (docs/database-roles.md)") from None
    finally:
        await pool.close()


async def _case(args: argparse.Namespace, settings: Settings) -> int:
    await signed_in(args.token, settings, AUDIT_READERS)
    async with _store(settings, READER) as pool:
        events = await audit.events_for_case(pool, args.application_id, args.limit)
    Output(as_json=args.json).table(_rows(events, args.json), EVENT_COLUMNS)
    return 0


async def _person(args: argparse.Namespace, settings: Settings) -> int:
    since = args.since[0] if args.since else None
    await signed_in(args.token, settings, AUDIT_READERS)
    async with _store(settings, READER) as pool:
        events = await audit.events_for_actor(pool, args.subject, since, _until(args.until), args.limit)
    Output(as_json=args.json).table(_rows(events, args.json), EVENT_COLUMNS)
    return 0


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    await signed_in(args.token, settings, AUDIT_READERS)
    async with _store(settings, READER) as pool:
        report = await audit.verify_chain(pool)
    Output(as_json=args.json).document(report.model_dump())
    return 0 if report.ok else 1


def retention_days(settings: Settings, given: int | None) -> int:
    """--retention-days, else the setting (ENROLL_AUDIT_RETENTION_DAYS); less than 183 is refused."""
    return audit.check_retention(given if given is not None else settings.audit_retention_days)


async def _purge(args: argparse.Namespace, settings: Settings) -> int:
    days = retention_days(settings, args.retention_days)
    async with _store(settings, "the owner of the case store's tables") as pool:
        result = await audit.purge(pool, days)
    Output(as_json=args.json).document(result.model_dump())
    return 0
