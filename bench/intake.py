"""`python -m bench.intake`: submissions per second through the HTTP API, against a bare start, in one run.

The API's intake answers 201 only once the case has checked its acceptance
conditions (Update-with-Start), after writing the hand-in record, the child's
one-open-application place and the request's nonce to PostgreSQL. A bare
`start_workflow` answers as soon as the server has stored the start. So one
invocation, on one fresh dev server, embedded PostgreSQL, stand-ins and W
worker processes, hands the same number of generated applications in four
times, each time new ones:

1. **direct**: `client.start_workflow(EnrollmentCase.run, ...)`, what the engine accepts;
2. **core**: `starter.intake.submit_one` in this process, what `enroll submit` does;
3. **api**: signed `POST /v1/applications` to a `python -m api` process, as the platform;
4. **direct_again**: the bare start once more, so the machine's warm-up shows rather than favours one mode.

Then the four again, one submission at a time, for latencies without queueing.
API against core isolates the HTTP layer's own cost; API against direct is the
figure the target is stated in, and includes waiting for the case. Because a
bare start leaves the case's work for later, each mode also reports how soon
all its cases were past verification. Between modes the run waits for that, so
one mode's backlog does not slow the next. No review is ever sent: cases stop
at awaiting_review or earlier.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from api.signing import SignedRequests
from bench.run import (
    LOOKUP_KEY,
    Sampler,
    count_rows,
    percentiles,
    product_environment,
    run_to_exit,
    say,
    start_identity_provider,
    sustained_rate,
)
from enrollment.application import Application
from enrollment.case import CASE_TASK_QUEUE, CaseInput, workflow_id_for
from enrollment.client import connect
from enrollment.identity import LookupSecret
from enrollment.policy import PolicyBook, policy_book
from enrollment.settings import Settings
from enrollment.verifiers import VERIFIERS
from stack import temporal_server
from stack.demo import wait_for_http
from standins.population import generate
from starter.hand_in import fingerprint
from starter.intake import Intake, submit_one, validate
from store.database import EmbeddedDatabase, open_pool
from workflows.enrollment_case import EnrollmentCase

MODES = ("direct", "core", "api", "direct_again")
WARMUP_MODES = ("direct", "core", "api")
API_CLIENT = "platform"
# The `enroll-api` client's secret at the stand-in identity provider (standins/identity_provider/clients.json).
API_IDENTITY_SECRET = "demo-api-secret"
# The same pool size the API process opens (api/__main__.py), so core and API wait on PostgreSQL alike.
POOL_SIZE = 8
TARGET_RATIO = 0.90
TARGET_P50_MS = 20.0
# Cases still being set up or verified; every other status is a wait for a person or the end.
UNSETTLED = "SELECT count(*) FROM cases WHERE status NOT IN ('submitted', 'verifying')"

Submit = Callable[[dict[str, Any]], Awaitable[None]]


def deal(groups: list[tuple[int, list[str]]], seed: int, standins_data: Path) -> dict[str, list[dict[str, Any]]]:
    """Distinct generated applications for each slot; within a group of equal slots, dealt round-robin so every
    mode gets the same mix of routes.

    One population, not one per mode: the stand-ins serve one population's records, and the generator numbers
    application ids from 1 whatever the seed. Every application comes in by the platform channel, the one the
    API's platform client may use, in every mode alike.
    """
    population = generate(seed, sum(count * len(slots) for count, slots in groups))
    population.write(standins_data)
    applications = [{**app, "channel": "platform"} for app in population.applications]
    if len({a["application_id"] for a in applications}) != len(applications):
        raise SystemExit("generated application ids repeat")
    if len({(a["student"]["id_number"], a["school_year"]) for a in applications}) != len(applications):
        raise SystemExit("a generated child applies twice in a school year; the one-child rule would refuse it")
    dealt: dict[str, list[dict[str, Any]]] = {}
    for count, slots in groups:
        head, applications = applications[: count * len(slots)], applications[count * len(slots) :]
        dealt.update({slot: head[i :: len(slots)] for i, slot in enumerate(slots)})
    return dealt


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as output:
        # The child writes to its own copy of the descriptor; this process need not keep one open.
        return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL, stderr=output)


def postmaster_pid(database: EmbeddedDatabase) -> int | None:
    """The embedded PostgreSQL's server process, so its CPU (and its backends') is counted per mode."""
    try:
        return int((database.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def direct_submitter(client: Client) -> Submit:
    """A bare start: the server stores it and answers; the case's first step happens later, on a worker."""

    async def submit(app: dict[str, Any]) -> None:
        application = Application.model_validate(app)
        await client.start_workflow(
            EnrollmentCase.run,
            CaseInput(application=application, fingerprint=fingerprint(application)),
            id=workflow_id_for(application.application_id),
            task_queue=CASE_TASK_QUEUE,
        )

    return submit


