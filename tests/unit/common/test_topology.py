from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from common.config import ConfigError, load_settings
from common.security import generate_keys
from common.sockets import MeshSockets, bind_endpoint, free_tcp_port
from common.topology import TopologyError, load_topology, parse_topology

FLEET = """
[ports]
dispatch = 6701

[hosts.front1]
address = "10.77.0.11"
frontend = 2
[hosts.front2]
address = "10.77.0.12"
frontend = 1
[hosts.work1]
address = "10.77.0.21"
extractors = 3
[hosts.store1]
address = "10.77.0.31"
control = true
saver_inlet = true
savers = 2
"""


@pytest.fixture
def topology_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    return path


def test_a_frontend_host_gets_its_ledger_and_every_endpoint():
    derived = parse_topology(FLEET).host_settings("front1")
    assert derived["stages"] == ["frontend", "ledger"]
    assert (derived["web_workers"], derived["extractors"], derived["savers"]) == (2, 0, 0)
    assert derived["ledger_id"] == "front1"
    assert derived["key_name"] == "front1"
    assert derived["http_host"] == "10.77.0.11"
    assert derived["dispatch_endpoint"] == "tcp://10.77.0.11:6701"  # [ports] overrides
    assert derived["ack_endpoint"] == "tcp://10.77.0.11:5702"  # the default
    assert derived["control_command_endpoint"] == "tcp://10.77.0.31:5707"
    assert derived["results_in_endpoint"] == "tcp://10.77.0.31:5703"


def test_every_host_knows_every_ledger():
    topology = parse_topology(FLEET)
    for name in topology.hosts:
        derived = topology.host_settings(name)
        assert derived["ledger_dispatch"] == [
            "front1=tcp://10.77.0.11:6701",
            "front2=tcp://10.77.0.12:6701",
        ]
        assert derived["ledger_acks"] == [
            "front1=tcp://10.77.0.11:5702",
            "front2=tcp://10.77.0.12:5702",
        ]
    assert topology.ports.dispatch == 6701


def test_load_settings_derives_the_hosts_share(topology_file: Path, tmp_path: Path):
    settings = load_settings(
        {"INGEST_TOPOLOGY": str(topology_file), "INGEST_HOST": "work1"}, data_dir=str(tmp_path)
    )
    assert settings.stages == ["extractor"]
    assert settings.extractors == 3
    assert settings.runs("extractor") and not settings.runs("frontend")
    assert settings.host_name == "work1"
    assert settings.ledger_dispatch_endpoints() == {
        "front1": "tcp://10.77.0.11:6701",
        "front2": "tcp://10.77.0.12:6701",
    }
    assert settings.ledger_ack_endpoints()["front2"] == "tcp://10.77.0.12:5702"
    # Circus stays ipc, local to each host.
    assert settings.circus_endpoint.startswith("ipc://")
    assert all(e.startswith("tcp://") for e in settings.tcp_endpoints())


def test_exported_settings_reproduce_themselves(topology_file: Path, tmp_path: Path):
    """Circus passes to_environ() to every process: the same values are no conflict."""
    settings = load_settings({}, data_dir=str(tmp_path), topology=str(topology_file), host="front2")
    again = load_settings(settings.to_environ())
    assert again == settings


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"INGEST_EXTRACTORS": "5"}, "extractors"),
        ({"INGEST_RESULTS_IN_ENDPOINT": "tcp://10.0.0.9:1"}, "results_in_endpoint"),
        ({"INGEST_KEY_NAME": "client"}, "key_name"),
        ({"INGEST_STAGES": "frontend,ledger"}, "stages"),
    ],
)
def test_a_value_the_topology_owns_cannot_differ(topology_file, tmp_path, environ, field):
    environ = {"INGEST_TOPOLOGY": str(topology_file), "INGEST_HOST": "work1", **environ}
    with pytest.raises(ConfigError, match=f"{field}=.*conflicts with the topology"):
        load_settings(environ, data_dir=str(tmp_path))


def test_unknown_host_and_missing_host(topology_file: Path):
    with pytest.raises(ConfigError, match=r"no host 'work9'.*front1, front2, store1, work1"):
        load_settings({"INGEST_TOPOLOGY": str(topology_file), "INGEST_HOST": "work9"})
    with pytest.raises(ConfigError, match="needs host"):
        load_settings({"INGEST_TOPOLOGY": str(topology_file)})


