"""The frontend server before and after, in one run, against the same build and journal.

    .venv/bin/python -m bench.frontend_server [--rounds 2] [--articles 5000]

One mesh (extractors stopped, so only the intake works); two HTTP servers on its journal:

- after: the mesh's own frontend, as circus.ini starts it (`web_workers` Circus processes,
  each a gunicorn with one services.frontend.http.server.Worker);
- before: gunicorn started by hand with the settings circus.ini had before it: one
  master, `web_workers` sync workers, `--header-map dangerous`, same app, same config.

Rounds alternate before / after / after with one frontend process (scaled with Circus
decr, then back), so that load from other work on the machine, and the journal growing,
fall on all alike. Each: single-article POSTs from wrk (2 threads, 8 kept-alive
connections, 5 s; the script of bench/mesh_bench.py) and batched POSTs from the load tool
(100 articles each, 4 threads). Then, once per server: GET /health from a fresh connection
each, while 20 slow clients (10 trickling their headers a byte every 0.5-1 s, 10 idle) are
connected. Prints Markdown (for bench/RESULTS.md); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from bench.mesh_bench import articles, post, wrk_output
from loader.corpora import lee_articles
from services.control import mesh
from tests.conftest import free_port
from tests.e2e.conftest import RunningMesh, start_mesh, stop_mesh

SLOW_CLIENTS = 20
PROBE_REQUESTS, PROBE_SECONDS, PROBE_TIMEOUT = 200, 15.0, 2.0


@contextlib.contextmanager
def sync_gunicorn(running: RunningMesh, log_path: Path) -> Iterator[RunningMesh]:
    """The frontend as circus.ini ran it before: one gunicorn, N sync workers, on a port of
    its own; yields a RunningMesh copy whose url points at it."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
        "--workers", str(running.settings.web_workers), "--graceful-timeout", "20",
        "--no-control-socket", "--header-map", "dangerous",
        "--config", "python:services.frontend.http.gunicorn_conf",
        "services.frontend.http.app:get_app()",
    ]  # fmt: skip
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, env=mesh.environ(running.settings), cwd=mesh.ROOT,
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        before = copy.copy(running)
        before.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(before.url + "/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sync gunicorn did not get ready: see {log_path}")
            time.sleep(0.2)
        yield before
    finally:
        process.terminate()
        process.wait(timeout=30)


def slow_probe(url: str) -> str:
    """GET /health on fresh connections while SLOW_CLIENTS slow clients hold connections."""
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets: list[socket.socket] = []
    rng = random.Random(1)

    def trickle(sock: socket.socket) -> None:
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
        for byte in request:
            if stop.wait(rng.uniform(0.5, 1.0)):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return  # cut off by the server

    threads = []
    for n in range(SLOW_CLIENTS):
        sock = socket.create_connection((host, int(port)))
        sockets.append(sock)
        if n % 2 == 0:  # the others are idle: connected, sending nothing
            threads.append(threading.Thread(target=trickle, args=(sock,), daemon=True))
    for thread in threads:
        thread.start()
    latencies, failures = [], 0
    try:
        time.sleep(0.5)
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=PROBE_TIMEOUT, limits=no_reuse) as http:
            end = time.monotonic() + PROBE_SECONDS
            for _ in range(PROBE_REQUESTS):
                if time.monotonic() > end:
                    break
                started = time.perf_counter()
                try:
                    ok = http.get(url + "/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failures += 1
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    if len(latencies) < 2:
        return f"{len(latencies)} answered, {failures} failed (timeout {PROBE_TIMEOUT:.0f} s)"
    p99 = statistics.quantiles(latencies, n=100)[98]
    return (
        f"{len(latencies)} answered, {failures} failed (timeout {PROBE_TIMEOUT:.0f} s); "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms"
    )


def wrk_single_posts(server: RunningMesh) -> str:
    """Single-article POSTs from wrk (2 threads, 8 kept-alive connections, 5 s; the script
    of bench/mesh_bench.py): requests/s and latency percentiles."""
    output = wrk_output(server)
    if output is None:
        return "wrk not installed (apt-get install wrk)"
    rate = float(re.findall(r"Requests/sec:\s+([\d.]+)", output)[0])
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.MULTILINE))
    errors = re.findall(r"Non-2xx or 3xx responses: (\d+)", output)
    return (
        f"{rate:,.0f}/s, p50 {percentiles['50']}, p90 {percentiles['90']}, "
        f"p99 {percentiles['99']}" + (f", {errors[0]} non-2xx" if errors else "")
    )


