"""`python -m workers [--role case|verification]`: run the workers until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from datetime import timedelta

import structlog

from activities.archive import ArchiveActivities
from enrollment import deployment_secrets, logs
from enrollment.client import connect
from enrollment.settings import Settings
from store.database import embedded, open_pool, resolve_url
from workers.build import ROLES, build_workers, new_http_client
from workers.metrics import BacklogReporter, runtime_with_metrics

GRACEFUL_SHUTDOWN = timedelta(seconds=50)
# The workers' client at the identity provider: their own token for a Temporal frontend that checks tokens
# (ENROLL_TEMPORAL_CLIENT_ID names it; its secret is ENROLL_IDENTITY_CLIENT_SECRET).
WORKERS_IDENTITY_CLIENT = "enroll-workers"


async def run(roles: tuple[str, ...]) -> None:
    """Poll until SIGINT or SIGTERM, then let activities in flight finish before exiting."""
    settings = Settings.from_env()
    runtime = runtime_with_metrics(settings.metrics_address) if settings.metrics_address else None
    client = await connect(settings, runtime)
    log = structlog.get_logger()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with new_http_client(settings) as http, contextlib.AsyncExitStack() as running:
        archive = None
        if "case" in roles:
            pool = await open_pool(resolve_url(settings.reveal_database_url()))
            running.push_async_callback(pool.close)
            archive = ArchiveActivities(pool, deployment_secrets.lookup_key(settings))
            if runtime is not None:
                backlog = asyncio.create_task(BacklogReporter(pool, runtime.metric_meter).run())
                running.callback(backlog.cancel)
        # Activities in flight get time to finish on SIGTERM (a redeploy) before they are cancelled.
        for worker in build_workers(
            client,
            settings,
            http,
            archive,
            roles,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_cached_workflows=settings.max_cached_workflows,
        ):
            await running.enter_async_context(worker)
        log.info(
            "workers started",
            roles=list(roles),
            temporal=settings.temporal_address,
            namespace=settings.temporal_namespace,
            metrics=f"http://{settings.metrics_address}/metrics" if runtime else "off",
        )
        await stop.wait()
        log.info("workers stopping")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Run the enrollment workers.")
    parser.add_argument(
        "--role", choices=ROLES, action="append", help="run only this worker (repeatable); default: both"
    )
    args = parser.parse_args(argv)
    logs.configure()
    try:
        asyncio.run(run(tuple(args.role or ROLES)))
    finally:
        embedded.stop_if_started_here()
    # Skip interpreter finalisation, which the Temporal runtime's native threads can crash.
    os._exit(0)


if __name__ == "__main__":
    main()
