"""The deployment (docker-compose.yml, deploy/) agrees with the code it deploys.

No container engine is needed: the compose file is parsed with PyYAML and checked against what
the code reads and serves, derived from the sources wherever possible (settings read from the
environment, worker roles, the stand-ins' port, packaging). Each check is a plain function; the
mutation tests at the end break a copy of the file in one place and make sure the check guarding
that place fails, so no check passes vacuously.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import fnmatch
import functools
import itertools
import json
import re
import tempfile
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml  # PyYAML, from the test extras
from starlette.requests import Request
from temporalio.api.enums.v1 import IndexedValueType

from api.__main__ import API_IDENTITY_CLIENT
from console.backends import CONSOLE_CLIENT
from enrollment.oidc import TEMPORAL_AUDIENCE
from enrollment.search_attributes import ALL as SEARCH_ATTRIBUTES
from stack import certificates, cluster
from stack.temporal_server import READ_ONLY_UI, ui_sign_in
from standins.identity_provider import app as identity_provider_app
from standins.identity_provider.accounts import Client, Directory
from standins.identity_provider.grants import Lifetimes

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

ENV_BLOCK = "x-enrollment-env"
# Services that run project code with the shared settings.
SETTINGS_SERVICES = ("setup", "case-worker", "verification-worker", "api", "console", "codec-server")
# Least privilege: the secrets each project service is given, and nothing more (deploy/README.md,
# "Who holds what", says the same; a test holds the two together).
HOLDS = {
    "setup": {
        "DATABASE_URL",
        "ENROLL_IDENTITY_CLIENT_SECRET",
        "ENROLL_WORKER_DB_PASSWORD",
        "ENROLL_CONSOLE_DB_PASSWORD",
        "ENROLL_API_DB_PASSWORD",
        "ENROLL_AUDITOR_DB_PASSWORD",
    },
    "case-worker": {"DATABASE_URL", "ENROLL_LOOKUP_KEY", "ENROLL_PAYLOAD_KEYS", "ENROLL_IDENTITY_CLIENT_SECRET"},
    "verification-worker": {"ENROLL_PAYLOAD_KEYS", "ENROLL_IDENTITY_CLIENT_SECRET"},
    "api": {"DATABASE_URL", "ENROLL_LOOKUP_KEY", "ENROLL_PAYLOAD_KEYS", "ENROLL_IDENTITY_CLIENT_SECRET"},
    "console": {"DATABASE_URL", "ENROLL_LOOKUP_KEY", "ENROLL_PAYLOAD_KEYS", "ENROLL_IDENTITY_CLIENT_SECRET"},
    "codec-server": {"ENROLL_PAYLOAD_KEYS", "ENROLL_IDENTITY_CLIENT_SECRET"},
    "standins": set(),
    "identity-provider": set(),
}
# The case store role each service's DATABASE_URL connects as (store/roles.py); setup is the owner.
DATABASE_ROLES = {"case-worker": "worker", "api": "api", "console": "console"}
DEPLOY_README = ROOT / "deploy" / "README.md"
TEMPORAL_SERVICE, CASESTORE_SERVICE, TEMPORAL_DB_SERVICE = "temporal-frontend", "casestore-db", "postgresql"
STANDINS_SERVICE, UI_SERVICE, SETUP_SERVICE = "standins", "temporal-ui", "setup"
# Temporal as stack/cluster.py runs it: a one-shot schema job, a service per server role, a one-shot namespace job.
SCHEMA_JOB, NAMESPACE_JOB = "temporal-schema", "temporal-namespace"
SERVER_SERVICES = {f"temporal-{role}": role for role in cluster.SERVICES}
# Started first, one at a time, before the namespace job; the internal frontend serves the server's own calls.
FRONTEND_SERVICES = [f"temporal-{role}" for role in cluster.FRONTENDS]
INTERNAL_FRONTEND_SERVICE = "temporal-internal-frontend"
IDENTITY_SERVICE = "identity-provider"
SERVER_IMAGE, ADMIN_TOOLS_IMAGE = "temporalio/server", "temporalio/admin-tools"
# The server image renders its config from the environment with this template, then loads this file first.
SERVER_BASE_CONFIG, SERVER_BASE_TARGET = ROOT / "deploy" / "temporal" / "base.yaml", "/etc/temporal/config/base.yaml"
# Certificates (stack/certificates.py, `python -m stack.certificates`): generated into CERT_FOLDER, which git and
# the image build ignore, and mounted file by file, read-only, at SERVER_CERTS in Temporal's images and at
# CLIENT_CERTS in the project's.
CERT_FOLDER = "deploy/secrets/temporal-certs"
SERVER_CERTS, CLIENT_CERTS = PurePosixPath("/etc/temporal/certs"), PurePosixPath("/run/temporal/certs")
CLIENT_PROFILES = ROOT / "deploy" / "temporal" / "clients.toml"
# The client certificate (TEMPORAL_PROFILE) each project service connects to Temporal with; the codec server never does.
TEMPORAL_PROFILES = {
    "setup": "setup",
    "case-worker": "workers",
    "verification-worker": "workers",
    "api": "api",
    "console": "console",
}
# The provider's client whose own token for Temporal each of them sends (ENROLL_TEMPORAL_CLIENT_ID): the api and
# the console the client they already are (its secret their ENROLL_IDENTITY_CLIENT_SECRET), the workers their own,
# and setup the cluster's setup client, as the namespace job.
WORKERS_TEMPORAL_CLIENT = "enroll-workers"
TEMPORAL_CLIENTS = {
    "setup": cluster.SETUP_CLIENT,
    "case-worker": WORKERS_TEMPORAL_CLIENT,
    "verification-worker": WORKERS_TEMPORAL_CLIENT,
    "api": API_IDENTITY_CLIENT,
    "console": CONSOLE_CLIENT,
}
# The private keys each service is given, and nothing more (the CA keys, which sign certificates, never). The
# frontend's operator key is its healthcheck's client certificate (a health check needs no token).
KEY_FILES = {
    "temporal-frontend": {"frontend.key", "internode.key", "client-operator.key"},
    **{name: {"internode.key"} for name in SERVER_SERVICES if name != "temporal-frontend"},
    NAMESPACE_JOB: {"client-operator.key"},
    UI_SERVICE: {"client-ui.key"},
    **{name: {f"client-{profile}.key"} for name, profile in TEMPORAL_PROFILES.items()},
}
EXPECTED_SERVICES = {
    TEMPORAL_DB_SERVICE,
    CASESTORE_SERVICE,
    SCHEMA_JOB,
    NAMESPACE_JOB,
    *SERVER_SERVICES,
    UI_SERVICE,
    SETUP_SERVICE,
    "case-worker",
    "verification-worker",
    STANDINS_SERVICE,
}
TEMPORAL_FRONTEND_PORT = 7233

# Folders scanned for settings, besides every package pyproject.toml installs.
SCANNED_DIRS = ("enrollment", "workers", "activities", "starter", "stack")
ENV_READ_PATTERNS = [
    re.compile(r"""os\.environ\.get\(\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""),
    re.compile(r"""os\.getenv\(\s*["']([A-Z][A-Z0-9_]*)["']"""),
    re.compile(r"""\b_env\(\s*["']([A-Z][A-Z0-9_]*)["']"""),
]
# Read by the code but not deployment settings; each entry says why.
NOT_DEPLOYMENT_SETTINGS = {
    "TEMPORAL_CLI": "stack/temporal_server.py: path of the local dev server binary for scripts/demo",
    "ENROLL_TOKEN": "starter/signin.py: a person's own access token in their shell, never a service setting",
    "ENROLL_SESSION_FILE": "starter/signin.py: where `enroll login` keeps a person's tokens on their machine",
    "TEMPORAL_UI_SERVER": "stack/temporal_server.py: path of the local UI server binary for scripts/demo",
}
# Read by the code and named like secrets, but needed only in one mode of ENROLL_OUTBOUND_AUTH: compose may not
# default a secret, and requiring them would stop every deployment not in that mode, so an operator gives them
# in a docker-compose.override.yml (deploy/README.md, "Calls to the departments and the platform").
OVERRIDE_ONLY_SETTINGS = {
    "ENROLL_OUTBOUND_SIGNING_SECRET": "the gateway's signing secret, for ENROLL_OUTBOUND_AUTH=signed",
    "ENROLL_OUTBOUND_CLIENT_KEY": "path of the client certificate's key, for ENROLL_OUTBOUND_AUTH=mtls",
}
# Required in the deployment even before a scan finds them: they were being added to the code when
# this test was written, and a deployment without them must not pass (the case store and the
# identity-number hash key).
REQUIRED_SETTINGS = {"DATABASE_URL", "ENROLL_LOOKUP_KEY"}
# The per-department URLs must default to empty, so Settings falls back to ENROLL_STANDINS_URL.
DEPARTMENT_URLS = (
    "ENROLL_PUBLIC_SECURITY_URL",
    "ENROLL_SOCIAL_INSURANCE_URL",
    "ENROLL_NATURAL_RESOURCES_URL",
    "ENROLL_PLATFORM_URL",
)
MONITORING_SERVICES = ("prometheus", "grafana")
# KEY_ID names which key is active, not key material, so it may have a default; the server's
# TEMPORAL_JWT_KEY_SOURCE<n> and TEMPORAL_JWT_KEY_REFRESH say where and how often it fetches public keys.
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|(^|_)KEYS?($|_(?!ID$|SOURCE[0-9]+$|REFRESH$))")
# A required reference with no default: ${NAME}, ${NAME:?message} or ${NAME?message}.
SECRET_REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*(:?\?[^}]*)?\}")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --- helpers -------------------------------------------------------------------------------------


def load_compose(text: str | None = None) -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8") if text is None else text)


