"""Least-privilege PostgreSQL roles, one per service, so each connects with only what its statements need.

The migrations (0005_roles.sql) make the NOLOGIN group roles and their grants; the role that migrates
owns every table. A deployment makes one LOGIN role per service that is a member of its group role
(`ensure_login_role`, as an administrator) and gives each service its own DATABASE_URL
(`login_url`). docs/database-roles.md lists what each role may do.

| service | group role       | used by                                             |
|---------|------------------|-----------------------------------------------------|
| worker  | enroll_worker    | `python -m workers` (case store writes, backlog)    |
| console | enroll_console   | `python -m console` (archive card, audit events)    |
| api     | enroll_api       | `python -m api`, `enroll submit` (intake, audit)    |
| auditor | enroll_auditor   | `enroll audit case/person/verify` (reads the trail) |

`enroll setup` and `enroll audit purge` run as the owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

Service = Literal["worker", "console", "api", "auditor"]
SERVICES: tuple[Service, ...] = get_args(Service)
GROUP_ROLES: dict[Service, str] = {service: f"enroll_{service}" for service in SERVICES}


def group_role(service: str) -> str:
    """The NOLOGIN role holding the service's privileges; a ValueError for an unknown service."""
    if service not in GROUP_ROLES:
        raise ValueError(f"service: {service!r} is not one of {', '.join(SERVICES)}")
    return GROUP_ROLES[service]


def login_role(service: str) -> str:
    """The default name of the service's LOGIN role: enroll_worker_login for workers."""
    return f"{group_role(service)}_login"


def login_url(base_url: str, service: str, password: str | None = None, login: str | None = None) -> str:
    """`base_url` (a URL or `key=value` connection string) connecting as the service's LOGIN role instead.

    Host, port, database and options stay; the user and password are replaced (no password: none, as
    with the embedded server's trust authentication over its socket). The result holds the password
    in clear when given: treat it as a secret.
    """
    user = login or login_role(service)
    if "://" not in base_url:
        params = {k: v for k, v in conninfo_to_dict(base_url).items() if k != "password"}
        params["user"] = user
        if password:
            params["password"] = password
        return make_conninfo("", **params)
    parts = urlsplit(base_url)
    hosts = parts.netloc.rpartition("@")[2]
    userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("user", "password")]
    return urlunsplit((parts.scheme, f"{userinfo}@{hosts}", parts.path, urlencode(query, safe="/"), parts.fragment))


async def ensure_login_role(admin_url: str, service: str, password: str | None = None, login: str | None = None) -> str:
    """Make (or bring up to date) the service's LOGIN role, a member of its group role; return its name.

    `admin_url` connects as a role with CREATEROLE (and ADMIN on the group roles: their creator, or a
    superuser), after the migrations. The password goes to the server only as a SCRAM verifier, never
    in clear; None leaves an existing role's password as it is (none is needed with trust
    authentication, as the embedded server's socket). Idempotent.
    """
    group = group_role(service)
    name = login or login_role(service)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        found = await (await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,))).fetchone()
        if found is None:
            raise RuntimeError(f"role {group} does not exist: migrate the case store first (enroll setup)")
        options: sql.Composable = sql.SQL("")
        if password:
            verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
            options = sql.SQL(" PASSWORD {}").format(sql.Literal(verifier.decode()))
        exists = await (
            await conn.execute(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls"
                " FROM pg_roles WHERE rolname = %s",
                (name,),
            )
        ).fetchone()
        if exists is not None and exists[0]:
            raise ValueError(
                f"role {name} exists with more rights than a service needs: give the service another login"
            )
        if exists is None:
            try:
                await conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE{}").format(
                        sql.Identifier(name), options
                    )
                )
            except psycopg.errors.DuplicateObject:
                exists = (False,)  # made meanwhile by another process: bring it up to date below
        if exists is not None:
            await conn.execute(sql.SQL("ALTER ROLE {} LOGIN INHERIT{}").format(sql.Identifier(name), options))
        member = await (await conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (name, group))).fetchone()
        if not (member and member[0]):
            await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
    return name


async def service_urls(
    admin_url: str, passwords: Mapping[Service, str] | Mapping[str, str] | None = None
) -> dict[Service, str]:
    """Every service's DATABASE_URL, its LOGIN role made or brought up to date first.

    For the embedded server (trust authentication over its socket) give no passwords: the demo starts
    each process with its own URL, e.g. `{**env, "DATABASE_URL": urls["worker"]}` for the workers.
    """
    urls: dict[Service, str] = {}
    for service in SERVICES:
        password = passwords.get(service) if passwords else None
        login = await ensure_login_role(admin_url, service, password)
        urls[service] = login_url(admin_url, service, password, login)
    return urls
