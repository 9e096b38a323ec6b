"""The production topology (stack/cluster.py): five Temporal server processes on PostgreSQL; on the frontend,
mTLS and the identity provider's tokens.

Real processes throughout: the product's worker and `enroll submit` connect with their own client
certificates through the SDK's environment configuration and send their own tokens (each its client's at
the provider), the UI signs people in at the provider, the case store lives in the cluster's
PostgreSQL, and each fault test breaks one part of the cluster while a batch of cases is in flight,
then checks that every case ends where its scenario leads with exactly one result at the platform.

Select them with `-m cluster` (or leave them out with `-m "not cluster"`); they skip when the server
is not built (scripts/install-temporal-server).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    GetSystemInfoRequest,
    ListWorkflowExecutionsRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from api.callers import RegisteredClient
from api.signing import SignedRequests
from enrollment import temporal_tokens
from enrollment.case import workflow_id_for
from enrollment.oidc import IdentityError, IdentityProvider
from enrollment.temporal_tokens import TemporalCredentials
from stack.certificates import INTERNODE_SERVER_NAME, ensure_certificates
from stack.cluster import (
    SERVICES,
    SETUP_CLIENT,
    STORE_DATABASE,
    STORE_OWNER,
    UI_CLIENT,
    Cluster,
    ClusterIdentity,
    cluster_available,
    start_cluster,
)
from stack.temporal_server import find_cli, free_port
from standins.identity_provider.grants import Lifetimes
from standins.identity_provider.runner import RunningIdentityProvider
from standins.identity_provider.runner import start_in_thread as start_identity_provider
from standins.population import Population
from standins.runner import RunningStandins
from store import roles
from store.database import migrate, open_pool
from tests.support.api import served_api
from tests.support.batches import (
    assert_finished_once,
    batch_file,
    decide_every_case,
    resting,
    slow_departments,
    statuses,
)
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.support.identity import CLIENT_SECRETS, cli_token, password
from tests.support.keys import LOOKUP_KEY, TEST_CONVERTER
from tests.support.people import People
from tests.support.processes import enroll, product_environment, start_worker
from tests.support.stack import start_afresh
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not cluster_available(), reason="cluster not built: run scripts/install-temporal-server"),
]


@pytest.fixture(scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, identity_provider: RunningIdentityProvider
) -> AsyncIterator[Cluster]:
    identity = ClusterIdentity(identity_provider.base_url, CLIENT_SECRETS[SETUP_CLIENT], CLIENT_SECRETS[UI_CLIENT])
    running = await start_cluster(tmp_path_factory.mktemp("cluster"), identity, port=free_port(), ui_port=free_port())
    yield running
    running.stop()


@dataclass
class Product:
    """The case store in the cluster's PostgreSQL, and each process's environment: its role, its certificate."""

    pool: AsyncConnectionPool
    client: Client
    worker_env: dict[str, str]
    submit_env: dict[str, str]


@pytest.fixture(scope="module")
async def product(cluster: Cluster, standins: RunningStandins) -> AsyncIterator[Product]:
    owner_url = cluster.database.url(STORE_OWNER, STORE_DATABASE)
    await migrate(owner_url)
    passwords = {service: cluster.database.password(roles.login_role(service)) for service in roles.SERVICES}
    urls = await roles.service_urls(owner_url, passwords)
    pool = await open_pool(owner_url, max_size=4)

    def environment(service: roles.Service, profile: str, client_id: str) -> dict[str, str]:
        """The process's certificate (`profile`) and its own token for Temporal (`client_id`'s)."""
        token = {"ENROLL_TEMPORAL_CLIENT_ID": client_id, "ENROLL_IDENTITY_CLIENT_SECRET": CLIENT_SECRETS[client_id]}
        return product_environment(
            cluster.address, standins.base_url, urls[service], **cluster.profile_env(profile), **token
        )

    client = await cluster.connect("tests", data_converter=TEST_CONVERTER)
    yield Product(
        pool, client, environment("worker", "workers", "enroll-workers"), environment("api", "api", "enroll-api")
    )
    await pool.close()


def service_of(process: psutil.Process) -> str:
    arguments = process.cmdline()
    return arguments[arguments.index("--service") + 1]


async def test_five_server_processes_serve_only_clients_with_a_certificate(cluster: Cluster, tmp_path: Path) -> None:
    processes = {name: psutil.Process(process.pid) for name, process in cluster.processes.items()}
    assert sorted(processes) == sorted(SERVICES)
    assert len({process.pid for process in processes.values()}) == 5
    for name, process in processes.items():
        assert process.is_running() and service_of(process) == name
        assert process.cmdline()[0].endswith("temporal-server")
        assert "--allow-no-auth" not in process.cmdline()

    with pytest.raises(RuntimeError):  # no TLS at all
        await asyncio.wait_for(Client.connect(cluster.address), 20)
    with pytest.raises(RuntimeError):  # the server checked, but no client certificate offered
        tls = TLSConfig(server_root_ca_cert=cluster.certificates.ca.read_bytes(), domain="localhost")
        await asyncio.wait_for(Client.connect(cluster.address, tls=tls), 20)

    with pytest.raises(RuntimeError):  # a client certificate, but from another authority
        stranger = ensure_certificates(tmp_path / "elsewhere").client("tests")
        tls = TLSConfig(
            server_root_ca_cert=cluster.certificates.ca.read_bytes(),
            domain="localhost",
            client_cert=stranger.cert.read_bytes(),
            client_private_key=stranger.key.read_bytes(),
        )
        await asyncio.wait_for(Client.connect(cluster.address, tls=tls), 20)

    # The internal frontend, which has no authorizer, takes only the cluster's own nodes: a product
    # certificate is refused there.
    with pytest.raises(RuntimeError):
        tests = cluster.certificates.client("tests")
        tls = TLSConfig(
            server_root_ca_cert=cluster.certificates.internode_ca.read_bytes(),
            domain=INTERNODE_SERVER_NAME,
            client_cert=tests.cert.read_bytes(),
            client_private_key=tests.key.read_bytes(),
        )
        await asyncio.wait_for(Client.connect(f"127.0.0.1:{cluster.ports['internal-frontend']}", tls=tls), 20)

    client = await cluster.connect("tests")
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version.startswith("1.29")


async def with_token(cluster: Cluster, api_key: str | None, **options: Any) -> Client:
    """A client with the tests' certificate and this bearer token (or none); `options` for Client.connect."""
    connect = ClientConfig.load_client_connect_config(
        "tests", config_file=str(cluster.client_profile), disable_env=True
    )
    if api_key is not None:
        connect["api_key"] = api_key
    return await Client.connect(**connect, **options)


