"""`python -m bench.http_calls`: the workers' CPU per department call, against the real stand-ins.

What one call to a department costs the client is worth knowing on its own, away from the rest of a case: it is
how httpx was found to cost 2 to 5 ms per call and aiohttp under 0.5 (bench/README.md). This sends calls through
the workers' own client (`workers.build.new_http_client`) and `activities.gateway.post_json`, with the stand-in's
verifier latency the main benchmark uses, at a fixed concurrency, and prints the client process's CPU
milliseconds per call for each round. Run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from activities.gateway import post_json
from activities.outbound import OutboundClient
from enrollment.settings import Settings
from stack.demo import wait_for_http
from stack.temporal_server import free_port
from standins.population import generate
from workers.build import new_http_client

HUKOU = "/public-security/hukou/v1/verify"


async def one_round(client: OutboundClient, url: str, calls: int, concurrency: int) -> tuple[float, float]:
    """CPU milliseconds of this process per call, and the round's seconds."""
    limit = asyncio.Semaphore(concurrency)

    async def call(index: int) -> None:
        async with limit:
            body = {"request_id": f"bench-{index}", "id_number": "11010519491231002X", "name": "张三"}
            await post_json(client, url + HUKOU, body)

    cpu, started = time.process_time(), time.monotonic()
    await asyncio.gather(*(call(i) for i in range(calls)))
    return (time.process_time() - cpu) / calls * 1000, time.monotonic() - started


async def measure(url: str, calls: int, concurrency: int, rounds: int) -> None:
    async with new_http_client(Settings.from_env()) as client:
        await one_round(client, url, 200, concurrency)  # connections opened, code paths warm
        for _ in range(rounds):
            ms, seconds = await one_round(client, url, calls, concurrency)
            print(f"{calls} calls at concurrency {concurrency}: {ms:.2f} CPU ms per call, {seconds:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_calls", description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--median-ms", type=float, default=80)
    parser.add_argument("--p99-ms", type=float, default=400)
    args = parser.parse_args()
    print(f"sniffio importable: {importlib.util.find_spec('sniffio') is not None}")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as work:
        generate(seed=7, families=50).write(Path(work))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        standins = subprocess.Popen(
            [sys.executable, "-m", "standins", "serve", "--port", str(port), "--data", work],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_http(f"{url}/healthz")
            latency = {"latency": {"median_ms": args.median_ms, "p99_ms": args.p99_ms}}
            httpx.put(f"{url}/admin/faults/hukou", json=latency).raise_for_status()
            asyncio.run(measure(url, args.calls, args.concurrency, args.rounds))
        finally:
            standins.terminate()
            standins.wait(30)


if __name__ == "__main__":
    main()
