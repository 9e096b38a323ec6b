"""The production topology on one machine: Temporal's services as separate processes on PostgreSQL, behind
mTLS and the identity provider's tokens.

The dev server (stack/temporal_server.py) is one process on SQLite; production runs frontend, internal
frontend, history, matching and the internal worker as separate processes (each can be scaled and
restarted alone) on PostgreSQL with SQL advanced visibility. Two locks on the frontend: a client must hold
a certificate the deployment issued (stack/certificates.py), and every call must carry a token the identity
provider signed for Temporal, whose `permissions` claim allows it (the server's JWT claim mapper and default
authorizer; `authorization_config`). `start_cluster` builds exactly that in a state folder, so the demo
(`scripts/demo --cluster`) and tests/test_cluster.py run the product on it and kill its parts.

`scripts/install-temporal-server` builds the server and the schema tool into `.tools/bin` and installs
PostgreSQL 15. Clients connect through the SDK's environment configuration: the TOML file at
`Cluster.client_profile` has one profile per certificate, chosen with TEMPORAL_CONFIG_FILE and
TEMPORAL_PROFILE (enrollment/client.py, the `temporal` CLI and the UI server all read it or its files).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from psycopg import sql
from temporalio.client import Client

from enrollment.oidc import TEMPORAL_AUDIENCE
from enrollment.temporal_tokens import TemporalCredentials
from stack.certificates import FRONTEND_SERVER_NAME, INTERNODE_SERVER_NAME, ClusterCertificates, ensure_certificates
from stack.temporal_server import ROOT, free_port, start_ui, ui_sign_in

SERVER_VERSION = "v1.29.1"
# Start order: the two frontends first, so the namespace and search attributes exist before history loads
# its caches (they refresh only every minute; a case upserting an attribute history does not know yet would
# fail its workflow task until then). The internal frontend serves the server's own calls (the frontend's
# operator API reaches it to read a namespace, and Temporal's internal worker, which holds no token, reaches
# Temporal through it), on internode TLS and without the authorizer (the server's config.go, PublicClient).
SERVICES = ("frontend", "internal-frontend", "history", "matching", "worker")
FRONTENDS = SERVICES[:2]
# The number of history shards is fixed when the cluster's database is created and can never change.
# A season is 1.8 million applications, most in the first week: ~150k new cases a day, ~20 a second
# at the peak hour, each dozens of history writes (four verifications, reviews, timers, the platform),
# and every case stays open for weeks. A shard serialises its writes (one database round trip each),
# so a few hundred writes a second need tens of busy shards; 512 leaves room to spread history over
# many hosts later and keeps ~3,500 open cases per shard, while each shard's queue readers polling
# PostgreSQL stay affordable (thousands would load the database with idle polls).
NUM_HISTORY_SHARDS = 512
NAMESPACE = "default"
RETENTION = timedelta(days=30)  # the compose deployment's 720h
DYNAMIC_CONFIG = ROOT / "deploy" / "temporal" / "dynamicconfig.yaml"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15
# The OS user PostgreSQL runs as when this process is root (initdb and postgres refuse root).
POSTGRES_OS_USER = "postgres"
TEMPORAL_DATABASES = ("temporal", "temporal_visibility")
# The provider's client whose own token the cluster's setup (namespace, search attributes), the tests and the
# bench driver send: `temporal-system:admin` (standins/identity_provider/clients.json).
SETUP_CLIENT = "enroll-setup"
# The provider's client that signs people in to the Temporal UI (ops alone, read only).
UI_CLIENT = "temporal-ui"
# Their schemas in the server's module (schema/postgresql/v12/<folder>/versioned), in the same order.
SCHEMA_FOLDERS = ("temporal", "visibility")
STORE_DATABASE = "enrollment"
STORE_OWNER = "enroll"


def find_binary(name: str) -> Path:
    candidate = ROOT / ".tools" / "bin" / name
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise RuntimeError(f"{name} not found in .tools/bin: run scripts/install-temporal-server")
    return candidate


def schema_dir() -> Path:
    """The PostgreSQL schema that ships in the server's Go module (downloaded by the build)."""
    try:
        cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        cache = str(Path.home() / "go" / "pkg" / "mod")
    folder = Path(cache) / f"go.temporal.io/server@{SERVER_VERSION}" / "schema" / "postgresql" / "v12"
    if not folder.is_dir():
        raise RuntimeError(f"Temporal's schema not found at {folder}: run scripts/install-temporal-server")
    return folder


