"""`python -m console`: serve the review console for reviewers and service-point staff."""

from __future__ import annotations

import argparse
import os

import uvicorn

from console.app import create_app
from enrollment import deployment_secrets, logs
from enrollment.client import connect
from enrollment.settings import Settings
from store.database import embedded, open_pool, resolve_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m console", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    parser.add_argument(
        "--proxy-headers", action="store_true",
        help="trust X-Forwarded-Proto/For from the TLS-terminating proxy in front (cookies then get the Secure flag over https)",
    )
    args = parser.parse_args(argv)
    logs.configure()
    settings = Settings.from_env()
    token_secret = deployment_secrets.token_secret(settings)

    async def temporal_client():
        return await connect(settings)

    async def case_store():
        return await open_pool(resolve_url(settings.reveal_database_url()), max_size=4)

    app = create_app(temporal_client, case_store, token_secret, settings.platform_url, http_timeout_seconds=settings.http_timeout_seconds)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, proxy_headers=args.proxy_headers)
    finally:
        embedded.stop_if_started_here()
    # Skip interpreter finalisation, which the Temporal runtime's native threads can crash.
    os._exit(0)


if __name__ == "__main__":
    main()
