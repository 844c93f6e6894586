"""The mesh over tcp://, every link CURVE-authenticated: allow-listed keys get in, unknown
keys, no keys and revoked keys do not (ironhouse, through zmq.auth and ZAP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth

from common.config import MESH_ENDPOINTS
from common.control import Command, Reply, decode, encode
from common.security import generate_keys
from tests.conftest import free_port
from tests.e2e.conftest import (
    RunningMesh,
    assert_exactly_counted,
    ingest,
    start_mesh,
    stop_mesh,
)


@pytest.fixture(scope="module")
def curve_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    data = tmp_path_factory.mktemp("curve")
    generate_keys(data / "keys")  # the mesh's own pair, as `ingest keys` makes it
    generate_keys(data / "keys", "probe")  # an outside client, authorized for now
    endpoints = {field: f"tcp://127.0.0.1:{free_port()}" for field in MESH_ENDPOINTS}
    running = start_mesh(data, **endpoints)
    yield running
    stop_mesh(running)


class Probe:
    """A REQ client of the control server, with a key pair of its own (or none)."""

    def __init__(self, running: RunningMesh, secret_file: Path | None) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REQ)
        self.socket.linger = 0
        self.socket.setsockopt(zmq.REQ_RELAXED, 1)  # a request may go unanswered
        # A refused handshake removes the socket's only pipe, and a REQ with no pipe blocks
        # in send forever; bounded, a send that cannot go out is an answer too: refused.
        self.socket.setsockopt(zmq.SNDTIMEO, 3000)
        if secret_file is not None:
            public, secret = zmq.auth.load_certificate(str(secret_file))
            server, _ = zmq.auth.load_certificate(str(running.settings.key_path / "server.key"))
            self.socket.curve_publickey = public
            self.socket.curve_secretkey = secret
            self.socket.curve_serverkey = server
        self.socket.connect(running.settings.control_command_endpoint)

    def answered(self, timeout_ms: int = 3000) -> bool:
        try:
            self.socket.send(encode(Command("status")))
        except zmq.Again:
            return False
        if not self.socket.poll(timeout_ms):
            return False
        return isinstance(decode(self.socket.recv()), Reply)

    def close(self) -> None:
        self.context.destroy(linger=0)


def test_the_mesh_counts_exactly_over_curve(curve_mesh: RunningMesh, corpus, oracle):
    assert all(getattr(curve_mesh.settings, f).startswith("tcp://") for f in MESH_ENDPOINTS)
    accepted = {
        f"c{i}": {"publication": "Curve", "content": text, "id": f"c{i}"}
        for i, text in enumerate(corpus[:40])
    }
    assert curve_mesh.post(list(accepted.values())).status_code == 202
    curve_mesh.wait_drained(timeout=180)
    assert_exactly_counted(curve_mesh, accepted, oracle, publications={"Curve"})


def test_only_allow_listed_keys_get_in(curve_mesh: RunningMesh, tmp_path: Path):
    keys = curve_mesh.settings.key_path
    stranger = tmp_path / "stranger"
    generate_keys(stranger, "stranger")  # well-formed, never authorized by this mesh
    probes = {
        "authorized": Probe(curve_mesh, keys / "probe.key_secret"),
        "unknown key": Probe(curve_mesh, stranger / "stranger.key_secret"),
        "no key": Probe(curve_mesh, None),
    }
    try:
        answers = {name: probe.answered() for name, probe in probes.items()}
    finally:
        for probe in probes.values():
            probe.close()
    assert answers == {"authorized": True, "unknown key": False, "no key": False}


def test_a_revoked_key_loses_its_open_connection(curve_mesh: RunningMesh, corpus, oracle):
    probe = Probe(curve_mesh, curve_mesh.settings.key_path / "probe.key_secret")
    try:
        assert probe.answered()  # connected and authenticated
        revoked = ingest(curve_mesh, "keys", "revoke", "probe")
        assert revoked.returncode == 0, revoked.stderr
        assert "Restarted" in revoked.stdout
        assert not probe.answered(timeout_ms=5000)  # the same socket, reconnecting: refused
    finally:
        probe.close()
    accepted = {
        f"r{i}": {"publication": "After revoke", "content": text, "id": f"r{i}"}
        for i, text in enumerate(corpus[40:50])
    }
    curve_mesh.wait_until_accepting()
    assert curve_mesh.post(list(accepted.values())).status_code == 202
    curve_mesh.wait_drained(timeout=180)
    assert_exactly_counted(curve_mesh, accepted, oracle, publications={"After revoke"})


def test_tcp_without_keys_is_refused_at_start(tmp_path: Path):
    endpoints = {field: f"tcp://127.0.0.1:{free_port()}" for field in MESH_ENDPOINTS}
    with pytest.raises(Exception, match="ingest keys"):
        start_mesh(tmp_path, **endpoints)
