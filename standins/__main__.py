"""Command line: `python -m standins generate ...` writes a population, `python -m standins serve ...` serves one."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from standins.applicants import FrontDoor
from standins.population import DEFAULT_POLICIES, generate
from standins.runner import load_or_generate, read_signature_clients, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write population.json, applications.jsonl, expectations.json")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--families", type=int, default=200)
    gen.add_argument("--out", type=Path, default=Path("data/standins"))
    gen.add_argument("--policies", type=Path, default=DEFAULT_POLICIES)

    srv = commands.add_parser("serve", help="serve the stand-ins (generating the data first if missing)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8700)
    srv.add_argument("--data", type=Path, default=Path("data/standins"))
    srv.add_argument("--seed", type=int, default=42, help="used only when the data must be generated")
    srv.add_argument("--families", type=int, default=200, help="used only when the data must be generated")
    srv.add_argument("--policies", type=Path, default=DEFAULT_POLICIES)
    srv.add_argument("--api-url", help="the product's API, for the platform and front end to hand applications in")
    srv.add_argument("--api-clients", type=Path, help="the API's client list, for their credentials (with --api-url)")
    srv.add_argument(
        "--require-signature",
        type=Path,
        metavar="FILE",
        help='refuse department and platform calls not signed by a client in FILE, {"client_id": "secret", ...}',
    )

    args = parser.parse_args(argv)
    if args.families < 1:
        parser.error("--families must be at least 1")
    if args.command == "generate":
        population = generate(args.seed, args.families, args.policies)
        population.write(args.out)
        counts = ", ".join(f"{name} {count}" for name, count in population.meta["scenarios"].items())
        print(f"wrote {len(population.applications)} applications to {args.out} ({counts})")
        return 0

    signature_clients = None
    if args.require_signature is not None:
        try:
            signature_clients = read_signature_clients(args.require_signature)
        except ValueError as error:
            parser.error(f"--require-signature: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    population = load_or_generate(args.data, args.seed, args.families, args.policies)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"stand-ins serving {len(population.applications)} families at http://{host}:{args.port}", flush=True)
    front_door = (
        FrontDoor.from_clients_file(args.api_url, args.api_clients) if args.api_url and args.api_clients else None
    )
    serve(population, args.host, args.port, front_door, signature_clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
