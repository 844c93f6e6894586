"""A fleet of hosts on one machine: Linux network namespaces on a bridge.

Each host is a network namespace this fixture creates, with one veth on a private bridge
and an address in a private 10.x /24 that exists only inside those namespaces and on the
bridge itself. Each runs its own circusd (`ingest up --topology FILE --host NAME`, the
operator's command) with its own data directory, and every link between hosts is tcp://
with CURVE: the server pair and authorized/ copied to every host, each host its own client
pair, all made with `ingest keys`. The store is Google's Firestore emulator (the production
path for a fleet), run in the root namespace and bound to the bridge's address, so that
killing a host never takes the data with it.

    front1, front2   frontend + ledger (each its own journal)
    work1, work2     extractors
    store1           control, saver inlet, savers

work1 and front1 also have a point-to-point veth of their own (DIRECT), with a /32 route to
each other's bridge address over it: their traffic takes that link, everything else the
bridge, so taking it down cuts exactly work1<->front1 (see `Fleet.add_direct_link`).

Teardown kills every process inside those namespaces (`ip netns pids`), deletes the
namespaces (and with them the direct link), the bridge and the FORWARD rule, and the
emulator, even when a test failed. CI runs as root and must never skip this; elsewhere it
skips without root or `ip`.

`namespace_fleet` is the same thing as a context manager for any set of hosts, with or
without the emulator: bench/multihost.py runs the mesh on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from common.config import Settings, load_settings
from common.control import ask, summarize
from common.topology import Topology, parse_topology
from services.control.mesh import process_plan
from services.frontend.journal import Journal
from store.emulator import JAVA_TOOL_OPTIONS, FirestoreEmulator, gcloud_path
from tests.e2e.conftest import assert_exactly_counted
from tests.firestore_emulator import running_in_ci
from tests.oracle import Oracle

INGEST = str(Path(sys.executable).with_name("ingest"))
API_KEY = "fleet-test-key-0123456789abcdef"
# name: (last octet of its bridge address, its topology table body)
Hosts = dict[str, tuple[int, str]]
HOSTS: Hosts = {
    "front1": (11, "frontend = 1"),
    "front2": (12, "frontend = 1"),
    "work1": (21, "extractors = 1"),
    "work2": (22, "extractors = 1"),
    "store1": (31, "control = true\nsaver_inlet = true\nsavers = 1"),
}
FRONTS = ("front1", "front2")
DIRECT = ("work1", "front1")  # a worker host and a ledger host with a link of their own
EMULATOR_PORT = 8686
# Short leases: what a killed host or a cut link held comes back within seconds.
HOST_SETTINGS = {"INGEST_LEASE_SECONDS": "8", "INGEST_MAX_ATTEMPTS": "20"}
# The direct link's /30. It exists only inside the two namespaces it joins, which have no
# other route out of the bridge's /24, so it cannot clash with anything on the machine.
DIRECT_SUBNET = "172.31.255"
# A higher metric than the direct route: when the direct link is down (and the kernel
# drops its routes), the peer is unreachable rather than silently reached over the bridge.
# As on a real point-to-point link, there is no other path between those two hosts.
FALLBACK_METRIC = "100"
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError as exc:
    print(exc)
    sys.exit(1)
"""


class FleetError(AssertionError):
    """The fleet did not get where it should (a test failure, or a bench that cannot go on)."""


def _run(*command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout)


def _free_subnet() -> str:
    """A 10.77.X.0/24 no interface of this machine uses (the bridge gets .1)."""
    used = _run("ip", "-4", "-o", "addr").stdout
    for third in range(77, 250):
        prefix = f"10.{third}.{os.getpid() % 200}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 for the namespace hosts")


@dataclass
class DirectLink:
    """A veth pair straight from one host to another: each end's name inside its host's
    namespace, and the /32 route each host takes to the other's bridge address over it."""

    ends: dict[str, str]  # host -> interface in that host's namespace
    routes: dict[str, list[str]]  # host -> `ip route replace` arguments in its namespace


