"""Stop-writes, drain, shutdown and scaling on the real mesh, under a steady load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from services.control import mesh
from store import open_store
from tests.e2e.conftest import (
    RunningMesh,
    assert_exactly_counted,
    ingest,
    mesh_pids,
    start_mesh,
    stop_mesh,
)
from tests.e2e.load import SteadyLoad

DOWN_BOUND_SECONDS = 120


def test_stop_writes_and_resume_under_load(running_mesh, corpus):
    with SteadyLoad(running_mesh.url, running_mesh.key, corpus, publication="SW") as load:
        time.sleep(2)
        result = ingest(running_mesh, "stop-writes")
        assert result.returncode == 0, result.stderr
        stopped_at = time.monotonic()
        backlog_probe = running_mesh.backlog()  # drains, never grows, from here
        time.sleep(2)
        refused = [r for r in load.responses if r.started >= stopped_at]
        assert refused, "the load made no request while writes were stopped"
        assert load.accepted_after(stopped_at) == []
        assert all(r.status == 503 and r.retry_after for r in refused)
        assert running_mesh.backlog() <= backlog_probe
        result = ingest(running_mesh, "resume")
        assert result.returncode == 0, result.stderr
        resumed_at = time.monotonic()
        time.sleep(1.5)
    assert load.accepted_after(resumed_at), "no 202 after resume"
    status = running_mesh.http.post(
        "/articles",
        json={"publication": "SW", "content": "Quick check after resume."},
        headers={"Authorization": f"Bearer {running_mesh.key}"},
    )
    assert status.status_code == 202
    running_mesh.wait_drained()


def test_a_frontend_worker_born_after_stop_writes_refuses(running_mesh):
    assert ingest(running_mesh, "stop-writes").returncode == 0
    try:
        # One gunicorn master per frontend process, each with one worker.
        masters = mesh.circus(running_mesh.settings, "list", name="frontend")["pids"]
        workers = [w for master in masters for w in psutil.Process(master).children()]
        for worker in workers:
            worker.kill()  # gunicorn boots fresh workers that never heard any state
        statuses = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                answer = running_mesh.post([{"publication": "Late", "content": "Paris news."}])
                statuses.append(answer.status_code)
            except Exception:
                statuses.append(0)  # between workers
        new_workers = {w.pid for master in masters for w in psutil.Process(master).children()}
        assert new_workers and not new_workers & {w.pid for w in workers}
        assert 503 in statuses
        assert not [s for s in statuses if 200 <= s < 300]
    finally:
        assert ingest(running_mesh, "resume").returncode == 0


def test_scale_extractor_up_and_down_while_idle(running_mesh):
    result = ingest(running_mesh, "scale", "extractor", "3")
    assert result.returncode == 0, result.stderr
    assert mesh.process_counts(running_mesh.settings)["extractor"] == 3
    assert "extractor    3" in ingest(running_mesh, "status").stdout
    result = ingest(running_mesh, "scale", "extractor", "1")
    assert result.returncode == 0, result.stderr
    assert mesh.process_counts(running_mesh.settings)["extractor"] == 1
    status = ingest(running_mesh, "status")
    assert "extractor    1" in status.stdout
    assert "pipeline: accepting" in status.stdout
    ingest(running_mesh, "scale", "extractor", "2")


def test_cli_errors_are_clear(running_mesh, tmp_path):
    unknown = ingest(running_mesh, "scale", "bogus", "2")
    assert unknown.returncode == 1
    assert "unknown stage 'bogus'" in unknown.stderr
    top = ingest(running_mesh, "top", "No Such Publication")
    assert top.returncode == 1 and "unknown publication" in top.stderr
    # A mesh that is not running: every command says so and fails.
    env = {
        **os.environ,
        **running_mesh.settings.to_environ(),
        "INGEST_CIRCUS_ENDPOINT": f"ipc://{tmp_path}/no-circus",
        "INGEST_CONTROL_COMMAND_ENDPOINT": f"ipc://{tmp_path}/no-control",
    }
    for args in (["status"], ["drain", "--timeout", "1"], ["stop-writes"]):
        result = subprocess.run(
            [str(Path(sys.executable).with_name("ingest")), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, args
        assert "not running" in result.stderr, (args, result.stderr)


def test_drain_reports_what_is_left_on_timeout(running_mesh, corpus):
    # Far more than 2 extractors finish in 1 s.
    batch = [{"publication": "Drain", "content": t, "id": f"D{i}"} for i, t in enumerate(corpus)]
    assert running_mesh.post(batch).status_code == 202
    result = ingest(running_mesh, "drain", "--timeout", "1")
    assert result.returncode == 1
    assert "article(s) still in the journal" in result.stderr
    refused = running_mesh.post([{"publication": "Drain", "content": "Late news."}])
    assert refused.status_code == 503
    result = ingest(running_mesh, "drain", "--timeout", "300")
    assert result.returncode == 0, result.stderr
    assert running_mesh.backlog() == 0
    assert ingest(running_mesh, "resume").returncode == 0


@pytest.mark.parametrize("how", ["ingest down", "circusctl quit", "SIGTERM to circusd"])
def test_shutdown_under_load_loses_nothing(how, tmp_path, corpus, oracle):
    running = start_mesh(tmp_path / "mesh")
    try:
        pids = mesh_pids(running)
        with SteadyLoad(running.url, running.key, corpus, publication=how) as load:
            time.sleep(4)
            started = time.monotonic()
            if how == "ingest down":
                result = ingest(running, "down", timeout=DOWN_BOUND_SECONDS + 30)
                elapsed = time.monotonic() - started
                assert result.returncode == 0, result.stderr
                assert elapsed < DOWN_BOUND_SECONDS
            elif how == "circusctl quit":
                circusctl = str(Path(sys.executable).with_name("circusctl"))
                subprocess.run(
                    [circusctl, "--endpoint", running.settings.circus_endpoint, "quit"],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
            else:
                running.process.send_signal(signal.SIGTERM)
            running.process.wait(timeout=120)
        assert [p for p in pids if psutil.pid_exists(p) and _alive(p)] == []
        assert load.articles, "the load got nothing accepted"
        if how == "ingest down":
            # Once writes were stopped, nothing more was accepted...
            first_refusal = min(r.started for r in load.responses if r.status == 503)
            assert load.accepted_after(first_refusal) == []
            # ...and everything accepted was committed before the processes stopped.
            assert_exactly_counted(running, accepted_or_kept(running, load), oracle)
        running.http.close()
        # Start again on the same data: what was left in the journal is processed now.
        running = start_mesh(tmp_path / "mesh")
        running.wait_drained(timeout=300)
        assert_exactly_counted(running, accepted_or_kept(running, load), oracle)
    finally:
        stop_mesh(running)


def accepted_or_kept(running: RunningMesh, load: SteadyLoad) -> dict[str, dict[str, str]]:
    """Every article answered 202, and those of a batch whose answer was lost with its
    connection that the store holds: a request cut off as the frontend stops may have been
    journaled or not, and its client cannot know (it would post it again: same ids). Any
    other article in the store (say, one answered 5xx) breaks the exact count."""
    store = open_store(running.settings)
    try:
        kept = store.counted(sorted(load.unanswered))
    finally:
        store.close()
    return {**load.articles, **{ident: load.unanswered[ident] for ident in kept}}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_plain_circusctl_works_after_ingest_env(running_mesh):
    """As the README says: `eval "$(ingest env)"`, then circusctl finds this mesh's Circus
    (an ipc socket in the private run folder, not tcp://127.0.0.1:5555)."""
    bin_dir = Path(sys.executable).parent
    script = f'eval "$({bin_dir}/ingest env)" && {bin_dir}/circusctl status'
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "CIRCUSCTL_"))}
    env["INGEST_DATA_DIR"] = str(running_mesh.settings.data_dir)
    env["INGEST_HTTP_PORT"] = str(running_mesh.settings.http_port)
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "extractor: active" in result.stdout and "ledger: active" in result.stdout