def resolve(value) -> str:
    """The value compose would use with nothing set: defaults applied, required ones as <NAME>."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match.groups()
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<{name}>"
        return ""

    return INTERPOLATION.sub(substitute, str(value)).replace("$$", "$")


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def env_of(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def project_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def worker_services(compose: dict) -> dict[str, dict]:
    return {
        name: svc for name, svc in compose["services"].items() if command_of(svc)[:3] == ["python", "-m", "workers"]
    }


def depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    return {name: {"condition": "service_started"} for name in deps} if isinstance(deps, list) else deps


def flag_value(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def installed_packages() -> list[str]:
    return [
        pattern.rstrip("*").rstrip(".") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    ]


def settings_read_by_code() -> set[str]:
    folders = sorted(set(SCANNED_DIRS) | set(installed_packages()))
    names = set()
    for folder in folders:
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            for pattern in ENV_READ_PATTERNS:
                names.update(pattern.findall(text))
    return names


def deployment_settings() -> set[str]:
    read = settings_read_by_code()
    relevant = {name for name in read if name.startswith(("TEMPORAL_", "ENROLL_")) or name == "DATABASE_URL"}
    return (relevant - set(NOT_DEPLOYMENT_SETTINGS) - set(OVERRIDE_ONLY_SETTINGS)) | REQUIRED_SETTINGS


def worker_roles() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "workers" / "build.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ROLES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("workers/build.py defines no ROLES")


def container_port(mapping) -> int:
    if isinstance(mapping, dict):
        return int(mapping["target"])
    return int(resolve(mapping).split("/")[0].rsplit(":", 1)[-1])


def named_volumes(service: dict) -> set[str]:
    names = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                names.add(volume["source"])
        else:
            source = str(volume).split(":", 1)[0]
            if ":" in str(volume) and not source.startswith((".", "/", "~", "$")):
                names.add(source)
    return names


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str) and volume.startswith((".", "/")):
            source, target = volume.split(":")[:2]
            mounts.append((source, target))
    return mounts


def walk_environments(compose: dict):
    """(where, name, raw value) of every environment entry, and of every top-level x- block of settings."""
    for name, svc in compose["services"].items():
        for key, value in env_of(svc).items():
            yield f"services.{name}", key, value
    for key, block in compose.items():
        if key.startswith("x-") and isinstance(block, dict):
            for name, value in block.items():
                if isinstance(value, (str, int, float)) or value is None:
                    yield key, name, value


def image_tag(service: dict) -> tuple[str, str]:
    repository, _, tag = resolve(service.get("image", "")).rpartition(":")
    return repository, tag


def server_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if image_tag(svc)[0] == SERVER_IMAGE}


def read_only_mounts(service: dict) -> dict[str, str]:
    """target -> source of the service's read-only bind mounts."""
    return {
        target: source
        for volume in service.get("volumes", [])
        if isinstance(volume, str) and volume.startswith((".", "/")) and volume.endswith(":ro")
        for source, target in [volume.split(":")[:2]]
    }


def certificate_mounts(service: dict) -> dict[str, str]:
    """target -> file name of the certificates and keys the service has mounted from CERT_FOLDER."""
    mounts = {}
    for source, target in bind_mounts(service):
        path = PurePosixPath(source)
        if path.parent == PurePosixPath(".") / CERT_FOLDER:
            mounts[target] = path.name
    return mounts


def generated_files() -> set[str]:
    """The file names `python -m stack.certificates` writes (and would not mount: the CA keys are not among them)."""
    return {path.name for path in certificates.layout(Path(CERT_FOLDER)).files()}


def job_script(service: dict) -> str:
    """A one-shot job's shell script as it runs (compose's interpolation applied)."""
    command = service.get("command", [])
    return resolve("\n".join(command) if isinstance(command, list) else command)


def template_tls(env: dict) -> dict:
    """`global.tls` as the server image renders it from `env`: docker/config_template.yaml of server 1.29.1,
    lines `tls:` to the frontend `client:` (one TEMPORAL_TLS_REQUIRE_CLIENT_AUTH for both servers; the server
    CA of internode serves the frontend client too; empty CA entries are skipped by the server, buildCAPool)."""

    def get(name: str) -> str:
        return resolve(env.get(name, ""))

    require = get("TEMPORAL_TLS_REQUIRE_CLIENT_AUTH").lower() == "true"
    server_ca = [get("TEMPORAL_TLS_SERVER_CA_CERT")] if get("TEMPORAL_TLS_SERVER_CA_CERT") else []
    client_cas = [get("TEMPORAL_TLS_CLIENT1_CA_CERT"), get("TEMPORAL_TLS_CLIENT2_CA_CERT")]
    return {
        "internode": {
            "server": {
                "certFile": get("TEMPORAL_TLS_SERVER_CERT"),
                "keyFile": get("TEMPORAL_TLS_SERVER_KEY"),
                "requireClientAuth": require,
                "clientCaFiles": server_ca,
            },
            "client": {"serverName": get("TEMPORAL_TLS_INTERNODE_SERVER_NAME"), "rootCaFiles": server_ca},
        },
        "frontend": {
            "server": {
                "certFile": get("TEMPORAL_TLS_FRONTEND_CERT"),
                "keyFile": get("TEMPORAL_TLS_FRONTEND_KEY"),
                "requireClientAuth": require,
                "clientCaFiles": [ca for ca in client_cas if ca] if client_cas[0] else [],
            },
            "client": {"serverName": get("TEMPORAL_TLS_FRONTEND_SERVER_NAME"), "rootCaFiles": server_ca},
        },
    }


def template_authorization(env: dict) -> dict:
    """`global.authorization` as the server image renders it from `env`: docker/config_template.yaml of server
    1.29.1, lines `authorization:` to `claimMapper:` (a key source only where its variable is set; an empty
    authorizer or claim mapper is the server's no-op one, which lets every call through)."""

    def get(name: str, default: str = "") -> str:
        return resolve(env.get(name, "")) or default

    sources = [get(f"TEMPORAL_JWT_KEY_SOURCE{number}") for number in (1, 2)]
    return {
        "jwtKeyProvider": {
            "keySourceURIs": [source for source in sources if source],
            "refreshInterval": get("TEMPORAL_JWT_KEY_REFRESH", "1m"),
        },
        "permissionsClaimName": get("TEMPORAL_JWT_PERMISSIONS_CLAIM", "permissions"),
        "permissionsRegex": get("TEMPORAL_JWT_PERMISSIONS_REGEX"),
        "authorizer": get("TEMPORAL_AUTH_AUTHORIZER"),
        "claimMapper": get("TEMPORAL_AUTH_CLAIM_MAPPER"),
    }


def loaded_config(*files: dict) -> dict:
    """The config temporal-server ends up with from `files` in load order (base.yaml, then what the image
    renders): each is decoded into the same struct, so a later file overrides the keys it sets and keeps the
    others (common/config/loader.go, yaml.v3); a list is replaced whole."""

    def merge(into: dict, update: dict) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    config: dict = {}
    for file in files:
        merge(config, file)
    return config


def template_ui_auth(env: dict) -> dict:
    """ui-server's `auth` as its config/docker.yaml renders it from `env` (one provider; scopes split at commas)."""

    def get(name: str, default: str = "") -> str:
        return resolve(env.get(name, "")) or default

    provider = {
        "label": get("TEMPORAL_AUTH_LABEL", "sso"),
        "type": get("TEMPORAL_AUTH_TYPE", "oidc"),
        "providerUrl": get("TEMPORAL_AUTH_PROVIDER_URL"),
        "issuerUrl": get("TEMPORAL_AUTH_ISSUER_URL"),
        "clientId": get("TEMPORAL_AUTH_CLIENT_ID"),
        "clientSecret": get("TEMPORAL_AUTH_CLIENT_SECRET"),
        "callbackUrl": get("TEMPORAL_AUTH_CALLBACK_URL"),
        "useIdTokenAsBearer": get("TEMPORAL_AUTH_USE_ID_TOKEN_AS_BEARER", "false").lower() == "true",
        "scopes": [scope for scope in get("TEMPORAL_AUTH_SCOPES").split(",") if scope],
    }
    return {"enabled": get("TEMPORAL_AUTH_ENABLED", "false").lower() == "true", "providers": [provider]}


@functools.cache
def published_jwks_uri(issuer: str) -> str:
    """Where the stand-in provider serving as `issuer` says its keys are (`jwks_uri` of its discovery document,
    which stack/cluster.py reads for the local cluster's frontend)."""
    with tempfile.TemporaryDirectory() as state:
        app = identity_provider_app.create_app(issuer, Path(state), Directory.load(), "unused", Lifetimes())
        request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "app": app})
        loop = asyncio.new_event_loop()  # its own loop: the tests' session loop stays as it is
        try:
            response = loop.run_until_complete(identity_provider_app.discovery(request))
        finally:
            loop.close()
    return str(json.loads(bytes(response.body))["jwks_uri"])


def standin_clients(compose: dict) -> dict[str, Client]:
    """The clients the stand-in provider of the `standins` profile knows: standins/identity_provider/clients.json,
    in the image, since its command names no other file."""
    command = command_of(compose["services"][IDENTITY_SERVICE])
    assert "--clients" not in command, f"{IDENTITY_SERVICE}: another clients file than the one the checks read"
    return Directory.load().clients


def go_duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)(h|m|s)", text)
    assert match, f"{text!r} is not a duration in hours, minutes or seconds"
    unit = {"h": "hours", "m": "minutes", "s": "seconds"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def attribute_type(key) -> str:
    """A SearchAttributeKey's type as the `temporal` CLI spells it (Keyword, Int, KeywordList, ...)."""
    name = IndexedValueType.Name(key.indexed_value_type).removeprefix("INDEXED_VALUE_TYPE_")
    return "".join(part.title() for part in name.split("_"))


def server_module() -> Path:
    """The server's Go module (the build of scripts/install-temporal-server downloads it), or skip."""
    try:
        return cluster.schema_dir().parents[2]
    except RuntimeError as err:
        pytest.skip(str(err))


# --- checks --------------------------------------------------------------------------------------


def check_services_exist(compose: dict) -> None:
    missing = EXPECTED_SERVICES - set(compose["services"])
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def check_images_pinned(compose: dict) -> None:
    version = PYPROJECT["project"]["version"]
    for name, svc in compose["services"].items():
        assert "image" in svc or "build" in svc, f"{name}: neither image nor build"
        if "build" in svc:
            build = svc["build"]
            assert isinstance(build, dict), f"{name}: build must name deploy/Dockerfile"
            assert build.get("dockerfile") == "deploy/Dockerfile", f"{name}: must build from deploy/Dockerfile"
            assert (ROOT / build.get("context", ".")).resolve() == ROOT, (
                f"{name}: build context must be the repository root"
            )
        if "image" in svc:
            image = resolve(svc["image"])
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
            assert tag != "latest", f"{name}: image {image!r} is not pinned"
            if "build" in svc:
                assert tag == version, (
                    f"{name}: the project image tag {tag!r} should follow pyproject's version {version!r}"
                )


def is_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) or name == "DATABASE_URL"


