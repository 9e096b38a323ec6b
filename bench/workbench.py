"""The reviewer's workbench at a district's scale: the queue, a filtered page and a search, timed over HTTP.

    python -m bench.workbench [--waiting 5000] [--finished 20000] [--samples 50] [--bulk 500]

One district (成都市锦江区, 510104) on a fresh dev server: `--waiting` real cases handed in through the
product's intake path and brought to review by a worker process, and `--finished` decided cases written
straight into the case store (the queue reads only the store). The console then serves a signed-in
reviewer, and each of its pages is fetched `--samples` times. Last, the reviewer bulk-approves `--bulk`
clean cases and the run checks that every one of them is approved exactly once.

It reuses the harness the tests run the product with as separate processes (tests/support): the same
keys, worker environment and console sign-in, so what is timed is what the browser tests drive.
The last line is `queue p95 <ms> ms; filtered p95 <ms> ms; search p95 <ms> ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.targets import start_dev_server
from enrollment import identity
from enrollment.application import Application
from enrollment.identity import LookupSecret
from standins.identity_provider.runner import start_in_thread as start_identity_provider
from standins.population import generate
from standins.runner import start_in_thread as start_standins
from starter.intake import Intake, submit_one
from store.cases import CaseSnapshot, save_progress
from store.database import migrate, open_pool
from tests.support.identity_console import PRODUCT_LOOKUP, served_console, signed_in
from tests.support.keys import TEST_CONVERTER
from tests.support.processes import product_environment, start_worker

DISTRICT = "510104"
REVIEWER = "r-510104-1"
POLICIES = Path(__file__).resolve().parent.parent / "policies"


def say(text: str) -> None:
    print(text, flush=True)


def one_district_policies(folder: Path) -> Path:
    """The city's policy with only the benchmark's district, so every generated family applies there."""
    city = json.loads((POLICIES / "510100-chengdu.json").read_text(encoding="utf-8"))
    city["districts"] = {DISTRICT: city["districts"][DISTRICT]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "510100-chengdu.json").write_text(json.dumps(city, ensure_ascii=False), encoding="utf-8")
    return folder


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]


def timed(browser: httpx.Client, paths: list[str]) -> list[float]:
    times = []
    for path in paths:
        started = time.perf_counter()
        page = browser.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if page.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {page.status_code}")
    return times


async def hand_in(client: Client, store_url: str, applications: list[dict[str, Any]], concurrency: int) -> None:
    pool = await open_pool(store_url, max_size=8)
    intake = Intake(client, pool, PRODUCT_LOOKUP, "bench")
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(data: dict[str, Any]) -> None:
        nonlocal done
        async with gate:
            for _ in range(5):
                result = await submit_one(intake, Application.model_validate(data))
                if result.result in ("started", "duplicate"):
                    break
                await asyncio.sleep(1)
            else:
                raise RuntimeError(f"{data['application_id']}: {result.result} {result.errors}")
        done += 1
        if done % 500 == 0:
            say(f"  handed in {done}/{len(applications)}")

    try:
        await asyncio.gather(*(one(data) for data in applications))
    finally:
        await pool.close()


async def count(store_url: str, query: str) -> int:
    pool = await open_pool(store_url, max_size=1)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute(query)).fetchone()
    finally:
        await pool.close()
    return int(row[0]) if row else 0


async def write_finished(store_url: str, how_many: int, lookup: LookupSecret) -> None:
    """Decided cases of the district, as their cases would have written them (no workflow behind them)."""
    pool = await open_pool(store_url, max_size=4)
    began = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    try:
        for i in range(how_many):
            snapshot = CaseSnapshot(
                application_id=f"SC2027-F{i:06d}",
                workflow_id=f"case-SC2027-F{i:06d}",
                status="approved" if i % 4 else "rejected",
                progress=12,
                routing_phase="phase_one",
                channel="platform",
                stage="primary" if i % 3 else "junior",
                registration_type="hukou" if i % 2 else "non_hukou",
                district_code=DISTRICT,
                school_year=2027,
                policy_version="510100@2027.2",
                auto_filled_count=9,
                platform_synced=True,
                student_id_number=identity.make(
                    DISTRICT, dt.date(2019, 1, 1) + dt.timedelta(days=i % 900), i % 999 + 1, "male"
                ),
                guardian_id_numbers=[],
                submitted_at=began,
                first_seq=0,
                events=[],
                status_since=began + dt.timedelta(minutes=i % 40000),
                verification_outcomes={"hukou": "matched"},
                materials_count=2,
            )
            await save_progress(pool, snapshot, lookup)
    finally:
        await pool.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="workbench-"))
    families = generate(args.seed, int(args.waiting / 0.55) + 50, one_district_policies(work / "policies"))
    reaching_review = [
        a
        for a in families.applications
        if families.expectations[a["application_id"]]["expected_route"] == "online_review"
    ][: args.waiting]
    if len(reaching_review) < args.waiting:
        raise RuntimeError(f"only {len(reaching_review)} generated families reach review")
    guardians = [a["guardians"][0]["id_number"] for a in reaching_review[: args.samples]]
    target = await start_dev_server(work / "server", ())
    standins = start_standins(families)
    provider = start_identity_provider(work / "identity")
    figures: dict[str, Any] = {"waiting": args.waiting, "finished": args.finished, "samples": args.samples}
    worker = None
    try:
        await migrate(target.store_url)
        environment = product_environment(
            target.address, standins.base_url, target.store_url, ENROLL_IDENTITY_ISSUER=provider.base_url
        )
        worker = start_worker(environment, work / "worker.log")
        client = await Client.connect(target.address, data_converter=TEST_CONVERTER)
        started = time.monotonic()
        await hand_in(client, target.store_url, reaching_review, args.concurrency)
        while (
            waiting := await count(target.store_url, "SELECT count(*) FROM cases WHERE status = 'awaiting_review'")
        ) < args.waiting:
            say(f"  awaiting review: {waiting}/{args.waiting}")
            await asyncio.sleep(5)
        figures["seconds_to_bring_to_review"] = round(time.monotonic() - started, 1)
        say(f"{args.waiting} cases awaiting review after {figures['seconds_to_bring_to_review']} s")
        await write_finished(target.store_url, args.finished, PRODUCT_LOOKUP)
        say(f"{args.finished} finished cases written to the case store")

        platform = f"{standins.base_url}/platform"
        async with served_console(target.address, platform, target.store_url, provider.base_url) as console:
            browser = signed_in(console, REVIEWER)
            timed(browser, ["/queue"] * 3)  # warm: connections, templates, plans
            queue = timed(browser, [f"/queue?page={1 + i % 20}" for i in range(args.samples)])
            filtered = timed(
                browser,
                [f"/queue?hukou=matched&stage={('primary', 'junior')[i % 2]}&sort=newest" for i in range(args.samples)],
            )
            search = timed(browser, [f"/queue?q={number}" for number in guardians])
            figures |= {
                "queue_ms": {"p50": round(statistics.median(queue), 1), "p95": round(p95(queue), 1)},
                "filtered_ms": {"p50": round(statistics.median(filtered), 1), "p95": round(p95(filtered), 1)},
                "search_ms": {"p50": round(statistics.median(search), 1), "p95": round(p95(search), 1)},
            }
            if args.bulk:
                figures["bulk"] = await bulk_approval(browser, client, args.bulk)
            browser.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        provider.stop()
        standins.stop()
        target.stop()
    return figures


async def bulk_approval(browser: httpx.Client, client: Client, limit: int) -> dict[str, Any]:
    """Approve the clean cases of the first `limit` ones (oldest first) and check each is approved exactly once."""
    page = browser.get("/queue")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    started = time.monotonic()
    answer = browser.post("/queue/bulk", data={"csrf": csrf, "opinion": "材料齐全，同意入学"}, follow_redirects=False)
    job = answer.headers["location"]
    while "已完成 Finished" not in (progress := browser.get(job)).text:
        done = progress.text.split('id="bulk-done">', 1)[1].split("<", 1)[0]
        say(f"  bulk approval: {done}/{limit}")
        await asyncio.sleep(5)
    seconds = time.monotonic() - started
    approved = progress.text.count('class="r-approved"')
    ids = [
        cell.split('"', 1)[0]
        for cell in progress.text.split('class="r-approved"><td><a class="mono" href="/cases/')[1:]
    ]
    decided = 0
    for application_id in ids:
        view = await client.get_workflow_handle(f"case-{application_id}").query("status")
        decided += len(view["reviews"]) == 1 and view["status"] == "approved"
    return {
        "cases": approved,
        "skipped": progress.text.count('class="r-skipped"'),
        "refused": progress.text.count('class="r-refused"'),
        "seconds": round(seconds, 1),
        "approved_once_in_temporal": decided,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workbench", description=__doc__)
    parser.add_argument("--waiting", type=int, default=5000)
    parser.add_argument("--finished", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=500, help="0: no bulk approval")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    results = Path(__file__).resolve().parent / "results" / f"workbench-{args.waiting}.json"
    results.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    say(json.dumps(figures, ensure_ascii=False))
    say(
        f"queue p95 {figures['queue_ms']['p95']} ms; filtered p95 {figures['filtered_ms']['p95']} ms;"
        f" search p95 {figures['search_ms']['p95']} ms"
    )


if __name__ == "__main__":
    main()
