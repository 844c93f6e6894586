"""`ingest`: the operator's command line for the mesh."""

from __future__ import annotations

import argparse
import shlex
import sys

from common.config import ConfigError, Settings, load_settings
from services.control import mesh


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    key = mesh.prepare(settings)
    mesh.start(settings, daemon=not args.foreground)
    if args.foreground:
        return 0
    mesh.wait_until_serving(settings, timeout=args.timeout)
    url = mesh.base_url(settings)
    print(f"The mesh is up: {url} (store: {settings.store}, data: {settings.data_dir})")
    print(f"API key: in {settings.api_key_path} (or set INGEST_API_KEYS)")
    print("Post an article:")
    print(
        f"  curl -s -X POST {url}/articles -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' "
        """-d '{"publication": "Example News", "content": "Angela Merkel met Emmanuel """
        """Macron in Paris."}'"""
    )
    print(f"Read the top entities:\n  curl -s {url}/publications/Example%20News/entities")
    print(f"Processes: circusctl --endpoint {settings.circus_endpoint} status")
    print("Stop: ingest down")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    mesh.stop(settings)
    print("The mesh is stopped.")
    return 0


def cmd_env(settings: Settings, args: argparse.Namespace) -> int:
    for name, value in sorted(mesh.environ(settings).items()):
        if name.startswith(("INGEST_", "MESH_")) or name == "PYTHONPATH":
            print(f"export {name}={shlex.quote(value)}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ingest", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the mesh under Circus")
    up.add_argument("--foreground", action="store_true", help="run circusd in the foreground")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for HTTP")
    up.set_defaults(run=cmd_up)
    commands.add_parser("down", help="stop every process of the mesh").set_defaults(run=cmd_down)
    commands.add_parser(
        "env", help="print the environment circus.ini reads (for circusd/circusctl by hand)"
    ).set_defaults(run=cmd_env)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.run(settings, args)
    except (ConfigError, mesh.MeshError) as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
