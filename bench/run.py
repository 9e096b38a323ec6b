"""`python -m bench.run`: a season's load on this machine, beside the engine's ceiling and the direct floor.

In one invocation, on one fresh dev server: (1) the engine ceiling, a trivial
workflow of the same shape; (2) the direct floor, the same department and
platform calls with plain asyncio; (3) the product, N generated cases through
`W` worker processes with a reviewer bot approving each case as soon as it
awaits review (one reviewer per district, signed in at the stand-in identity
provider, proving each review as production requires). Figures come from the case store's event log (timestamps the
workflow itself recorded) and from the stand-ins' own counters.

With `--cluster`, the same on the production topology (stack/cluster.py, bench/targets.py), reviews held so that
storage, visibility and memory are also measured while every case waits (bench/cluster_figures.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString, NoReturn

import httpx
import psutil
from psycopg import AsyncConnection

from bench.ceiling import CEILING_QUEUE, CeilingCase
from bench.cluster_figures import bytes_per_case, mib, time_visibility, wait_for_visibility
from bench.targets import Target, start_cluster_target, start_dev_server
from enrollment import logs
from enrollment.application import Application
from enrollment.case import Review
from enrollment.client import data_converter
from enrollment.codec import new_key_spec
from enrollment.identity import LookupSecret
from enrollment.oidc import DEVICE_CODE, IdentityProvider, IdentityUnavailable
from enrollment.provers import PersonProver
from enrollment.settings import Settings
from enrollment.verifiers import VERIFIERS
from stack import temporal_server
from stack.demo import wait_for_http
from standins.identity_provider.runner import RunningIdentityProvider
from standins.identity_provider.runner import start_in_thread as start_identity_provider_thread
from standins.population import generate
from starter import ops_queries
from starter.cases import send_message
from starter.intake import Intake, submit_one
from store.database import open_pool

FLOOR_CONCURRENCY = 8
# A hand-in the case did not answer in time is made again, at most this many times in all.
HAND_IN_ATTEMPTS = 10
LOOKUP_KEY = "bench"
# The reviewer bot signs in as the command line does (device flow, client enroll-cli), as the stand-in
# provider's demo reviewer of each district (standins/identity_provider/accounts.json: password demo-<sub>).
BOT_CLIENT = "enroll-cli"
# Signed in again this long after signing in: access tokens live 10 minutes.
BOT_SIGN_IN_SECONDS = 8 * 60
# A review whose proof the provider did not answer for (a dropped connection under load) is sent again, this often.
PROOF_ATTEMPTS = 3


def say(text: str) -> None:
    print(text, flush=True)


# Groups whose memory is also summed as proportional set size: PostgreSQL's shared buffers are in the RSS of every
# backend that touched them, so the sum of its processes' RSS counts them many times over.
PSS_GROUPS = ("postgres",)


def postgres_database(process: psutil.Process) -> str:
    """The database a PostgreSQL backend serves, from the title PostgreSQL gives it ("postgres: USER DATABASE
    HOST(PORT) STATE", or "[local]" for a Unix socket); "other" for the postmaster and the background processes."""
    with contextlib.suppress(psutil.Error):
        words = " ".join(process.cmdline()).split()
        if len(words) >= 4 and words[0] == "postgres:" and ("(" in words[3] or words[3] == "[local]"):
            return words[2]
    return "other"


@dataclass
class Seen:
    """One process's CPU seconds (user + system) when first and last sampled."""

    group: str
    first: float
    last: float
    database: str = ""


class Sampler:
    """CPU seconds and resident memory of groups of processes and all their children, sampled twice a second.

    A process's CPU counts up to its last sample, so one that exits between samples (a PostgreSQL backend whose
    connection closed) loses at most half a second's worth. PostgreSQL's CPU is also split by database.

    The sampler shares the machine it measures, so the costly part is done every MEMBERSHIP_EVERY samples only:
    finding each group's children (psutil reads every process's stat for it) and PostgreSQL's proportional
    memory. A process started in between counts from the sample that finds it. It runs in the driver's process
    and keeps count of its own CPU (`own_seconds`), which the driver's figure leaves out.
    """

    MEMBERSHIP_EVERY = 10

    def __init__(self, pids: dict[str, list[int]]):
        self._roots = {name: [psutil.Process(pid) for pid in ids] for name, ids in pids.items()}
        self._members_of: dict[str, list[psutil.Process]] = {}
        self._samples = 0
        self._seen: dict[tuple[int, float], Seen] = {}
        self.own_seconds = 0.0
        self.peak_rss = dict.fromkeys(pids, 0)
        self.peak_pss = dict.fromkeys(PSS_GROUPS, 0)
        self._sample(first=True)
        self._task = asyncio.create_task(self._run())

    def _members(self, name: str) -> list[psutil.Process]:
        members: list[psutil.Process] = []
        for root in self._roots[name]:
            with contextlib.suppress(psutil.Error):
                members += [root, *root.children(recursive=True)]
        return members

    def _sample(self, first: bool = False, find_members: bool = False) -> None:
        started = time.thread_time()  # the sampler runs on the driver's event loop thread
        try:
            self._sample_groups(first, find_members)
        finally:
            self.own_seconds += time.thread_time() - started

    def _sample_groups(self, first: bool, find_members: bool) -> None:
        full_sample = find_members or self._samples % self.MEMBERSHIP_EVERY == 0
        self._samples += 1
        for name in self._roots:
            if full_sample:
                self._members_of[name] = self._members(name)
            rss = pss = 0
            for process in self._members_of[name]:
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        cpu = times.user + times.system
                        key = (process.pid, process.create_time())
                        if name in PSS_GROUPS and full_sample:
                            full = process.memory_full_info()
                            rss, pss = rss + full.rss, pss + full.pss
                        else:
                            rss += process.memory_info().rss
                except psutil.Error:
                    continue
                seen = self._seen.get(key)
                if seen is None:  # a process started after the first sample counts from zero
                    seen = self._seen[key] = Seen(name, cpu if first else 0.0, cpu)
                seen.last = cpu
                if name == "postgres" and seen.database in ("", "other"):  # its title is set once connected
                    seen.database = postgres_database(process)
            self.peak_rss[name] = max(self.peak_rss[name], rss)
            if name in PSS_GROUPS and full_sample:
                self.peak_pss[name] = max(self.peak_pss[name], pss)

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each group since the sampler started, sampled now, with every process found anew."""
        self._sample(find_members=True)
        totals = dict.fromkeys(self._roots, 0.0)
        for seen in self._seen.values():
            totals[seen.group] += seen.last - seen.first
        return totals

    def rss(self, name: str) -> int:
        """Resident memory of a group now: the sum of RSS, or of PSS for PSS_GROUPS."""
        started = time.thread_time()
        total = 0
        for process in self._members(name):
            with contextlib.suppress(psutil.Error):
                total += process.memory_full_info().pss if name in PSS_GROUPS else process.memory_info().rss
        self.own_seconds += time.thread_time() - started
        return total

    def driver_cpu(self) -> float:
        """This process's CPU seconds, less the sampler's own."""
        return time.process_time() - self.own_seconds

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(0.5)

    def stop(self) -> dict[str, dict[str, Any]]:
        self._task.cancel()
        totals = self.cpu()
        usage: dict[str, dict[str, Any]] = {
            name: {"cpu_seconds": round(totals[name], 1), "peak_rss_mib": round(self.peak_rss[name] / 2**20, 1)}
            for name in self._roots
        }
        for name in PSS_GROUPS:
            if name in usage:
                usage[name]["peak_pss_mib"] = round(self.peak_pss[name] / 2**20, 1)
                by_database: dict[str, float] = {}
                for seen in self._seen.values():
                    if seen.group == name:
                        database = seen.database or "other"
                        by_database[database] = by_database.get(database, 0.0) + seen.last - seen.first
                usage[name]["cpu_seconds_by_database"] = {db: round(cpu, 1) for db, cpu in sorted(by_database.items())}
        return usage


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(pick(0.50) * 1000, 1), "p95": round(pick(0.95) * 1000, 1), "p99": round(pick(0.99) * 1000, 1)}


def sustained_rate(finish_times: list[float]) -> float:
    """Cases per second between the 10th and the 90th percentile completion, so start-up and tail don't count."""
    ordered = sorted(finish_times)
    if len(ordered) < 10:
        return 0.0
    low, high = ordered[len(ordered) // 10], ordered[(len(ordered) * 9) // 10]
    return round((len(ordered) * 0.8) / max(high - low, 1e-9), 2)


def start_identity_provider(work: Path) -> RunningIdentityProvider:
    """The stand-in identity provider on a thread of this process, its state in the run's folder; its URL is
    the issuer the product's processes trust (ENROLL_IDENTITY_ISSUER). Its log (a line per token issued)
    is kept to warnings, as the product's processes are in a benchmark."""
    logs.configure(level="WARNING")
    return start_identity_provider_thread(work / "identity")


def reviewer_of(district_code: str) -> str:
    return f"r-{district_code}-1"


class Reviewers:
    """One reviewer per district, signed in at the provider; each review is proven with that person's token."""

    def __init__(self, issuer: str):
        self.provider = IdentityProvider(issuer)
        self._http = httpx.AsyncClient(timeout=30)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    async def _sign_in(self, sub: str) -> str:
        """The device flow, approved on the provider's device page as the person would."""
        flow = await self.provider.start_device_flow(BOT_CLIENT)
        issuer = self.provider.issuer
        form = {"user_code": flow.user_code, "username": sub, "password": f"demo-{sub}", "decision": "approve"}
        (await self._http.post(f"{issuer}/device", data=form)).raise_for_status()
        answer = await self._http.post(
            f"{issuer}/token",
            data={"grant_type": DEVICE_CODE, "device_code": flow.device_code, "client_id": BOT_CLIENT},
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    async def prover(self, district_code: str) -> PersonProver:
        async with self._lock:
            token, at = self._tokens.get(district_code, ("", float("-inf")))
            if time.monotonic() - at > BOT_SIGN_IN_SECONDS:
                token = await self._sign_in(reviewer_of(district_code))
                self._tokens[district_code] = (token, time.monotonic())
        return PersonProver(self.provider, token, BOT_CLIENT)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self.provider.aclose()


async def count_rows(conn: AsyncConnection, query: LiteralString) -> int:
    """The number a `SELECT count(*) ...` answers (always one row)."""
    row = await (await conn.execute(query)).fetchone()
    assert row is not None, "count(*) answers one row"
    return int(row[0])


async def submit_all(items, start, concurrency: int, rate: float | None) -> None:
    limit = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(index, item):
        if rate:
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        async with limit:
            await start(item)

    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))


def per_case_ms(cpu_seconds: dict[str, float], cases: int) -> dict[str, float]:
    """CPU milliseconds per case of each group of processes, and of all of them: the machine's cost of a case."""
    ms = {name: round(seconds / cases * 1000, 1) for name, seconds in cpu_seconds.items()}
    ms["machine"] = round(sum(ms.values()), 1)
    return ms


async def engine_ceiling(target: Target, cases: int, concurrency: int, already_done: int = 0) -> dict:
    """`already_done`: ceiling workflows this server completed earlier in the run, not counted again."""
    say(f"[ceiling] {cases} trivial workflows (4 no-op activities, a signal, a final activity)")
    worker = subprocess.Popen(target.ceiling_worker_command, env={**os.environ, **target.worker_env})
    sampler = Sampler({"ceiling_worker": [worker.pid], **target.server_processes})
    driver_at = sampler.driver_cpu()
    client = await target.connect()
    run_id = dt.datetime.now().strftime("%H%M%S")
    ids = [f"ceiling-{run_id}-{i}" for i in range(cases)]
    t0 = time.time()

    async def start(workflow_id: str) -> None:
        handle = await client.start_workflow(CeilingCase.run, id=workflow_id, task_queue=CEILING_QUEUE)
        await handle.signal(CeilingCase.review)

    # Completion times come from visibility: a result long-poll per workflow would exceed the
    # namespace's limit on concurrent long polls at a few thousand workflows.
    done_query = 'WorkflowType="CeilingCase" AND ExecutionStatus="Completed"'
    try:
        await submit_all(ids, start, concurrency, None)
        while (await client.count_workflows(done_query)).count < already_done + cases:
            await asyncio.sleep(1)
        finished = [
            execution.close_time.timestamp()
            async for execution in client.list_workflows(done_query)
            if execution.close_time and execution.id.startswith(f"ceiling-{run_id}-")  # set on every completed one
        ]
    finally:
        usage = sampler.stop()
        driver_cpu = sampler.driver_cpu() - driver_at
        worker.terminate()
        worker.wait(30)
    rate = sustained_rate(finished)
    overall = round(cases / (max(finished) - t0), 2)
    # The driver is this process: starting and signalling the workflows, and counting them in visibility.
    cpu_ms = per_case_ms({name: group["cpu_seconds"] for name, group in usage.items()} | {"driver": driver_cpu}, cases)
    say(f"[ceiling] {rate} workflows/s sustained, {overall}/s overall; CPU ms per workflow {cpu_ms}")
    return {
        "cases": cases,
        "sustained_per_second": rate,
        "overall_per_second": overall,
        "cpu_ms_per_case": cpu_ms,
        "sampler_cpu_ms_per_case": round(sampler.own_seconds / cases * 1000, 1),
    }


async def direct_floor(standins_url: str, applications: list[dict], concurrency: int) -> dict:
    """The same verifier and platform calls with plain asyncio: what no orchestration can beat."""
    say(f"[floor] {len(applications)} cases of direct calls")
    paths = {
        "hukou": "/public-security/hukou/v1/verify",
        "residence_permit": "/public-security/residence-permit/v1/verify",
        "social_insurance": "/social-insurance/v1/contributions/verify",
        "property": "/natural-resources/property/v1/verify",
    }
    latencies: list[float] = []
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=standins_url, timeout=30, limits=httpx.Limits(max_connections=200)) as http:

        async def one(app: dict) -> None:
            async with limit:
                t0 = time.monotonic()
                person = app["student"]
                await asyncio.gather(
                    *(
                        http.post(
                            path, json={"request_id": "floor", "id_number": person["id_number"], "name": person["name"]}
                        )
                        for path in paths.values()
                    )
                )
                latencies.append(time.monotonic() - t0)
                await http.post(
                    f"/platform/v1/cases/{app['application_id']}/result",
                    json={"status": "approved"},
                    headers={"Idempotency-Key": f"floor-{app['application_id']}"},
                )

        await asyncio.gather(*(one(app) for app in applications))
    figures = percentiles(latencies)
    say(f"[floor] verification latency ms {figures}")
    return {"cases": len(applications), "verification_latency_ms": figures}


