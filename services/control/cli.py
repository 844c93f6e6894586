"""`ingest`: the operator's command line for the mesh.

Everything Circus does itself (status of watchers, incr/decr, restart) also works with plain
`circusctl` on the same circus.ini; `ingest` adds the pipeline's own state and lifecycle.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time

import msgspec

from common.config import ConfigError, Settings, load_settings
from common.control import MeshSummary, summarize
from common.security import SecurityError
from common.store import UnknownPublication
from loader import cli as load_tool
from services.control import keys, mesh
from services.frontend.journal import Journal
from store import open_store


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    sizes = {
        name: getattr(args, name)
        for name in ("web_workers", "extractors", "savers")
        if getattr(args, name) is not None
    }
    # Sizes at start only: later, `ingest scale` (or circusctl) changes them live.
    settings = msgspec.structs.replace(settings, **sizes)
    mesh.prepare(settings)
    process = mesh.start(settings, daemon=not args.foreground)
    if process is not None:
        _forward_stop_signals(process)
    try:
        if settings.runs("frontend"):
            mesh.wait_until_serving(settings, timeout=args.timeout)
        else:
            # A fleet's worker or store host serves no HTTP: its watchers are its proof.
            mesh.wait_for_watchers(settings, timeout=args.timeout)
        if settings.run_firestore_emulator:
            mesh.wait_for_emulator(settings, timeout=args.timeout)
        if settings.runs("frontend") and not args.keep_state:
            # The pipeline state survives restarts (a stopped mesh stays stopped); `up`
            # means "accept writes" where writes are taken. A host without a frontend
            # leaves the fleet's state alone (it may join a fleet that is draining), and
            # so does a pod Kubernetes restarts on its own (--keep-state): it must not
            # undo an operator's stop-writes or drain.
            mesh.set_state(settings, "resume")
    except BaseException:
        if process is not None:
            # In the foreground this command owns circusd: never leave it orphaned.
            process.terminate()
            process.wait(timeout=120)
        raise
    if not settings.runs("frontend"):
        stages = ", ".join(f"{s} x{n}" for s, n in mesh.process_plan(settings).items() if n)
        print(f"Host {settings.host_name} is up: {stages} (data: {settings.data_dir})")
        return process.wait() if process is not None else 0
    url = mesh.base_url(settings)
    print(f"The mesh is up: {url} (store: {settings.store}, data: {settings.data_dir})")
    # Never the key itself: this output ends up in terminals' scrollback, CI logs, tickets.
    where, bearer = _key_source(settings)
    print(where)
    print("Post an article:")
    print(
        f'  curl -s -X POST {url}/articles -H "Authorization: Bearer {bearer}" '
        "-H 'Content-Type: application/json' "
        """-d '{"publication": "Example News", "content": "Angela Merkel met Emmanuel """
        """Macron in Paris."}'"""
    )
    print(f"Read the top entities:\n  curl -s {url}/publications/Example%20News/entities")
    print("Status: ingest status    Stop: ingest down")
    if process is not None:
        return process.wait()
    return 0


def _forward_stop_signals(circusd: subprocess.Popen) -> None:
    """In the foreground (a container's main process), SIGTERM and SIGINT go to circusd,
    which stops every process gracefully (frontends finish their requests, extractors their
    batch, savers their commit); this command then returns when circusd has exited."""

    def forward(signum: int, _frame: object) -> None:
        if circusd.poll() is None:
            circusd.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)


def _key_source(settings: Settings) -> tuple[str, str]:
    """Where the API keys come from, said without them, and the shell words that give
    one to curl."""
    if settings.api_keys:
        origin = (
            "INGEST_API_KEYS"
            if os.environ.get("INGEST_API_KEYS")
            else "the api_keys setting (INGEST_CONFIG)"
        )
        return f"API keys: from {origin}, not printed; set KEY to one of them", "$KEY"
    path = shlex.quote(str(settings.api_key_path.resolve()))
    # The first line: a key file may hold several keys, one per line.
    return f"API key: in {path}", f"$(head -n 1 {path})"


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = mesh.set_state(settings, "stop-writes").state
    left = mesh.drain(settings, stopped.seq, timeout=args.timeout, progress=_progress)
    if settings.in_fleet:
        # A fleet: each host's circusd is local (ipc only), so control tells every host to
        # stop its own, and answers once all did (docs/architecture.md, "Several hosts").
        letters = summarize(mesh.control(settings, "status")).dead_letters
        print(mesh.halt_fleet(settings, timeout=args.halt_timeout))
    else:
        mesh.stop(settings)
        letters = None
    if left:
        print(
            f"ingest: drain timed out: {_left(left)}; the mesh is stopped anyway and the "
            "journal keeps them for the next `ingest up`",
            file=sys.stderr,
        )
        return 1
    if letters is None:
        letters = _dead_letter_count(settings)
    if letters:
        print(
            f"Drained and stopped, but {letters} dead letter(s) were never counted: see "
            "`ingest dead-letters`, then `ingest retry-dead`.",
            file=sys.stderr,
        )
        return 3
    print("Drained and stopped: every accepted article is committed.")
    return 0