def core_submitter(intake: Intake, policies: PolicyBook) -> Submit:
    """What `enroll submit` does for each application: the intake rules, then `hand_in`, answered by the case."""

    async def submit(app: dict[str, Any]) -> None:
        application, problems = validate(app, policies)
        if application is None:
            raise RuntimeError(f"invalid: {problems[:2]}")
        result = await submit_one(intake, application)
        if result.result != "started":
            raise RuntimeError(f"{result.result}: {result.errors[:2]}")

    return submit


def api_submitter(http: httpx.AsyncClient) -> Submit:
    """`POST /v1/applications`, signed as the platform; 201 is the only success for an application never seen."""

    async def submit(app: dict[str, Any]) -> None:
        response = await http.post("/v1/applications", json=app)
        if response.status_code != 201:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    return submit


async def submit_timed(applications: list[dict[str, Any]], submit: Submit, concurrency: int) -> dict[str, Any]:
    """Each submission's latency and completion time, at most `concurrency` at once; failures are counted."""
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    finishes: list[float] = []
    errors: list[str] = []
    started = time.monotonic()

    async def one(app: dict[str, Any]) -> None:
        async with limit:
            t0 = time.monotonic()
            try:
                await submit(app)
            except Exception as err:  # a failure is a figure of the run, not the end of it
                errors.append(f"{app['application_id']}: {type(err).__name__}: {err}"[:300])
                return
            done = time.monotonic()
            latencies.append(done - t0)
            finishes.append(done)

    await asyncio.gather(*(one(app) for app in applications))
    return {"started": started, "latencies": latencies, "finishes": finishes, "errors": errors}


async def settle(pool: AsyncConnectionPool, total: int, seconds: float) -> float | None:
    """Wait until the case store shows `total` cases past verification: the monotonic time it did, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        async with pool.connection() as conn:
            if await count_rows(conn, UNSETTLED) >= total:
                return time.monotonic()
        await asyncio.sleep(0.5)
    return None


async def run_mode(
    name: str,
    applications: list[dict[str, Any]],
    submit: Submit,
    args: argparse.Namespace,
    pids: dict[str, list[int]],
    pool: AsyncConnectionPool,
    settled_before: int,
    concurrency: int,
) -> dict[str, Any]:
    """One mode's figures: rate, latency and failures of the submissions; CPU of every process while they ran."""
    say(f"[{name}] {len(applications)} submissions at a concurrency of {concurrency}")
    driver = psutil.Process()
    driver_cpu0 = sum(driver.cpu_times()[:2])
    psutil.cpu_percent(None)
    sampler = Sampler(pids)
    run = await submit_timed(applications, submit, concurrency)
    submitted_in = (max(run["finishes"]) if run["finishes"] else time.monotonic()) - run["started"]
    usage = sampler.stop()
    busy = psutil.cpu_percent(None)
    usage["driver"] = {"cpu_seconds": round(sum(driver.cpu_times()[:2]) - driver_cpu0, 1)}
    # The workers' share of the mode's cases: a bare start leaves all of it for after it answered.
    settled = await settle(pool, settled_before + len(applications), args.settle_timeout)
    done = len(run["latencies"])
    figures: dict[str, Any] = {
        "submissions": len(applications),
        "failures": len(run["errors"]),
        "sustained_per_second": sustained_rate(run["finishes"]),
        "overall_per_second": round(done / max(submitted_in, 1e-9), 2),
        "latency_ms": percentiles(run["latencies"]),
        "submitted_in_s": round(submitted_in, 1),
        "all_past_verification_after_s": round(settled - run["started"], 1) if settled is not None else None,
        # The bare start's rate is what the server accepts; this one counts the work it leaves for later.
        "through_verification_per_second": round(len(applications) / (settled - run["started"]), 2)
        if settled is not None
        else None,
        "machine_cpu_busy_percent": busy,
        "cpu_seconds": {proc: u["cpu_seconds"] for proc, u in usage.items()},
        "cpu_ms_per_submission": {proc: round(u["cpu_seconds"] * 1000 / max(done, 1), 1) for proc, u in usage.items()},
    }
    if run["errors"]:
        figures["first_errors"] = run["errors"][:5]
    say(f"[{name}] {json.dumps(figures, ensure_ascii=False)}")
    if settled is None:
        say(f"[{name}] warning: not every case got past verification within {args.settle_timeout:.0f}s")
    return figures