def test_without_a_topology_nothing_changes(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path))
    assert settings.stages == [] and all(settings.runs(s) for s in ("control", "saver"))
    assert settings.ledger_dispatch_endpoints() == {"local": settings.dispatch_endpoint}


@pytest.mark.parametrize(
    ("stages", "needle"),
    [
        ("frontend", "frontend and ledger go together"),
        ("ledger,saver", "go together"),
        ("extractor,sorter", "unknown 'sorter'"),
    ],
)
def test_stages_are_checked(stages: str, needle: str):
    with pytest.raises(ConfigError, match=needle):
        load_settings({"INGEST_STAGES": stages})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[hosts.a]\naddress = 1", "hosts.a: Expected `str`, got `int` - at `\\$.address`"),
        ("hosts = 3", "Expected `object`"),
        ("[hosts.a\n", "not valid TOML"),
        ("[hosts.front1]\naddress = 'x'\nfrontend = 1\nwebworkers = 2", "unknown field"),
        ("[ports]\nhttp = 70000\n" + FLEET.split("[ports]\ndispatch = 6701\n")[1], "ports.http"),
        ("[ports]\nacks = 6701\n" + FLEET.split("[ports]\n")[1], "two links share one port"),
        (FLEET.replace("control = true", ""), "exactly one host must have control = true, not 0"),
        (
            FLEET.replace("frontend = 1", "frontend = 1\ncontrol = true"),
            "control = true, not 2 \\(front2, store1\\)",
        ),
        (FLEET.replace("savers = 2", ""), "no host has savers > 0"),
        (FLEET.replace("extractors = 3", ""), "hosts.work1 runs nothing"),
        (FLEET.replace("10.77.0.12", "10.77.0.11"), "is also hosts.front1's"),
        (FLEET.replace("[hosts.work1]", "[hosts.Work_1]"), "host name 'Work_1'"),
        (FLEET.replace("extractors = 3", "extractors = -1"), "extractors = -1"),
        ("[ports]\n", "missing required field `hosts`"),
        ("[hosts]\n", "no hosts: add"),
    ],
)
def test_bad_topologies_say_what_is_wrong(text: str, needle: str):
    with pytest.raises(TopologyError, match=needle):
        parse_topology(text, "fleet.toml")


def test_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(TopologyError, match=r"cannot read the topology .*nope\.toml"):
        load_topology(tmp_path / "nope.toml")


def test_bind_address_keeps_the_port():
    assert bind_endpoint("tcp://ledger-0.ledger:5701", "10.1.2.3") == "tcp://10.1.2.3:5701"
    assert bind_endpoint("tcp://ledger:5701", "fd00::7") == "tcp://[fd00::7]:5701"
    assert bind_endpoint("tcp://ledger:5701", "") == "tcp://ledger:5701"
    assert bind_endpoint("ipc:///run/x", "10.1.2.3") == "ipc:///run/x"


def test_a_process_binds_its_bind_address_with_the_endpoints_port(tmp_path: Path):
    """The endpoint names a host this machine cannot bind (as a Kubernetes Service name);
    with bind_address the owner binds its own address on that port, CURVE as always, and a
    peer connecting to that address gets through."""
    generate_keys(tmp_path / "keys")
    port = free_tcp_port()
    settings = load_settings(
        {}, data_dir=str(tmp_path), key_dir=str(tmp_path / "keys"), bind_address="127.0.0.1"
    )
    sockets = MeshSockets(settings)
    try:
        inbox = sockets.bind(zmq.PULL, f"tcp://ledger.invalid:{port}")
        outbox = sockets.connect(zmq.PUSH, f"tcp://127.0.0.1:{port}")
        outbox.send(b"hello")
        assert inbox.poll(5000)
        assert inbox.recv() == b"hello"
    finally:
        sockets.close()
    unbound = MeshSockets(load_settings({}, data_dir=str(tmp_path), key_dir=str(tmp_path / "keys")))
    try:
        with pytest.raises(zmq.ZMQError):
            unbound.bind(zmq.PULL, f"tcp://ledger.invalid:{port}")
    finally:
        unbound.close()
