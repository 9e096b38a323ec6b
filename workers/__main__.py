"""`python -m workers [--role case|verification]`: run the workers until interrupted."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from enrollment import logging as enrollment_logging
from enrollment.client import connect
from enrollment.settings import Settings
from workers.build import ROLES, build_workers, new_http_client


async def run(roles: tuple[str, ...]) -> None:
    settings = Settings.from_env()
    client = await connect(settings)
    log = structlog.get_logger()
    async with new_http_client(settings) as http:
        workers = build_workers(client, settings, http, roles)
        log.info("workers started", roles=list(roles), temporal=settings.temporal_address, namespace=settings.temporal_namespace)
        await asyncio.gather(*(worker.run() for worker in workers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Run the enrollment workers.")
    parser.add_argument("--role", choices=ROLES, action="append", help="run only this worker (repeatable); default: both")
    args = parser.parse_args(argv)
    enrollment_logging.configure()
    try:
        asyncio.run(run(tuple(args.role or ROLES)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