def postgres_available() -> bool:
    return (POSTGRES_BIN / "postgres").is_file() and (POSTGRES_BIN / "initdb").is_file()


def cluster_available() -> bool:
    """Whether this machine can start a cluster (the tests skip otherwise)."""
    try:
        find_binary("temporal-server")
        find_binary("temporal-sql-tool")
        schema_dir()
    except RuntimeError:
        return False
    return postgres_available()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _membership_port() -> int:
    """A free port below 32768: the membership table keeps ports as SMALLINT (ephemeral ports do not fit)."""
    import random

    while True:
        port = random.randint(10000, 32767)
        if _port_free(port):
            return port


def _ports(state_dir: Path, wanted: Mapping[str, int | None]) -> dict[str, int]:
    """The cluster's ports, the same on every start of the same state (membership remembers addresses)."""
    path = state_dir / "ports.json"
    known: dict[str, int] = json.loads(path.read_text()) if path.is_file() else {}
    ports: dict[str, int] = {}
    for name, port in wanted.items():
        if port is not None:
            ports[name] = port
        elif name in known and _port_free(known[name]) and known[name] not in ports.values():
            ports[name] = known[name]
        else:
            ports[name] = _membership_port() if name.endswith("-membership") else free_port()
    path.write_text(json.dumps(ports, indent=2))
    return ports


def _secret(folder: Path, name: str) -> str:
    """A password kept in the state folder (0600), made on first use."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}.password"
    if not path.is_file():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _stop(process: subprocess.Popen[bytes] | None, timeout: float, signum: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _as_root() -> bool:
    return os.geteuid() == 0


def _let_postgres_traverse(path: Path) -> None:
    """As root, let the postgres OS user reach its data folder (as pgserver does): o+x on every parent."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@dataclass