async def refused(call: Awaitable[object]) -> None:
    with pytest.raises(RPCError) as raised:
        await call
    assert raised.value.status == RPCStatusCode.PERMISSION_DENIED, raised.value


def forged(claims: dict[str, object], kid: str) -> str:
    """A Temporal token with the provider's key id and every right, signed by a key that is not the provider's."""
    key = ECKey.generate_key("P-256")
    return jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims, key)


async def test_the_frontend_lets_a_call_through_only_with_the_providers_token_that_allows_it(
    cluster: Cluster, identity_provider: RunningIdentityProvider
) -> None:
    issuer = identity_provider.base_url
    provider = IdentityProvider(issuer)
    describe = DescribeNamespaceRequest(namespace=cluster.namespace)
    listing = ListWorkflowExecutionsRequest(namespace=cluster.namespace, page_size=1)

    # A certificate alone is not enough.
    anonymous = await with_token(cluster, None)
    await refused(anonymous.workflow_service.describe_namespace(describe))

    # A token for the product's services (audience `enrollment`) is not one for Temporal: the frontend
    # refuses even the connection's first call.
    product_token = await provider.client_credentials("enroll-api", CLIENT_SECRETS["enroll-api"])
    with pytest.raises(RuntimeError, match="PermissionDenied"):
        await with_token(cluster, product_token)

    # A token with every right but not signed by the provider, under the provider's own key id.
    now = int(time.time())
    kid = (await provider.jwks())["keys"][0]["kid"]
    claims = {"iss": issuer, "sub": "client:enroll-setup", "aud": "temporal", "iat": now, "exp": now + 600}
    with pytest.raises(RuntimeError, match="PermissionDenied"):
        await with_token(cluster, forged({**claims, "permissions": ["temporal-system:admin"]}, kid))
    # The provider's real token for the setup client, expired.
    with pytest.raises(RuntimeError, match="PermissionDenied"):
        expired = {**claims, "iat": now - 1200, "exp": now - 600, "permissions": ["temporal-system:admin"]}
        await with_token(cluster, identity_provider.app.state.issuer.keys.sign(expired, "at+jwt"))

    # The workers' own token: everything a worker does in `default`, and nothing an administrator does.
    workers = await with_token(
        cluster, await provider.client_credentials("enroll-workers", CLIENT_SECRETS["enroll-workers"], "temporal")
    )
    await workers.workflow_service.describe_namespace(describe)
    await workers.workflow_service.list_workflow_executions(listing)
    await refused(
        workers.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=cluster.namespace, search_attributes={"Stolen": IndexedValueType.INDEXED_VALUE_TYPE_TEXT}
            )
        )
    )
    await refused(workers.workflow_service.register_namespace(RegisterNamespaceRequest(namespace="elsewhere")))
    await refused(workers.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="temporal-system")))

    # An ops person's own token, for their `temporal` command: reading, never changing.
    ops = await with_token(
        cluster, (await provider.exchange_for_temporal(await cli_token(issuer, "ops-1"), "enroll-cli")).access_token
    )
    await ops.workflow_service.list_workflow_executions(listing)
    await refused(ops.start_workflow("enrollment-case", id="case-SC2026-FORGED", task_queue="enrollment-cases"))
    # A reviewer gets no Temporal token at all: decisions go through the console.
    with pytest.raises(IdentityError) as no_token:
        await provider.exchange_for_temporal(await cli_token(issuer, "r-510104-1"), "enroll-cli")
    assert no_token.value.error == "invalid_target"


