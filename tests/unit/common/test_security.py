"""CURVE on real ZeroMQ sockets: who gets in, and the pitfalls it must not fall into."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
import zmq.auth.thread

from common.security import (
    MeshSecurity,
    SecurityError,
    ensure_private_dir,
    generate_keys,
    revoke_key,
)

WAIT_MS = 1500


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    key_dir = tmp_path / "keys"
    generate_keys(key_dir, "host-a")
    return key_dir


class Link:
    """A CURVE PULL server and a PUSH client, each in its own context as in two processes."""

    def __init__(self, server_keys: Path, client_keys: Path, client_name: str) -> None:
        self.server_context, self.client_context = zmq.Context(), zmq.Context()
        self.server_security = MeshSecurity(self.server_context, server_keys)
        self.server = self.server_context.socket(zmq.PULL)
        self.server.linger = 0
        self.server_security.server(self.server)
        port = self.server.bind_to_random_port("tcp://127.0.0.1")
        self.client = self.client_context.socket(zmq.PUSH)
        self.client.linger = 0
        MeshSecurity(self.client_context, client_keys, client_name).client(self.client)
        self.client.connect(f"tcp://127.0.0.1:{port}")

    def delivers(self, payload: bytes = b"article") -> bool:
        self.client.send(payload)
        if not self.server.poll(WAIT_MS):
            return False
        return self.server.recv() == payload

    def close(self) -> None:
        self.server.close()
        self.client.close()
        self.server_security.close()
        self.server_context.term()
        self.client_context.term()


@pytest.fixture
def link_to(keys: Path) -> Iterator:
    links: list[Link] = []

    def make(client_keys: Path, client_name: str) -> Link:
        link = Link(keys, client_keys, client_name)
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()


def test_an_allow_listed_key_gets_in(keys: Path, link_to):
    assert link_to(keys, "host-a").delivers()


def test_an_unknown_key_is_refused(keys: Path, tmp_path: Path, link_to):
    # A well-formed pair the servers never allow-listed, with the real server public key.
    other = tmp_path / "other"
    generate_keys(other, "intruder")
    (other / "server.key").write_bytes((keys / "server.key").read_bytes())
    assert not link_to(other, "intruder").delivers()


def test_a_revoked_key_is_refused_on_its_next_connection(keys: Path, tmp_path: Path, link_to):
    generate_keys(keys, "host-b")
    assert link_to(keys, "host-b").delivers()
    revoke_key(keys, "host-b")
    assert not link_to(keys, "host-b").delivers()  # a new link: the ZAP handler says no
    assert link_to(keys, "host-a").delivers()


def test_a_client_without_curve_is_refused(keys: Path):
    context = zmq.Context()
    security = MeshSecurity(context, keys)
    server = context.socket(zmq.PULL)
    server.linger = 0
    security.server(server)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    plain = context.socket(zmq.PUSH)
    plain.linger = 0
    plain.connect(f"tcp://127.0.0.1:{port}")
    plain.send(b"forged ack")
    try:
        assert not server.poll(WAIT_MS)
    finally:
        plain.close()
        server.close()
        security.close()
        context.term()


def test_pitfall_a_curve_server_without_zap_accepts_anyone_unless_enforced(tmp_path: Path):
    """libzmq's default: with no ZAP handler, a CURVE server lets every client key in. Our
    servers set ZAP_ENFORCE_DOMAIN, so the same situation fails closed."""
    spub, ssec = zmq.auth.load_certificate(zmq.auth.create_certificates(str(tmp_path), "server")[1])
    cpub, csec = zmq.auth.load_certificate(zmq.auth.create_certificates(str(tmp_path), "anyone")[1])

    def delivers(enforce: bool) -> bool:
        context = zmq.Context()
        server, client = context.socket(zmq.PULL), context.socket(zmq.PUSH)
        for s in (server, client):
            s.linger = 0
        server.curve_publickey, server.curve_secretkey, server.curve_server = spub, ssec, True
        server.zap_domain = b"mesh"
        if enforce:
            server.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.curve_publickey, client.curve_secretkey, client.curve_serverkey = cpub, csec, spub
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"x")
        try:
            return bool(server.poll(WAIT_MS))
        finally:
            server.close()
            client.close()
            context.term()

    assert delivers(enforce=False)  # the pitfall is real
    assert not delivers(enforce=True)  # and this is what MeshSecurity.server sets


def test_a_tcp_server_refuses_to_start_without_keys(tmp_path: Path):
    context = zmq.Context()
    socket = context.socket(zmq.PULL)
    try:
        with pytest.raises(SecurityError, match="ingest keys"):
            MeshSecurity(context, tmp_path / "none").server(socket)
    finally:
        socket.close(linger=0)
        context.term()


def test_key_files_and_folders_are_private(keys: Path):
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "authorized").stat().st_mode) == 0o700
    for secret in keys.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(SecurityError, match="exists already"):
        generate_keys(keys, "host-a")


def test_a_private_dir_is_closed_if_it_was_open(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    ensure_private_dir(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_pitfall_an_authenticator_in_another_context_is_refused(keys: Path):
    ours, other = zmq.Context(), zmq.Context()
    socket = other.socket(zmq.PULL)
    try:
        with pytest.raises(SecurityError, match="one context"):
            MeshSecurity(ours, keys).server(socket)
    finally:
        socket.close(linger=0)
        ours.term()
        other.term()


def test_pitfall_a_zap_domain_mismatch_refuses_even_valid_keys(keys: Path):
    """configure_curve(domain="*") does not cover a socket whose zap_domain is set: valid
    keys are refused. MeshSecurity configures the authenticator for exactly the domain it
    gives its sockets (test_an_allow_listed_key_gets_in is the other half)."""
    context = zmq.Context()
    authenticator = zmq.auth.thread.ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(keys / "authorized"))
    server, client = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    try:
        spub, ssec = zmq.auth.load_certificate(str(keys / "server.key_secret"))
        cpub, csec = zmq.auth.load_certificate(str(keys / "host-a.key_secret"))
        server.linger = client.linger = 0
        server.curve_publickey, server.curve_secretkey, server.curve_server = spub, ssec, True
        server.zap_domain = b"mesh"
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.curve_publickey, client.curve_secretkey, client.curve_serverkey = cpub, csec, spub
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"x")
        assert not server.poll(WAIT_MS)
    finally:
        server.close()
        client.close()
        authenticator.stop()
        context.term()