async def product(
    args,
    target: Target,
    standins: subprocess.Popen,
    standins_url: str,
    env: dict,
    applications: list[dict],
    issuer: str,
) -> dict:
    say(f"[product] {len(applications)} cases through {args.workers} worker process(es)")
    # --split-roles: the first process runs the cases, the others the verifiers, as compose deploys them.
    roles = (
        [["--role", "case"], *[["--role", "verification"]] * (args.workers - 1)]
        if args.split_roles
        else [[]] * args.workers
    )
    workers = args.children  # stopped by main_async, whatever happens
    for i, role in enumerate(roles):
        # The worker writes to its own copy of the descriptor; this process need not keep one open.
        with open(args.work / f"worker-{i}.log", "wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers", *role], env=env, stdout=subprocess.DEVNULL, stderr=log
                )
            )
    settings = Settings.from_env()
    client = await target.connect(data_converter(settings))
    pool = await open_pool(target.store_url, max_size=4)
    servers = list(target.server_processes)
    sampler = Sampler({"workers": [w.pid for w in workers], **target.server_processes, "standins": [standins.pid]})
    driver_at = sampler.driver_cpu()
    httpx.post(f"{standins_url}/admin/reset")
    cases = len(applications)
    # With --hold-reviews: storage before, with every case waiting, and after; figures while every case waits.
    storage: dict[str, Any] = {}
    at_rest: dict[str, Any] = {}
    held: dict[str, Any] = {"seconds": 0.0, "cpu": {}}
    if args.hold_reviews:
        storage["before"] = await asyncio.to_thread(target.storage)
    rss_before = {name: sampler.rss(name) for name in servers}
    t0 = time.monotonic()
    reviewed: set[str] = set()
    done = asyncio.Event()

    memory_while_waiting: list[dict] = []
    signalled_at: dict[str, float] = {}

    async def hold_until_all_wait() -> None:
        """With --hold-reviews: nobody reviews until every case waits, and the workers' memory is noted on the way."""
        next_mark = 0
        while True:
            async with pool.connection() as conn:
                waiting = await count_rows(conn, "SELECT count(*) FROM cases WHERE status = 'awaiting_review'")
            if waiting >= next_mark or waiting >= len(applications):
                await asyncio.sleep(1)  # let the write that brought the count here settle in the worker
                rss_mib = mib(sampler.rss("workers"))
                server_rss = {name: mib(sampler.rss(name)) for name in servers}
                memory_while_waiting.append(
                    {"waiting": waiting, "workers_rss_mib": rss_mib, "server_rss_mib": server_rss}
                )
                say(f"  awaiting review: {waiting}, resident memory MiB: workers {rss_mib}, {server_rss}")
                next_mark = waiting + max(1, len(applications) // 10)
            if waiting >= len(applications):
                return
            await asyncio.sleep(2)

    async def while_all_wait() -> None:
        """Memory, visibility and storage while every case waits; their time and CPU are left out of the run's."""
        held_at, cpu_at, driver_cpu_at = time.monotonic(), sampler.cpu(), sampler.driver_cpu()
        rss_waiting = {name: sampler.rss(name) for name in servers}
        at_rest["server_rss_mib_before_handing_in"] = {name: mib(rss_before[name]) for name in servers}
        at_rest["server_rss_mib_all_waiting"] = {name: mib(rss_waiting[name]) for name in servers}
        at_rest["server_rss_kib_per_waiting_case"] = {
            name: round((rss_waiting[name] - rss_before[name]) / cases / 1024, 1) for name in servers
        }
        say(f"  resident memory per waiting case, KiB: {at_rest['server_rss_kib_per_waiting_case']}")
        if args.visibility_runs:
            at_rest["visibility_caught_up"] = await wait_for_visibility(client, cases, timeout=300)
            async with pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT district_code FROM cases WHERE status = 'awaiting_review'"
                        " GROUP BY district_code ORDER BY count(*) DESC LIMIT 1"
                    )
                ).fetchone()
            assert row is not None, "every case waits"
            say(f"  visibility: {at_rest['visibility_caught_up']}; timing the saved queries")
            at_rest["visibility"] = await time_visibility(client, row[0], args.visibility_runs)
            for name, figures in at_rest["visibility"]["queries"].items():
                say(f"    {name}: list {figures['list_first_page_ms']}, count {figures['count_ms']}")
        storage["waiting"] = await asyncio.to_thread(target.storage)
        held["seconds"] = round(time.monotonic() - held_at, 1)
        cpu_now = sampler.cpu()
        held["cpu"] = {name: round(cpu_now[name] - cpu_at[name], 1) for name in cpu_now}
        held["cpu"]["driver"] = round(sampler.driver_cpu() - driver_cpu_at, 1)

    reviewers = Reviewers(issuer)
    # A review is a Workflow Update, answered once the case's worker has run it: released all at once (a held run),
    # a thousand of them outlive the update call's deadline while they queue behind each other at the workers.
    reviewing = asyncio.Semaphore(args.concurrency)

    async def approve(app_id: str, district_code: str) -> None:
        message = Review(
            reviewer_id=reviewer_of(district_code), district_code=district_code, decision="approve", opinion="同意"
        )
        async with reviewing:
            # The reviewer's token is taken only now: a review queued here may wait longer than a token lives.
            prover = await reviewers.prover(district_code)
            for attempt in range(PROOF_ATTEMPTS):
                signalled_at[app_id] = time.time()
                try:
                    receipt = await send_message(client, app_id, message, prover)
                    break
                except IdentityUnavailable:
                    # The proof is asked before anything is sent: a reviewer whose click failed clicks again.
                    if attempt == PROOF_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(1)
        if not receipt.accepted:
            raise RuntimeError(f"{app_id}: the review was refused: {receipt.reason}")

    async def reviewer_bot() -> None:
        """Approves each case as soon as the case store shows it awaiting review."""
        if args.hold_reviews:
            await hold_until_all_wait()
            await while_all_wait()
        while not done.is_set():
            async with pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT application_id, district_code FROM cases WHERE status = 'awaiting_review'"
                    )
                ).fetchall()
            fresh = [(a, d) for a, d in rows if a not in reviewed]
            reviewed.update(app_id for app_id, _ in fresh)
            await asyncio.gather(*(approve(a, d) for a, d in fresh))
            await asyncio.sleep(0.2)

    submitted_at: dict[str, float] = {}

    # The product's own intake path (the API and `enroll submit` share it): hand-in record, the
    # one-open-application rule, and Update-with-Start answering the acceptance conditions.
    intake = Intake(client, pool, LookupSecret(LOOKUP_KEY.encode(), "standard"), "bench")

    hand_ins_again: list[str] = []

    async def start(app: dict) -> None:
        """Hand in; when the case did not answer in time ("error"), the same hand-in again a second later, as
        the intake tells its clients to (a "duplicate" then: the case from the first attempt answered)."""
        submitted_at[app["application_id"]] = time.time()
        application = Application.model_validate(app)
        for attempt in range(HAND_IN_ATTEMPTS):
            result = await submit_one(intake, application)
            if result.result == "started" or (attempt and result.result == "duplicate"):
                return
            if result.result != "error":
                break
            hand_ins_again.append(app["application_id"])
            await asyncio.sleep(1)
        raise RuntimeError(f"{app['application_id']}: {result.result} {result.errors}")

    bot = asyncio.create_task(reviewer_bot())
    await submit_all(applications, start, args.concurrency, args.rate)
    submitted_in = time.monotonic() - t0
    say(f"[product] submitted in {submitted_in:.1f}s")
    while True:
        async with pool.connection() as conn:
            synced = await count_rows(conn, "SELECT count(*) FROM archive_documents WHERE kind = 'result'")
        say(f"  results at the platform and archived: {synced}/{len(applications)}")
        if synced >= len(applications):
            break
        if bot.done():
            await bot  # the bot stopped: a review refused, or the provider unreachable
        await asyncio.sleep(2)
    done.set()
    await bot
    await reviewers.aclose()
    elapsed = time.monotonic() - t0
    active = elapsed - held["seconds"]
    usage = sampler.stop()
    driver_cpu = sampler.driver_cpu() - driver_at
    for name, group in usage.items():
        if args.hold_reviews:
            group["cpu_seconds_while_held"] = held["cpu"].get(name, 0.0)
        group["cpu_ms_per_case"] = round((group["cpu_seconds"] - held["cpu"].get(name, 0.0)) / cases * 1000, 1)
    if args.hold_reviews:
        storage["completed"] = await asyncio.to_thread(target.storage)
        storage["bytes_per_case_waiting"] = bytes_per_case(storage["before"], storage["waiting"], cases)
        storage["bytes_per_case_completed"] = bytes_per_case(storage["before"], storage["completed"], cases)
        say(f"  bytes per case: waiting {storage['bytes_per_case_waiting']}")
        say(f"  bytes per case: completed {storage['bytes_per_case_completed']}")
        running = f'{ops_queries.CASES} AND ExecutionStatus = "Running"'
        storage["cases_still_running_at_completed_snapshot"] = (await client.count_workflows(running)).count
    stats = httpx.get(f"{standins_url}/admin/stats").json()["stats"]
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                """
                SELECT application_id,
                       min(at) FILTER (WHERE step = 'awaiting_review'),
                       min(at) FILTER (WHERE step = 'result_synced_to_platform')
                FROM case_events GROUP BY application_id
                """
            )
        ).fetchall()
        lost = await count_rows(conn, "SELECT count(*) FROM cases WHERE NOT platform_synced")
    await pool.close()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(60)
    # From the moment the driver submitted or the bot signalled (same machine, same clock), so
    # queueing before the case takes the step counts too.
    to_review = [r[1].timestamp() - submitted_at[r[0]] for r in rows if r[1] and r[0] in submitted_at]
    to_result = [r[2].timestamp() - signalled_at[r[0]] for r in rows if r[2] and r[0] in signalled_at]
    finishes = [r[2].timestamp() for r in rows if r[2]]
    results_at_platform = sum(1 for _ in rows)
    figures: dict[str, Any] = {
        "cases": len(applications),
        "workers": args.workers,
        "sustained_per_second": sustained_rate(finishes),
        "overall_per_second": round(len(applications) / elapsed, 2),
        "submission_to_awaiting_review_ms": percentiles(to_review),
        "review_to_platform_result_ms": percentiles(to_result),
        # Over the run's time, less any time held for the figures taken while every case waits.
        "verifier_calls_per_second": {v: round(stats[v]["total"] / active, 1) for v in VERIFIERS},
        "verifier_peak_calls_in_one_second": {v: stats[v]["peak_calls_per_second"] for v in VERIFIERS},
        "verifier_rate_limit_per_second": args.verifier_rate_limit,
        "platform_calls": stats["platform"]["total"],
        "usage": usage,
        # The driver is this process: hand-ins, the reviewer bot and the identity provider's thread.
        "cpu_ms_per_case": per_case_ms(
            {name: group["cpu_seconds"] - held["cpu"].get(name, 0.0) for name, group in usage.items()}
            | {"driver": driver_cpu - held["cpu"].get("driver", 0.0)},
            cases,
        ),
        "sampler_cpu_ms_per_case": round(sampler.own_seconds / cases * 1000, 1),
        "cases_lost": len(applications) - results_at_platform + lost,
        # Hand-ins the case did not answer within the intake's time (starter/hand_in.py), made again.
        "hand_ins_made_again": len(hand_ins_again),
        "cases_handed_in_more_than_once": len(set(hand_ins_again)),
    }
    if memory_while_waiting:
        figures["workers_memory_while_waiting"] = memory_while_waiting
    if args.hold_reviews:
        reached_review = [r[1].timestamp() for r in rows if r[1]]
        figures |= {
            # Rows of the case store's event log: the first phase (hand-in to awaiting review), held apart.
            "to_awaiting_review_sustained_per_second": sustained_rate(reached_review),
            "held_seconds": held["seconds"],
            "overall_per_second_without_hold": round(cases / active, 2),
            "while_all_wait": at_rest,
            "storage": storage,
        }
    say(f"[product] {json.dumps(figures, ensure_ascii=False)}")
    return figures