def cmd_stop_writes(settings: Settings, args: argparse.Namespace) -> int:
    mesh.set_state(settings, "stop-writes")
    print("Writes stopped: the frontend answers 503; the rest of the mesh keeps working.")
    return 0


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    mesh.set_state(settings, "resume")
    print("Accepting writes.")
    return 0


def cmd_drain(settings: Settings, args: argparse.Namespace) -> int:
    draining = mesh.set_state(settings, "drain").state
    left = mesh.drain(settings, draining.seq, timeout=args.timeout, progress=_progress)
    if left:
        print(f"ingest: drain timed out: {_left(left)}", file=sys.stderr)
        return 1
    print("Drained: the journal holds no unacknowledged article. Writes stay stopped.")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    summary = summarize(mesh.control(settings, "status"))
    print(f"pipeline: {summary.state} (seq {summary.seq})")
    if settings.in_fleet:
        # A fleet: this host's Circus knows only this host; every host reports to control.
        _print_fleet(summary)
    else:
        _print_processes(mesh.process_counts(settings), summary)
    if "ledger" in summary.processes:
        print(
            f"journal: {summary.backlog} unacknowledged, oldest "
            f"{summary.oldest_age_seconds:.1f}s, re-sent {summary.redelivered}"
        )
        hint = " (see `ingest dead-letters`)" if summary.dead_letters else ""
        print(f"dead letters: {summary.dead_letters}{hint}")
    else:
        print("journal: no ledger is reporting")
    print(
        f"since start: extracted {summary.extracted}, committed {summary.committed}, "
        f"{summary.acknowledged_per_second:.1f} articles/s"
    )
    store = open_store(settings)
    try:
        publications = store.publications(limit=1_000_000)
    finally:
        store.close()
    total = sum(p.articles for p in publications)
    print(f"store ({settings.store}): {total} articles in {len(publications)} publications")
    return 0


def _print_processes(processes: dict[str, int], summary: MeshSummary) -> None:
    print("processes:")
    for stage, count in processes.items():
        # Circus's count; a frontend process is one gunicorn with one worker, so it is the
        # count GET /status and circusctl give too. Reports lag a start or a stop by a few
        # seconds: say so when they differ rather than print two truths as one.
        reporting = summary.processes.get(stage)
        detail = f" ({reporting} reporting)" if reporting not in (None, count) else ""
        print(f"  {stage:<12} {count}{detail}")


def _print_fleet(summary: MeshSummary) -> None:
    print("processes per host (reporting):")
    for host, stages in summary.hosts.items():
        print(f"  {host:<12} " + ", ".join(f"{stage} {n}" for stage, n in stages.items()))
    if summary.ledger_backlogs:
        print("backlog per ledger:")
        for host, backlog in summary.ledger_backlogs.items():
            print(f"  {host:<12} {backlog}")


def cmd_scale(settings: Settings, args: argparse.Namespace) -> int:
    before, after = mesh.scale(settings, args.stage, args.count)
    print(f"{args.stage}: {before} -> {after}")
    return 0


def cmd_top(settings: Settings, args: argparse.Namespace) -> int:
    if settings.store == "sqlite" and not settings.sqlite_store_path.exists():
        # Opening it would create an empty store here and answer "unknown publication".
        raise mesh.MeshError(
            f"no store at {settings.sqlite_store_path}: is the data directory right? "
            "set INGEST_DATA_DIR or INGEST_CONFIG"
        )
    store = open_store(settings)
    try:
        page = store.top_entities(args.publication, limit=args.n, label=args.label)
    except UnknownPublication:
        print(f"ingest: unknown publication {args.publication!r}", file=sys.stderr)
        return 1
    finally:
        store.close()
    for rank, entity in enumerate(page.entities, 1):
        print(f"{rank:>4}  {entity.count:>7}  {entity.label:<12} {entity.text}")
    return 0


def _existing_journal(settings: Settings) -> Journal:
    """The journal of the mesh the settings name; MeshError if there is none.

    Opening a missing one would create it (SQLite creates the file), and the command would
    answer for an empty journal, e.g. "0 dead letter(s)", when it is only run from another
    directory (the default data_dir `var` is relative).
    """
    path = settings.journal_path
    if not path.is_file():
        raise mesh.MeshError(
            f"no journal at {path}: is the data directory right? "
            "set INGEST_DATA_DIR or INGEST_CONFIG"
        )
    return Journal(path)