def check_settings_block(compose: dict) -> None:
    block = compose.get(ENV_BLOCK)
    assert isinstance(block, dict), f"docker-compose.yml has no {ENV_BLOCK} block"
    secrets_in_block = sorted(name for name in block if is_secret(name))
    assert not secrets_in_block, f"{ENV_BLOCK} is given to every service: no secrets in it, {secrets_in_block}"
    given = set(block).union(*(env_of(compose["services"][name]) for name in SETTINGS_SERVICES))
    missing = deployment_settings() - given
    assert not missing, f"settings the code reads but no service is given: {sorted(missing)}"
    for name in SETTINGS_SERVICES:
        env = env_of(compose["services"][name])
        not_passed = set(block) - set(env)
        assert not not_passed, f"{name}: settings from {ENV_BLOCK} not passed: {sorted(not_passed)}"
        changed = {key for key in block if env[key] != block[key]}
        assert not changed, f"{name}: overrides shared settings {sorted(changed)}; keep one source"
    for name in DEPARTMENT_URLS:
        assert resolve(block[name]) == "", f"{name} must default to empty so the code falls back to ENROLL_STANDINS_URL"
    assert resolve(block["ENROLL_LOG_FORMAT"]) == "json", "production logs are JSON"
    assert resolve(block.get("ENROLL_ROUTING_PHASE", "")) == "auto"
    assert resolve(block["ENROLL_PHASE_TWO_FROM"]) == "2024-09-01"


def check_least_privilege(compose: dict) -> None:
    for name, svc in project_services(compose).items():
        held = {key for key in env_of(svc) if is_secret(key)}
        assert name in HOLDS, f"{name}: not in the table of who holds which secret"
        assert held == HOLDS[name], f"{name}: holds {sorted(held)}, should hold exactly {sorted(HOLDS[name])}"
    mounted = {name for name, svc in project_services(compose).items() if "api_clients.json" in str(svc.get("volumes"))}
    assert mounted == {"api"}, f"only the api holds the API clients' secrets, not {sorted(mounted - {'api'})}"


def check_worker_roles(compose: dict) -> None:
    roles = worker_roles()
    by_role: dict[str, list[str]] = {}
    for name, svc in worker_services(compose).items():
        command = command_of(svc)
        role = flag_value(command, "--role")
        assert role in roles, f"{name}: role {role!r} is not one of workers/build.py ROLES {roles}"
        by_role.setdefault(role, []).append(name)
    for role in roles:
        assert len(by_role.get(role, [])) == 1, (
            f"role {role!r}: expected one worker service, found {by_role.get(role, [])}"
        )


def check_temporal_address(compose: dict) -> None:
    address = resolve(compose[ENV_BLOCK]["TEMPORAL_ADDRESS"])
    host, _, port = address.rpartition(":")
    assert host == TEMPORAL_SERVICE and host in compose["services"], (
        f"TEMPORAL_ADDRESS {address!r} is not the temporal frontend service"
    )
    assert int(port) == TEMPORAL_FRONTEND_PORT, (
        f"TEMPORAL_ADDRESS {address!r}: the frontend listens on {TEMPORAL_FRONTEND_PORT}"
    )
    assert image_tag(compose["services"][TEMPORAL_SERVICE])[0] == SERVER_IMAGE
    for name, svc in server_services(compose).items():
        published = {container_port(p) for p in svc.get("ports", [])}
        allowed = {TEMPORAL_FRONTEND_PORT} if name == TEMPORAL_SERVICE else set()
        assert published <= allowed, f"{name} publishes unexpected ports {published}: only the frontend is reached"


def check_temporal_persistence(compose: dict) -> None:
    """Every server service on the `postgresql` service, history and SQL visibility in cluster.py's databases."""
    services = compose["services"]
    db_env = env_of(services[TEMPORAL_DB_SERVICE])
    assert resolve(services[TEMPORAL_DB_SERVICE]["image"]).startswith("postgres:")
    history_db, visibility_db = cluster.TEMPORAL_DATABASES
    for name, svc in server_services(compose).items():
        env = env_of(svc)
        assert env.get("DB") == "postgres12", f"{name}: DB=postgres12"
        seeds = env.get("POSTGRES_SEEDS")
        assert seeds == TEMPORAL_DB_SERVICE, f"{name}: POSTGRES_SEEDS {seeds!r} should be {TEMPORAL_DB_SERVICE}"
        assert str(env.get("DB_PORT")) == "5432"
        assert env.get("POSTGRES_USER") == db_env.get("POSTGRES_USER"), f"{name} and its database disagree on the user"
        assert env.get("POSTGRES_PWD") == db_env.get("POSTGRES_PASSWORD"), (
            f"{name} and its database disagree on the password"
        )
        assert (env.get("DBNAME"), env.get("VISIBILITY_DBNAME")) == (history_db, visibility_db), (
            f"{name}: databases {env.get('DBNAME')!r}, {env.get('VISIBILITY_DBNAME')!r}, not cluster.py's"
        )
        assert str(env.get("ENABLE_ES")).lower() == "false", f"{name}: SQL advanced visibility, not Elasticsearch"
        # The dynamic config file named in the environment is the one mounted from deploy/, cluster.py's.
        config_path = env.get("DYNAMIC_CONFIG_FILE_PATH")
        assert config_path, f"{name}: DYNAMIC_CONFIG_FILE_PATH missing"
        in_container = "/etc/temporal/" + config_path
        for source, target in bind_mounts(svc):
            if in_container.startswith(target.rstrip("/") + "/"):
                config = ROOT / source / in_container[len(target.rstrip("/")) + 1 :]
                assert config.is_file(), f"{config} (DYNAMIC_CONFIG_FILE_PATH) does not exist"
                assert config.resolve() == cluster.DYNAMIC_CONFIG.resolve(), f"{name}: not cluster.py's dynamic config"
                assert isinstance(yaml.safe_load(config.read_text(encoding="utf-8")), dict)
                break
        else:
            raise AssertionError(f"{name}: no bind mount provides {in_container}")
    # The schema job works on the same database server as the same user, and runs before any server service.
    job_env = env_of(services[SCHEMA_JOB])
    assert (job_env.get("SQL_PLUGIN"), job_env.get("SQL_HOST")) == ("postgres12", TEMPORAL_DB_SERVICE)
    assert (job_env.get("SQL_USER"), job_env.get("SQL_PASSWORD")) == (
        db_env.get("POSTGRES_USER"),
        db_env.get("POSTGRES_PASSWORD"),
    ), f"{SCHEMA_JOB} and the database disagree on the user or password"
    assert depends_on(services[SCHEMA_JOB]).get(TEMPORAL_DB_SERVICE, {}).get("condition") == "service_healthy"
    condition = depends_on(services[TEMPORAL_SERVICE]).get(SCHEMA_JOB, {}).get("condition")
    assert condition == "service_completed_successfully", f"{TEMPORAL_SERVICE} must wait for {SCHEMA_JOB} to succeed"


def check_temporal_topology(compose: dict) -> None:
    """The server services are stack/cluster.py's: its version, roles (the internal frontend among them), shard
    count, base config and start order."""
    services = compose["services"]
    servers = server_services(compose)
    assert set(servers) == set(SERVER_SERVICES), (
        f"server services {sorted(servers)}, expected {sorted(SERVER_SERVICES)}"
    )
    version = cluster.SERVER_VERSION.removeprefix("v")
    for name, svc in servers.items():
        env = env_of(svc)
        tag = image_tag(svc)[1]
        assert tag == version, f"{name}: {SERVER_IMAGE}:{tag}, but stack/cluster.py runs {cluster.SERVER_VERSION}"
        roles = [role.strip() for role in re.split(r"[:,]", str(env.get("SERVICES", ""))) if role.strip()]
        assert roles == [SERVER_SERVICES[name]], f"{name}: SERVICES={env.get('SERVICES')!r}, one role, its own"
        shards = int(resolve(env.get("NUM_HISTORY_SHARDS", "4")))  # the template's default is 4
        assert shards == cluster.NUM_HISTORY_SHARDS, (
            f"{name}: NUM_HISTORY_SHARDS={shards}, not cluster.py's {cluster.NUM_HISTORY_SHARDS}; all must agree"
        )
        mounts = read_only_mounts(svc)
        assert (ROOT / mounts.get(SERVER_BASE_TARGET, "-")).resolve() == SERVER_BASE_CONFIG, (
            f"{name}: deploy/temporal/base.yaml must be mounted read-only at {SERVER_BASE_TARGET}"
        )
        assert svc.get("restart") == "unless-stopped", f"{name}: restart: unless-stopped"
        # The template then renders the internal-frontend service, which every service finds through
        # membership, and no publicClient (the server refuses one next to an internal frontend, config.go).
        assert resolve(env.get("USE_INTERNAL_FRONTEND", "")), f"{name}: USE_INTERNAL_FRONTEND must be set"
    # As cluster.py starts them: the frontends one at a time (the first process on new databases writes the
    # cluster's metadata), the namespace and its search attributes, then the rest.
    for earlier, later in itertools.pairwise(FRONTEND_SERVICES):
        condition = depends_on(servers[later]).get(earlier, {}).get("condition")
        assert condition == "service_healthy", f"{later} must start once {earlier} is healthy"
    for name in FRONTEND_SERVICES:
        assert "healthcheck" in servers[name], f"{name} needs a healthcheck"
        condition = depends_on(services[NAMESPACE_JOB]).get(name, {}).get("condition")
        assert condition == "service_healthy", f"{NAMESPACE_JOB} must wait for {name} healthy"
    for name in servers:
        if name not in FRONTEND_SERVICES:
            condition = depends_on(servers[name]).get(NAMESPACE_JOB, {}).get("condition")
            assert condition == "service_completed_successfully", f"{name} must start after {NAMESPACE_JOB}"


