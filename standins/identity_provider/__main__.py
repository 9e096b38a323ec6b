"""Command line: `python -m standins.identity_provider --port 8900 --state data/identity` serves the provider."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from enrollment import logs
from standins.identity_provider.accounts import DEFAULT_ACCOUNTS, DEFAULT_CLIENTS, Directory
from standins.identity_provider.runner import ADMIN_SECRET_FILE, load_admin_secret, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.identity_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--state", type=Path, default=Path("data/identity"), help="signing keys and admin secret")
    parser.add_argument("--accounts", type=Path, default=DEFAULT_ACCOUNTS)
    parser.add_argument("--clients", type=Path, default=DEFAULT_CLIENTS)
    parser.add_argument(
        "--admin-secret", help=f"bearer secret of the admin endpoints (default: {ADMIN_SECRET_FILE} in --state)"
    )
    parser.add_argument(
        "--issuer", help="the URL product processes and browsers reach it at (default: http://HOST:PORT)"
    )
    args = parser.parse_args(argv)

    logs.configure()
    directory = Directory.load(args.accounts, args.clients)
    secret = load_admin_secret(args.state, args.admin_secret)
    issuer = (args.issuer or "").rstrip("/") or None
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"identity provider stand-in at {issuer or f'http://{host}:{args.port}'} (state in {args.state})", flush=True)
    serve(args.state, directory, secret, args.host, args.port, issuer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
