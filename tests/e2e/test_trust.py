"""Trust nothing on the wire: the attacks of a local user, and bad frames, on a real mesh.

Each attack that once worked is tried again as the same unprivileged user (uid 65534,
through `setpriv`), against a mesh on its default private ipc endpoints; each bad frame is
sent by root, who can reach everything, to check that every process drops it and keeps
serving. Afterwards the mesh still counts exactly what it accepted (the stock-spaCy oracle).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import pytest
import zmq

from common.config import IPC_NAMES
from common.control import Command, Report
from common.control import encode as encode_control
from common.messages import Ack, Acked, Entity, Extraction, Want, encode, entity_key, route_key
from services.control import mesh
from tests.e2e.conftest import RunningMesh, assert_exactly_counted, start_mesh, stop_mesh

NOBODY = 65534
ATTACK_SECONDS = 3.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture(scope="module")
def exposed_mesh() -> Iterator[RunningMesh]:
    """A mesh whose data folder sits where any user can walk (/tmp, 0755 parents), so only
    the mesh's own protection stands between another user and its sockets."""
    parent = Path(tempfile.mkdtemp(prefix="ingest-trust-", dir="/tmp"))
    os.chmod(parent, 0o755)
    running = start_mesh(parent / "data")
    yield running
    stop_mesh(running)
    subprocess.run(["rm", "-rf", str(parent)], check=False)