async def test_a_long_running_client_renews_its_token_and_rides_out_a_short_provider_outage(
    cluster: Cluster, identity_provider: RunningIdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens live minutes and workers run for weeks: the token on a client's connection is replaced in time,
    and a provider that is down for less than a token's remaining life goes unnoticed.

    A provider on the same keys whose tokens live 8 seconds, and the renewal's check every second (instead
    of every 20): for 20 seconds the client keeps calling, which an expired token would have refused. From the
    6th to the 9th second the provider is down; it comes back on the same address.
    """
    monkeypatch.setattr(temporal_tokens, "CHECK_SECONDS", 1.0)
    describe = DescribeNamespaceRequest(namespace=cluster.namespace)
    short_lived = Lifetimes(access_token=8)
    provider = start_identity_provider(identity_provider.state_dir, lifetimes=short_lived)
    port = provider.port
    credentials = TemporalCredentials(provider.base_url, "enroll-workers", CLIENT_SECRETS["enroll-workers"])
    client = await with_token(cluster, await credentials.token())
    renewal = credentials.keep_fresh(client)
    tokens_used = set()
    try:
        for second in range(20):
            if second == 6:
                provider.stop()
            if second == 9:
                provider = start_identity_provider(identity_provider.state_dir, lifetimes=short_lived, port=port)
            await client.workflow_service.describe_namespace(describe)
            tokens_used.add(client.api_key)
            await asyncio.sleep(1)
    finally:
        renewal.cancel()
        provider.stop()
    assert len(tokens_used) >= 3, "a new token about every 4 seconds, the outage's included"


async def test_a_hand_in_while_the_apis_token_has_lapsed_is_to_be_sent_again_and_keeps_no_place(
    cluster: Cluster,
    product: Product,
    identity_provider: RunningIdentityProvider,
    population: Population,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The provider down for longer than the API's token for Temporal lives: the frontend refuses the token, so
    the platform is told to send the application again (503 with Retry-After, not a 500), no case is made and
    the child's one open place is not held. Once the provider is back and the token renewed, the same hand-in
    is accepted."""
    monkeypatch.setattr(temporal_tokens, "CHECK_SECONDS", 1.0)
    short_lived = Lifetimes(access_token=4)
    provider = start_identity_provider(identity_provider.state_dir, lifetimes=short_lived)
    port = provider.port
    credentials = TemporalCredentials(provider.base_url, "enroll-api", CLIENT_SECRETS["enroll-api"])
    client = await with_token(cluster, await credentials.token(), data_converter=TEST_CONVERTER)
    renewal = credentials.keep_fresh(client)

    async def the_apis_client() -> Client:
        return client

    platform = RegisteredClient(client_id="platform", kind="platform", secret=SecretStr("platform-secret"))
    api = served_api(
        cluster.address,
        cluster.database.url(STORE_OWNER, STORE_DATABASE),
        [platform],
        LOOKUP_KEY,
        issuer=identity_provider.base_url,
        temporal=the_apis_client,
    )
    # Beyond the batches and not the one the UI test hands in; handed in by the platform, through its channel.
    application = {**population.applications[-2], "channel": "platform"}
    app_id = application["application_id"]
    worker = None
    try:
        async with (
            api,
            httpx.AsyncClient(
                base_url=api.base_url, auth=SignedRequests("platform", b"platform-secret"), timeout=30
            ) as caller,
        ):
            provider.stop()
            await asyncio.sleep(6)  # the token in use has lapsed, and no new one could be had
            refused = await caller.post("/v1/applications", json=application)
            assert (refused.status_code, refused.headers["retry-after"]) == (503, "5"), refused.text
            assert (await caller.get(f"/v1/applications/{app_id}")).status_code == 503
            not_ready = await caller.get("/readyz")  # what ops and the load balancer see meanwhile
            assert not_ready.status_code == 503
            assert not_ready.json()["errors"] == ["temporal: the case service refused this service's credentials"]
            async with product.pool.connection() as conn:
                held = await (
                    await conn.execute("SELECT count(*) FROM open_applications WHERE application_id = %s", (app_id,))
                ).fetchone()
            assert held == (0,), "the child's place is let go: no case holds it"

            provider = start_identity_provider(identity_provider.state_dir, lifetimes=short_lived, port=port)
            worker = start_worker(product.worker_env, tmp_path / "worker.log")

            async def lets_calls_through() -> bool:
                try:
                    await client.workflow_service.describe_namespace(
                        DescribeNamespaceRequest(namespace=cluster.namespace)
                    )
                except RPCError:
                    return False
                return True

            await wait_until(lets_calls_through, timeout=15, interval=0.5, message="a renewed token for the API")
            with pytest.raises(RPCError) as no_case:
                await client.get_workflow_handle(workflow_id_for(app_id)).describe()
            assert no_case.value.status == RPCStatusCode.NOT_FOUND, "the refused hand-in made no case"
            sent_again = await caller.post("/v1/applications", json=application)
            assert sent_again.status_code == 201, sent_again.text
            assert (await caller.get("/readyz")).json() == {"status": "ready"}
    finally:
        renewal.cancel()
        provider.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(60)


