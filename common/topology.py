"""The fleet's topology: one TOML file naming every host and what it runs.

One source of truth for a mesh spread over hosts. Each host loads the same file with its own
name (`topology` + `host` settings, or `ingest up --topology FILE --host NAME`), and
`load_settings` derives that host's share from it: its stages and process counts, every
endpoint, its ledger id, the ledgers' dispatch and ack endpoints, its CURVE key name and its
HTTP address. Nothing else needs to agree between hosts.

    [ports]              # optional; these are the defaults
    dispatch = 5701      # every frontend host's ledger binds its dispatch here
    acks = 5702          # ... and its acks here
    results_in = 5703    # saver inlet: extractors -> inlet
    results_out = 5704   # saver inlet: inlet -> savers
    control_state = 5705
    control_reports = 5706
    control_commands = 5707
    http = 8080
    metrics = 9100       # /metrics of a host without a frontend (services/host_metrics)

    [hosts.front1]
    address = "10.77.0.11"   # an IP or DNS name the other hosts reach this host at
    frontend = 2             # frontend processes; a frontend host always runs its ledger
    [hosts.work1]
    address = "10.77.0.21"
    extractors = 2
    [hosts.store1]
    address = "10.77.0.31"
    control = true
    saver_inlet = true
    savers = 2

Rules: exactly one host runs control and exactly one the saver inlet (the singletons bind);
at least one host has frontend processes, one extractors and one savers; every host runs
something. Every link is tcp:// (CURVE); a frontend host's ledger id is its host name, and
each host's client key pair is named after it (`ingest keys --name HOST`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec

# Host names become ledger ids, key file names and log fields: keep them plain.
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class TopologyError(ValueError):
    """The topology file cannot be used; the message names the file and what is wrong."""


class Ports(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    dispatch: int = 5701
    acks: int = 5702
    results_in: int = 5703
    results_out: int = 5704
    control_state: int = 5705
    control_reports: int = 5706
    control_commands: int = 5707
    http: int = 8080
    metrics: int = 9100


class Host(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    address: str
    frontend: int = 0  # frontend processes; > 0 means this host also runs its ledger
    extractors: int = 0
    savers: int = 0
    control: bool = False
    saver_inlet: bool = False

    def stages(self) -> list[str]:
        """The stages this host runs, in the order of services/control/mesh.py's STAGES."""
        wanted = {
            "control": self.control,
            "frontend": self.frontend > 0,
            "ledger": self.frontend > 0,  # a frontend host dispatches its own journal
            "extractor": self.extractors > 0,
            "saver-inlet": self.saver_inlet,
            "saver": self.savers > 0,
        }
        return [stage for stage, runs in wanted.items() if runs]


class Topology(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    hosts: dict[str, Host]
    ports: Ports = Ports()

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise TopologyError(
                f"no host {name!r} in the topology (hosts: {', '.join(sorted(self.hosts))})"
            ) from None

    def frontend_hosts(self) -> list[str]:
        return [name for name, host in self.hosts.items() if host.frontend > 0]

    def owner(self, role: str) -> Host:
        """The one host with `role` (control, saver_inlet); validation made it exactly one."""
        return next(host for host in self.hosts.values() if getattr(host, role))

    def host_settings(self, name: str) -> dict[str, object]:
        """The Settings values that host `name` takes from the topology (the overrides
        load_settings applies; setting any of them otherwise is a conflict)."""
        host = self.host(name)
        ports = self.ports
        control = self.owner("control").address
        inlet = self.owner("saver_inlet").address
        derived: dict[str, object] = {
            "stages": host.stages(),
            "web_workers": host.frontend,
            "extractors": host.extractors,
            "savers": host.savers,
            "results_in_endpoint": _tcp(inlet, ports.results_in),
            "results_out_endpoint": _tcp(inlet, ports.results_out),
            "control_state_endpoint": _tcp(control, ports.control_state),
            "control_report_endpoint": _tcp(control, ports.control_reports),
            "control_command_endpoint": _tcp(control, ports.control_commands),
            "ledger_dispatch": [
                f"{h}={_tcp(self.hosts[h].address, ports.dispatch)}" for h in self.frontend_hosts()
            ],
            "ledger_acks": [
                f"{h}={_tcp(self.hosts[h].address, ports.acks)}" for h in self.frontend_hosts()
            ],
            "key_name": name,
            "http_host": host.address,
            "http_port": ports.http,
            "metrics_port": ports.metrics,
        }
        if host.frontend > 0:
            derived["ledger_id"] = name
            derived["dispatch_endpoint"] = _tcp(host.address, ports.dispatch)
            derived["ack_endpoint"] = _tcp(host.address, ports.acks)
        return derived


def _tcp(address: str, port: int) -> str:
    # An IPv6 literal needs brackets in an endpoint.
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


def parse_topology(text: str, source: str = "<topology>") -> Topology:
    """A validated Topology from TOML text; TopologyError says what is wrong and where."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{source}: not valid TOML: {exc}") from exc
    hosts = raw.get("hosts")
    if isinstance(hosts, dict):
        # One host at a time, so that an error names the host (msgspec says `hosts[...]`).
        for name, table in hosts.items():
            try:
                msgspec.convert(table, Host)
            except msgspec.ValidationError as exc:
                raise TopologyError(f"{source}: hosts.{name}: {exc}") from exc
    try:
        topology = msgspec.convert(raw, Topology)
    except msgspec.ValidationError as exc:
        raise TopologyError(f"{source}: {exc}") from exc
    _validate(topology, source)
    return topology


def load_topology(path: str | Path) -> Topology:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read the topology {path}: {exc}") from exc
    return parse_topology(text, str(path))


def _validate(topology: Topology, source: str) -> None:
    problems: list[str] = []
    if not topology.hosts:
        problems.append("no hosts: add [hosts.NAME] tables")
    addresses: dict[str, str] = {}
    for name, host in topology.hosts.items():
        if not HOST_NAME.match(name):
            problems.append(
                f"host name {name!r}: use lowercase letters, digits and '-' (it names the "
                "host's ledger and key pair)"
            )
        if not host.address.strip() or any(c in host.address for c in "/ ="):
            problems.append(f"hosts.{name}.address {host.address!r}: an IP or a DNS name")
        if host.address in addresses:
            problems.append(
                f"hosts.{name}.address {host.address!r} is also hosts.{addresses[host.address]}"
                "'s: every host binds the same ports"
            )
        addresses[host.address] = name
        for count in ("frontend", "extractors", "savers"):
            if getattr(host, count) < 0:
                problems.append(f"hosts.{name}.{count} = {getattr(host, count)}: not negative")
        if not host.stages():
            problems.append(f"hosts.{name} runs nothing: give it frontend, extractors, ...")
    for role, what in (("control", "control = true"), ("saver_inlet", "saver_inlet = true")):
        owners = [name for name, host in topology.hosts.items() if getattr(host, role)]
        if len(owners) != 1:
            problems.append(
                f"exactly one host must have {what}, not {len(owners)}"
                + (f" ({', '.join(owners)})" if owners else "")
            )
    for count in ("frontend", "extractors", "savers"):
        if not any(getattr(host, count) > 0 for host in topology.hosts.values()):
            problems.append(f"no host has {count} > 0: the mesh needs at least one")
    ports = msgspec.structs.asdict(topology.ports)
    for port_name, port in ports.items():
        if not 0 < port < 65536:
            problems.append(f"ports.{port_name} = {port}: not a TCP port")
    if len(set(ports.values())) != len(ports):
        problems.append("ports: two links share one port")
    if problems:
        raise TopologyError(f"{source}: " + "; ".join(problems))
