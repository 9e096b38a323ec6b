"""The main job on one machine: dev server, stand-ins and workers, a realistic batch, some reviews.

`scripts/demo` runs it (`scripts/demo --cluster`: on the production topology instead of the dev
server, stack/cluster.py). It starts every process it needs, submits the
generated applications (half before a phase-two cut-over, half after),
approves and rejects some of the cases awaiting review as a bureau would,
leaves the rest for a person, prints a summary and the UI address, and keeps
running until interrupted; then it stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from api.__main__ import API_IDENTITY_CLIENT
from api.callers import clients_file as api_clients_file
from codec_server.__main__ import CODEC_IDENTITY_CLIENT
from console.backends import CONSOLE_CLIENT
from enrollment import deployment_secrets
from enrollment.case import CaseView, Review
from enrollment.client import connect
from enrollment.oidc import IdentityProvider
from enrollment.provers import PersonProver
from enrollment.settings import Settings
from enrollment.statuses import CASE_STATUSES
from stack import cluster as temporal_cluster
from stack import temporal_server
from stack.certificates import write_private
from standins.identity_provider import people
from standins.identity_provider.accounts import DEFAULT_CLIENTS, hash_secret
from starter.cases import case_handle, send_message
from store import roles
from store.database import EMBEDDED_DATA, embedded, migrate, open_pool, resolve_url
from workers.__main__ import WORKERS_IDENTITY_CLIENT
from workflows.enrollment_case import EnrollmentCase

ROOT = temporal_server.ROOT
# The statuses a case can show once the workers have taken it, for the summary table.
STATUSES = tuple(status for status in CASE_STATUSES if status != "submitted")


def say(message: str) -> None:
    print(message, flush=True)


class Processes:
    """Every child process the demo starts, stopped in reverse order."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        # The child writes to its own copy of the descriptor; this process need not keep one open.
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        self.children.append((name, process))
        return process

    def stop(self, name: str) -> None:
        for child_name, process in list(self.children):
            if child_name == name:
                _terminate(process)
                self.children.remove((child_name, process))

    def stop_all(self) -> None:
        for _name, process in reversed(self.children):
            _terminate(process)
        self.children.clear()


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f}s")


async def hand_in_batch(standins_url: str, route: str, applications: list[dict], label: str) -> Counter:
    """Have the stand-in platform or front end hand applications in through the API, 50 at a time."""
    results: Counter = Counter()
    async with httpx.AsyncClient(base_url=standins_url, timeout=120) as standins:
        for start in range(0, len(applications), 50):
            response = await standins.post(route, json={"applications": applications[start : start + 50]})
            response.raise_for_status()
            results.update(str(result.get("status_code", result.get("error"))) for result in response.json()["results"])
            say(f"  {label}: handed in {min(start + 50, len(applications))}/{len(applications)} (HTTP {dict(results)})")
    return results


async def case_views(settings: Settings, application_ids: list[str]) -> dict[str, CaseView]:
    client = await connect(settings)
    views = await asyncio.gather(
        *(case_handle(client, app_id).query(EnrollmentCase.status) for app_id in application_ids)
    )
    return dict(zip(application_ids, views, strict=True))