async def sign_in_to_the_ui(cluster: Cluster, issuer: str, sub: str) -> tuple[httpx.Response, dict[str, str]]:
    """A person's browser at the Temporal UI: its sign-in link, the provider's form, back to the UI's callback.
    The callback's answer, and the user the UI hands its page (the `user0` cookie) if it signed them in."""
    async with httpx.AsyncClient(timeout=20) as browser:
        to_provider = await browser.get(f"{cluster.ui_url}/auth/sso")
        assert to_provider.status_code == 302 and to_provider.headers["location"].startswith(f"{issuer}/authorize")
        form = await browser.get(to_provider.headers["location"])
        request_id = re.search(r'name="request_id" value="([^"]+)"', form.text)
        assert form.status_code == 200 and request_id, form.text
        signed_in = await browser.post(
            f"{issuer}/authorize", data={"request_id": request_id.group(1), "username": sub, "password": password(sub)}
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"].startswith(cluster.ui_url)
        callback = await browser.get(signed_in.headers["location"])
        user = browser.cookies.get("user0")
    return callback, json.loads(base64.b64decode(user)) if user else {}


async def test_the_ui_signs_ops_in_at_the_provider_and_reads_with_their_token(
    cluster: Cluster, identity_provider: RunningIdentityProvider
) -> None:
    namespaces = f"{cluster.ui_url}/api/v1/namespaces"
    assert httpx.get(namespaces, timeout=10).status_code == 401

    callback, user = await sign_in_to_the_ui(cluster, identity_provider.base_url, "ops-1")
    assert callback.status_code == 303, callback.text
    token = {"Authorization": f"Bearer {user['AccessToken']}"}
    answer = httpx.get(namespaces, headers=token, timeout=10)
    assert answer.status_code == 200, answer.text
    assert "default" in [n["namespaceInfo"]["name"] for n in answer.json()["namespaces"]]
    workflows = httpx.get(f"{namespaces}/default/workflows", headers=token, timeout=10)
    assert workflows.status_code == 200, workflows.text

    # A reviewer signs in at the provider, but the UI is given no token for them.
    callback, user = await sign_in_to_the_ui(cluster, identity_provider.base_url, "r-510104-1")
    assert callback.status_code >= 400 and not user


@pytest.mark.skipif(find_cli() is None, reason="Temporal CLI not built")
async def test_the_temporal_cli_connects_with_the_exported_profile_and_a_persons_token(
    cluster: Cluster, identity_provider: RunningIdentityProvider
) -> None:
    cli = find_cli()
    assert cli is not None
    # The person's own token, as `export TEMPORAL_API_KEY=$(enroll temporal-token)` gives it.
    signed_in = await cli_token(identity_provider.base_url, "ops-1")
    exchanged = enroll(dict(os.environ), "temporal-token", "--token", signed_in, readable=True)
    assert exchanged.returncode == 0, exchanged.stderr
    env = {**os.environ, **cluster.profile_env("operator"), "TEMPORAL_API_KEY": exchanged.stdout.strip()}

    def temporal(*args: str, environment: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), *args, "-o", "json"], env=environment, capture_output=True, text=True, timeout=60
        )

    described = temporal("operator", "namespace", "describe", "--namespace", "default")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["config"]["workflowExecutionRetentionTtl"] == "2592000s"
    attributes = temporal("operator", "search-attribute", "list")
    assert attributes.returncode == 0, attributes.stderr
    assert "CaseStatus" in attributes.stdout
    without_token = {key: value for key, value in env.items() if key != "TEMPORAL_API_KEY"}
    refused_cli = temporal("operator", "namespace", "describe", "--namespace", "default", environment=without_token)
    assert refused_cli.returncode != 0 and "unauthorized" in refused_cli.stderr, refused_cli.stderr
    # A reviewer is given no Temporal token; the command says why, and no token is printed.
    reviewer = enroll(
        dict(os.environ), "temporal-token", "--token", await cli_token(identity_provider.base_url, "r-510104-1")
    )
    assert reviewer.returncode != 0 and reviewer.stdout.count(".") < 2, reviewer.stdout
    assert "a reviewer cannot do this" in reviewer.stderr + reviewer.stdout


