"""deploy/kubernetes/ checked offline, and tied to the code and the topology.

No cluster here: every manifest is validated against the pinned Kubernetes version's
OpenAPI schemas (kubernetes-validate, strict: an unknown field fails), the kustomization is
rendered with `kubectl kustomize` when a binary is there, and the rest is checked against
the product itself: every INGEST_* variable is a setting, each pod's environment loads with
`load_settings` into exactly the endpoints, ledgers, key name, stages and process counts
that `topology.toml` gives its host (`common/topology.py`), and the container, Service and
NetworkPolicy ports are the topology's. Every pod serves /metrics (a frontend on its HTTP
port, any other pod with services/host_metrics on the metrics port), is annotated for
Prometheus at that port, and lets only the monitoring namespace reach a metrics port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest
import yaml

from common.config import Settings, load_settings
from common.security import AUTHORIZED, generate_keys
from common.topology import load_topology, parse_topology
from services.control import mesh

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
TOPOLOGY = DEPLOY / "topology.toml"
DOC = ROOT / "docs" / "kubernetes.md"
# The Kubernetes version the manifests must be valid for (its schemas ship with
# kubernetes-validate): GKE's and EKS's oldest supported minor when this was written.
KUBERNETES_VERSION = "1.32"
NAMESPACE = "ingest"
COMPONENT = "app.kubernetes.io/component"
WORKLOADS = ("StatefulSet", "Deployment")

# The endpoints each stage binds (the singletons and the ledgers) and connects to (everyone
# else), as the services' modules do (each opens with its socket topology). Ledger lists
# stand for every ledger's endpoint.
BINDS = {
    "ledger": ("dispatch_endpoint", "ack_endpoint"),
    "control": ("control_state_endpoint", "control_report_endpoint", "control_command_endpoint"),
    "saver-inlet": ("results_in_endpoint", "results_out_endpoint"),
}
CONNECTS = {
    "frontend": ("control_state_endpoint", "control_report_endpoint", "control_command_endpoint"),
    "ledger": ("control_state_endpoint", "control_report_endpoint"),
    "extractor": (
        "ledger_dispatch",
        "ledger_acks",
        "results_in_endpoint",
        "control_state_endpoint",
        "control_report_endpoint",
    ),
    "saver-inlet": ("control_state_endpoint", "control_report_endpoint"),
    "saver": (
        "results_out_endpoint",
        "ledger_acks",
        "control_state_endpoint",
        "control_report_endpoint",
    ),
    "control": (),
}
# Links the policies allow beyond the processes' own: `ingest` run in the control pod
# (kubectl exec) reaches control by its Service name, which is that pod's own IP.
OPERATOR_LINKS = {("control", "control", port) for port in (5705, 5706, 5707)}
# Egress outside the mesh: DNS (53), Firestore over HTTPS (443), GKE's metadata server for
# Workload Identity tokens (80, 988).
OUTSIDE_PORTS = {53, 443, 80, 988}
# The only peer allowed to reach a pod's metrics port: any pod of the namespace Prometheus
# runs in (networkpolicy.yaml says to change the name; the label is Kubernetes' own).
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
# The path of a frontend's metrics route (services/frontend/http/app.py); services/
# host_metrics (prometheus-client's server) answers every path with the samples.
METRICS_PATH = "/metrics"


# -- loading -------------------------------------------------------------------------------


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def _load_resources() -> list[dict[str, Any]]:
    """Every resource the kustomization lists, as written (the kustomization has no
    generators or patches, so this is what is applied, namespace and image aside)."""
    resources = []
    for name in _kustomization()["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if doc:
                resources.append(doc)
    return resources


RESOURCES = _load_resources()


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [r for r in RESOURCES if r["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in _of_kind(kind) if r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} resources"
    return matches[0]


def _workloads() -> list[dict[str, Any]]:
    return [r for r in RESOURCES if r["kind"] in WORKLOADS]


def _pod_names(workload: dict[str, Any]) -> list[str]:
    """The names the workload's pods get: <name>-<ordinal> for a StatefulSet, a
    generated one for a Deployment."""
    name, replicas = workload["metadata"]["name"], workload["spec"]["replicas"]
    if workload["kind"] == "StatefulSet":
        return [f"{name}-{ordinal}" for ordinal in range(replicas)]
    return [f"{name}-7c9d5b7f9-x2x4q"]


def _pods() -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(workload, pod name, container) for every pod the manifests make."""
    for workload in _workloads():
        for pod in _pod_names(workload):
            for container in workload["spec"]["template"]["spec"]["containers"]:
                yield workload, pod, container


