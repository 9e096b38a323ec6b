"""`python -m codec_server`: serve the codec for the Temporal UI and CLI."""

from __future__ import annotations

import argparse

import uvicorn

from codec_server.app import create_app
from enrollment import deployment_secrets, logs
from enrollment.client import payload_codec
from enrollment.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m codec_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--cors-origin", action="append", help="the Temporal UI's origin (repeatable), e.g. http://127.0.0.1:8233"
    )
    args = parser.parse_args(argv)
    logs.configure()
    settings = Settings.from_env()
    app = create_app(
        payload_codec(settings),
        deployment_secrets.token_secret(settings),
        args.cors_origin or ["http://127.0.0.1:8233", "http://localhost:8233"],
    )
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