async def run_batch(
    cluster: Cluster,
    product: Product,
    standins: RunningStandins,
    population: Population,
    people: People,
    log_dir: Path,
    batch_slice: slice,
    fault: Callable[[subprocess.Popen[bytes]], Awaitable[subprocess.Popen[bytes]]] | None = None,
) -> None:
    """Hand a batch in, break something (`fault`, given the worker, returns the worker now running), then
    see every case to its result: at rest where its scenario leads, reviewed, at the platform exactly once."""
    await start_afresh(product.pool, standins)
    slow_departments(standins, median_ms=1200, p99_ms=1800)  # still verifying when the batch is all in
    batch = population.applications[batch_slice]
    ids = [a["application_id"] for a in batch]
    path = batch_file(log_dir / "batch.jsonl", batch)
    worker = start_worker(product.worker_env, log_dir / "worker.log")
    try:
        submitted = enroll(product.submit_env, "submit", str(path))
        assert Counter(json.loads(line)["result"] for line in submitted.stdout.splitlines()) == {
            "started": len(batch)
        }, submitted.stderr
        client = product.client
        expected = resting(population, ids)
        if fault is not None:
            before = await statuses(client, ids)
            in_flight = sum(before[app_id] != expected[app_id] for app_id in ids)
            print(f"\n{in_flight}/{len(ids)} cases in flight when the fault came: {Counter(before.values())}")
            assert in_flight > 0, "the fault came after every case had come to rest"
            worker = await fault(worker)
        views = await decide_every_case(client, expected, population, people, timeout=180)
    finally:
        worker.terminate()
        worker.wait(60)

    async with product.pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM cases")).fetchone()
    assert row is not None and row[0] == len(batch), "one case in the store for each application"
    await assert_finished_once(views, standins, product.pool)