class Postgres:
    """A PostgreSQL 15 server of the cluster's own: data in the state folder, on 127.0.0.1 only, passwords required."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def secrets(self) -> Path:
        return self.folder.parent / "secrets"

    def password(self, role: str) -> str:
        return _secret(self.secrets, role)

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}:{self.password(user)}@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, Any]:
        return {"user": POSTGRES_OS_USER, "group": POSTGRES_OS_USER, "extra_groups": []} if _as_root() else {}

    def _initdb(self, log_file: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        password_file = self.folder / "initdb-password"
        password_file.write_text(self.password("postgres"))
        password_file.chmod(0o600)
        if _as_root():
            _let_postgres_traverse(self.folder)
            for path in (self.folder, password_file):
                os.chown(path, uid=_uid(POSTGRES_OS_USER), gid=_gid(POSTGRES_OS_USER))
        command = [str(POSTGRES_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        command += [f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=peer"]
        command += ["--encoding=UTF8", "--no-locale"]
        try:
            with open(log_file, "ab") as output:
                subprocess.run(
                    command, check=True, stdout=output, stderr=subprocess.STDOUT, cwd=self.folder, **self._run_as()
                )
        finally:
            password_file.unlink(missing_ok=True)

    def start(self, log_file: Path, wait_seconds: float = 60.0) -> None:
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(log_file)
        command = [
            str(POSTGRES_BIN / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            # Four Temporal processes with their pools, plus the product's services.
            "-c",
            "max_connections=300",
        ]
        with open(log_file, "ab") as output:
            self.process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.folder,
                **self._run_as(),
            )
        deadline = time.monotonic() + wait_seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {self.process.returncode}; see {log_file}")
            try:
                with psycopg.connect(self.url("postgres", "postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): what an orderly restart of the database server does."""
        _stop(self.process, timeout, signal.SIGINT)

    def create_databases(self) -> None:
        """The Temporal role and its two databases, the case store's owner and its database. Idempotent."""
        with psycopg.connect(self.url("postgres", "postgres"), autocommit=True) as conn:
            # CREATEROLE: the case store's migrations make its group roles, and the demo its login roles.
            for role, options in (("temporal", ""), (STORE_OWNER, " CREATEROLE")):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                verifier = conn.pgconn.encrypt_password(self.password(role).encode(), role.encode(), b"scram-sha-256")
                statement = "ALTER ROLE {} LOGIN" if exists else "CREATE ROLE {} LOGIN"
                conn.execute(
                    sql.SQL(statement + options + " PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(verifier.decode())
                    )
                )
            owners = {**dict.fromkeys(TEMPORAL_DATABASES, "temporal"), STORE_DATABASE: STORE_OWNER}
            for database, owner in owners.items():
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner))
                    )

    def forget_members(self) -> None:
        """Drop the membership rows of a previous run, before any service of this one starts.

        Every service seeds its gossip ring from this table; the processes of a stopped cluster stay in
        it for a while, and a new frontend would spend its whole 30 s join budget (then another) dialling
        them. Only right for a whole-cluster start: this database is the cluster's own and nothing runs.
        """
        with psycopg.connect(self.url("temporal", "temporal"), autocommit=True) as conn:
            conn.execute("DELETE FROM cluster_membership")

    def _has_schema(self, database: str) -> bool:
        with psycopg.connect(self.url("temporal", database)) as conn:
            row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def setup_temporal_schema(self, log_file: Path) -> None:
        """`temporal-sql-tool setup-schema -v 0.0` (on a new database), then `update-schema` to the module's latest.

        For both databases, on every start, so a newer server's schema updates apply when it is installed.
        btree_gin (for advanced visibility) is created by the visibility schema itself: a trusted extension
        in PostgreSQL 13 and later, so the database's owner may.
        """
        tool = find_binary("temporal-sql-tool")
        schemas = schema_dir()
        env = {**os.environ, "SQL_PASSWORD": self.password("temporal")}  # not in argv, where `ps` shows it
        for database, folder in zip(TEMPORAL_DATABASES, SCHEMA_FOLDERS, strict=True):
            base = [str(tool), "--plugin", "postgres12", "--ep", "127.0.0.1", "-p", str(self.port)]
            base += ["-u", "temporal", "--db", database]
            steps = [] if self._has_schema(database) else [["setup-schema", "-v", "0.0"]]
            steps.append(["update-schema", "-d", str(schemas / folder / "versioned")])
            with open(log_file, "ab") as output:
                for step in steps:
                    subprocess.run([*base, *step], env=env, stdout=output, stderr=subprocess.STDOUT, check=True)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _gid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def tls_config(certificates: ClusterCertificates) -> dict[str, Any]:
    """The server's `global.tls`: who may talk to the frontend, and how the services know each other.

    docker-compose.yml gives its Temporal services the same, through the server image's environment and
    deploy/temporal/base.yaml (tests/test_deployment.py compares them).
    """
    internode_client = {"serverName": INTERNODE_SERVER_NAME, "rootCaFiles": [str(certificates.internode_ca)]}
    frontend_client = {"serverName": FRONTEND_SERVER_NAME, "rootCaFiles": [str(certificates.ca)]}
    return {
        # History, matching, the frontends and the internal worker to each other: their own CA, both ways. The
        # internal worker reaches the internal frontend this way (no `systemWorker` section: it is no client of
        # the public frontend, whose authorizer would refuse it, holding no token).
        "internode": {
            "server": {
                "certFile": str(certificates.internode.cert),
                "keyFile": str(certificates.internode.key),
                "requireClientAuth": True,
                "clientCaFiles": [str(certificates.internode_ca)],
            },
            "client": internode_client,
        },
        # Clients to the frontend: a certificate from the cluster CA or no connection.
        "frontend": {
            "server": {
                "certFile": str(certificates.frontend.cert),
                "keyFile": str(certificates.frontend.key),
                "requireClientAuth": True,
                "clientCaFiles": [str(certificates.ca)],
            },
            "client": frontend_client,
        },
    }


def authorization_config(jwks_uri: str) -> dict[str, Any]:
    """The server's `global.authorization`: the frontend checks every call's bearer token.

    The default claim mapper verifies the token against the provider's published keys (refetched every
    minute, so a rotation is picked up), requires the `temporal` audience (a token for the product's own
    services is refused) and reads `permissions` (`default:write`, `temporal-system:admin`, ...); the default
    authorizer allows a call when those roles cover it. Health checks alone pass without a token.
    """
    return {
        "jwtKeyProvider": {"keySourceURIs": [jwks_uri], "refreshInterval": "1m"},
        "permissionsClaimName": "permissions",
        "authorizer": "default",
        "claimMapper": "default",
        "audience": TEMPORAL_AUDIENCE,
    }


