from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.config import DEFAULT_SKIP_LABELS, IPC_NAMES, ConfigError, load_settings


def test_defaults_are_private_and_use_the_embedded_store(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path))
    assert settings.http_host == "127.0.0.1"  # the one TCP port, guarded by API keys
    endpoints = [getattr(settings, field) for field in IPC_NAMES]
    assert all(e.startswith(f"ipc://{tmp_path}/run/") for e in endpoints)
    assert len(set(endpoints)) == len(endpoints)
    assert settings.ledger_ack_endpoints() == {"local": settings.ack_endpoint}
    assert settings.store == "sqlite"
    assert settings.skip_labels == DEFAULT_SKIP_LABELS
    assert settings.sqlite_store_path == tmp_path / "store.sqlite3"


def test_environment_overrides_with_types_and_lists():
    settings = load_settings(
        {
            "INGEST_WEB_WORKERS": "5",
            "INGEST_SKIP_LABELS": "DATE, TIME",
            "INGEST_LEASE_SECONDS": "2.5",
        }
    )
    assert settings.web_workers == 5
    assert settings.skip_labels == ["DATE", "TIME"]
    assert settings.lease_seconds == 2.5


def test_toml_file_then_environment(tmp_path: Path):
    config = tmp_path / "mesh.toml"
    config.write_text('http_port = 9000\nextractors = 4\nmodel = "x"\n')
    settings = load_settings({"INGEST_CONFIG": str(config), "INGEST_EXTRACTORS": "3"})
    assert (settings.http_port, settings.extractors, settings.model) == (9000, 3, "x")


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"INGEST_HTTP_PORT": "eighty"}, "http_port"),
        ({"INGEST_STORE": "postgres"}, "store"),
        ({"INGEST_NO_SUCH_SETTING": "1"}, "no_such_setting"),
        ({"INGEST_CONFIG": "/nonexistent/mesh.toml"}, "INGEST_CONFIG"),
    ],
)
def test_bad_configuration_names_the_setting(environ, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(environ)


def test_relative_data_dir_is_made_absolute():
    assert Path(load_settings({"INGEST_DATA_DIR": "var"}).data_dir).is_absolute()


def test_environ_round_trip(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path), skip_labels=["A", "B"], http_port=1234)
    assert load_settings(settings.to_environ()) == settings


def test_api_key_is_created_private_once_and_reused(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path))
    assert settings.load_api_keys() == []
    key = settings.ensure_api_key()
    assert len(key) >= 32
    assert stat.S_IMODE(settings.api_key_path.stat().st_mode) == 0o600
    assert settings.ensure_api_key() == key
    assert load_settings({}, data_dir=str(tmp_path), api_keys=["k1"]).load_api_keys() == ["k1"]


def test_an_ipc_path_too_long_for_the_kernel_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="shorter data_dir"):
        load_settings({}, data_dir=str(tmp_path / ("d" * 120)))


def test_an_endpoint_must_be_ipc_or_tcp(tmp_path: Path):
    with pytest.raises(ConfigError, match="dispatch_endpoint"):
        load_settings({}, data_dir=str(tmp_path), dispatch_endpoint="udp://1.2.3.4:5")


def test_acks_go_to_configured_ledgers(tmp_path: Path):
    settings = load_settings(
        {
            "INGEST_LEDGER_ACKS": "front1=tcp://front1.mesh.internal:5702, front2=tcp://front2.mesh.internal:5702"
        },
        data_dir=str(tmp_path),
    )
    assert settings.ledger_ack_endpoints() == {
        "front1": "tcp://front1.mesh.internal:5702",
        "front2": "tcp://front2.mesh.internal:5702",
    }


@pytest.mark.parametrize(
    "field", ["circus_endpoint", "circus_pubsub_endpoint", "journal_appends_endpoint"]
)
def test_host_only_endpoints_refuse_tcp(tmp_path: Path, field: str):
    with pytest.raises(ConfigError, match=f"{field}=.*must be ipc://"):
        load_settings({}, data_dir=str(tmp_path), **{field: "tcp://127.0.0.1:5999"})


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_the_ledger_poll_must_be_positive(seconds: str):
    with pytest.raises(ConfigError, match="ledger_poll_seconds"):
        load_settings({"INGEST_LEDGER_POLL_SECONDS": seconds})


@pytest.mark.parametrize("size", ["0", "10001"])
def test_a_batch_is_what_one_ask_may_hold(size: str):
    """An extractor asks for batch_size articles: more than a ledger accepts in one ask
    (MAX_WANT) would be an ask every ledger drops, and an extractor that never gets work."""
    with pytest.raises(ConfigError, match="batch_size"):
        load_settings({"INGEST_BATCH_SIZE": size})