def check_temporal_jobs(compose: dict) -> None:
    """The admin-tools jobs: the tag of the server's version, the schema steps of cluster.py, the namespace."""
    services = compose["services"]
    version = cluster.SERVER_VERSION.removeprefix("v")
    for name in (SCHEMA_JOB, NAMESPACE_JOB):
        repository, tag = image_tag(services[name])
        assert repository == ADMIN_TOOLS_IMAGE, f"{name}: {repository}, not {ADMIN_TOOLS_IMAGE}"
        # admin-tools tags are <server>-tctl-<tctl>-cli-<cli>: the server's version first.
        assert tag == version or tag.startswith(f"{version}-"), f"{name}: admin-tools {tag} is not of server {version}"
        assert str(services[name].get("restart")) == "no", f'{name} is one-shot: restart: "no"'
    # Schema: create each database, set up its versioning, update to the image's schema (cluster.py's steps).
    steps = re.findall(r"^\s*temporal-sql-tool --db (\S+) (.+?)\s*$", job_script(services[SCHEMA_JOB]), re.MULTILINE)
    expected = []
    for database, folder in zip(cluster.TEMPORAL_DATABASES, cluster.SCHEMA_FOLDERS, strict=True):
        expected += [
            (database, "create-database"),
            (database, "setup-schema -v 0.0"),
            (database, f"update-schema -d /etc/temporal/schema/postgresql/v12/{folder}/versioned"),
        ]
    assert steps == expected, f"{SCHEMA_JOB} runs {steps}, expected {expected}"
    # Namespace: cluster.py's name and retention, and enrollment/search_attributes.py's attributes and types.
    script = job_script(services[NAMESPACE_JOB])
    namespaces = re.findall(r"--namespace (\S+)", script)
    assert namespaces and set(namespaces) == {cluster.NAMESPACE}, f"{NAMESPACE_JOB}: namespace {namespaces}"
    assert re.search(r"namespace create\b", script) and re.search(r"namespace update\b", script)
    retentions = re.findall(r"--retention (\S+)", script)
    assert len(retentions) == 2, f"{NAMESPACE_JOB}: a retention for create and for update, not {retentions}"
    for retention in retentions:
        assert go_duration(retention) == cluster.RETENTION, (
            f"{NAMESPACE_JOB}: retention {retention}, cluster.py's 30 days"
        )
    creates = [line for line in script.splitlines() if "search-attribute create" in line]
    assert len(creates) == 1, f"{NAMESPACE_JOB}: one search-attribute create, not {len(creates)}"
    # The CLI pairs the i-th --name with the i-th --type.
    names = re.findall(r"--name ([^\s;]+)", creates[0])
    types = re.findall(r"--type ([^\s;]+)", creates[0])
    assert len(names) == len(types), f"{NAMESPACE_JOB}: each --name needs its --type"
    registered = dict(zip(names, types, strict=True))
    wanted = {key.name: attribute_type(key) for key in SEARCH_ATTRIBUTES}
    assert registered == wanted, f"{NAMESPACE_JOB} registers {registered}, enrollment/search_attributes.py has {wanted}"
    address = re.findall(r"--address (\S+)", script)
    assert address == [f"{TEMPORAL_SERVICE}:{TEMPORAL_FRONTEND_PORT}"], f"{NAMESPACE_JOB}: --address {address}"


def check_namespace_job_token(compose: dict) -> None:
    """The namespace job sends the setup client's own token for Temporal, as stack/cluster.py's setup does: from
    the provider's token endpoint (client_credentials for the `temporal` audience) to the CLI's TEMPORAL_API_KEY,
    before each call, with the secret read from the environment and never on a command line."""
    services = compose["services"]
    job = services[NAMESPACE_JOB]
    env, script = env_of(job), job_script(job)
    assert env.get("IDENTITY_CLIENT_ID") == cluster.SETUP_CLIENT, f"{NAMESPACE_JOB}: not {cluster.SETUP_CLIENT}"
    assert env.get("IDENTITY_ISSUER") == compose[ENV_BLOCK]["ENROLL_IDENTITY_ISSUER"], (
        f"{NAMESPACE_JOB}: another identity provider than the services'"
    )
    # The same secret as setup's, which is the same client.
    assert env.get("IDENTITY_CLIENT_SECRET") == env_of(services[SETUP_SERVICE]).get("ENROLL_IDENTITY_CLIENT_SECRET")
    token = re.search(r"^\s*TEMPORAL_API_KEY=\$\((.*)\)(.*)$", script, re.MULTILINE)
    assert token, f"{NAMESPACE_JOB}: gets no token into TEMPORAL_API_KEY"
    request, after = token.groups()
    for part in ('"$IDENTITY_ISSUER/token"', "grant_type=client_credentials", f"audience={TEMPORAL_AUDIENCE}"):
        assert part in request, f"{NAMESPACE_JOB}: the token request lacks {part}"
    assert re.search(r"\bjq -er \.access_token$", request), f"{NAMESPACE_JOB}: the token is the answer's access_token"
    assert "export TEMPORAL_API_KEY" in after, f"{NAMESPACE_JOB}: TEMPORAL_API_KEY is not given to the CLI"
    assert "env.IDENTITY_CLIENT_SECRET" in request, f"{NAMESPACE_JOB}: the secret is not read from the environment"
    assert not re.search(r"\$\{?IDENTITY_CLIENT_SECRET\b", script), (
        f"{NAMESPACE_JOB}: the shell expands the secret, so it lands on a command line"
    )
    # Every try signs in again (a token lasts minutes, the tries up to two each).
    assert re.search(r"^\s*sign_in\(\) \{$", script, re.MULTILINE), f"{NAMESPACE_JOB}: no sign_in function"
    loops = [line.strip() for line in script.splitlines() if line.strip().startswith("until ")]
    assert loops and all(line.startswith("until sign_in && ") for line in loops), (
        f"{NAMESPACE_JOB}: each retried step must sign in first: {loops}"
    )


def check_temporal_tls(compose: dict) -> None:
    """mTLS as cluster.py configures it (tls_config), the server image's variables rendered as its template does."""
    services = compose["services"]
    paths = certificates.layout(Path(SERVER_CERTS))
    expected = cluster.tls_config(paths)
    assert expected["frontend"]["server"]["requireClientAuth"], (
        "stack/cluster.py no longer requires client certificates"
    )
    # The template has no variables for it, and base.yaml none (check_server_base_config): the internal worker
    # reaches the internal frontend with the internode certificate.
    assert "systemWorker" not in expected, "stack/cluster.py gives the internal worker a certificate again"
    for name, svc in server_services(compose).items():
        rendered = template_tls(env_of(svc))
        assert rendered["internode"] == expected["internode"], f"{name}: internode TLS differs from stack/cluster.py"
        mounted = certificate_mounts(svc)
        for key, value in env_of(svc).items():
            path = resolve(value)
            if key.startswith("TEMPORAL_TLS_") and path.startswith("/"):
                assert mounted.get(path) == PurePosixPath(path).name, f"{name}: {key}={path} is not mounted"
    # The frontend requires a client certificate from the cluster CA, as in cluster.py. (frontend.client is not
    # compared: with an internal frontend, every system client of the server uses the internode client instead,
    # resource/fx.go, and nothing reads frontend.client.)
    frontend = template_tls(env_of(services[TEMPORAL_SERVICE]))["frontend"]["server"]
    assert frontend == expected["frontend"]["server"], f"{TEMPORAL_SERVICE}: {frontend}, cluster.py: {expected}"
    # The healthchecks present a certificate the service accepts, from files mounted in it: the operator's to
    # the frontend, the internode one to the internal frontend, each checking the server's own name.
    healthchecks = {
        TEMPORAL_SERVICE: (paths.ca, paths.client("operator"), certificates.FRONTEND_SERVER_NAME),
        INTERNAL_FRONTEND_SERVICE: (paths.internode_ca, paths.internode, certificates.INTERNODE_SERVER_NAME),
    }
    for name, (ca, pair, server_name) in healthchecks.items():
        test = [str(part) for part in services[name].get("healthcheck", {}).get("test", [])]
        flags = ("--tls-ca-path", "--tls-cert-path", "--tls-key-path")
        presented = {flag: flag_value(test, flag) for flag in flags}
        wanted = dict(zip(flags, (str(ca), str(pair.cert), str(pair.key)), strict=True))
        assert presented == wanted, f"{name}: the healthcheck presents {presented}, not {wanted}"
        assert flag_value(test, "--tls-server-name") == server_name, f"{name}: healthcheck's --tls-server-name"
        mounted = certificate_mounts(services[name])
        for path in presented.values():
            assert mounted.get(path) == PurePosixPath(path).name, f"{name}: the healthcheck's {path} is not mounted"
    # The UI is a client with its own certificate, configured as stack/cluster.py configures it.
    ui_env = {key: resolve(value) for key, value in env_of(services[UI_SERVICE]).items()}
    ui_tls = {
        "TEMPORAL_TLS_CA": str(paths.ca),
        "TEMPORAL_TLS_CERT": str(paths.client("ui").cert),
        "TEMPORAL_TLS_KEY": str(paths.client("ui").key),
        "TEMPORAL_TLS_SERVER_NAME": certificates.FRONTEND_SERVER_NAME,
        "TEMPORAL_TLS_ENABLE_HOST_VERIFICATION": "true",
    }
    assert {key: ui_env.get(key) for key in ui_tls} == ui_tls, "temporal-ui: not the UI's mTLS settings"
    mounted = certificate_mounts(services[UI_SERVICE])
    for key in ("TEMPORAL_TLS_CA", "TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY"):
        assert mounted.get(ui_tls[key]) == PurePosixPath(ui_tls[key]).name, f"temporal-ui: {key} not mounted"


def check_server_base_config(base: dict) -> None:
    """deploy/temporal/base.yaml holds what no variable of the template sets, and nothing else: the audience
    stack/cluster.py's frontend requires of a token (no systemWorker TLS: see check_temporal_tls)."""
    assert base == {"global": {"authorization": {"audience": TEMPORAL_AUDIENCE}}}, (
        f"deploy/temporal/base.yaml must hold global.authorization.audience {TEMPORAL_AUDIENCE}, and nothing else"
    )


def check_temporal_authorization(compose: dict) -> None:
    """Every server service checks tokens as stack/cluster.py's (authorization_config): what the image renders
    from its variables over base.yaml, with the keys where the identity provider publishes them."""
    base = yaml.safe_load(SERVER_BASE_CONFIG.read_text(encoding="utf-8"))
    check_server_base_config(base)
    issuer = resolve(compose[ENV_BLOCK]["ENROLL_IDENTITY_ISSUER"])
    # cluster.py reads jwks_uri from the running provider's discovery document; compose cannot, so it names the
    # address the provider publishes for this issuer.
    expected = cluster.authorization_config(published_jwks_uri(issuer))
    assert expected["authorizer"] and expected["claimMapper"], "stack/cluster.py no longer checks tokens"
    expected["permissionsRegex"] = ""  # cluster.py leaves it unset: empty, as the template renders it
    for name, svc in server_services(compose).items():
        env = env_of(svc)
        # The --allow-no-auth flag's variable, for a server that lets every call through (no authorizer).
        assert "TEMPORAL_ALLOW_NO_AUTH" not in env, f"{name}: TEMPORAL_ALLOW_NO_AUTH, and tokens go unchecked"
        rendered = loaded_config(base, {"global": {"authorization": template_authorization(env)}})
        authorization = rendered["global"]["authorization"]
        assert authorization == expected, f"{name}: authorization {authorization}, stack/cluster.py's {expected}"