def server_config(
    ports: Mapping[str, int],
    postgres: Postgres,
    certificates: ClusterCertificates,
    num_history_shards: int,
    jwks_uri: str,
) -> dict[str, Any]:
    """The server's YAML (common/config/config.go in the server's module), the same for every service process.

    The SQL password is not in the file: the config is a template (`enable-template`) that reads it from
    TEMPORAL_SQL_PASSWORD in each process's environment.
    """

    def store(database: str, max_conns: int) -> dict[str, Any]:
        return {
            "sql": {
                "pluginName": "postgres12",
                "databaseName": database,
                "connectAddr": f"127.0.0.1:{postgres.port}",
                "connectProtocol": "tcp",
                "user": "temporal",
                "password": '{{ env "TEMPORAL_SQL_PASSWORD" }}',
                "maxConns": max_conns,
                "maxIdleConns": max_conns,
                "maxConnLifetime": "1h",
            }
        }

    def service(name: str) -> dict[str, Any]:
        rpc = {"grpcPort": ports[name], "membershipPort": ports[f"{name}-membership"], "bindOnIP": "127.0.0.1"}
        return {"rpc": rpc}

    return {
        "log": {"stdout": True, "level": "warn"},
        "persistence": {
            "defaultStore": "postgres-default",
            "visibilityStore": "postgres-visibility",
            "numHistoryShards": num_history_shards,
            "datastores": {
                "postgres-default": store("temporal", 20),
                "postgres-visibility": store("temporal_visibility", 10),
            },
        },
        "global": {
            "membership": {"maxJoinDuration": "30s", "broadcastAddress": "127.0.0.1"},
            "tls": tls_config(certificates),
            "authorization": authorization_config(jwks_uri),
        },
        "services": {name: service(name) for name in SERVICES},
        "clusterMetadata": {
            "enableGlobalNamespace": False,
            "failoverVersionIncrement": 10,
            "masterClusterName": "active",
            "currentClusterName": "active",
            "clusterInformation": {
                "active": {
                    "enabled": True,
                    "initialFailoverVersion": 1,
                    "rpcName": "frontend",
                    "rpcAddress": f"127.0.0.1:{ports['frontend']}",
                }
            },
        },
        "dcRedirectionPolicy": {"policy": "noop"},
        "archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}},
        "namespaceDefaults": {"archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}}},
        # The compose deployment's dynamic config, so both run with the same limits and partitions.
        "dynamicConfigClient": {"filepath": str(DYNAMIC_CONFIG), "pollInterval": "10s"},
    }


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def client_profiles(address: str, namespace: str, certificates: ClusterCertificates) -> str:
    """The SDK's environment configuration (temporalio.envconfig, the `temporal` CLI): one profile per certificate."""
    lines = ["# Temporal client profiles for the local cluster, written by stack/cluster.py.", ""]
    for name, pair in sorted(certificates.clients.items()):
        lines += [
            f"[profile.{name}]",
            f"address = {_toml_string(address)}",
            f"namespace = {_toml_string(namespace)}",
            "",
            f"[profile.{name}.tls]",
            f"client_cert_path = {_toml_string(str(pair.cert))}",
            f"client_key_path = {_toml_string(str(pair.key))}",
            f"server_ca_cert_path = {_toml_string(str(certificates.ca))}",
            f"server_name = {_toml_string(FRONTEND_SERVER_NAME)}",
            "",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ClusterIdentity:
    """The identity provider the frontend trusts, and the secrets of the two clients the cluster itself is."""

    issuer: str
    setup_secret: str = field(repr=False)
    ui_secret: str = field(repr=False)

    def jwks_uri(self) -> str:
        """The provider's published keys, from its discovery document (as any OpenID Connect client finds them)."""
        answer = httpx.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration", timeout=10)
        answer.raise_for_status()
        return str(answer.json()["jwks_uri"])


@dataclass
class Cluster:
    """A running cluster: the same surface as the dev server (`address`, `ui_url`, `stop`) plus fault controls."""

    state_dir: Path
    address: str
    ui_url: str
    client_profile: Path
    certificates: ClusterCertificates
    database: Postgres
    # The setup client's own token (temporal-system:admin): the cluster's setup, the tests and the bench driver.
    credentials: TemporalCredentials
    namespace: str = NAMESPACE
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ui_process: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def profile_env(self, profile: str) -> dict[str, str]:
        """What a product process needs in its environment to connect as `profile`."""
        return {"TEMPORAL_CONFIG_FILE": str(self.client_profile), "TEMPORAL_PROFILE": profile}

    def export_line(self, profile: str = "operator") -> str:
        return f"export TEMPORAL_CONFIG_FILE={self.client_profile} TEMPORAL_PROFILE={profile}"

    async def connect(self, profile: str = "tests", **options: Any) -> Client:
        """A client with `profile`'s certificate and the setup client's token, kept fresh (Client.connect
        options, a data converter say, pass through)."""
        from temporalio.envconfig import ClientConfig

        connect = ClientConfig.load_client_connect_config(
            profile, config_file=str(self.client_profile), disable_env=True
        )
        return await self.credentials.connect(**{**connect, **options})

    def start_service(self, service: str) -> subprocess.Popen[bytes]:
        if service == "postgres":
            self.database.start(self.logs / "postgres.log")
            assert self.database.process is not None, "started above"
            return self.database.process
        server = find_binary("temporal-server")
        command = [str(server), "--root", str(self.state_dir), "--config", "config", "--env", "cluster"]
        command += ["start", "--service", service]
        env = {**os.environ, "TEMPORAL_SQL_PASSWORD": self.database.password("temporal")}
        with open(self.logs / f"{service}.log", "ab") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.state_dir
            )
        self.processes[service] = process
        return process

    async def wait_for_service(self, service: str, wait_seconds: float = 90.0) -> None:
        """Until the service's membership port listens (the internal worker serves no gRPC), and the gRPC
        port of the others; whether the cluster serves cases is `wait_until_serving`."""
        if service == "postgres":
            return
        process = self.processes[service]
        deadline = time.monotonic() + wait_seconds
        ports = [self.ports[f"{service}-membership"]] + ([self.ports[service]] if service != "worker" else [])
        while not all(_listening(port) for port in ports):
            if process.poll() is not None:
                log = self.logs / f"{service}.log"
                raise RuntimeError(f"Temporal {service} exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Temporal {service} did not listen within {wait_seconds:.0f}s")
            await asyncio.sleep(0.2)

    def kill(self, service: str, signum: int = signal.SIGKILL) -> None:
        """Send `signum` to one service's process (or PostgreSQL's postmaster) and wait until it is gone."""
        process = self.database.process if service == "postgres" else self.processes.get(service)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        process.wait(60)

    async def restart(self, service: str) -> None:
        """Stop the service in order (if it runs), start it again and wait until the cluster serves."""
        if service == "postgres":
            self.database.stop()
        else:
            _stop(self.processes.get(service), 30)
        self.start_service(service)
        await self.wait_for_service(service)
        await self.wait_until_serving()

    async def wait_until_serving(self, wait_seconds: float = 120.0) -> None:
        await wait_until_serving(self, wait_seconds)

    def stop(self, timeout: float = 30.0) -> None:
        _stop(self.ui_process, timeout)
        for service in reversed(SERVICES):
            _stop(self.processes.get(service), timeout)
        self.database.stop(timeout)


async def wait_until_serving(cluster: Cluster, wait_seconds: float = 120.0) -> None:
    """Wait until the namespace is known and a history read is answered (its shards are owned).

    Like temporal_server.wait_until_serving, over mTLS, and with the namespace checked first: a missing
    namespace is NOT_FOUND too, which the workflow probe would take for "serving".
    """
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeWorkflowExecutionRequest
    from temporalio.service import RPCError, RPCStatusCode

    deadline = time.monotonic() + wait_seconds
    probe = DescribeWorkflowExecutionRequest(
        namespace=cluster.namespace, execution=WorkflowExecution(workflow_id="readiness-probe")
    )
    last: Exception | None = None
    client: Client | None = None
    while time.monotonic() < deadline:
        try:
            client = client or await cluster.connect()
            service = client.workflow_service
            await service.describe_namespace(DescribeNamespaceRequest(namespace=cluster.namespace), retry=False)
            try:
                await service.describe_workflow_execution(probe, retry=False)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            return
        except (RPCError, RuntimeError) as err:
            last = err
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the cluster at {cluster.address} is not serving after {wait_seconds:.0f}s: {last}")


async def connect_when_healthy(
    cluster: Cluster, profile: str = "tests", wait_seconds: float = 60.0, **options: Any
) -> Client:
    """Connect as `profile`, again and again while the frontend says it is not healthy yet (it is starting)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await cluster.connect(profile, **options)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def register_namespace(cluster: Cluster) -> None:
    """The namespace (30 days' retention, as compose) and the case search attributes, unless already there."""
    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
    from temporalio.service import RPCError, RPCStatusCode

    from enrollment.search_attributes import ensure_registered

    client = await connect_when_healthy(cluster, "operator", namespace=cluster.namespace)
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=cluster.namespace,
                workflow_execution_retention_period=Duration(seconds=int(RETENTION.total_seconds())),
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    await ensure_registered(client)


async def start_cluster(
    state_dir: Path,
    identity: ClusterIdentity,
    port: int = 7233,
    ui_port: int = 8233,
    ui_codec_endpoint: str | None = None,
    num_history_shards: int = NUM_HISTORY_SHARDS,
    postgres_port: int | None = None,
    wait_seconds: float = 180.0,
) -> Cluster:
    """Start PostgreSQL, the five Temporal services and the read-only UI; return when cases can run.

    The identity provider must be serving: the frontend fetches its keys, the setup signs in there, and the UI
    signs people in there. The state folder keeps everything (database, certificates, config, logs), so a
    second start with the same folder resumes the same cluster. Failing half-way stops whatever was started.
    """
    find_binary("temporal-server")  # fail before starting anything
    if not postgres_available():
        raise RuntimeError(f"PostgreSQL 15 not found in {POSTGRES_BIN}: run scripts/install-temporal-server")
    state_dir = state_dir.resolve()
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    (state_dir / "config").mkdir(parents=True, exist_ok=True)
    wanted: dict[str, int | None] = {"frontend": port, "postgres": postgres_port}
    wanted |= {name: None for name in SERVICES if name != "frontend"}
    wanted |= {f"{name}-membership": None for name in SERVICES}
    ports = _ports(state_dir, wanted)
    certificates = ensure_certificates(state_dir / "certificates")
    postgres = Postgres(state_dir / "postgres", ports["postgres"])
    address = f"127.0.0.1:{port}"
    profile = state_dir / "temporal.toml"
    profile.write_text(client_profiles(address, NAMESPACE, certificates), encoding="utf-8")
    credentials = TemporalCredentials(identity.issuer, SETUP_CLIENT, identity.setup_secret)
    cluster = Cluster(
        state_dir, address, f"http://127.0.0.1:{ui_port}", profile, certificates, postgres, credentials, ports=ports
    )
    config = server_config(ports, postgres, certificates, num_history_shards, identity.jwks_uri())
    (state_dir / "config" / "cluster.yaml").write_text(
        "# enable-template\n# Written by stack/cluster.py on every start.\n" + yaml.safe_dump(config, sort_keys=False)
    )
    try:
        postgres.start(cluster.logs / "postgres.log")
        postgres.create_databases()
        postgres.setup_temporal_schema(cluster.logs / "schema.log")
        postgres.forget_members()
        # One at a time at first: the first process on a new database writes the cluster's metadata, and two
        # doing so at once collide.
        for group in ([FRONTENDS[0]], FRONTENDS[1:], SERVICES[len(FRONTENDS) :]):
            for service in group:
                cluster.start_service(service)
            for service in group:
                await cluster.wait_for_service(service, wait_seconds)
            if service == FRONTENDS[-1]:
                await register_namespace(cluster)
        await cluster.wait_until_serving(wait_seconds)
        ui = certificates.client("ui")
        tls = {
            "caFile": str(certificates.ca),
            "certFile": str(ui.cert),
            "keyFile": str(ui.key),
            "serverName": FRONTEND_SERVER_NAME,
            "enableHostVerification": True,
        }
        sign_in = ui_sign_in(identity.issuer, UI_CLIENT, identity.ui_secret, cluster.ui_url)
        cluster.ui_process = start_ui(
            address, ui_port, state_dir / "ui-config", ui_codec_endpoint, cluster.logs / "ui.log", tls, sign_in
        )
        deadline = time.monotonic() + wait_seconds
        while not _listening(ui_port):  # so a browser (or a test) opening the printed address finds it
            if cluster.ui_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal UI did not start; see {cluster.logs / 'ui.log'}")
            await asyncio.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