async def wait_until_accepted(settings: Settings, application_ids: list[str], seconds: float = 120) -> None:
    """Wait until every case has taken its routing phase from the deployment that accepted it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        views = await case_views(settings, application_ids)
        accepted = sum(view.routing_phase is not None for view in views.values())
        say(f"  accepted: {accepted}/{len(views)}")
        if accepted == len(views):
            return
        await asyncio.sleep(1)
    raise RuntimeError("cases were not accepted in time; see the worker log")


async def settle(settings: Settings, application_ids: list[str], seconds: float = 120) -> dict[str, CaseView]:
    """Wait until no case is still being verified (or was just submitted)."""
    deadline = time.monotonic() + seconds
    while True:
        views = await case_views(settings, application_ids)
        busy = [v for v in views.values() if v.status in ("submitted", "verifying")]
        say(f"  verifying: {len(views) - len(busy)}/{len(views)} cases past verification")
        if not busy or time.monotonic() > deadline:
            return views
        await asyncio.sleep(2)


def identity_clients_file(settings: Settings, folder: Path) -> Path:
    """The stand-in provider's clients with this machine's development secrets, so each of the demo's
    processes is given its own secret and nothing else (`deployment_secrets.identity_client_secret`)."""
    document = json.loads(DEFAULT_CLIENTS.read_text(encoding="utf-8"))
    for client in document["clients"]:
        if "secret_hash" in client:
            client["secret_hash"] = hash_secret(
                deployment_secrets.identity_client_secret(settings, client["client_id"])
            )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clients.json"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


async def review_some(settings: Settings, views: dict[str, CaseView]) -> Counter:
    """Approve about half of the cases awaiting review and reject a quarter, as reviewers of their districts.

    Each district's reviewer signs in at the provider (its sign-in page, as a browser would) and proves
    each decision with their own token, as the console does for a person.
    """
    client = await connect(settings)
    provider = IdentityProvider(settings.identity_issuer)
    console_secret = deployment_secrets.identity_client_secret(settings, CONSOLE_CLIENT)
    signed_in: dict[str, str] = {}
    decisions: Counter = Counter()
    waiting = sorted(app_id for app_id, view in views.items() if view.status == "awaiting_review")
    for index, app_id in enumerate(waiting):
        slot = index % 4
        if slot == 3:
            continue
        decision, opinion = (
            ("approve", "材料齐全，符合本地招生政策，同意入学")
            if slot < 2
            else ("reject", "所报学校学位已满，请服从片区统筹")
        )
        district = views[app_id].district_code
        reviewer = f"r-{district}-1"  # the stand-in provider's reviewer of the district (accounts.json)
        if reviewer not in signed_in:
            tokens = await people.console_tokens(settings.identity_issuer, reviewer, console_secret)
            signed_in[reviewer] = tokens["access_token"]
        prove = PersonProver(provider, signed_in[reviewer], CONSOLE_CLIENT, console_secret)
        message = Review(reviewer_id=reviewer, district_code=district, decision=decision, opinion=opinion)
        receipt = await send_message(client, app_id, message, prove)
        decisions[decision if receipt.accepted else "refused"] += 1
    decisions["left_for_a_person"] = len(waiting) - decisions["approve"] - decisions["reject"]
    return decisions


def print_summary(views: dict[str, CaseView]) -> None:
    by_status = Counter(view.status for view in views.values())
    by_phase = Counter((view.routing_phase, view.status) for view in views.values())
    say("")
    say(f"{'status':<32}{'phase one':>10}{'phase two':>10}{'total':>8}")
    for status in STATUSES:
        if by_status[status]:
            phase_one, phase_two = by_phase[("phase_one", status)], by_phase[("phase_two", status)]
            say(f"{status:<32}{phase_one:>10}{phase_two:>10}{by_status[status]:>8}")
    say(
        f"{'all cases':<32}{sum(v.routing_phase == 'phase_one' for v in views.values()):>10}"
        f"{sum(v.routing_phase == 'phase_two' for v in views.values()):>10}{len(views):>8}"
    )


async def run_demo(args) -> None:
    data = ROOT / ".data"
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes = Processes(logs)
    main_task = asyncio.current_task()
    assert main_task is not None, "run_demo runs as asyncio.run's task"
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    standins_url = f"http://127.0.0.1:{args.standins_port}"
    os.environ.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{args.temporal_port}",
        ENROLL_STANDINS_URL=standins_url,
        ENROLL_IDENTITY_ISSUER=f"http://127.0.0.1:{args.identity_port}",
    )
    codec_url = f"http://127.0.0.1:{args.codec_port}"
    cluster: temporal_cluster.Cluster | None = None
    server: temporal_server.DevServer | temporal_cluster.Cluster | None = None
    identity_url = f"http://127.0.0.1:{args.identity_port}"
    try:
        # First the identity provider: the cluster's frontend checks its tokens, and every process signs in there.
        settings = Settings.from_env()
        say(f"[0/6] identity provider (stand-in for 统一身份认证) on {identity_url}")
        processes.start(
            "identity-provider",
            [
                sys.executable,
                "-m",
                "standins.identity_provider",
                "--port",
                str(args.identity_port),
                "--state",
                str(data / "identity"),
                "--clients",
                str(identity_clients_file(settings, data / "identity")),
            ],
            {name: value for name, value in os.environ.items() if not name.startswith("ENROLL_")},
        )
        wait_for_http(f"{identity_url}/.well-known/openid-configuration")
        if args.cluster:
            if not temporal_cluster.cluster_available():
                # Built once (a few minutes): the server, its schema tool, PostgreSQL 15 when run as root.
                subprocess.run([str(ROOT / "scripts" / "install-temporal-server")], check=True)
            say(f"[0/6] the production topology (state in {data / 'cluster'}): PostgreSQL 15, Temporal frontend,")
            say("  internal frontend, history, matching and worker as separate processes; on the frontend mTLS and")
            say("  the identity provider's tokens; the read-only UI, signing ops in at the provider")
            identity = temporal_cluster.ClusterIdentity(
                identity_url,
                deployment_secrets.identity_client_secret(settings, temporal_cluster.SETUP_CLIENT),
                deployment_secrets.identity_client_secret(settings, temporal_cluster.UI_CLIENT),
            )
            cluster = server = await temporal_cluster.start_cluster(
                data / "cluster", identity, port=args.temporal_port, ui_port=args.ui_port, ui_codec_endpoint=codec_url
            )
            # This process connects as the operator's certificate with the setup client's token (it hands in,
            # reviews as the demo's reviewers and reads the cases); each product process below is its own.
            os.environ.update(cluster.profile_env("operator"), ENROLL_TEMPORAL_CLIENT_ID=temporal_cluster.SETUP_CLIENT)
            settings = Settings.from_env()
        say(
            "[0/6] PostgreSQL case store"
            + (
                " (the cluster's PostgreSQL)"
                if cluster
                else " (DATABASE_URL)"
                if settings.database_url
                else f" (embedded, data in {EMBEDDED_DATA})"
            )
        )
        if cluster:
            database_url = cluster.database.url(temporal_cluster.STORE_OWNER, temporal_cluster.STORE_DATABASE)
        else:
            database_url = resolve_url(settings.reveal_database_url())
        applied = await migrate(database_url)
        say(f"  migrations applied: {applied or 'none needed'}")
        # Each service connects as its own PostgreSQL role and is given only the secrets it needs
        # (deploy/README.md, "Who holds what"). The cluster's PostgreSQL wants passwords, kept in its state.
        passwords = (
            {service: cluster.database.password(roles.login_role(service)) for service in roles.SERVICES}
            if cluster
            else None
        )
        database_urls = await roles.service_urls(database_url, passwords)
        env = {
            # A process gets a Temporal profile (client certificate) only when it talks to Temporal: profile().
            **{
                name: value
                for name, value in os.environ.items()
                if not name.startswith("ENROLL_") and name != "TEMPORAL_PROFILE"
            },
            "TEMPORAL_ADDRESS": f"127.0.0.1:{args.temporal_port}",
            "ENROLL_STANDINS_URL": standins_url,
            "ENROLL_IDENTITY_ISSUER": identity_url,
        }

        def profile(name: str, client_id: str | None = None) -> dict[str, str]:
            """The process's own client certificate on the cluster, and the provider's client whose token it
            sends to the frontend (nothing on the dev server)."""
            if cluster is None:
                return {}
            return {**cluster.profile_env(name), **({"ENROLL_TEMPORAL_CLIENT_ID": client_id} if client_id else {})}

        payload_keys = {"ENROLL_PAYLOAD_KEYS": deployment_secrets.payload_keys(settings)}
        lookup_key = {"ENROLL_LOOKUP_KEY": deployment_secrets.lookup_key(settings).secret.decode()}

        def client_secret(client_id: str) -> dict[str, str]:
            return {"ENROLL_IDENTITY_CLIENT_SECRET": deployment_secrets.identity_client_secret(settings, client_id)}

        if cluster:
            say("[1/6] the codec server")
        else:
            say(f"[1/6] Temporal dev server (state in {data / 'temporal' / 'temporal.db'}) and the codec server")
        ui_origins = [f"http://127.0.0.1:{args.ui_port}", f"http://localhost:{args.ui_port}"]
        api_url = f"http://127.0.0.1:{args.api_port}"
        processes.start(
            "codec-server",
            [
                sys.executable,
                "-m",
                "codec_server",
                "--port",
                str(args.codec_port),
                "--audit-url",
                api_url,
                *[part for o in ui_origins for part in ("--cors-origin", o)],
            ],
            {**env, **payload_keys, **client_secret(CODEC_IDENTITY_CLIENT), **profile("codec-server")},
        )
        if cluster is None:
            server = temporal_server.start(
                data / "temporal" / "temporal.db",
                port=args.temporal_port,
                ui_port=args.ui_port,
                log_file=logs / "temporal.log",
                ui_codec_endpoint=codec_url,
            )
            await temporal_server.wait_until_serving(server.address)
        assert server is not None, "the dev server or the cluster"
        say(f"[2/6] the API (front door) on {api_url}; stand-in departments, platform and front end on {standins_url}")
        clients_file = api_clients_file(settings)
        api_env = {
            **env,
            **payload_keys,
            **lookup_key,
            **client_secret(API_IDENTITY_CLIENT),
            "DATABASE_URL": database_urls["api"],
            "ENROLL_API_CLIENTS_FILE": str(clients_file),
            **profile("api", API_IDENTITY_CLIENT),
        }
        processes.start("api", [sys.executable, "-m", "api", "--port", str(args.api_port)], api_env)
        wait_for_http(f"{api_url}/healthz")
        processes.start(
            "standins",
            [
                sys.executable,
                "-m",
                "standins",
                "serve",
                "--port",
                str(args.standins_port),
                "--data",
                str(data / "standins"),
                "--families",
                str(args.families),
                "--api-url",
                api_url,
                "--api-clients",
                str(clients_file),
            ],
            env,
        )
        wait_for_http(f"{standins_url}/healthz")
        applications = [
            json.loads(line)
            for line in (data / "standins" / "applications.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        half = len(applications) // 2

        console_url = f"http://127.0.0.1:{args.console_port}"
        console_env = {
            **env,
            **payload_keys,
            **lookup_key,
            **client_secret(CONSOLE_CLIENT),
            "DATABASE_URL": database_urls["console"],
            "ENROLL_PLATFORM_URL": f"{standins_url}/platform",
            **profile("console", CONSOLE_CLIENT),
        }
        processes.start("console", [sys.executable, "-m", "console", "--port", str(args.console_port)], console_env)
        workers_env = {
            **env,
            **payload_keys,
            **lookup_key,
            "DATABASE_URL": database_urls["worker"],
            # One worker process at a time in the demo, so one metrics port.
            "ENROLL_METRICS_ADDRESS": os.environ.get("ENROLL_METRICS_ADDRESS") or "127.0.0.1:9464",
            **(client_secret(WORKERS_IDENTITY_CLIENT) if cluster else {}),
            **profile("workers", WORKERS_IDENTITY_CLIENT),
        }
        say("[3/6] workers in phase one; parents apply in the enrollment system's front end (first half)")
        processes.start(
            "workers-phase-one", [sys.executable, "-m", "workers"], {**workers_env, "ENROLL_ROUTING_PHASE": "phase_one"}
        )
        await hand_in_batch(standins_url, "/enrollment-system/admin/apply", applications[:half], "phase one")
        await wait_until_accepted(settings, [a["application_id"] for a in applications[:half]])

        say("[4/6] cut-over: workers redeployed in phase two; the platform accepts (受理) and dispatches the rest")
        processes.stop("workers-phase-one")
        processes.start(
            "workers-phase-two", [sys.executable, "-m", "workers"], {**workers_env, "ENROLL_ROUTING_PHASE": "phase_two"}
        )
        await hand_in_batch(standins_url, "/platform/admin/accept", applications[half:], "phase two")

        ids = [a["application_id"] for a in applications]
        views = await settle(settings, ids)
        say("[5/6] reviewers approve and reject some cases; the rest wait for a person")
        decisions = await review_some(settings, views)
        say(f"  {dict(decisions)}")
        await asyncio.sleep(3)
        views = await case_views(settings, ids)
        say("[6/6] summary")
        print_summary(views)
        pool = await open_pool(database_url, max_size=1)
        async with pool.connection() as conn:
            counts = await (
                await conn.execute(
                    "SELECT (SELECT count(*) FROM cases),"
                    " (SELECT count(DISTINCT application_id) FROM archive_documents)"
                )
            ).fetchone()
        assert counts is not None, "a SELECT without FROM answers one row"
        stored, archived = counts
        await pool.close()
        say(f"case store: {stored} cases, {archived} finished cases archived")
        waiting = next((v for v in views.values() if v.status == "awaiting_review"), None)
        say("")
        say(f"Temporal UI: {server.ui_url}/namespaces/default/workflows")
        say('  filter: CaseStatus="awaiting_review"')
        say("  read-only for ops: terminate, reset, signal and the other write actions are switched off.")
        if cluster:
            say("  it signs you in at the identity provider: ops-1, password demo-ops-1 (reviewers are refused)")
        say("  payloads are encrypted; to read them in the UI, sign in as ops and hand the codec server your token:")
        say("  .venv/bin/enroll login    # as ops-1, password demo-ops-1 (stand-in accounts: docs/identity.md)")
        say(f"  open {codec_url}/login?token=$(.venv/bin/enroll access-token)")
        say("  (then, in the UI's data encoder settings, tick 'include cross-origin credentials')")
        if waiting is not None:
            reviewer = f"r-{waiting.district_code}-1"
            say("Try, in another terminal (from this folder):")
            say(f"  export TEMPORAL_ADDRESS=127.0.0.1:{args.temporal_port} ENROLL_IDENTITY_ISSUER={identity_url}")
            if cluster:
                # On the cluster people hold no write rights at Temporal: reviewers decide in the console.
                say(f"  {cluster.export_line()}    # the operator's client certificate")
                say("  .venv/bin/enroll login    # as ops-1, password demo-ops-1")
                say("  export TEMPORAL_API_KEY=$(.venv/bin/enroll temporal-token)    # ops-1's own, read-only")
                say("  .tools/bin/temporal workflow list --query 'CaseStatus=\"awaiting_review\"'")
                say(f"  .venv/bin/enroll status {waiting.application_id}")
                say(f"  (reviewers, {reviewer} among them, decide in the review console, port {args.console_port})")
            else:
                say(f"  .venv/bin/enroll login    # as {reviewer}, password demo-{reviewer}")
                say(f"  .venv/bin/enroll awaiting-review --district {waiting.district_code}")
                say(f"  .venv/bin/enroll review {waiting.application_id} --decision approve --opinion 同意入学")
                say(f"  .venv/bin/enroll status {waiting.application_id}")
            if cluster:
                # The auditor's own login on the cluster's PostgreSQL, password included: a file, not the screen.
                auditor_url = cluster.state_dir / "secrets" / "auditor-database-url"
                write_private(auditor_url, database_urls["auditor"].encode())
                say(f'  export DATABASE_URL="$(cat {auditor_url})"    # the case store, as the auditor')
            say(f"  .venv/bin/enroll audit case {waiting.application_id}    # who saw and did what")
        say(f"API (front door): {api_url}/openapi.json; signed clients in {clients_file}")
        say(f"Review console: {console_url} (signs in at the identity provider, {identity_url})")
        say("Worker metrics (Prometheus): http://127.0.0.1:9464/metrics")
        if cluster:
            say("Temporal (production topology): frontend, internal frontend, history, matching and worker processes;")
            say("  mTLS and the identity provider's tokens on the frontend; the UI signs ops in at the provider;")
            say(f"  to connect your own `temporal` and `enroll` commands: {cluster.export_line()}")
            say(f"  cluster logs: {cluster.logs}")
        say(f"Logs: {logs}. Press Ctrl-C to stop everything.")
        if args.exit_after_summary:
            return
        while True:
            await asyncio.sleep(3600)
    finally:
        say("stopping...")
        processes.stop_all()
        if server is not None:
            server.stop()
        embedded.stop_if_started_here()
        say("stopped.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--families", type=int, default=200, help="size of the generated population (first run only)")
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--standins-port", type=int, default=8700)
    parser.add_argument("--codec-port", type=int, default=8081)
    parser.add_argument("--console-port", type=int, default=8090)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--identity-port", type=int, default=8900)
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="run on the production topology (PostgreSQL, separate Temporal services, mTLS) instead of the dev server",
    )
    parser.add_argument("--exit-after-summary", action="store_true", help="stop instead of waiting for Ctrl-C")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(run_demo(args))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