def check_temporal_clients(compose: dict) -> None:
    """Each project service that connects uses its own profile of deploy/temporal/clients.toml, with its files."""
    profiles = tomllib.loads(CLIENT_PROFILES.read_text(encoding="utf-8"))["profile"]
    connecting = {}
    for name, svc in project_services(compose).items():
        env = env_of(svc)
        if "TEMPORAL_PROFILE" not in env and "TEMPORAL_CONFIG_FILE" not in env:
            continue
        connecting[name] = profile = resolve(env.get("TEMPORAL_PROFILE"))
        config_file = resolve(env.get("TEMPORAL_CONFIG_FILE"))
        source = read_only_mounts(svc).get(config_file)
        assert source and (ROOT / source).resolve() == CLIENT_PROFILES, (
            f"{name}: TEMPORAL_CONFIG_FILE {config_file} must be deploy/temporal/clients.toml, mounted read-only"
        )
        assert profile in profiles, f"{name}: no profile {profile!r} in deploy/temporal/clients.toml"
        mounted = certificate_mounts(svc)
        tls = profiles[profile]["tls"]
        for key in ("client_cert_path", "client_key_path", "server_ca_cert_path"):
            assert mounted.get(tls[key]) == PurePosixPath(tls[key]).name, f"{name}: {tls[key]} is not mounted"
            assert tls[key] in read_only_mounts(svc), f"{name}: {tls[key]} must be mounted read-only"
        host = profiles[profile]["address"].rpartition(":")[0]
        assert host == TEMPORAL_SERVICE, f"profile {profile}: address {profiles[profile]['address']}"
    assert connecting == TEMPORAL_PROFILES, (
        f"services connecting to Temporal {connecting}, expected {TEMPORAL_PROFILES}"
    )
    # Each sends its own token for Temporal: a client of the provider's whose own tokens Temporal accepts, whose
    # secret the service holds (enrollment/client.py; the stand-in's clients as the `standins` profile runs it).
    clients = standin_clients(compose)
    sending = {
        name: resolve(env_of(svc)["ENROLL_TEMPORAL_CLIENT_ID"])
        for name, svc in project_services(compose).items()
        if "ENROLL_TEMPORAL_CLIENT_ID" in env_of(svc)
    }
    assert sending == TEMPORAL_CLIENTS, f"ENROLL_TEMPORAL_CLIENT_ID {sending}, expected {TEMPORAL_CLIENTS}"
    for name, client_id in sending.items():
        client = clients.get(client_id)
        assert client is not None and client.temporal.own, f"{name}: {client_id} gets no own token for Temporal"
        secret = env_of(compose["services"][name]).get("ENROLL_IDENTITY_CLIENT_SECRET")
        assert secret, f"{name}: no secret for {client_id}"


def check_key_files(compose: dict) -> None:
    """Each service has exactly its own private keys mounted, read-only, from what the generator writes."""
    generated = generated_files()
    for name, svc in compose["services"].items():
        mounted = certificate_mounts(svc)
        unknown = set(mounted.values()) - generated
        assert not unknown, f"{name}: {sorted(unknown)} are not files `python -m stack.certificates` writes"
        writable = set(mounted) - set(read_only_mounts(svc))
        assert not writable, f"{name}: certificates must be mounted read-only: {sorted(writable)}"
        keys = {file for file in mounted.values() if file.endswith(".key")}
        assert keys == KEY_FILES.get(name, set()), (
            f"{name}: holds keys {sorted(keys)}, should hold {KEY_FILES.get(name)}"
        )


def check_databases_healthy(compose: dict) -> None:
    for name, svc in compose["services"].items():
        if resolve(svc.get("image", "")).startswith("postgres:"):
            test = " ".join(map(str, svc.get("healthcheck", {}).get("test", [])))
            assert "pg_isready" in test, f"{name}: needs a pg_isready healthcheck"
            assert named_volumes(svc), f"{name}: data must live on a named volume"


def check_database_url(compose: dict) -> None:
    services = compose["services"]
    setup_env = env_of(services[SETUP_SERVICE])
    check_one_database_url(compose, str(setup_env["DATABASE_URL"]), None)
    for name, role in DATABASE_ROLES.items():
        password = setup_env[f"ENROLL_{role.upper()}_DB_PASSWORD"]
        check_one_database_url(compose, str(env_of(services[name])["DATABASE_URL"]), (role, password))


def check_one_database_url(compose: dict, raw: str, service_role: tuple[str, str] | None) -> None:
    """The owner's URL (setup), or a service's, whose user is its login role and whose password setup sets."""
    url = urlsplit(resolve(raw))
    assert url.scheme in ("postgresql", "postgres"), f"DATABASE_URL scheme {url.scheme!r}"
    assert url.hostname == CASESTORE_SERVICE and url.hostname in compose["services"], (
        f"DATABASE_URL host {url.hostname!r}"
    )
    assert (url.port or 5432) == 5432
    db_env = env_of(compose["services"][CASESTORE_SERVICE])
    owner = resolve(db_env["POSTGRES_USER"])
    expected_user = f"enroll_{service_role[0]}_login" if service_role else owner
    assert url.username == expected_user, f"DATABASE_URL user {url.username!r} should be {expected_user!r}"
    assert url.path.lstrip("/") == resolve(db_env.get("POSTGRES_DB", db_env["POSTGRES_USER"])), "DATABASE_URL database"
    userinfo = re.match(r"^[a-z]+://(?:\$\{[^}]*\}|[^:@$])+:((?:\$\{[^}]*\}|[^@$])+)@", raw)
    assert userinfo, f"DATABASE_URL {raw!r} has no user:password@"
    password = userinfo.group(1)
    assert SECRET_REFERENCE.fullmatch(password), f"DATABASE_URL password must be a ${{...}} reference, not {password!r}"
    expected = service_role[1] if service_role else db_env["POSTGRES_PASSWORD"]
    assert password == expected, "DATABASE_URL and the role's creation use different password variables"


def check_standins(compose: dict) -> None:
    services = compose["services"]
    standins = services[STANDINS_SERVICE]
    command = command_of(standins)
    assert command[:4] == ["python", "-m", "standins", "serve"], command
    assert flag_value(command, "--host") == "0.0.0.0", "the stand-ins must listen beyond the container's loopback"
    assert named_volumes(standins), "the stand-ins' data needs a volume"
    data = flag_value(command, "--data")
    assert any(str(v).split(":")[1] == data for v in standins["volumes"]), f"--data {data} is not on a volume"
    assert flag_value(command, "--policies") == resolve(compose[ENV_BLOCK]["ENROLL_POLICIES_DIR"])
    url = urlsplit(resolve(compose[ENV_BLOCK]["ENROLL_STANDINS_URL"]))
    assert url.hostname == STANDINS_SERVICE, f"ENROLL_STANDINS_URL host {url.hostname!r}"
    assert url.port == int(flag_value(command, "--port")), "ENROLL_STANDINS_URL port differs from the stand-ins' --port"
    assert standins.get("profiles") == ["standins"], "the stand-ins run only in the standins profile"
    profiled = {name for name, svc in services.items() if svc.get("profiles")}
    optional = {STANDINS_SERVICE, "identity-provider", *MONITORING_SERVICES}
    assert profiled == optional, f"only the stand-ins and monitoring are optional, not {sorted(profiled - optional)}"
    for name in MONITORING_SERVICES:
        assert services[name]["profiles"] == ["monitoring"], f"{name} runs only in the monitoring profile"


def check_workers_scalable(compose: dict) -> None:
    workers = worker_services(compose)
    assert workers, "no worker services"
    for name, svc in workers.items():
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"
        assert not svc.get("ports"), f"{name}: published ports prevent --scale"
        assert svc.get("restart") == "unless-stopped", f"{name}: restart: unless-stopped"
        grace = re.fullmatch(r"(\d+)s", str(svc.get("stop_grace_period", "")))
        assert grace and int(grace.group(1)) >= 30, f"{name}: stop_grace_period must leave activities time to finish"
    for name, svc in project_services(compose).items():
        assert "container_name" not in svc, f"{name}: no container_name on project services"


def check_ui(compose: dict) -> None:
    ui = compose["services"][UI_SERVICE]
    assert resolve(ui["image"]).startswith("temporalio/ui:")
    env = env_of(ui)
    assert env.get("TEMPORAL_ADDRESS") == f"{TEMPORAL_SERVICE}:{TEMPORAL_FRONTEND_PORT}"
    for key in READ_ONLY_UI:
        variable = "TEMPORAL_" + re.sub(r"(?<!^)([A-Z])", r"_\1", key).upper()
        assert str(env.get(variable)).lower() == "true", f"temporal-ui: {variable} must be true (read-only for ops)"
    assert 8080 in {container_port(p) for p in ui.get("ports", [])}, "the UI must publish its port 8080"


def check_ui_sign_in(compose: dict) -> None:
    """People sign in to the UI as stack/cluster.py's UI (ui_sign_in with its UI client), at the services'
    provider, back at the UI's own address; the stand-in knows that client and its callback, and gives the
    UI tokens for Temporal, which the UI sends (not the ID token, whose audience is the UI's client id)."""
    env = env_of(compose["services"][UI_SERVICE])
    auth = template_ui_auth(env)
    provider = auth["providers"][0]
    assert provider.pop("useIdTokenAsBearer") is False, f"{UI_SERVICE}: must send the access token"
    issuer = resolve(compose[ENV_BLOCK]["ENROLL_IDENTITY_ISSUER"])
    ui_url = resolve(env.get("TEMPORAL_CORS_ORIGINS", ""))
    assert SECRET_REFERENCE.fullmatch(str(env.get("TEMPORAL_AUTH_CLIENT_SECRET"))), f"{UI_SERVICE}: client secret"
    expected = ui_sign_in(issuer, cluster.UI_CLIENT, provider["clientSecret"], ui_url)
    assert auth == expected, f"{UI_SERVICE}: sign-in {auth}, stack/cluster.py's {expected}"
    client = standin_clients(compose)[cluster.UI_CLIENT]
    assert client.audience == TEMPORAL_AUDIENCE and client.temporal.people, f"{cluster.UI_CLIENT}: no Temporal tokens"
    # The UI server sends no PKCE challenge; its secret and the ID token's nonce bind the code to it.
    assert not client.require_pkce, f"{cluster.UI_CLIENT}: the stand-in requires PKCE, which the UI server never sends"
    assert identity_provider_app._registered(provider["callbackUrl"], client.redirect_uris), (
        f"{cluster.UI_CLIENT}: the stand-in does not accept the callback {provider['callbackUrl']}"
    )