def as_nobody(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python code as uid/gid 65534 with no supplementary groups and no capabilities."""
    command = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=-all",
        sys.executable,
        "-c",
        textwrap.dedent(script),
    ]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def endpoint_path(running: RunningMesh, field: str) -> str:
    return getattr(running.settings, field).removeprefix("ipc://")


def test_data_folders_and_files_are_private(exposed_mesh: RunningMesh):
    settings = exposed_mesh.settings
    assert exposed_mesh.post([{"publication": "P", "content": "Paris."}]).status_code == 202
    for folder in (settings.data_path, settings.run_path, settings.data_path / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for name in ("journal.sqlite3", "journal.sqlite3-wal", "store.sqlite3", "api-key"):
        path = settings.data_path / name
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("field", sorted(IPC_NAMES))
def test_no_other_user_can_reach_an_endpoint(exposed_mesh: RunningMesh, field: str):
    result = as_nobody(
        f"""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect({endpoint_path(exposed_mesh, field)!r})
            print("CONNECTED")
        except PermissionError:
            print("REFUSED")
        """
    )
    assert result.stdout.strip() == "REFUSED", (result.stdout, result.stderr)


def test_the_old_attacks_of_a_local_user_all_fail(exposed_mesh: RunningMesh, corpus, oracle):
    """Circus `add` (ran `id` as root), a rogue PULL on the dispatch socket plus acks of
    what it got, a forged Extraction and forged ledger Report, and `stop-writes` sent to
    control: each once worked from uid 65534. Now none reaches its socket."""
    running = exposed_mesh
    paths = {field: endpoint_path(running, field) for field in IPC_NAMES}
    forged_extraction = encode(
        Extraction("forged", "Evil", [Entity(entity_key("X", "ORG"), "X", "ORG", 999)], "local", 1)
    )
    forged_report = encode_control(Report("ledger", 1, "evil", 10**9, {"backlog": -3}))
    stop_writes = encode_control(Command("stop-writes"))
    want = encode(Want(1, 64))
    accepted = {
        f"t{i}": {"publication": "Trusted", "content": text, "id": f"t{i}"}
        for i, text in enumerate(corpus[:20])
    }
    assert running.post(list(accepted.values())).status_code == 202
    result = as_nobody(
        f"""
        import json, time, zmq
        from circus.client import CircusClient
        paths = {paths!r}
        outcome = {{}}
        try:
            client = CircusClient(endpoint="ipc://" + paths["circus_endpoint"], timeout=2)
            outcome["circus add"] = client.call(
                {{"command": "add", "properties": {{"name": "evil", "cmd": "id", "start": True}}}}
            )
        except Exception as exc:
            outcome["circus add"] = "failed: " + type(exc).__name__
        context = zmq.Context()
        rogue = context.socket(zmq.DEALER)  # as an extractor: asks the ledger for work
        rogue.connect("ipc://" + paths["dispatch_endpoint"])
        rogue.send({want!r})  # queued: it leaves only over a connection
        stolen = rogue.poll({int(ATTACK_SECONDS * 1000)})
        outcome["rogue extractor got an article"] = bool(stolen)
        for field, frame in (
            ("results_in_endpoint", {forged_extraction!r}),
            ("control_report_endpoint", {forged_report!r}),
        ):
            push = context.socket(zmq.PUSH)
            push.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a real connection
            push.connect("ipc://" + paths[field])
            push.setsockopt(zmq.SNDTIMEO, 500)
            try:
                push.send(frame)
                outcome[field] = "sent"
            except zmq.Again:
                outcome[field] = "could not send"
        request = context.socket(zmq.REQ)
        request.connect("ipc://" + paths["control_command_endpoint"])
        request.setsockopt(zmq.SNDTIMEO, 500)
        try:
            request.send({stop_writes!r})
            outcome["stop-writes answered"] = bool(request.poll(1000))
        except zmq.Again:
            outcome["stop-writes answered"] = False
        print(json.dumps(outcome))
        context.destroy(linger=0)
        """
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["circus add"].startswith("failed"), outcome
    assert outcome["rogue extractor got an article"] is False
    assert outcome["results_in_endpoint"] == "could not send"  # no connection was made
    assert outcome["control_report_endpoint"] == "could not send"
    assert outcome["stop-writes answered"] is False

    watchers = mesh.circus(running.settings, "list")["watchers"]
    assert "evil" not in watchers
    assert mesh.control(running.settings, "status").state.name == "accepting"
    running.wait_drained(timeout=120)
    assert running.http.get("/entities", params={"publication": "Evil"}).status_code == 404
    assert_exactly_counted(running, accepted, oracle, publications={"Trusted"})


def stage_pids(running: RunningMesh, stage: str) -> list[int]:
    return sorted(mesh.circus(running.settings, "list", name=stage)["pids"])


def test_bad_frames_are_dropped_and_every_process_keeps_serving(
    exposed_mesh: RunningMesh, corpus, oracle
):
    """Sent by root, who can reach every socket: garbage, a frame of the wrong kind, an
    entity count of 2**63, an ack for a ledger nobody configured, a one-frame command, a
    64 MiB frame. Each was once a crash, a stall, or a commit retried forever."""
    running = exposed_mesh
    before = {stage: stage_pids(running, stage) for stage in mesh.STAGES}
    ledger_rss = psutil.Process(before["ledger"][0]).memory_info().rss
    paths = {field: getattr(running.settings, field) for field in IPC_NAMES}
    huge_count = msgspec.msgpack.encode(
        ["extraction.v2", "big", "Evil", [[entity_key("X", "ORG"), "X", "ORG", 2**63]], "local", 1]
    )
    unknown_ledger = encode(
        Extraction("lost", "Evil", [Entity(entity_key("Y", "ORG"), "Y", "ORG", 1)], "nowhere", 1)
    )
    context = zmq.Context()
    try:
        pushes = {}
        for field in ("results_in_endpoint", "ack_endpoint", "control_report_endpoint"):
            pushes[field] = context.socket(zmq.PUSH)
            pushes[field].connect(paths[field])
        # Results travel as [route key, result]: the inlet passes these on undecoded, and
        # the saver drops what does not decode; a message of another shape the inlet drops.
        evil_key = route_key("Evil")
        for frame in (b"\x00garbage", huge_count, encode(Ack([Acked("t0", 1)]))):
            pushes["results_in_endpoint"].send_multipart([evil_key, frame])
        pushes["results_in_endpoint"].send_multipart([evil_key, unknown_ledger])
        pushes["results_in_endpoint"].send(b"one frame, no route key")
        pushes["results_in_endpoint"].send_multipart([b"bad key", unknown_ledger])
        pushes["ack_endpoint"].send(b"\xff" * 100)
        pushes["ack_endpoint"].send(encode(Ack([Acked("no-such-article", 12345)])))
        pushes["ack_endpoint"].send(b"x" * (64 << 20))  # over MAXMSGSIZE: cut off
        pushes["control_report_endpoint"].send(b"not a report")
        dealer = context.socket(zmq.DEALER)
        dealer.connect(paths["control_command_endpoint"])
        dealer.send(b"one frame, no envelope")
        time.sleep(2 * ATTACK_SECONDS)
    finally:
        context.destroy(linger=0)

    accepted = {
        f"after{i}": {"publication": "After", "content": text, "id": f"after{i}"}
        for i, text in enumerate(corpus[20:40])
    }
    assert running.post(list(accepted.values())).status_code == 202
    running.wait_drained(timeout=120)
    assert {stage: stage_pids(running, stage) for stage in mesh.STAGES} == before
    assert psutil.Process(before["ledger"][0]).memory_info().rss < ledger_rss + (32 << 20)
    assert running.http.get("/entities", params={"publication": "Evil"}).json()["entities"] == [
        {"key": entity_key("Y", "ORG"), "text": "Y", "label": "ORG", "count": 1}
    ]
    assert mesh.control(running.settings, "status").state.name == "accepting"
    saver_log = "\n".join(json.dumps(line) for line in running.log_lines("saver"))
    assert "dropped a bad frame" in saver_log and "unknown ledger" in saver_log
    inlet_log = json.dumps(running.log_lines("saver-inlet"))
    assert inlet_log.count("dropped a result that is not [route key, result]") == 2
    assert "dropped a malformed command" in json.dumps(running.log_lines("control"))
    assert_exactly_counted(running, accepted, oracle, publications={"After"})