def set_frontends(running: RunningMesh, count: int) -> None:
    """Scale the mesh's frontend (Circus incr/decr) and wait until every process serves."""
    mesh.scale(running.settings, "frontend", count)
    # Every process reports, and ten /ready in a row on fresh connections (any process may
    # take each) say it accepts writes: a new worker refuses them until it hears the state.
    deadline, ready = time.monotonic() + 60, 0
    while ready < 10 and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError):
            status = httpx.get(running.url + "/status", timeout=2).json()
            if status["processes"].get("frontend") != count:
                ready = 0
            elif httpx.get(running.url + "/ready", timeout=2).status_code == 200:
                ready += 1
                continue
            else:
                ready = 0
        time.sleep(0.2)


def measure(label: str, server: RunningMesh, texts: list[str], count: int, tag: str) -> dict:
    print(f"{label}: wrk, single POSTs", file=sys.stderr)
    wrk = wrk_single_posts(server)
    print(f"{label}: batched POSTs", file=sys.stderr)
    batched = post(server, articles(texts, count, tag), f"{label}, batched", count)
    return {"wrk": wrk, "batched": batched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--articles", type=int, default=5000, help="per batched run")
    parser.add_argument("--keep", action="store_true", help="keep the mesh's folder (logs)")
    args = parser.parse_args(argv)
    texts = lee_articles()
    load_before = os.getloadavg()
    rows: list[tuple[str, int, dict]] = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="frontend-bench-")
            print(f"mesh folder: {tmp}", file=sys.stderr)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="frontend-bench-"))
        # Nothing is extracted: every POST stays in the journal, so no 503 for a full one.
        running = start_mesh(Path(tmp) / "mesh", max_backlog=10_000_000)
        try:
            mesh.circus(running.settings, "stop", name="extractor", waiting=True)
            with sync_gunicorn(running, Path(tmp) / "sync-gunicorn.log") as before:
                workers = running.settings.web_workers
                for n in range(args.rounds):
                    for label, server, processes in (
                        (f"before: sync, 1 gunicorn x {workers} workers", before, workers),
                        (f"after: event loop, {workers} processes", running, workers),
                        ("after: event loop, 1 process", running, 1),
                    ):
                        if server is running:
                            set_frontends(running, processes)
                        tag = f"{n}-{len(rows)}"
                        result = measure(label, server, texts, args.articles, tag)
                        rows.append((label, n + 1, result))
                    set_frontends(running, workers)
                probes = {
                    "before: sync": slow_probe(before.url),
                    f"after: event loop, {workers} processes": slow_probe(running.url),
                }
        finally:
            stop_mesh(running)
    load_after = os.getloadavg()
    lines = [
        "### Frontend server: sync workers (before) vs the event-loop worker (after)",
        "",
        f"`python -m bench.frontend_server --rounds {args.rounds} --articles {args.articles}`; "
        f"{psutil.cpu_count()} cores; one mesh, extractors stopped, journal `synchronous=FULL`; "
        f"{running.settings.web_workers} workers each; load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after.",
        "",
        "| server | round | single POSTs from wrk (2 threads, 8 connections, 5 s) | batched: "
        "articles/s | batched p99 ms |",
        "|---|---:|---|---:|---:|",
    ]
    for label, n, result in rows:
        batched = result["batched"]
        p99 = batched.latency_ms()["p99"]
        lines.append(
            f"| {label} | {n} | {result['wrk']} | {batched.articles_per_second:,.0f} | "
            f"{'-' if p99 is None else f'{p99:.0f}'} |"
        )
    lines += [
        "",
        f"GET /health with {SLOW_CLIENTS} slow clients connected (10 trickling, 10 idle):",
    ]
    lines += [f"- {label}: {probe}" for label, probe in probes.items()]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