def check_volumes(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        undeclared = named_volumes(svc) - declared
        assert not undeclared, f"{name}: volumes not declared at the top level: {sorted(undeclared)}"
        for source, target in bind_mounts(svc):
            if target in certificate_mounts(svc):
                continue  # generated by `python -m stack.certificates`, never in the repository (check_key_files)
            assert (ROOT / source).exists(), f"{name}: bind-mount source {source} does not exist"


def check_dependencies(compose: dict) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for target, spec in depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if services[target].get("profiles") and not svc.get("profiles"):
                assert spec.get("required") is False, f"{name} depends on {target}, which runs only in a profile"
            if str(services[target].get("restart")) == "no":  # a one-shot job: its success, not its start
                assert spec.get("condition") == "service_completed_successfully", (
                    f"{name}: wait for {target} to succeed"
                )
    for name in worker_services(compose):
        assert SETUP_SERVICE in depends_on(services[name]), f"{name} must start after setup"
    setup = services[SETUP_SERVICE]
    assert command_of(setup) == ["enroll", "setup"], "setup runs `enroll setup`"
    assert str(setup.get("restart")) == "no", 'setup is one-shot: restart: "no"'
    setup_deps = depends_on(setup)
    for target in (TEMPORAL_SERVICE, CASESTORE_SERVICE):
        assert setup_deps.get(target, {}).get("condition") == "service_healthy", f"setup must wait for {target} healthy"
    assert NAMESPACE_JOB in setup_deps, f"setup must wait for {NAMESPACE_JOB}: the namespace it works on"


# Compose checks `:?` variables even for services whose profile is off, so an optional profile's
# secret may be an empty-default reference, never a literal.
OPTIONAL_SECRET_REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*:-\}")


def mounted_key_file(compose: dict, where: str, name: str, value) -> bool:
    """Whether `value` is where a key file is mounted (read-only, from the certificates) in every service
    carrying it: a path, and the secret in the file, not in the environment."""
    if where.startswith("services."):
        carriers = [compose["services"][where.split(".", 1)[1]]]
    else:
        carriers = [svc for svc in compose["services"].values() if env_of(svc).get(name) == value]
    path = resolve(value)
    return bool(carriers) and all(path in certificate_mounts(svc) and path in read_only_mounts(svc) for svc in carriers)


def check_no_literal_secrets(compose: dict) -> None:
    for where, name, value in walk_environments(compose):
        if SECRET_NAME.search(name):
            service = where.split(".")[1] if where.startswith("services.") else None
            optional = service in MONITORING_SERVICES and OPTIONAL_SECRET_REFERENCE.fullmatch(str(value))
            key_file = value is not None and mounted_key_file(compose, where, name, value)
            assert value is not None and (SECRET_REFERENCE.fullmatch(str(value)) or optional or key_file), (
                f"{where}.{name}: secrets must be a required ${{...}} reference (no literal, no default)"
                " or the path of a key file mounted read-only from the certificates"
            )


def check_dockerfile(text: str) -> None:
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line.split()[1] for line in instructions if line.upper().startswith("FROM ")]
    assert froms and froms[-1].startswith("python:3.11"), f"the image must be based on python:3.11, not {froms}"
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root USER"
    joined = re.sub(r"\\\n\s*", " ", text)
    assert re.search(r"pip install[^\n]*\s\.(\s|$)", joined), "the image must install the project (pip install .)"
    assert not re.search(r"pip install[^\n]*\.\[", joined), "no extras (test/dev) in the image"
    assert "PYTHONUNBUFFERED=1" in joined
    cmd = [line for line in instructions if line.upper().startswith("CMD ")]
    assert cmd and "workers" in cmd[-1], "default CMD: python -m workers"


def check_build_context() -> None:
    """What the image needs is not ignored; what must not go in is."""
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [*installed_packages(), "pyproject.toml", "README.md", "policies"]
    for path in needed:
        assert (ROOT / path).exists(), f"{path} is missing from the repository"
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f"{path} is excluded from the image"
    assert ".env" in ignored, "the build context must exclude .env"


def check_package_data() -> None:
    """Non-Python files inside the packages are declared, since the image installs with `pip install .`."""
    declared = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    for package in installed_packages():
        for path in (ROOT / package).rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".py", ".pyc"):
                continue
            relative = path.relative_to(ROOT).as_posix()
            covered = False
            for key, patterns in declared.items():
                base = "" if key in ("", "*") else key.replace(".", "/") + "/"
                if relative.startswith(base):
                    rest = relative[len(base) :]
                    covered |= any(fnmatch.fnmatch(rest, p) or fnmatch.fnmatch(path.name, p) for p in patterns)
            assert covered, (
                f"{relative} would be missing from the installed package: add it to [tool.setuptools.package-data]"
            )


# --- tests on the real files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


COMPOSE_CHECKS = [
    check_services_exist,
    check_images_pinned,
    check_settings_block,
    check_least_privilege,
    check_worker_roles,
    check_temporal_address,
    check_temporal_persistence,
    check_temporal_topology,
    check_temporal_jobs,
    check_namespace_job_token,
    check_temporal_tls,
    check_temporal_authorization,
    check_temporal_clients,
    check_key_files,
    check_databases_healthy,
    check_database_url,
    check_standins,
    check_workers_scalable,
    check_ui,
    check_ui_sign_in,
    check_volumes,
    check_dependencies,
    check_no_literal_secrets,
]


@pytest.mark.parametrize("check", COMPOSE_CHECKS, ids=lambda check: check.__name__)
def test_compose(compose: dict, check: Callable[[dict], None]) -> None:
    check(compose)


def test_dockerfile() -> None:
    check_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_build_context() -> None:
    check_build_context()


def test_package_data() -> None:
    check_package_data()


def test_settings_scan_finds_what_the_code_reads() -> None:
    read = settings_read_by_code()
    # The scan works (these have long been read through _env and os.environ.get) ...
    assert {"TEMPORAL_ADDRESS", "ENROLL_STANDINS_URL", "ENROLL_LOG_FORMAT"} <= read
    # ... and the exclusions are still read somewhere; otherwise drop them from the list.
    assert set(NOT_DEPLOYMENT_SETTINGS) <= read


def test_the_deploy_readme_says_who_holds_what() -> None:
    text = DEPLOY_README.read_text(encoding="utf-8")
    section = text.split("## Who holds what", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[0].strip("`") in HOLDS:
            table[cells[0].strip("`")] = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[1]))
    assert table == HOLDS


def test_settings_given_only_by_an_override_are_read_and_documented() -> None:
    assert set(OVERRIDE_ONLY_SETTINGS) <= settings_read_by_code()
    text = DEPLOY_README.read_text(encoding="utf-8")
    section = text.split("## Calls to the departments and the platform", 1)[1].split("\n## ", 1)[0]
    undocumented = {name for name in OVERRIDE_ONLY_SETTINGS if f"`{name}`" not in section}
    assert not undocumented, f"deploy/README.md does not say how to give {sorted(undocumented)}"


def test_env_example_documents_the_secrets(compose: dict) -> None:
    required: set[str] = set()
    for _, _, value in walk_environments(compose):
        required.update(name for name, op, _ in INTERPOLATION.findall(str(value)) if op in (":?", "?"))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE))
    assert required and required <= documented, f"deploy/.env.example lacks {sorted(required - documented)}"


def test_compose_client_profiles_are_the_clusters() -> None:
    """deploy/temporal/clients.toml is what stack/cluster.py writes for these certificates at the compose address."""
    wanted = certificates.layout(Path(CLIENT_CERTS), sorted(set(TEMPORAL_PROFILES.values())))
    address = f"{TEMPORAL_SERVICE}:{TEMPORAL_FRONTEND_PORT}"
    expected = tomllib.loads(cluster.client_profiles(address, cluster.NAMESPACE, wanted))
    assert tomllib.loads(CLIENT_PROFILES.read_text(encoding="utf-8")) == expected


def test_server_environment_is_the_images(compose: dict) -> None:
    """Every variable given to a server service is one the image's config template reads (SERVICES: its start
    script), and the schema job's are temporal-sql-tool's, in the server's Go module of cluster.py's version."""
    module = server_module()
    template = (module / "docker" / "config_template.yaml").read_text(encoding="utf-8")
    for name, svc in server_services(compose).items():
        # SERVICES is read by the image's start script (one --service flag per role), not the template.
        unknown = {key for key in env_of(svc) if f".Env.{key} " not in template} - {"SERVICES"}
        assert not unknown, f"{name}: {sorted(unknown)} are not read by docker/config_template.yaml"
    # What the checks assume of the template: USE_INTERNAL_FRONTEND renders the internal-frontend service and no
    # publicClient (check_temporal_topology), and its authorization has no audience, which base.yaml therefore
    # sets (check_temporal_authorization; template_authorization renders the rest).
    internal_frontend = r"\{\{- if \.Env\.USE_INTERNAL_FRONTEND \}\}\s*\n\s*internal-frontend:"
    assert re.search(internal_frontend, template), "USE_INTERNAL_FRONTEND no longer renders the internal frontend"
    no_public_client = r"\{\{- if or \(\.Env\.USE_INTERNAL_FRONTEND\)[^\n]*\}\}\s*\n[^\n]*publicClient is not needed"
    assert re.search(no_public_client, template), "USE_INTERNAL_FRONTEND no longer drops the publicClient"
    authorization = template.split("\n    authorization:\n", 1)[1].split("\n\n", 1)[0]
    assert "audience" not in authorization.lower(), "the template sets the audience now: drop it from base.yaml"
    for variable in (
        "TEMPORAL_JWT_KEY_SOURCE1",
        "TEMPORAL_JWT_KEY_REFRESH",
        "TEMPORAL_JWT_PERMISSIONS_CLAIM",
        "TEMPORAL_AUTH_AUTHORIZER",
        "TEMPORAL_AUTH_CLAIM_MAPPER",
    ):
        assert f".Env.{variable} " in authorization, f"{variable} is no longer the template's authorization"
    sql_tool = (module / "tools" / "sql" / "main.go").read_text(encoding="utf-8")
    unknown = {key for key in env_of(compose["services"][SCHEMA_JOB]) if f'EnvVar: "{key}"' not in sql_tool}
    assert not unknown, f"{SCHEMA_JOB}: {sorted(unknown)} are not temporal-sql-tool settings"
    for folder in cluster.SCHEMA_FOLDERS:
        assert (module / "schema" / "postgresql" / "v12" / folder / "versioned").is_dir()