def compare(api: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The target's two figures: the throughput ratio and the difference of the medians."""
    ratio = round(api["sustained_per_second"] / max(other["sustained_per_second"], 1e-9), 2)
    p50_difference = round(api["latency_ms"]["p50"] - other["latency_ms"]["p50"], 1)
    through = api.get("through_verification_per_second"), other.get("through_verification_per_second")
    return {
        "throughput_ratio": ratio,
        "through_verification_ratio": round(through[0] / through[1], 2) if through[0] and through[1] else None,
        "p50_difference_ms": p50_difference,
        "ratio_target_met": ratio >= TARGET_RATIO,
        "p50_target_met": p50_difference <= TARGET_P50_MS,
    }


def mean_direct(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """The two direct runs averaged, so neither the cold nor the warm machine alone sets the baseline."""
    first_through, again_through = first["through_verification_per_second"], again["through_verification_per_second"]
    both = first_through is not None and again_through is not None
    return {
        "sustained_per_second": round((first["sustained_per_second"] + again["sustained_per_second"]) / 2, 2),
        "through_verification_per_second": round((first_through + again_through) / 2, 2) if both else None,
        "latency_ms": {"p50": round((first["latency_ms"]["p50"] + again["latency_ms"]["p50"]) / 2, 1)},
    }


COMPARISONS = ("api_vs_direct", "api_vs_direct_first", "api_vs_direct_again", "api_vs_core", "core_vs_direct")


def comparisons(modes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """API against the direct runs (the target), against the core (the HTTP layer), and core against direct."""
    baseline = mean_direct(modes["direct"], modes["direct_again"])
    return {
        "api_vs_direct": compare(modes["api"], baseline),
        "api_vs_direct_first": compare(modes["api"], modes["direct"]),
        "api_vs_direct_again": compare(modes["api"], modes["direct_again"]),
        "api_vs_core": compare(modes["api"], modes["core"]),
        "core_vs_direct": compare(modes["core"], baseline),
    }


def verdict(figures: dict[str, Any]) -> str:
    """The two target figures in words, for the printed summary."""
    ratio = "met" if figures["ratio_target_met"] else "NOT met"
    p50 = "met" if figures["p50_target_met"] else "NOT met"
    return (
        f"ratio {figures['throughput_ratio']} (≥ {TARGET_RATIO}: {ratio}), "
        f"p50 difference {figures['p50_difference_ms']} ms (≤ {TARGET_P50_MS:.0f}: {p50})"
    )


def table(modes: dict[str, dict[str, Any]]) -> str:
    """The per-mode figures as a Markdown table, the form bench/README.md keeps them in."""
    figures = list(modes.values())

    def latency(m: dict[str, Any]) -> str:
        return " / ".join(str(m["latency_ms"][q]) for q in ("p50", "p95", "p99"))

    rows: list[tuple[str, list[object]]] = [
        ("submissions/s, sustained (p10–p90)", [m["sustained_per_second"] for m in figures]),
        ("submissions/s, overall", [m["overall_per_second"] for m in figures]),
        ("latency p50 / p95 / p99 ms", [latency(m) for m in figures]),
        ("failures", [m["failures"] for m in figures]),
        ("all cases past verification after s", [m["all_past_verification_after_s"] for m in figures]),
        ("cases/s through verification", [m["through_verification_per_second"] for m in figures]),
        ("machine CPU busy %", [m["machine_cpu_busy_percent"] for m in figures]),
        *(
            (f"CPU ms per submission: {proc}", [m["cpu_ms_per_submission"][proc] for m in figures])
            for proc in figures[0]["cpu_ms_per_submission"]
        ),
    ]
    lines = ["| figure | " + " | ".join(modes) + " |", "| --- |" + " --- |" * len(modes)]
    lines += ["| " + " | ".join([label, *map(str, cells)]) + " |" for label, cells in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    say(f"working in {work}")
    server = temporal_server.start(
        work / "temporal.db",
        port=temporal_server.free_port(),
        ui_port=temporal_server.free_port(),
        log_file=work / "temporal.log",
    )
    database = EmbeddedDatabase(work / "postgres")
    processes: list[subprocess.Popen] = []
    stops: list[Callable[[], None]] = []
    pool: AsyncConnectionPool | None = None
    try:
        await temporal_server.wait_until_serving(server.address)
        database_url = database.url()
        groups = [
            (args.warmup, [f"warmup_{mode}" for mode in WARMUP_MODES]),
            (args.cases, list(MODES)),
            (args.one_at_a_time, [f"one_{mode}" for mode in MODES]),
        ]
        dealt = deal(groups, args.seed, work / "standins")
        standins_port = temporal_server.free_port()
        standins_url = f"http://127.0.0.1:{standins_port}"
        identity = start_identity_provider(work)
        stops.append(identity.stop)
        env = product_environment(server.address, standins_url, database_url, identity.base_url)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("TEMPORAL_", "ENROLL_", "DATABASE_URL"))})
        standins = start_process(
            ["standins", "serve", "--port", str(standins_port), "--data", str(work / "standins")],
            env,
            work / "standins.log",
        )
        processes.append(standins)
        wait_for_http(f"{standins_url}/healthz")
        for verifier in VERIFIERS:
            httpx.put(
                f"{standins_url}/admin/faults/{verifier}",
                json={"latency": {"median_ms": args.median_ms, "p99_ms": args.p99_ms}},
            ).raise_for_status()

        workers = [start_process(["workers"], env, work / f"worker-{i}.log") for i in range(args.workers)]
        processes.extend(workers)

        # The API as deployed: its own process, one registered client, the limiter set out of the way.
        api_secret = secrets.token_urlsafe(32)
        clients_file = work / "api-clients.json"
        clients_file.write_text(
            json.dumps({"clients": [{"client_id": API_CLIENT, "kind": "platform", "secret": api_secret}]}),
            encoding="utf-8",
        )
        clients_file.chmod(0o600)
        api_port = temporal_server.free_port()
        api_env = {
            **env,
            "ENROLL_API_CLIENTS_FILE": str(clients_file),
            # The API's own client at the provider, with which it would prove applicants' messages
            # (the stand-in's demo secret; this run sends none, but the API will not start without it).
            "ENROLL_IDENTITY_CLIENT_SECRET": API_IDENTITY_SECRET,
            "ENROLL_API_REQUESTS_PER_SECOND": "1000000",
            "ENROLL_API_BURST": "1000000",
        }
        api = start_process(["api", "--port", str(api_port)], api_env, work / "api.log")
        processes.append(api)
        wait_for_http(f"http://127.0.0.1:{api_port}/readyz", seconds=120)

        settings = Settings.from_env()
        client = await connect(settings)
        pool = await open_pool(database_url, max_size=POOL_SIZE)
        intake = Intake(client, pool, LookupSecret(LOOKUP_KEY.encode(), "standard"), API_CLIENT)
        policies = policy_book(settings.policies_dir)
        pids = {"api": [api.pid], "workers": [w.pid for w in workers], "temporal_server": [server.process.pid]}
        if (pg := postmaster_pid(database)) is not None:
            pids["postgres"] = [pg]
        pids["standins"] = [standins.pid]

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}",
            auth=SignedRequests(API_CLIENT, api_secret.encode()),
            timeout=120,
            limits=httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency),
        ) as http:
            submitters = {
                "direct": direct_submitter(client),
                "core": core_submitter(intake, policies),
                "api": api_submitter(http),
                "direct_again": direct_submitter(client),
            }
            total = 0
            if args.warmup:
                say(f"[warm-up] {args.warmup} through each of {', '.join(WARMUP_MODES)} (not counted)")
                for mode in WARMUP_MODES:
                    warm = await submit_timed(dealt[f"warmup_{mode}"], submitters[mode], args.concurrency)
                    if warm["errors"]:
                        raise RuntimeError(f"warm-up {mode} failed: {warm['errors'][:3]}")
                    total += args.warmup
                if await settle(pool, total, args.settle_timeout) is None:
                    raise RuntimeError("the warm-up cases did not get past verification")
            passes: dict[str, dict[str, Any]] = {}
            for pass_name, prefix, concurrency in (("loaded", "", args.concurrency), ("one_at_a_time", "one_", 1)):
                if pass_name == "one_at_a_time" and not args.one_at_a_time:
                    continue
                modes: dict[str, dict[str, Any]] = {}
                for mode in MODES:
                    batch = dealt[prefix + mode]
                    modes[mode] = await run_mode(
                        prefix + mode, batch, submitters[mode], args, pids, pool, total, concurrency
                    )
                    total += len(batch)
                passes[pass_name] = {"concurrency": concurrency, "modes": modes, **comparisons(modes)}

        loaded = passes["loaded"]
        report: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB",
            "settings": {
                "cases_per_mode": args.cases,
                "one_at_a_time_per_mode": args.one_at_a_time,
                "workers": args.workers,
                "concurrency": args.concurrency,
                "warmup_per_mode": args.warmup,
                "verifier_latency_ms": {"median": args.median_ms, "p99": args.p99_ms},
                "order": list(MODES),
                "label": args.label,
            },
            **passes,
            "api_vs_direct": loaded["api_vs_direct"],
            "api_vs_core": loaded["api_vs_core"],
            "api_cpu_ms_per_request": loaded["modes"]["api"]["cpu_ms_per_submission"]["api"],
            "failures": sum(m["failures"] for p in passes.values() for m in p["modes"].values()),
        }
        for pass_name, figures in passes.items():
            say("")
            per_mode = figures["modes"]["direct"]["submissions"]
            say(f"{pass_name}: {per_mode} submissions per mode, concurrency {figures['concurrency']}")
            say(table(figures["modes"]))
            for key in COMPARISONS:
                say(f"  {key}: {json.dumps(figures[key])}")
            say(f"  targets against the two direct runs averaged: {verdict(figures['api_vs_direct'])}")
        say("")
        say(f"API process CPU per request (loaded): {report['api_cpu_ms_per_request']} ms")
        say(f"failures: {report['failures']}")
        name = f"intake-{args.cases}-w{args.workers}{'-' + args.label if args.label else ''}.json"
        path = out / name
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        say(f"written {path}")
    finally:
        if pool is not None:
            await pool.close()
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        for stop in stops:
            stop()
        server.stop()
        database.stop_if_started_here()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="submissions in each mode")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, each running both roles")
    parser.add_argument("--concurrency", type=int, default=32, help="submissions in flight at once, in every mode")
    parser.add_argument(
        "--one-at-a-time",
        type=int,
        default=100,
        help="then this many in each mode at a concurrency of 1, for latencies without queueing at the API",
    )
    parser.add_argument("--warmup", type=int, default=20, help="uncounted submissions through each path first")
    parser.add_argument("--median-ms", type=float, default=80, help="stand-in verifier latency, median")
    parser.add_argument("--p99-ms", type=float, default=400, help="stand-in verifier latency, 99th percentile")
    parser.add_argument(
        "--settle-timeout", type=float, default=900, help="seconds to wait for a mode's cases to pass verification"
    )
    parser.add_argument("--label", default="", help="appended to the result file's name")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default="bench/results")
    run_to_exit(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