def _dockerfile_env() -> dict[str, str]:
    """The INGEST_* defaults the image sets (ENV NAME=value lines of the Dockerfile)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(INGEST_\w+)=(\S+)", line))
    return env


def _pod_env(pod: str, container: dict[str, Any], pod_ip: str = "10.8.0.7") -> dict[str, str]:
    """The environment Kubernetes gives the container: the image's, then envFrom, then env
    in order, with fieldRefs filled in and $(VAR) expanded as the kubelet does (from envFrom
    and earlier entries only; any other reference stays as it is)."""
    declared: dict[str, str] = {}
    for source in container.get("envFrom", []):
        declared.update(_named("ConfigMap", source["configMapRef"]["name"])["data"])
    fields = {"metadata.name": pod, "status.podIP": pod_ip, "metadata.namespace": NAMESPACE}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            declared[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            declared[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: declared.get(m.group(1), m.group(0)), entry["value"]
            )
    return {**_dockerfile_env(), **declared}


def _pod_settings(pod: str, container: dict[str, Any]) -> Settings:
    return load_settings(_pod_env(pod, container))


def _host_settings(host: str) -> Settings:
    """What the product derives for `host` from the topology (the path a fleet host takes:
    INGEST_TOPOLOGY + INGEST_HOST); data_dir as in the image, to compare like with like."""
    return load_settings(
        {
            "INGEST_TOPOLOGY": str(TOPOLOGY),
            "INGEST_HOST": host,
            "INGEST_DATA_DIR": _dockerfile_env()["INGEST_DATA_DIR"],
        }
    )


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _endpoint_ports(settings: Settings, field: str) -> set[int]:
    value = getattr(settings, field)
    if field == "ledger_dispatch":
        return {_port(e) for e in settings.ledger_dispatch_endpoints().values()}
    if field == "ledger_acks":
        return {_port(e) for e in settings.ledger_ack_endpoints().values()}
    return {_port(value)}


def _component(resource: dict[str, Any]) -> str:
    return resource["spec"]["template"]["metadata"]["labels"][COMPONENT]


def _stages(settings: Settings) -> list[str]:
    return settings.stages or list(mesh.STAGES)


def _metrics_port(settings: Settings) -> int | None:
    """The port this host's /metrics is served on, as the code decides it: a frontend's
    HTTP port, else services/host_metrics' port when Circus starts it; None: not served."""
    if settings.runs("frontend"):
        return settings.http_port
    if settings.serves_host_metrics:
        return settings.metrics_port
    return None


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects a pod
    with these labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def _is_metrics_rule(rule: dict[str, Any]) -> bool:
    """An ingress rule from another namespace: only Prometheus's may be one."""
    return any("namespaceSelector" in peer for peer in rule.get("from", []))


