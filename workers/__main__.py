"""`python -m workers [--role case|verification]`: run the workers until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

import structlog

from enrollment import logging as enrollment_logging
from enrollment.client import connect
from enrollment.settings import Settings
from workers.build import ROLES, build_workers, new_http_client


async def run(roles: tuple[str, ...]) -> None:
    """Poll until SIGINT or SIGTERM, then let activities in flight finish before exiting."""
    settings = Settings.from_env()
    client = await connect(settings)
    log = structlog.get_logger()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with new_http_client(settings) as http, contextlib.AsyncExitStack() as running:
        for worker in build_workers(client, settings, http, roles):
            await running.enter_async_context(worker)
        log.info("workers started", roles=list(roles), temporal=settings.temporal_address, namespace=settings.temporal_namespace)
        await stop.wait()
        log.info("workers stopping")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Run the enrollment workers.")
    parser.add_argument("--role", choices=ROLES, action="append", help="run only this worker (repeatable); default: both")
    args = parser.parse_args(argv)
    enrollment_logging.configure()
    asyncio.run(run(tuple(args.role or ROLES)))
    # Skip interpreter finalisation, which the Temporal runtime's native threads can crash.
    os._exit(0)


if __name__ == "__main__":
    main()
