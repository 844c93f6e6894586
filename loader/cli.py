"""`ingest load`: post a dataset to the mesh in batches, from several threads, and measure.

    ingest load articles.jsonl --concurrency 4 --batch-size 100 --wait
    ingest load all-the-news-2-1.csv --limit 100000 --rate 500
    ingest load lee_background.cor --publication "ABC News"
    ingest load --corpus lee --repeat 10 --wait --json

The command line (`add_arguments`, `command`) and the Python API the benchmarks share
(`run_load`, `wait_drained`). Reading is in loader.readers, posting in loader.poster, the
summary and progress bar in loader.report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress, TaskID

from common.config import Settings
from loader.corpora import lee_articles, lee_rows
from loader.poster import Loader, LoadOptions, tls_context
from loader.readers import READERS, LoadError, Row, file_format, file_rows, limited
from loader.report import LoadResult, add_task, make_progress
from services.control import mesh


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="JSONL/NDJSON, CSV or text file")
    parser.add_argument("--corpus", choices=["lee"], help="post the Lee corpus instead of FILE")
    parser.add_argument("--format", choices=sorted(READERS), help="default: from the extension")
    parser.add_argument(
        "--publication",
        help="publication of every article of a text file; for JSONL/CSV, of rows without one",
    )
    parser.add_argument("--url", help="the frontend (default: from the settings)")
    parser.add_argument("--api-key", help="default: the first configured key (the key file)")
    parser.add_argument("--concurrency", type=int, default=4, help="posting threads")
    parser.add_argument("--batch-size", type=int, default=100, help="articles per POST")
    parser.add_argument(
        "--rate",
        type=float,
        help="target articles/s (default: as fast as it goes); batches shrink to a quarter "
        "second's worth",
    )
    parser.add_argument("--limit", type=int, help="post at most N articles")
    parser.add_argument(
        "--repeat", type=int, default=1, help="post the dataset N times (copies get distinct ids)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="then wait until the mesh has committed everything"
    )
    parser.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds, for --wait")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`ingest load`: returns the exit status (non-zero if anything was not accepted)."""
    if (args.file is None) == (args.corpus is None):
        raise LoadError("give either FILE or --corpus lee")
    options = load_options(settings, args)
    console = Console(stderr=True)
    progress = make_progress(console)
    rows, task = dataset(args, progress)

    result = run_load(rows, options, progress=progress, task=task)
    if args.wait and result.error is None:
        wait_drained(settings, result, args.wait_timeout, console)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(result.report())
    sys.stdout.flush()
    return 0 if result.ok else 1


def load_options(settings: Settings, args: argparse.Namespace) -> LoadOptions:
    """The posting options, checked against the server's limits before anything is sent."""
    for name in ("concurrency", "batch_size", "repeat"):
        if getattr(args, name) < 1:
            raise LoadError(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch_size > settings.max_batch:
        raise LoadError(
            f"--batch-size {args.batch_size} is over the server's max_batch {settings.max_batch}"
        )
    api_key = args.api_key or next(iter(settings.load_api_keys()), None)
    if not api_key:
        raise LoadError(
            f"no API key: give --api-key, set INGEST_API_KEYS, or put one in "
            f"{settings.api_key_path}"
        )
    return LoadOptions(
        url=args.url or mesh.base_url(settings),
        api_key=api_key,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        max_body_bytes=settings.max_body_bytes,
        rate=args.rate,
    )


def dataset(args: argparse.Namespace, progress: Progress) -> tuple[Iterable[Row], TaskID]:
    """The rows to post (the Lee corpus or a file, repeated and limited), and the progress
    task they advance."""
    rows: Iterable[Row]
    if args.corpus == "lee":
        texts = lee_articles()
        rows = lee_rows(args.repeat, texts)
        total: int | None = len(texts) * args.repeat
        task = add_task(progress, f"Lee corpus x{args.repeat}")
    else:
        path: Path = args.file
        if not path.is_file():
            raise LoadError(f"no such file: {path}")
        fmt = file_format(path, args.format)
        if fmt == "text" and not args.publication:
            # The reader would say so too, but only once the run has started.
            raise LoadError("a text file (one article per line) needs --publication NAME")
        # Articles in a file are not known before reading it: show how far the reader is.
        size = max(1, path.stat().st_size * args.repeat)
        total = None
        task = add_task(progress, path.name)

        def on_position(at: int) -> None:
            progress.update(task, description=f"{path.name}: read {100 * at / size:.0f}%")

        rows = file_rows(path, fmt, args.publication, args.repeat, on_position)
    if args.limit is not None:
        rows = limited(rows, args.limit)
        total = args.limit if total is None else min(total, args.limit)
    progress.update(task, total=total)
    return rows, task


def run_load(
    rows: Iterable[Row],
    options: LoadOptions,
    *,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> LoadResult:
    """Post `rows` with `options`; the Python API the CLI and the benchmarks share.
    `task` is a task of `progress` (see `add_task`) the posted articles advance."""
    check_reachable(options.url, options.transport)
    progress = progress or make_progress(enabled=False)
    if task is None:
        task = add_task(progress, "posting")
    with progress:
        return Loader(options, progress, task).run(rows)


def check_reachable(url: str, transport: httpx.BaseTransport | None = None) -> None:
    """Fail early, with a clear message, when nothing answers at `url`."""
    try:
        with httpx.Client(timeout=5.0, transport=transport, verify=tls_context()) as client:
            client.get(url.rstrip("/") + "/health")
    except httpx.TransportError as exc:
        raise LoadError(
            f"the mesh is not reachable at {url} ({exc}); start it with `ingest up` or give --url"
        ) from exc


def wait_drained(
    settings: Settings, result: LoadResult, timeout: float, console: Console | None = None
) -> None:
    """Wait until the mesh has committed every accepted article; fill in the drain time."""
    console = console or Console(stderr=True)

    def progress(left: int, elapsed: float) -> None:
        if elapsed < 1.0:
            return  # the first look can predate the last commits: not worth printing
        what = "waiting for a ledger report" if left < 0 else f"{left} article(s) left"
        console.print(f"draining: {what} after {elapsed:.0f} s")

    try:
        left = mesh.drain(settings, None, timeout=timeout, progress=progress)
    except mesh.MeshError as exc:
        result.drained = False
        result.error = result.error or f"cannot watch the drain: {exc}"
        return
    result.drained = left == 0
    if result.drained:
        result.drain_seconds = time.monotonic() - result.finished
    else:
        result.error = result.error or f"not drained after {timeout:.0f} s"
