"""Serving one of the product's web processes (the API, the review console): its command line and its life.

Both listen on a host and port, may sit behind the TLS-terminating proxy, and
end the same way, so that is written once here.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

import uvicorn

from store.database import embedded


def web_arguments(prog: str, description: str | None, port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-Proto/For from the TLS-terminating proxy in front"
        " (cookies then get the Secure flag over https)",
    )
    return parser


def serve(app: Any, args: argparse.Namespace) -> NoReturn:
    """Serve until interrupted, stop the embedded database if this process started it, and exit."""
    try:
        uvicorn.run(
            app, host=args.host, port=args.port, log_config=None, access_log=False, proxy_headers=args.proxy_headers
        )
    finally:
        embedded.stop_if_started_here()
    # Skip interpreter finalisation, which the Temporal runtime's native threads can crash.
    os._exit(0)