def test_ui_environment_is_the_images(compose: dict) -> None:
    """Every variable given to the UI is one ui-server's config/docker.yaml reads (of the version
    scripts/install-temporal-cli downloads, which may be older than compose's UI image)."""
    cache = server_module().parents[1]  # the Go module cache
    modules = sorted(cache.glob("github.com/temporalio/ui-server/v2@*/config/docker.yaml"))
    if not modules:
        pytest.skip("the ui-server module is not downloaded (scripts/install-temporal-cli)")
    template = modules[-1].read_text(encoding="utf-8")
    unknown = {key for key in env_of(compose["services"][UI_SERVICE]) if f'env "{key}"' not in template}
    assert not unknown, f"{UI_SERVICE}: {sorted(unknown)} are not read by ui-server's config/docker.yaml"


def test_certificates_are_never_committed_or_built_into_the_image() -> None:
    for ignore_file in (ROOT / ".gitignore", DOCKERIGNORE):
        patterns = [line.strip().strip("/") for line in ignore_file.read_text(encoding="utf-8").splitlines()]
        covered = any(pattern and (CERT_FOLDER + "/").startswith(pattern + "/") for pattern in patterns)
        assert covered, f"{ignore_file.name} does not exclude {CERT_FOLDER}"


def test_the_certificate_command_writes_what_compose_mounts(compose: dict, tmp_path: Path) -> None:
    folder = tmp_path / "temporal-certs"
    assert certificates.main([str(folder)]) == 0
    mounted = {file for svc in compose["services"].values() for file in certificate_mounts(svc).values()}
    missing = {file for file in mounted if not (folder / file).is_file()}
    assert not missing, f"`python -m stack.certificates` does not write {sorted(missing)}"
    before = (folder / "ca.pem").read_bytes()
    assert certificates.main([str(folder)]) == 0
    assert (folder / "ca.pem").read_bytes() == before, "a second run must keep the set"