class Fleet:
    """The namespace hosts, their settings, and what a test does to them."""

    def __init__(
        self,
        root: Path,
        token: str,
        prefix: str,
        hosts: Hosts | None = None,
        host_settings: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.token = token
        self.prefix = prefix
        self.hosts = HOSTS if hosts is None else hosts
        self.host_settings = HOST_SETTINGS if host_settings is None else host_settings
        self.bridge = f"imbr{token}"
        self.bridge_address = f"{prefix}.1"
        self.namespaces = {name: f"im{token}-{name}" for name in self.hosts}
        self.addresses = {name: f"{prefix}.{octet}" for name, (octet, _) in self.hosts.items()}
        self.topology_path = root / "topology.toml"
        self.emulator: FirestoreEmulator | None = None
        self.direct: dict[frozenset[str], DirectLink] = {}
        self._cleanups: list[tuple[str, object]] = []

    # -- building ----------------------------------------------------------------------

    def topology_text(self, extra: Hosts | None = None) -> str:
        lines = []
        for name, (octet, body) in {**self.hosts, **(extra or {})}.items():
            lines += [f"[hosts.{name}]", f'address = "{self.prefix}.{octet}"', body, ""]
        return "\n".join(lines)

    @property
    def topology(self) -> Topology:
        return parse_topology(self.topology_path.read_text(), str(self.topology_path))

    @property
    def fronts(self) -> list[str]:
        return self.topology.frontend_hosts()

    def with_role(self, role: str) -> str:
        """The first host whose topology table sets `role` (control, savers, ...)."""
        return next(name for name, host in self.topology.hosts.items() if getattr(host, role))

    def data_dir(self, name: str) -> Path:
        return self.root / name

    def add_namespace(self, name: str, address: str) -> str:
        """A namespace with one veth on the bridge at `address`; returns the host-side
        veth (taking it down cuts the host off)."""
        namespace = f"im{self.token}-{name}"
        veth = f"v{self.token}{name}"[:15]
        _run("ip", "netns", "add", namespace)
        self.cleanup("namespace", namespace)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _run("ip", "-n", namespace, "link", "set", "eth0", "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        return veth

    def build_network(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self.cleanup("link", self.bridge)
        _run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # dockerd may have set FORWARD to DROP, and bridged frames go through iptables when
        # br_netfilter is loaded: let the bridge talk to itself, and only itself. (Without
        # iptables there is no such filter to open.)
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        if shutil.which("iptables"):
            _run("iptables", "-I", *rule)
            self.cleanup("iptables", rule)
        self.veths = {name: self.add_namespace(name, self.addresses[name]) for name in self.hosts}

    def add_direct_link(self, a: str, b: str) -> DirectLink:
        """A point-to-point veth pair between hosts `a` and `b` (a /30 of its own), and in
        each namespace a /32 route to the other host's bridge address over it: the
        topology names each host by one address, and between these two that address now
        goes over the direct link, while every other host is still reached over the bridge.
        Deleting the namespaces deletes the pair."""
        ends = {a: f"to-{b}"[:15], b: f"to-{a}"[:15]}
        near = {a: f"{DIRECT_SUBNET}.1", b: f"{DIRECT_SUBNET}.2"}
        _run(
            *("ip", "-n", self.namespaces[a], "link", "add", ends[a], "type", "veth"),
            *("peer", "name", ends[b], "netns", self.namespaces[b]),
        )
        routes = {}
        for host, peer in ((a, b), (b, a)):
            namespace = self.namespaces[host]
            _run("ip", "-n", namespace, "addr", "add", f"{near[host]}/30", "dev", ends[host])
            _run("ip", "-n", namespace, "link", "set", ends[host], "up")
            # Replies leave from the host's own (bridge) address, so each side sees the
            # other by the address the topology names, whichever way a packet went.
            routes[host] = [
                *(f"{self.addresses[peer]}/32", "via", near[peer], "dev", ends[host]),
                *("src", self.addresses[host]),
            ]
            _run("ip", "-n", namespace, "route", "add", "unreachable",
                 f"{self.addresses[peer]}/32", "metric", FALLBACK_METRIC)  # fmt: skip
        link = DirectLink(ends, routes)
        self._route_direct(link)
        self.direct[frozenset((a, b))] = link
        return link

    def _route_direct(self, link: DirectLink) -> None:
        for host, route in link.routes.items():
            _run("ip", "-n", self.namespaces[host], "route", "replace", *route)

    def start_emulator(self) -> None:
        """Google's emulator in the root namespace, bound to the bridge's address."""
        gcloud = gcloud_path()
        assert gcloud is not None
        host = f"{self.bridge_address}:{EMULATOR_PORT}"
        log = self.root / "firestore-emulator.log"
        env = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [gcloud, "emulators", "firestore", "start", f"--host-port={host}", "--quiet"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "JAVA_TOOL_OPTIONS": JAVA_TOOL_OPTIONS},
                start_new_session=True,  # its group: stop() ends gcloud and the JVM
            )
        self.emulator = FirestoreEmulator(process, host, "demo-fleet", log)

    def wait_for_emulator(self, timeout: float = 120) -> None:
        assert self.emulator is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.emulator.process.poll() is None, self.emulator.log_tail()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.emulator.host}/", timeout=1).text.strip() == "Ok":
                    return
            time.sleep(0.3)
        raise FleetError(f"the Firestore emulator did not answer:\n{self.emulator.log_tail()}")

    def make_keys(self) -> None:
        """`ingest keys --name HOST` for every host in one key folder, then each host gets
        the server pair, authorized/ and its own client pair only."""
        master = self.root / "keys"
        for name in [*self.hosts, "tester"]:
            self.ingest_here("keys", "--name", name, env={"INGEST_KEY_DIR": str(master)})
        for name in self.hosts:
            keys = self.data_dir(name) / "keys"
            keys.mkdir(parents=True, mode=0o700)
            for file in ("server.key", "server.key_secret", f"{name}.key", f"{name}.key_secret"):
                shutil.copy2(master / file, keys / file)
            shutil.copytree(master / "authorized", keys / "authorized")
        # The test process's own client pair: it asks control, reads the store.
        tester = self.data_dir("tester") / "keys"
        tester.mkdir(parents=True, mode=0o700)
        for file in ("server.key", "tester.key", "tester.key_secret"):
            shutil.copy2(master / file, tester / file)

    # -- running -----------------------------------------------------------------------

    def env(self, name: str, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "FIRESTORE"))}
        if self.emulator is not None:
            store = {
                "INGEST_STORE": "firestore",
                "INGEST_FIRESTORE_PROJECT": self.emulator.project,
                "INGEST_FIRESTORE_EMULATOR_HOST": self.emulator.host,
            }
        else:  # SQLite, in each host's data directory: the savers' host holds the counts
            store = {"INGEST_STORE": "sqlite"}
        return {
            **base,
            "INGEST_DATA_DIR": str(self.data_dir(name)),
            **store,
            "INGEST_API_KEYS": API_KEY,
            **self.host_settings,
            **extra,
        }

    def ingest_here(
        self, *args: str, env: dict[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """`ingest` in the root namespace (keys only need files)."""
        full = {**{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}, **env}
        return subprocess.run(
            [INGEST, *args], env=full, capture_output=True, text=True, timeout=timeout, check=True
        )

    def ingest(
        self, name: str, *args: str, timeout: float = 180, topology: Path | None = None
    ) -> subprocess.CompletedProcess:
        """`ingest ARGS --topology FILE --host NAME` inside host `name`'s namespace."""
        command = ["ip", "netns", "exec", self.namespaces[name], INGEST, *args]
        if args[0] in ("up", "down", "status"):
            command += ["--topology", str(topology or self.topology_path), "--host", name]
            env = self.env(name)
        else:
            env = self.env(
                name, INGEST_TOPOLOGY=str(topology or self.topology_path), INGEST_HOST=name
            )
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)

    def up(self, *names: str, timeout: float = 180) -> None:
        """`ingest up` on these hosts at once (each daemonises its circusd and returns when
        its share runs)."""
        processes = {
            name: subprocess.Popen(
                [
                    *("ip", "netns", "exec", self.namespaces[name], INGEST, "up"),
                    *("--timeout", str(timeout), "--topology", str(self.topology_path)),
                    *("--host", name),
                ],
                env=self.env(name),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in names
        }
        failed = []
        for name, process in processes.items():
            out, _ = process.communicate(timeout=timeout + 30)
            if process.returncode != 0:
                failed.append(f"{name}: {out}")
        if failed:
            raise FleetError("ingest up failed:\n" + "\n".join(failed))

    def pids(self, name: str) -> list[int]:
        out = _run("ip", "netns", "pids", self.namespaces[name], check=False).stdout
        return [int(pid) for pid in out.split()]

    def kill(self, name: str) -> int:
        """SIGKILL every process of host `name` (circusd included); returns how many."""
        killed = 0
        for _ in range(20):  # bounded: a process may fork while we kill
            pids = self.pids(name)
            if not pids:
                return killed
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.2)
        raise AssertionError(f"processes of {name} survive SIGKILL: {self.pids(name)}")

    def cut(self, a: str, b: str, down: bool) -> None:
        """`ip link set ... down` (or up) on both ends of the direct link between `a` and
        `b`. Down, the kernel drops the link's routes and the fallback makes each host
        unreachable from the other; up, the /32 routes are put back."""
        link = self.direct[frozenset((a, b))]
        for host, end in link.ends.items():
            _run("ip", "-n", self.namespaces[host], "link", "set", end, "down" if down else "up")
        if not down:
            self._route_direct(link)

    def route_device(self, name: str, address: str) -> str:
        """The interface host `name` sends to `address` through (`ip route get`)."""
        out = _run("ip", "-n", self.namespaces[name], "-j", "route", "get", address, check=False)
        routes = json.loads(out.stdout or "[]")
        return routes[0].get("dev", routes[0].get("type", "")) if routes else out.stderr.strip()

    def received_bytes(self, name: str, interface: str) -> int:
        out = _run("ip", "-n", self.namespaces[name], "-j", "-s", "link", "show", interface)
        return int(json.loads(out.stdout)[0]["stats64"]["rx"]["bytes"])

    def reaches(self, name: str, host: str, port: int) -> bool:
        """Whether a TCP connection from host `name` to `host`:`port` opens."""
        probe = _run(
            *("ip", "netns", "exec", self.namespaces[name], sys.executable, "-c", PROBE),
            *(self.addresses[host], str(port)),
            check=False,
        )
        return probe.returncode == 0

    def settings(self, name: str) -> Settings:
        """Settings as host `name` sees them (the test reads journals and the store)."""
        return load_settings(self.env(name), topology=str(self.topology_path), host=name)

    def tester(self) -> Settings:
        """The test process's own view: the fleet's control endpoints, its own key, and the
        store (the emulator, or the savers' host's SQLite file)."""
        control = self.settings(self.with_role("control"))
        if self.emulator is not None:
            store: dict[str, object] = {
                "store": "firestore",
                "firestore_project": control.firestore_project,
                "firestore_emulator_host": control.firestore_emulator_host,
            }
        else:
            saver_host = self.settings(self.with_role("savers"))
            store = {"store": "sqlite", "store_path": str(saver_host.sqlite_store_path)}
        return load_settings(
            {},
            data_dir=str(self.data_dir("tester")),
            key_name="tester",
            control_command_endpoint=control.control_command_endpoint,
            **store,
        )

    def reporting(self) -> dict[str, dict[str, int]]:
        """Live processes per stage per host, as control hears them."""
        return summarize(ask(self.tester(), "status")).hosts

    def wait_until_reporting(self, timeout: float = 90) -> None:
        """Until every process of every host reports: an extractor reports only once its
        model is loaded and its PULL connected, so from then on every worker host takes
        its share (a ledger's PUSH deals only to the peers connected when it sends)."""
        want = {
            name: {s: n for s, n in process_plan(self.settings(name)).items() if n}
            for name in self.hosts
        }
        for stages in want.values():
            stages.pop("control", None)  # is the control server
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heard = self.reporting()
            if all(heard.get(name) == stages for name, stages in want.items()):
                time.sleep(1)  # the CURVE handshakes complete right after the connects
                return
            time.sleep(0.5)
        raise FleetError(f"the fleet is not all reporting: want {want}, heard {self.reporting()}")

    def url(self, name: str) -> str:
        return f"http://{self.addresses[name]}:{self.topology.ports.http}"

    def backlogs(self) -> dict[str, int]:
        backlogs = {}
        for name in self.fronts:
            journal = Journal(self.settings(name).journal_path)
            try:
                backlogs[name] = journal.backlog().articles
            finally:
                journal.close()
        return backlogs

    def wait_drained(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while any(self.backlogs().values()):
            if time.monotonic() > deadline:
                raise FleetError(f"journals not drained after {timeout:.0f}s: {self.backlogs()}")
            time.sleep(0.5)

    def assert_exactly_counted(self, accepted: dict[str, dict], oracle: Oracle) -> None:
        """Every journal empty; every accepted id has a marker; the counts are stock
        spaCy's on the accepted texts (tests/e2e/conftest.py's check, on each journal)."""
        for name in self.fronts:
            assert_exactly_counted(
                SimpleNamespace(settings=self.settings(name)),  # type: ignore[arg-type]
                accepted,
                oracle,
            )

    # -- teardown ----------------------------------------------------------------------

    def cleanup(self, kind: str, what: object) -> None:
        self._cleanups.append((kind, what))

    def tear_down(self) -> list[str]:
        """Undo everything in reverse; never raises, returns what went wrong."""
        problems = []
        for namespace in self.namespaces.values():
            pids = _run("ip", "netns", "pids", namespace, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        if self.emulator is not None:
            with contextlib.suppress(Exception):
                self.emulator.stop()
        for kind, what in reversed(self._cleanups):
            try:
                if kind == "namespace":
                    for _ in range(50):  # bounded: processes just SIGKILLed may linger
                        pids = _run("ip", "netns", "pids", what, check=False).stdout.split()
                        for pid in pids:
                            with contextlib.suppress(ProcessLookupError, ValueError):
                                os.kill(int(pid), signal.SIGKILL)
                        if not pids:
                            break
                        time.sleep(0.1)
                    _run("ip", "netns", "del", str(what))
                elif kind == "link":
                    _run("ip", "link", "del", str(what))
                elif kind == "iptables":
                    _run("iptables", "-D", *what)  # type: ignore[misc]
            except Exception as exc:  # keep undoing the rest
                problems.append(f"{kind} {what}: {exc}")
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


def namespace_skip_reason() -> str | None:
    """Why namespace hosts cannot be built here, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "building namespace hosts needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to build namespace hosts"
    return None


@contextlib.contextmanager
def namespace_fleet(
    hosts: Hosts,
    *,
    firestore: bool,
    host_settings: dict[str, str],
    direct: tuple[str, str] | None = None,
) -> Iterator[Fleet]:
    """A running fleet of namespace hosts (`ingest up` on each, control's host first),
    every process reporting; torn down on the way out, whatever happened."""
    token = format(os.getpid() % 0xFFFF, "04x")
    # Short: ipc paths (each host's Circus endpoints) must stay under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix=f"mh{token}", dir="/tmp"))
    fleet = Fleet(root, token, _free_subnet(), hosts, host_settings)
    try:
        fleet.build_network()
        if direct is not None:
            fleet.add_direct_link(*direct)
        if firestore:
            fleet.start_emulator()
        fleet.topology_path.write_text(fleet.topology_text())
        fleet.make_keys()
        if firestore:
            fleet.wait_for_emulator()
        control = fleet.with_role("control")
        fleet.up(control)  # control first: the frontends' `up` resumes through it
        fleet.up(*(name for name in hosts if name != control))
        fleet.wait_until_reporting()
        yield fleet
    finally:
        problems = fleet.tear_down()
        assert not problems, f"teardown: {problems}"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    reason = namespace_skip_reason()
    if reason is None and gcloud_path() is None:
        reason = "gcloud is not on PATH: the fleet's store is Google's Firestore emulator"
    if reason:
        if running_in_ci():
            pytest.fail(f"{reason}; CI is set, and CI must run the multi-host tests")
        pytest.skip(reason)
    with namespace_fleet(HOSTS, firestore=True, host_settings=HOST_SETTINGS, direct=DIRECT) as f:
        yield f