# -- schemas and rendering -------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource", RESOURCES, ids=lambda r: f"{r['kind']}/{r['metadata']['name']}".lower()
)
def test_every_manifest_is_valid_for_the_pinned_kubernetes(resource: dict[str, Any]):
    # strict: additionalProperties are refused, so a misspelt field fails here rather than
    # being dropped by the API server.
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def _render() -> list[dict[str, Any]]:
    if kustomize := shutil.which("kustomize"):
        command = [kustomize, "build", str(DEPLOY)]
    elif kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize", str(DEPLOY)]
    else:
        reason = "neither kustomize nor kubectl is on PATH to render the kustomization"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason}; CI is set, and CI has kubectl (Google Cloud SDK)")
        pytest.skip(reason)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_kustomization_renders_exactly_its_files():
    rendered = _render()
    key = lambda r: (r["kind"], r["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, RESOURCES))
    image = _kustomization()["images"][0]
    files = {key(r): r for r in RESOURCES}
    for resource in rendered:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == NAMESPACE
        # What kustomize changes is the namespace and the image; the rest is the files.
        expected = msgspec.json.decode(msgspec.json.encode(files[key(resource)]))
        if resource["kind"] != "Namespace":
            expected["metadata"]["namespace"] = NAMESPACE
        if resource["kind"] in WORKLOADS:
            for container in expected["spec"]["template"]["spec"]["containers"]:
                assert container["image"] == image["name"]
                container["image"] = f"{image['newName']}:{image['newTag']}"
        assert resource == expected


def test_manifests_hold_no_secret_material():
    # Secrets are created by the operator (docs/kubernetes.md); none is in the repository.
    assert not _of_kind("Secret")
    for path in DEPLOY.iterdir():
        text = path.read_text()
        # zmq.auth's key files say "public-key = " and "secret-key = ".
        assert "secret-key" not in text and "public-key" not in text, path


# -- settings and topology -------------------------------------------------------------------


def test_every_variable_a_manifest_sets_is_a_setting():
    fields = {f.name for f in msgspec.structs.fields(Settings)}
    named = set(_dockerfile_env())
    for config_map in _of_kind("ConfigMap"):
        # Consumed whole with envFrom: a key that is not a setting would be ignored.
        named.update(config_map["data"])
    for _, _, container in _pods():
        named.update(entry["name"] for entry in container.get("env", []))
    assert named, "no variables found"
    not_ingest = sorted(n for n in named if not n.startswith("INGEST_"))
    assert not not_ingest, f"variables that are not settings: {not_ingest}"
    unknown = sorted(n for n in named if n[len("INGEST_") :].lower() not in fields)
    assert not unknown, f"INGEST_* variables that are no field of Settings: {unknown}"


def _pods_by_host() -> dict[str, list[tuple[dict[str, Any], str, dict[str, Any]]]]:
    hosts: dict[str, list] = {}
    for workload, pod, container in _pods():
        hosts.setdefault(_pod_settings(pod, container).key_name, []).append(
            (workload, pod, container)
        )
    return hosts


def test_every_topology_host_is_a_pod_and_every_pod_a_host():
    assert sorted(_pods_by_host()) == sorted(load_topology(TOPOLOGY).hosts)


# Fields the topology decides that the pods set differently on purpose: http_host is the
# name others reach a host at; a pod binds its HTTP port on every address of its own network
# namespace (checked below), which that name resolves to.
NOT_COMPARED = {"http_host"}


@pytest.mark.parametrize("host", sorted(load_topology(TOPOLOGY).hosts))
def test_each_pod_has_exactly_its_hosts_settings(host: str):
    topology = load_topology(TOPOLOGY)
    wanted = _host_settings(host)
    pods = _pods_by_host()[host]
    for _, pod, container in pods:
        settings = _pod_settings(pod, container)
        for field in set(topology.host_settings(host)) - NOT_COMPARED:
            if field in ("web_workers", "extractors", "savers"):
                continue  # compared as the process plan: a count of a stage not run is moot
            assert getattr(settings, field) == getattr(wanted, field), (
                f"pod {pod}: {field} is {getattr(settings, field)!r}, the topology's host "
                f"{host!r} has {getattr(wanted, field)!r}"
            )
        assert mesh.process_plan(settings) == mesh.process_plan(wanted), pod
        if settings.runs("frontend"):
            assert settings.http_host == "0.0.0.0", pod
        # Every tcp:// endpoint it binds becomes the pod's IP (ZeroMQ cannot bind a name).
        assert settings.bind_address == "10.8.0.7", pod


def test_each_hosts_address_names_its_pod():
    """The topology's address of a host is the DNS name of its pod: <pod>.<headless
    Service> for a StatefulSet pod, the headless Service itself for a singleton."""
    topology = load_topology(TOPOLOGY)
    for host, pods in _pods_by_host().items():
        workload, pod, _ = pods[0]
        address = topology.hosts[host].address
        binds = any(stage in BINDS for stage in _stages(_host_settings(host)))
        if not binds:
            continue  # a pool pod: nothing connects to it, its address is never resolved
        assert workload["kind"] == "StatefulSet", f"{host} binds: it needs a stable name"
        service = _named("Service", workload["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None", "ZeroMQ connects to pods, not a VIP"
        # The links must not wait for readiness (a stopped frontend still dispatches).
        assert service["spec"]["publishNotReadyAddresses"] is True
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        if workload["spec"]["replicas"] == 1:
            assert address == service["metadata"]["name"], host
        else:
            assert address == f"{pod}.{service['metadata']['name']}", host


def test_container_and_service_ports_are_the_topologys():
    ports = msgspec.structs.asdict(load_topology(TOPOLOGY).ports)
    for _, pod, container in _pods():
        settings = _pod_settings(pod, container)
        bound = {
            port
            for stage in _stages(settings)
            for field in BINDS.get(stage, ())
            for port in _endpoint_ports(settings, field)
        }
        if settings.runs("frontend"):
            bound.add(settings.http_port)
            assert settings.http_port == ports["http"]
        # A fleet host without a frontend runs services/host_metrics (circus.ini), which
        # binds the metrics port.
        if settings.serves_host_metrics:
            bound.add(settings.metrics_port)
            assert settings.metrics_port == ports["metrics"], pod
        declared = {p["containerPort"] for p in container.get("ports", [])}
        assert declared == bound, f"{pod}: declares {declared}, binds {bound}"
        named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if settings.serves_host_metrics:
            assert named.get("metrics") == settings.metrics_port, pod
        assert bound <= set(ports.values()), f"{pod}: {bound} not all topology ports"
    for service in _of_kind("Service"):
        selected = [
            w
            for w in _workloads()
            if service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"Service {service['metadata']['name']}"
        named = {
            p["name"]: p["containerPort"]
            for c in selected[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            # Peers dial the port written in the endpoint: the Service must not remap it.
            assert named[port["targetPort"]] == port["port"], service["metadata"]["name"]
            assert port["port"] in ports.values()


def _expected_links() -> set[tuple[str, str, int]]:
    """(client component, server component, port) for every link the processes make."""
    servers: dict[int, str] = {}
    clients: list[tuple[str, set[int]]] = []
    for workload, pod, container in _pods():
        settings = _pod_settings(pod, container)
        component = _component(workload)
        for stage in _stages(settings):
            for field in BINDS.get(stage, ()):
                for port in _endpoint_ports(settings, field):
                    assert servers.setdefault(port, component) == component, port
            wanted = {p for f in CONNECTS[stage] for p in _endpoint_ports(settings, f)}
            clients.append((component, wanted))
    return {(client, servers[port], port) for client, wanted in clients for port in wanted}


def _peer_components(peers: list[dict[str, Any]]) -> list[str]:
    components = []
    for peer in peers:
        labels = peer.get("podSelector", {}).get("matchLabels", {})
        if COMPONENT in labels and "namespaceSelector" not in peer:
            components.append(labels[COMPONENT])
    return components


def test_network_policies_allow_exactly_the_mesh_links():
    ingress: set[tuple[str, str, int]] = set()
    egress: set[tuple[str, str, int]] = set()
    denied = {"Ingress": False, "Egress": False}
    http_open = False
    for policy in _of_kind("NetworkPolicy"):
        spec = policy["spec"]
        selected = spec["podSelector"].get("matchLabels", {})
        if not selected:
            assert "ingress" not in spec and "egress" not in spec, "default deny allows nothing"
            denied.update({kind: True for kind in spec["policyTypes"]})
            continue
        me = selected.get(COMPONENT)
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule["ports"]}
            if _is_metrics_rule(rule):
                continue  # Prometheus: test_only_the_monitoring_namespace_reaches_metrics
            if "from" not in rule:
                assert me == "frontend" and ports == {8080}, "only HTTP is open to all"
                http_open = True
                continue
            ingress |= {(peer, me, p) for peer in _peer_components(rule["from"]) for p in ports}
        for rule in spec.get("egress", []):
            ports = {p["port"] for p in rule["ports"]}
            peers = _peer_components(rule.get("to", []))
            if not peers:
                assert ports <= OUTSIDE_PORTS, f"{policy['metadata']['name']}: egress {ports}"
                continue
            egress |= {(me, peer, p) for peer in peers for p in ports}
    assert denied == {"Ingress": True, "Egress": True}, "no default deny"
    assert http_open
    expected = _expected_links() | OPERATOR_LINKS
    assert ingress == expected, f"ingress: extra {ingress - expected}, missing {expected - ingress}"
    assert egress == expected, f"egress: extra {egress - expected}, missing {expected - egress}"


def test_only_the_monitoring_namespace_reaches_metrics():
    """Every metrics port is open to Prometheus's namespace and to nothing else, on exactly
    the pods that serve one; the frontends' /metrics is on HTTP, open to all anyway."""
    metrics_port = load_topology(TOPOLOGY).ports.metrics
    opened: set[str] = set()
    for policy in _of_kind("NetworkPolicy"):
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule["ports"]}
            if metrics_port not in ports and not _is_metrics_rule(rule):
                continue
            name = policy["metadata"]["name"]
            assert rule.get("from") == [MONITORING], f"{name}: metrics from {rule.get('from')}"
            assert ports == {metrics_port}, f"{name}: opens {ports}, not {metrics_port}"
            assert {p["protocol"] for p in rule["ports"]} == {"TCP"}, name
            assert "Ingress" in spec["policyTypes"], name
            opened |= {
                pod
                for workload, pod, _ in _pods()
                if _selects(spec["podSelector"], workload["spec"]["template"]["metadata"]["labels"])
            }
    serving = {pod for _, pod, c in _pods() if _pod_settings(pod, c).serves_host_metrics}
    assert serving, "no pod runs services/host_metrics"
    assert opened == serving, f"opened to Prometheus: {sorted(opened)}, serving: {sorted(serving)}"


def test_every_pod_is_annotated_for_scraping_where_it_serves_metrics():
    for workload, pod, container in _pods():
        settings = _pod_settings(pod, container)
        port = _metrics_port(settings)
        assert port is not None, f"{pod} serves no /metrics"
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", pod
        assert annotations.get("prometheus.io/port") == str(port), (
            f"{pod}: annotated port {annotations.get('prometheus.io/port')}, serves on {port}"
        )
        assert annotations.get("prometheus.io/path") == METRICS_PATH, pod
        declared = {p["containerPort"] for p in container.get("ports", [])}
        assert port in declared, f"{pod}: {port} is not a container port"


def _doc_blocks(language: str) -> list[str]:
    """The ```language blocks of docs/kubernetes.md's metrics section."""
    text = DOC.read_text()
    section = text[text.index("## Metrics: Prometheus for a fleet") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.S | re.M)


def _relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabeling (the keep and replace actions the docs use) of a target's
    labels; None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(n, "") for n in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)  # Prometheus anchors it
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
                labels[rule["target_label"]] = match.expand(template)
        else:
            raise AssertionError(f"relabel action {action} not simulated here")
    return labels


def test_the_docs_kubernetes_scrape_config_finds_every_pods_metrics():
    """The docs' kubernetes_sd job, applied to each pod's annotations as Prometheus would,
    scrapes the port and path where the code serves that pod's /metrics."""
    (job,) = [
        j
        for block in _doc_blocks("yaml")
        for j in yaml.safe_load(block)["scrape_configs"]
        if "kubernetes_sd_configs" in j
    ]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == [NAMESPACE]
    pod_ip = "10.8.0.7"
    for workload, pod, container in _pods():
        template = workload["spec"]["template"]["metadata"]
        meta = {"__address__": f"{pod_ip}:1", "__metrics_path__": "/metrics"}
        meta |= {"__meta_kubernetes_pod_ip": pod_ip, "__meta_kubernetes_pod_name": pod}
        for prefix, values in (("annotation", "annotations"), ("label", "labels")):
            for key, value in template.get(values, {}).items():
                # Prometheus turns every character not valid in a label name into "_".
                name = re.sub(r"\W", "_", key)
                meta[f"__meta_kubernetes_pod_{prefix}_{name}"] = value
        target = _relabel(meta, job["relabel_configs"])
        assert target is not None, f"{pod} is not scraped"
        port = _metrics_port(_pod_settings(pod, container))
        assert target["__address__"] == f"{pod_ip}:{port}", (
            f"{pod}: the docs' job scrapes {target['__address__']}, it serves on {port}"
        )
        assert target["__metrics_path__"] == METRICS_PATH, pod
        assert target["pod"] == pod


def test_the_docs_static_scrape_config_is_the_example_topologys(tmp_path: Path):
    """Without Kubernetes: each host of the docs' topology at its address and the port the
    product serves its /metrics on (HTTP for a frontend host, else the metrics port)."""
    (toml,) = _doc_blocks("toml")
    topology = tmp_path / "fleet.toml"
    topology.write_text(toml)
    expected = {}
    for host in parse_topology(toml).hosts:
        fleet = {"INGEST_TOPOLOGY": str(topology), "INGEST_HOST": host}
        settings = load_settings({**fleet, "INGEST_DATA_DIR": str(tmp_path)})
        expected[host] = [f"{settings.http_host}:{_metrics_port(settings)}"]
    (job,) = [
        j
        for block in _doc_blocks("yaml")
        for j in yaml.safe_load(block)["scrape_configs"]
        if "static_configs" in j
    ]
    documented = {group["labels"]["host"]: group["targets"] for group in job["static_configs"]}
    assert documented == expected, f"the docs scrape {documented}, the hosts serve {expected}"


# -- keys, security, probes -----------------------------------------------------------------

# The Secrets docs/kubernetes.md creates, and what each holds, from a key folder made with
# `ingest keys --name HOST` for every host (common/security.py's layout).
CURVE_SECRETS = {
    "ingest-curve-server": lambda keys: {p.name for p in keys.glob("server.key*")},
    "ingest-curve-clients": lambda keys: {
        p.name for p in keys.glob("*.key_secret") if p.name != "server.key_secret"
    },
    "ingest-curve-authorized": lambda keys: {p.name for p in (keys / AUTHORIZED).glob("*.key")},
}


def test_pods_mount_the_keys_ingest_keys_makes(tmp_path: Path):
    keys = tmp_path / "keys"
    for host in load_topology(TOPOLOGY).hosts:
        generate_keys(keys, host)
    made = {name: files(keys) for name, files in CURVE_SECRETS.items()}
    doc = DOC.read_text()
    for name in made:
        assert f"create secret generic {name} " in doc, f"{DOC.name} does not create {name}"
    for workload, pod, container in _pods():
        settings = _pod_settings(pod, container)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == settings.key_dir)
        volume = next(
            v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
        )
        files = set()
        for source in volume["projected"]["sources"]:
            secret = source["secret"]
            for item in secret["items"]:
                assert item["key"] in made[secret["name"]], f"{pod}: no {item['key']} made"
                files.add(item["path"])
        binds = any(stage in BINDS for stage in _stages(settings))
        assert f"{settings.key_name}.key_secret" in files, pod
        assert "server.key" in files, pod
        # server.key_secret goes only to the processes that bind (docs/trust.md).
        assert ("server.key_secret" in files) == binds, pod
        authorized = {f"{AUTHORIZED}/{h}.key" for h in load_topology(TOPOLOGY).hosts}
        assert ({f for f in files if f.startswith(AUTHORIZED)} == authorized) == binds, pod
    # Every Secret a pod mounts is one the docs create.
    mounted = set()
    for workload in _workloads():
        for volume in workload["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                mounted.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                mounted.add(source["secret"]["name"])
    assert mounted == {*CURVE_SECRETS, "ingest-api-keys"}
    for name in mounted:
        assert f"create secret generic {name} " in doc, f"{DOC.name} does not create {name}"


def test_pods_run_unprivileged_on_a_read_only_root():
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user, "the image's USER must be numeric for runAsNonRoot"
    for workload, pod, container in _pods():
        pod_spec = workload["spec"]["template"]["spec"]
        context = pod_spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == tuple(map(int, user.groups()))
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod_spec["automountServiceAccountToken"] is False
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        # What the mesh writes is on writable volumes: its data folder and /tmp.
        settings = _pod_settings(pod, container)
        writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
        for path in (settings.data_dir, "/tmp"):
            assert any(Path(path).is_relative_to(m) for m in writable), f"{pod}: {path}"
        # Kubernetes restarts pods on its own: a restart must not resume writes an
        # operator stopped (`ingest up` resumes by default).
        assert container["args"] == ["up", "--foreground", "--keep-state"]


def test_frontends_are_probed_on_health_and_ready():
    frontend = _named("StatefulSet", "frontend")
    container = frontend["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    # Autoscaling on CPU needs a CPU request to measure utilization against.
    for hpa in _of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        target = _named(ref["kind"], ref["name"])
        for c in target["spec"]["template"]["spec"]["containers"]:
            assert "cpu" in c["resources"]["requests"], target["metadata"]["name"]


def test_the_cluster_runs_the_namespace_fleets_links_on_the_same_ports():
    """The fleet tests/e2e/multihost runs and the cluster these manifests describe differ
    in addresses and in which stages share a host, not in links: the same ports, the same
    endpoints, and each endpoint on a host running the stage that binds it."""
    from pathlib import Path as _Path

    from common.topology import parse_topology
    from tests.e2e.multihost.conftest import Fleet

    fleet = parse_topology(Fleet(_Path("/nonexistent"), "0", "10.77.0").topology_text())
    cluster = load_topology(TOPOLOGY)
    assert fleet.ports == cluster.ports
    binder = {
        "dispatch_endpoint": "ledger",
        "ack_endpoint": "ledger",
        "results_in_endpoint": "saver-inlet",
        "results_out_endpoint": "saver-inlet",
        "control_state_endpoint": "control",
        "control_report_endpoint": "control",
        "control_command_endpoint": "control",
    }

    def links(topology) -> dict[str, set[int]]:
        """Each endpoint field -> its ports; asserting its host runs the binding stage."""
        stages = {h.address: h.stages() for h in topology.hosts.values()}
        found: dict[str, set[int]] = {}
        for name in topology.hosts:
            for field, value in topology.host_settings(name).items():
                if field.endswith("_endpoint"):
                    address, port = str(value).removeprefix("tcp://").rsplit(":", 1)
                    assert binder[field] in stages[address], (field, value)
                    found.setdefault(field, set()).add(int(port))
        return found

    assert links(fleet) == links(cluster)
