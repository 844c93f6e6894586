"""`ingest keys`: the CURVE keys of the mesh's tcp links (common/security.py).

    ingest keys                    # server pair (once) + this host's client pair, authorized
    ingest keys --name front2      # another host's client pair, to copy to that host
    ingest keys list               # the authorized client keys
    ingest keys revoke front2      # no longer authorized; binding processes restart

No key is ever printed or logged: they live in `key_dir` (default `<data_dir>/keys`, 0700,
secret files 0600). Revoking takes effect for new handshakes at once; a connection already
up would survive it, so when the mesh is running, revoke restarts the processes that bind
(ledger, saver inlet, control), which drops every connection: the others reconnect with
their own keys, and the revoked one is refused. Nothing is lost: each of those processes
holds nothing that the journal or a lease does not bring back.
"""

from __future__ import annotations

import argparse

from common.config import Settings
from common.security import AUTHORIZED, CLIENT, generate_keys, revoke_key
from services.control import mesh

BINDERS = ("control", "ledger", "saver-inlet")


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    public = generate_keys(settings.key_path, args.name)
    print(f"Key pair {args.name!r} in {settings.key_path} (public key {public.name}, authorized)")
    if args.name != settings.key_name:
        print(
            f"For another host: copy {args.name}.key_secret and server.key to its key_dir and "
            f"set INGEST_KEY_NAME={args.name} there; server.key_secret goes only to hosts "
            "that bind (ledger, saver inlet, control)."
        )
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    authorized = sorted((settings.key_path / AUTHORIZED).glob("*.key"))
    for path in authorized:
        print(path.stem)
    if not authorized:
        print(f"no authorized keys in {settings.key_path / AUTHORIZED}")
    return 0


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    revoke_key(settings.key_path, args.name)
    print(f"Revoked {args.name!r}: new connections with it are refused.")
    if mesh.is_running(settings):
        for watcher in BINDERS:
            mesh.circus(settings, "restart", name=watcher, waiting=True)
        print(f"Restarted {', '.join(BINDERS)}: connections made with it are dropped.")
    return 0


def add_arguments(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="CURVE keys for tcp:// links (make, list, revoke)")
    keys.add_argument("--name", default=CLIENT, help="the client key pair to make")
    keys.set_defaults(run=cmd_keys)
    actions = keys.add_subparsers(dest="action")
    actions.add_parser("list", help="the authorized client keys").set_defaults(run=cmd_list)
    revoke = actions.add_parser("revoke", help="stop authorizing a client key")
    revoke.add_argument("name")
    revoke.set_defaults(run=cmd_revoke)