def test_the_deploy_readme_says_which_keys_each_service_holds() -> None:
    text = DEPLOY_README.read_text(encoding="utf-8")
    section = text.split("## Who holds what", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            for name in re.findall(r"`([a-z-]+)`", cells[0]):  # a row may name several services
                table[name] = set(re.findall(r"`([a-z-]+\.key)`", cells[1]))
    assert {name: table.get(name) for name in KEY_FILES} == KEY_FILES
    assert all(not keys for name, keys in table.items() if name not in KEY_FILES)


# --- the checks catch what they guard --------------------------------------------------------------


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


def _edit(path: str, change: Callable) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = change(node[last])

    return mutate


def _script(service: str, old: str, new: str) -> Callable[[dict], None]:
    """Replace `old` in a one-shot job's script (it must be there)."""

    def change(command: list[str]) -> list[str]:
        assert any(old in part for part in command), f"{old!r} not in {service}'s command"
        return [part.replace(old, new) for part in command]

    return _edit(f"services/{service}/command", change)


_DELETE = object()
MUTATIONS = [
    (
        "lookup key in the shared block",
        _set(f"{ENV_BLOCK}/ENROLL_LOOKUP_KEY", "${ENROLL_LOOKUP_KEY:?x}"),
        check_settings_block,
    ),
    (
        "payload keys for the setup job",
        _set("services/setup/environment/ENROLL_PAYLOAD_KEYS", "${K:?x}"),
        check_least_privilege,
    ),
    (
        "database for the verifiers",
        _set("services/verification-worker/environment/DATABASE_URL", "${U:?x}"),
        check_least_privilege,
    ),
    (
        "client secret for the stand-ins",
        _set("services/standins/environment", {"ENROLL_IDENTITY_CLIENT_SECRET": "${S:?x}"}),
        check_least_privilege,
    ),
    (
        "no client secret for the verifiers",
        _set("services/verification-worker/environment/ENROLL_IDENTITY_CLIENT_SECRET", _DELETE),
        check_least_privilege,
    ),
    ("ui writable", _set("services/temporal-ui/environment/TEMPORAL_WORKFLOW_SIGNAL_DISABLED", "false"), check_ui),
    ("routing phase dropped", _set(f"{ENV_BLOCK}/ENROLL_ROUTING_PHASE", _DELETE), check_settings_block),
    ("department url default", _set(f"{ENV_BLOCK}/ENROLL_PLATFORM_URL", "http://x"), check_settings_block),
    (
        "worker without settings",
        _set("services/case-worker/environment", {"TEMPORAL_ADDRESS": "temporal:7233"}),
        check_settings_block,
    ),
    ("verification worker gone", _set("services/verification-worker", _DELETE), check_worker_roles),
    (
        "unknown role",
        _set("services/case-worker/command", ["python", "-m", "workers", "--role", "cases"]),
        check_worker_roles,
    ),
    ("wrong temporal port", _set(f"{ENV_BLOCK}/TEMPORAL_ADDRESS", "temporal:7234"), check_temporal_address),
    ("wrong temporal host", _set(f"{ENV_BLOCK}/TEMPORAL_ADDRESS", "localhost:7233"), check_temporal_address),
    (
        "temporal on another db",
        _set("services/temporal-history/environment/POSTGRES_SEEDS", "casestore-db"),
        check_temporal_persistence,
    ),
    (
        "dynamic config missing",
        _set("services/temporal-frontend/environment/DYNAMIC_CONFIG_FILE_PATH", "config/dynamicconfig/nope.yaml"),
        check_temporal_persistence,
    ),
    (
        "database url host",
        _set(
            "services/setup/environment/DATABASE_URL",
            "postgresql://enrollment:${CASESTORE_DB_PASSWORD:?x}@postgresql:5432/enrollment",
        ),
        check_database_url,
    ),
    (
        "database url literal password",
        _set("services/setup/environment/DATABASE_URL", "postgresql://enrollment:hunter2@casestore-db:5432/enrollment"),
        check_database_url,
    ),
    (
        "console as the owner",
        _set(
            "services/console/environment/DATABASE_URL",
            "postgresql://enrollment:${CASESTORE_DB_PASSWORD:?x}@casestore-db:5432/enrollment",
        ),
        check_database_url,
    ),
    ("standins port", _set(f"{ENV_BLOCK}/ENROLL_STANDINS_URL", "http://standins:8701"), check_standins),
    ("standins not optional", _set("services/standins/profiles", _DELETE), check_standins),
    ("container name", _set("services/verification-worker/container_name", "verifier"), check_workers_scalable),
    ("worker port", _set("services/case-worker/ports", ["9000:9000"]), check_workers_scalable),
    ("ui without port", _set("services/temporal-ui/ports", _DELETE), check_ui),
    ("undeclared volume", _set("volumes/standins-data", _DELETE), check_volumes),
    (
        "setup merely started",
        _set("services/case-worker/depends_on/setup/condition", "service_started"),
        check_dependencies,
    ),
    (
        "unknown dependency",
        _set("services/setup/depends_on/temporal-server", {"condition": "service_healthy"}),
        check_dependencies,
    ),
    (
        "literal db password",
        _set("services/casestore-db/environment/POSTGRES_PASSWORD", "secret"),
        check_no_literal_secrets,
    ),
    (
        "defaulted lookup key",
        _set("services/api/environment/ENROLL_LOOKUP_KEY", "${ENROLL_LOOKUP_KEY:-dev}"),
        check_no_literal_secrets,
    ),
    ("latest image", _set("services/temporal-ui/image", "temporalio/ui:latest"), check_images_pinned),
    ("untagged image", _set("services/postgresql/image", "postgres"), check_images_pinned),
    (
        "other dockerfile",
        _set("services/standins/build", {"context": ".", "dockerfile": "Dockerfile"}),
        check_images_pinned,
    ),
    ("no pg_isready", _set("services/casestore-db/healthcheck", _DELETE), check_databases_healthy),
    ("server version", _set("services/temporal-matching/image", "temporalio/server:1.29.0"), check_temporal_topology),
    ("shards differ", _set("services/temporal-history/environment/NUM_HISTORY_SHARDS", "4"), check_temporal_topology),
    ("two frontends", _set("services/temporal-worker/environment/SERVICES", "frontend"), check_temporal_topology),
    (
        "all roles in one",
        _set("services/temporal-frontend/environment/SERVICES", "frontend,history"),
        check_temporal_topology,
    ),
    ("no base config", _edit("services/temporal-frontend/volumes", lambda v: v[2:]), check_temporal_topology),
    (
        "history before the namespace",
        _set("services/temporal-history/depends_on", {"temporal-frontend": {"condition": "service_healthy"}}),
        check_temporal_topology,
    ),
    (
        "elasticsearch visibility",
        _set("services/temporal-matching/environment/ENABLE_ES", "true"),
        check_temporal_persistence,
    ),
    (
        "another database",
        _set("services/temporal-worker/environment/VISIBILITY_DBNAME", "visibility"),
        check_temporal_persistence,
    ),
    (
        "schema job merely started",
        _set("services/temporal-frontend/depends_on/temporal-schema/condition", "service_started"),
        check_temporal_persistence,
    ),
    (
        "admin tools of another server",
        _set("services/temporal-schema/image", "temporalio/admin-tools:1.28.1-tctl-1.18.4-cli-1.5.0"),
        check_temporal_jobs,
    ),
    (
        "no visibility schema",
        _script("temporal-schema", "v12/visibility/versioned", "v12/temporal/versioned"),
        check_temporal_jobs,
    ),
    (
        "schema not created",
        _script("temporal-schema", "--db temporal create-database", "--db temporal"),
        check_temporal_jobs,
    ),
    (
        "retention",
        _script("temporal-namespace", "${TEMPORAL_RETENTION:-720h}", "${TEMPORAL_RETENTION:-168h}"),
        check_temporal_jobs,
    ),
    (
        "attribute type",
        _script("temporal-namespace", "--name SchoolYear --type Int", "--name SchoolYear --type Keyword"),
        check_temporal_jobs,
    ),
    (
        "attribute missing",
        _script("temporal-namespace", "--name IntakeChannel --type Keyword ", ""),
        check_temporal_jobs,
    ),
    (
        "attribute unpaired",
        _script("temporal-namespace", "--name DistrictCode --type Keyword", "--name DistrictCode"),
        check_temporal_jobs,
    ),
    ("other namespace", _script("temporal-namespace", "${TEMPORAL_NAMESPACE:-default}", "cases"), check_temporal_jobs),
    (
        "frontend without client certificates",
        _set("services/temporal-frontend/environment/TEMPORAL_TLS_REQUIRE_CLIENT_AUTH", "false"),
        check_temporal_tls,
    ),
    (
        "frontend trusts the internode CA",
        _set(
            "services/temporal-frontend/environment/TEMPORAL_TLS_CLIENT1_CA_CERT",
            "/etc/temporal/certs/internode-ca.pem",
        ),
        check_temporal_tls,
    ),
    (
        "internode without its CA",
        _set("services/temporal-history/environment/TEMPORAL_TLS_SERVER_CA_CERT", "/etc/temporal/certs/ca.pem"),
        check_temporal_tls,
    ),
    (
        "ui without its certificate",
        _set("services/temporal-ui/environment/TEMPORAL_TLS_CERT", _DELETE),
        check_temporal_tls,
    ),
    (
        "frontend key not mounted",
        _edit("services/temporal-frontend/volumes", lambda v: [m for m in v if "frontend.key" not in m]),
        check_temporal_tls,
    ),
    ("workers as the api", _set("services/case-worker/environment/TEMPORAL_PROFILE", "api"), check_temporal_clients),
    (
        "codec server connects",
        _set("services/codec-server/environment/TEMPORAL_PROFILE", "workers"),
        check_temporal_clients,
    ),
    (
        "console key elsewhere",
        _edit(
            "services/console/volumes", lambda v: [m.replace("/run/temporal/certs/client-console.key", "/k") for m in v]
        ),
        check_temporal_clients,
    ),
    (
        "api holds the workers' key",
        _edit("services/api/volumes", lambda v: [*v, "./deploy/secrets/temporal-certs/client-workers.key:/w.key:ro"]),
        check_key_files,
    ),
    (
        "a CA key mounted",
        _edit("services/temporal-ui/volumes", lambda v: [*v, "./deploy/secrets/temporal-certs/ca.key:/ca.key:ro"]),
        check_key_files,
    ),
    (
        "certificate writable",
        _edit("services/setup/volumes", lambda v: [m.removesuffix(":ro") for m in v]),
        check_key_files,
    ),
    (
        "key path not mounted",
        _set("services/temporal-ui/environment/TEMPORAL_TLS_KEY", "/elsewhere/ui.key"),
        check_no_literal_secrets,
    ),
    (
        "setup before the namespace",
        _set("services/setup/depends_on/temporal-namespace/condition", "service_started"),
        check_dependencies,
    ),
    ("no internal frontend", _set("services/temporal-internal-frontend", _DELETE), check_temporal_topology),
    (
        "internal frontend unknown to history",
        _set("services/temporal-history/environment/USE_INTERNAL_FRONTEND", _DELETE),
        check_temporal_topology,
    ),
    (
        "frontends at once",
        _set(
            "services/temporal-internal-frontend/depends_on",
            {"temporal-schema": {"condition": "service_completed_successfully"}},
        ),
        check_temporal_topology,
    ),
    (
        "namespace before the internal frontend",
        _set("services/temporal-namespace/depends_on/temporal-internal-frontend", _DELETE),
        check_temporal_topology,
    ),
    (
        "internal frontend without a healthcheck",
        _set("services/temporal-internal-frontend/healthcheck", _DELETE),
        check_temporal_topology,
    ),
    (
        "healthcheck with the internal worker's old certificate",
        _edit(
            "services/temporal-frontend/healthcheck/test",
            lambda test: [part.replace("client-operator", "client-system-worker") for part in test],
        ),
        check_temporal_tls,
    ),
    (
        "internal frontend checked as the public one",
        _edit(
            "services/temporal-internal-frontend/healthcheck/test",
            lambda test: [part.replace("internode.temporal", "localhost") for part in test],
        ),
        check_temporal_tls,
    ),
    (
        "system worker certificate back",
        _edit(
            "services/temporal-worker/volumes",
            lambda v: [*v, "./deploy/secrets/temporal-certs/client-system-worker.key:/etc/temporal/certs/sw.key:ro"],
        ),
        check_key_files,
    ),
    (
        "no authorizer",
        _set("services/temporal-matching/environment/TEMPORAL_AUTH_AUTHORIZER", ""),
        check_temporal_authorization,
    ),
    (
        "no claim mapper",
        _set("services/temporal-frontend/environment/TEMPORAL_AUTH_CLAIM_MAPPER", _DELETE),
        check_temporal_authorization,
    ),
    (
        "keys from elsewhere",
        _set("services/temporal-frontend/environment/TEMPORAL_JWT_KEY_SOURCE1", "http://elsewhere.example/jwks"),
        check_temporal_authorization,
    ),
    (
        "permissions in another claim",
        _set("services/temporal-frontend/environment/TEMPORAL_JWT_PERMISSIONS_CLAIM", "roles"),
        check_temporal_authorization,
    ),
    (
        "keys refreshed hourly",
        _set("services/temporal-frontend/environment/TEMPORAL_JWT_KEY_REFRESH", "1h"),
        check_temporal_authorization,
    ),
    (
        "allow no auth",
        _set("services/temporal-frontend/environment/TEMPORAL_ALLOW_NO_AUTH", "true"),
        check_temporal_authorization,
    ),
    (
        "namespace job without a token",
        _script("temporal-namespace", "&& export TEMPORAL_API_KEY", ""),
        check_namespace_job_token,
    ),
    (
        "namespace job signs in as the workers",
        _set("services/temporal-namespace/environment/IDENTITY_CLIENT_ID", "enroll-workers"),
        check_namespace_job_token,
    ),
    (
        "namespace job with a token for the product",
        _script("temporal-namespace", "audience=temporal", "audience=enrollment"),
        check_namespace_job_token,
    ),
    (
        "secret on a command line",
        _script("temporal-namespace", "env.IDENTITY_CLIENT_SECRET", '"$$IDENTITY_CLIENT_SECRET"'),
        check_namespace_job_token,
    ),
    (
        "a try without signing in",
        _script("temporal-namespace", "until sign_in && temporal", "until temporal"),
        check_namespace_job_token,
    ),
    (
        "workers without their client",
        _set("services/verification-worker/environment/ENROLL_TEMPORAL_CLIENT_ID", _DELETE),
        check_temporal_clients,
    ),
    (
        "api as the workers' client",
        _set("services/api/environment/ENROLL_TEMPORAL_CLIENT_ID", "enroll-workers"),
        check_temporal_clients,
    ),
    (
        "stand-in with other clients",
        _edit("services/identity-provider/command", lambda command: [*command, "--clients", "/data/identity/c.json"]),
        check_temporal_clients,
    ),
    ("ui without sign-in", _set("services/temporal-ui/environment/TEMPORAL_AUTH_ENABLED", "false"), check_ui_sign_in),
    (
        "ui signs in as the console",
        _set("services/temporal-ui/environment/TEMPORAL_AUTH_CLIENT_ID", "enroll-console"),
        check_ui_sign_in,
    ),
    (
        "ui callback elsewhere",
        _set("services/temporal-ui/environment/TEMPORAL_AUTH_CALLBACK_URL", "http://localhost:8080/callback"),
        check_ui_sign_in,
    ),
    (
        "ui sends the id token",
        _set("services/temporal-ui/environment/TEMPORAL_AUTH_USE_ID_TOKEN_AS_BEARER", "true"),
        check_ui_sign_in,
    ),
    (
        "ui at another provider",
        _set("services/temporal-ui/environment/TEMPORAL_AUTH_ISSUER_URL", "https://elsewhere.example"),
        check_ui_sign_in,
    ),
]


@pytest.mark.parametrize(("mutate", "check"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_check_catches(compose: dict, mutate: Callable[[dict], None], check: Callable[[dict], None]) -> None:
    broken = copy.deepcopy(compose)  # keeps the anchors shared, as an edit of the file would
    mutate(broken)
    with pytest.raises(AssertionError):
        check(broken)


@pytest.mark.parametrize(
    "base",
    [
        {"global": {"authorization": {"audience": "enrollment"}}},
        {"global": {"authorization": {}}},
        {
            "global": {
                "authorization": {"audience": TEMPORAL_AUDIENCE},
                "tls": {"systemWorker": {"certFile": "/etc/temporal/certs/client-system-worker.pem"}},
            }
        },
    ],
    ids=["another audience", "no audience", "system worker certificate"],
)
def test_base_config_check_catches(base: dict) -> None:
    with pytest.raises(AssertionError):
        check_server_base_config(base)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("USER enroll", "USER root"),
        ("FROM python:3.11-slim", "FROM python:3.12-slim"),
        ("pip install --no-deps .", "pip install --no-deps .[test]"),
    ],
)
def test_dockerfile_check_catches(old: str, new: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(AssertionError):
        check_dockerfile(text.replace(old, new))


def test_prometheus_scrapes_every_worker_role_on_the_metrics_port(compose: dict) -> None:
    """The scrape targets follow the worker services and the port in ENROLL_METRICS_ADDRESS."""
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    port = int(resolve(compose[ENV_BLOCK]["ENROLL_METRICS_ADDRESS"]).rsplit(":", 1)[1])
    targets = {
        (name, sd["port"]) for job in scrape["scrape_configs"] for sd in job["dns_sd_configs"] for name in sd["names"]
    }
    assert targets == {("case-worker", port), ("verification-worker", port)}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "enrollment.json").read_text())
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for name in (
        "enrollment_cases",
        "enrollment_review_backlog_oldest_seconds",
        "enrollment_verifier_outcomes_total",
        "enrollment_department_call_seconds_bucket",
        "enrollment_case_transitions_total",
    ):
        assert name in expressions, f"the dashboard does not chart {name}"


def test_every_verifier_queue_has_one_partition_so_its_rate_limit_holds_each_second():
    from enrollment.verifiers import REGISTRY

    config = yaml.safe_load((ROOT / "deploy" / "temporal" / "dynamicconfig.yaml").read_text(encoding="utf-8"))
    queues = {spec.task_queue for spec in REGISTRY.values()}
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        single = {entry["constraints"]["taskQueueName"] for entry in config.get(key, []) if entry["value"] == 1}
        assert queues <= single, f"{key}: {sorted(queues - single)} not limited to one partition"