def applications_reaching_review(count: int, seed: int):
    """Generated applications whose path is verification, review and result (what the bot can finish)."""
    population = generate(seed, int(count / 0.55) + 50)
    chosen = [
        a
        for a in population.applications
        if population.expectations[a["application_id"]]["expected_route"] in ("online_review", "offline_review")
    ]
    if len(chosen) < count:
        raise SystemExit(f"only {len(chosen)} reviewable applications generated; raise the families")
    return population, chosen[:count]


async def main_async(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = args.work = Path(tempfile.mkdtemp(prefix="bench-"))
    args.children = []
    identity = start_identity_provider(work)  # first: the cluster's frontend checks its tokens
    if args.cluster:
        say(f"[cluster] starting the production topology in {work / 'cluster'}")
        target = await start_cluster_target(work, identity.base_url)
    else:
        target = await start_dev_server(work, tuple(args.server_flag))
    population, applications = applications_reaching_review(args.cases, args.seed)
    population.write(work / "standins")
    standins_port = temporal_server.free_port()
    standins_url = f"http://127.0.0.1:{standins_port}"
    standins = subprocess.Popen(
        [sys.executable, "-m", "standins", "serve", "--port", str(standins_port), "--data", str(work / "standins")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    limits = ",".join(f"{v}={args.verifier_rate_limit}" for v in VERIFIERS) if args.verifier_rate_limit else ""
    env = product_environment(target.address, standins_url, target.worker_store_url, identity.base_url, limits)
    env |= target.worker_env
    os.environ.update(
        {
            k: env[k]
            for k in (
                "TEMPORAL_ADDRESS",
                "ENROLL_STANDINS_URL",
                "DATABASE_URL",
                "ENROLL_LOOKUP_KEY",
                "ENROLL_PAYLOAD_KEYS",
                "ENROLL_IDENTITY_ISSUER",
            )
        }
    )
    try:
        wait_for_http(f"{standins_url}/healthz")
        for verifier in VERIFIERS:
            httpx.put(
                f"{standins_url}/admin/faults/{verifier}",
                json={"latency": {"median_ms": args.median_ms, "p99_ms": args.p99_ms}},
            ).raise_for_status()
        report: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB",
            "server": {"kind": target.kind, **target.description},
            "settings": {
                "cases": args.cases,
                "workers": args.workers,
                "rate": args.rate,
                "verifier_latency_ms": {"median": args.median_ms, "p99": args.p99_ms},
                "verifier_rate_limit": args.verifier_rate_limit,
                "hold_reviews": args.hold_reviews,
                "visibility_runs": args.visibility_runs if args.hold_reviews else 0,
                "split_roles": args.split_roles,
                "server_flags": args.server_flag,
                "label": args.label,
                "max_cached_workflows": Settings.from_env().max_cached_workflows,
            },
            "ceiling": await engine_ceiling(target, args.ceiling_cases or args.cases, args.concurrency),
            # The floor is the calls' own latency, so it runs at a modest concurrency the stand-ins do not queue on.
            "floor": await direct_floor(standins_url, applications[: min(len(applications), 500)], FLOOR_CONCURRENCY),
        }
        report["product"] = await product(args, target, standins, standins_url, env, applications, identity.base_url)
        product_rate = report["product"]["sustained_per_second"]
        report["product_vs_ceiling"] = round(product_rate / max(report["ceiling"]["sustained_per_second"], 1e-9), 2)
        if args.ceiling_again:
            # The machine's speed drifts over minutes: the ceiling again, to show how far. The ratio stays with the
            # first, on a server as fresh as the product's: this one also holds every case just run.
            ceiling_cases = args.ceiling_cases or args.cases
            again = await engine_ceiling(target, ceiling_cases, args.concurrency, already_done=ceiling_cases)
            report["ceiling_after_product"] = again
            again_rate = max(again["sustained_per_second"], 1e-9)
            report["product_vs_ceiling_after_product"] = round(product_rate / again_rate, 2)
        if args.hold_reviews:
            # Held runs finish in two phases with a pause between; their sustained rate is the second phase's.
            report["product_overall_without_hold_vs_ceiling_overall"] = round(
                report["product"]["overall_per_second_without_hold"] / report["ceiling"]["overall_per_second"], 2
            )
        floor_p50 = report["floor"]["verification_latency_ms"]["p50"]
        report["review_wait_p50_minus_floor_ms"] = round(
            report["product"]["submission_to_awaiting_review_ms"]["p50"] - floor_p50, 1
        )
        say(json.dumps(report, ensure_ascii=False, indent=2))
        server_part = "-cluster" if args.cluster else ""
        path = out / f"run-{args.cases}-w{args.workers}{server_part}{'-' + args.label if args.label else ''}.json"
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        say(f"written {path}")
    finally:
        for child in args.children:
            child.terminate()
        for child in args.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(60)
        standins.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            standins.wait(30)
        identity.stop()
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--ceiling-cases", type=int, default=None, help="default: --cases")
    parser.add_argument(
        "--ceiling-again",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the ceiling again after the product, to show the machine's drift (default: on)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (each runs both roles, unless --split-roles)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="submissions per second (default: as fast as accepted)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent submissions, and concurrent reviews")
    parser.add_argument("--median-ms", type=float, default=80)
    parser.add_argument("--p99-ms", type=float, default=400)
    parser.add_argument(
        "--split-roles", action="store_true", help="one case worker process, the others verification only"
    )
    parser.add_argument(
        "--verifier-rate-limit", type=float, default=None, help="calls per second allowed to each verifier"
    )
    parser.add_argument(
        "--hold-reviews", action="store_true", help="review nothing until every case waits; note memory on the way"
    )
    parser.add_argument(
        "--server-flag", action="append", default=[], help="passed to `temporal server start-dev` (repeatable)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="run on the production topology (stack/cluster.py) instead of the dev server; implies --hold-reviews",
    )
    parser.add_argument(
        "--visibility-runs",
        type=int,
        default=50,
        help="with --hold-reviews: times each saved visibility query is run while every case waits (0: none)",
    )
    parser.add_argument("--label", default="", help="appended to the result file's name")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    if args.cluster and args.server_flag:
        parser.error("--server-flag is for the dev server; the cluster's settings are in stack/cluster.py")
    args.hold_reviews = args.hold_reviews or args.cluster
    run_to_exit(main_async(args))


def product_environment(
    address: str, standins_url: str, database_url: str, identity_issuer: str, rate_limits: str = ""
) -> dict[str, str]:
    """What the product's processes (workers, the API) run with in a benchmark; `identity_issuer` is the
    provider they trust (start_identity_provider)."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "ENROLL_STANDINS_URL": standins_url,
        "DATABASE_URL": database_url,
        "ENROLL_LOOKUP_KEY": LOOKUP_KEY,
        "ENROLL_PAYLOAD_KEYS": new_key_spec("bench"),
        "ENROLL_IDENTITY_ISSUER": identity_issuer,
        "ENROLL_ROUTING_PHASE": "phase_one",
        "ENROLL_METRICS_ADDRESS": "",
        "ENROLL_LOG_LEVEL": "WARNING",
        "ENROLL_VERIFIER_RATE_LIMITS": rate_limits,
    }


def run_to_exit(work: Coroutine[Any, Any, object]) -> NoReturn:
    """Run a benchmark to its end and exit 0, or print what failed and exit 1."""
    code = 0
    try:
        asyncio.run(work)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal client's native threads can crash interpreter finalisation.
    os._exit(code)


if __name__ == "__main__":
    main()