async def test_cases_go_from_hand_in_to_the_platform_result_on_the_cluster(
    cluster, product, standins, population, people, tmp_path
):
    await run_batch(cluster, product, standins, population, people, tmp_path, slice(0, 12))


@pytest.mark.parametrize(("service", "batch"), [("history", slice(12, 28)), ("matching", slice(28, 44))])
async def test_a_server_service_killed_and_restarted_mid_batch_loses_and_doubles_nothing(
    cluster, product, standins, population, people, tmp_path, service, batch
):
    async def kill_and_restart(worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        killed = cluster.processes[service]
        cluster.kill(service, signal.SIGKILL)
        await asyncio.sleep(2)
        await cluster.restart(service)
        assert killed.returncode == -signal.SIGKILL and cluster.processes[service].pid != killed.pid
        return worker

    await run_batch(cluster, product, standins, population, people, tmp_path, batch, kill_and_restart)


async def test_postgres_restarted_mid_batch_loses_and_doubles_nothing(
    cluster, product, standins, population, people, tmp_path
):
    async def restart_postgres(worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        postmaster = cluster.database.process
        await cluster.restart("postgres")
        assert postmaster is not None and postmaster.returncode is not None
        assert cluster.database.process is not None and cluster.database.process.pid != postmaster.pid
        return worker

    await run_batch(cluster, product, standins, population, people, tmp_path, slice(44, 60), restart_postgres)


async def test_worker_killed_mid_batch_loses_and_doubles_nothing(
    cluster, product, standins, population, people, tmp_path
):
    async def kill_worker(worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        return start_worker(product.worker_env, tmp_path / "worker-again.log")

    await run_batch(cluster, product, standins, population, people, tmp_path, slice(60, 76), kill_worker)


@needs_chromium
async def test_ops_signs_in_to_the_ui_in_a_browser_and_sees_the_cases(
    cluster, product, population, identity_provider, tmp_path
):
    """The UI behind the frontend's authorizer: it sends the provider's sign-in page, then lists the cases
    with the ops person's own token."""
    from playwright.async_api import async_playwright

    application = population.applications[-1]  # beyond the batches above
    worker = start_worker(product.worker_env, tmp_path / "worker.log")
    try:
        handed_in = enroll(product.submit_env, "submit", str(batch_file(tmp_path / "one.jsonl", [application])))
    finally:
        worker.terminate()
        worker.wait(60)
    assert handed_in.returncode == 0, handed_in.stderr
    case_id = f"case-{application['application_id']}"
    await wait_until(
        lambda: product.client.count_workflows(f'WorkflowId="{case_id}"'),
        until=lambda counted: counted.count == 1,
        timeout=30,
        message="the case is listed",
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(f"{cluster.ui_url}/namespaces/default/workflows")
        sign_in = page.get_by_role("button", name=re.compile("Sign in|统一身份认证|Continue", re.IGNORECASE)).first
        await sign_in.click(timeout=30_000)
        await page.wait_for_url(f"{identity_provider.base_url}/**", timeout=30_000)
        await page.fill("input[name=username]", "ops-1")
        await page.fill("input[name=password]", password("ops-1"))
        await page.locator("form button[type=submit], form input[type=submit]").first.click()
        await page.goto(f"{cluster.ui_url}/namespaces/default/workflows")
        await page.locator(f'a[href*="{case_id}"]').first.wait_for(timeout=30_000)
        await browser.close()