def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    journal = _existing_journal(settings)
    try:
        letters = journal.dead_letters(limit=args.limit)
        total = journal.dead_letter_count()
    finally:
        journal.close()
    for letter in letters:
        failed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.failed_at))
        print(f"{letter.id}  {letter.publication!r}  attempts={letter.attempts}  {failed}")
        print(f"    {letter.error}")
    print(f"{total} dead letter(s)")
    return 0


def cmd_retry_dead(settings: Settings, args: argparse.Namespace) -> int:
    journal = _existing_journal(settings)
    try:
        moved = journal.revive(args.ids or None)
    finally:
        journal.close()
    print(f"{moved} dead letter(s) back in the journal, to be sent again")
    return 0


def _dead_letter_count(settings: Settings) -> int:
    journal = _existing_journal(settings)
    try:
        return journal.dead_letter_count()
    finally:
        journal.close()


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    # The whole tool (formats, batching, retries, summary) lives in the loader package.
    return load_tool.command(settings, args)


def cmd_env(settings: Settings, args: argparse.Namespace) -> int:
    for name, value in sorted(mesh.environ(settings).items()):
        if name.startswith(("INGEST_", "MESH_")) or name in ("PYTHONPATH", "CIRCUSCTL_ENDPOINT"):
            print(f"export {name}={shlex.quote(value)}")
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _left(left: int) -> str:
    if left < 0:
        return "no ledger has reported its journal yet"
    return f"{left} article(s) still in the journal"


def _progress(left: int, elapsed: float) -> None:
    print(f"draining: {_left(left)} after {elapsed:.0f}s", file=sys.stderr, flush=True)


def _fleet_arguments(command: argparse.ArgumentParser) -> None:
    # The same as INGEST_TOPOLOGY / INGEST_HOST (common/topology.py).
    command.add_argument("--topology", help="a fleet's topology TOML (this host's share)")
    command.add_argument("--host", help="this host's name in the topology")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ingest", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the mesh under Circus and accept writes")
    up.add_argument("--foreground", action="store_true", help="keep circusd in the foreground")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for HTTP")
    up.add_argument(
        "--keep-state",
        action="store_true",
        help="leave the pipeline state as it is (default: resume writes); for hosts that "
        "restart on their own, e.g. Kubernetes pods",
    )
    for stage in ("web-workers", "extractors", "savers"):
        up.add_argument(f"--{stage}", type=_positive, help=f"{stage} at start (default: config)")
    _fleet_arguments(up)
    up.set_defaults(run=cmd_up)

    down = commands.add_parser("down", help="stop writes, drain, then stop every process")
    down.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for drain")
    down.add_argument(
        "--halt-timeout", type=float, default=120.0, help="fleet: seconds for every host to stop"
    )
    _fleet_arguments(down)
    down.set_defaults(run=cmd_down)

    status = commands.add_parser("status", help="processes, pipeline state, backlog, totals")
    _fleet_arguments(status)
    status.set_defaults(run=cmd_status)
    scale = commands.add_parser("scale", help="set the number of processes of a stage")
    scale.add_argument("stage", help=f"one of {', '.join(mesh.SCALABLE)}")
    scale.add_argument("count", type=int)
    scale.set_defaults(run=cmd_scale)
    commands.add_parser("stop-writes", help="answer 503 to writes").set_defaults(
        run=cmd_stop_writes
    )
    commands.add_parser("resume", help="accept writes again").set_defaults(run=cmd_resume)
    drain = commands.add_parser("drain", help="stop writes, wait until nothing is left")
    drain.add_argument("--timeout", type=float, default=600.0)
    drain.set_defaults(run=cmd_drain)

    top_entities = commands.add_parser("top", help="top entities of a publication")
    top_entities.add_argument("publication")
    top_entities.add_argument("-n", type=int, default=20)
    top_entities.add_argument("--label", default=None)
    top_entities.set_defaults(run=cmd_top)

    letters = commands.add_parser("dead-letters", help="articles that could not be counted")
    letters.add_argument("--limit", type=int, default=100)
    letters.set_defaults(run=cmd_dead_letters)
    retry = commands.add_parser("retry-dead", help="send dead letters again (all, or these ids)")
    retry.add_argument("ids", nargs="*")
    retry.set_defaults(run=cmd_retry_dead)

    commands.add_parser(
        "env", help="print the environment circus.ini reads (for circusd/circusctl by hand)"
    ).set_defaults(run=cmd_env)

    keys.add_arguments(commands)

    load_dataset = commands.add_parser(
        "load", help="post a dataset (JSONL, CSV, text, or the Lee corpus) and measure"
    )
    load_tool.add_arguments(load_dataset)
    load_dataset.set_defaults(run=cmd_load)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        fleet = {k: getattr(args, k) for k in ("topology", "host") if getattr(args, k, None)}
        settings = load_settings(**fleet)
        return args.run(settings, args)
    except (ConfigError, SecurityError, mesh.MeshError) as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
