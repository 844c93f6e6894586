"""`ingest` finds the files it reads or refuses clearly, and `up` never prints a key.

The journal commands run as the operator runs them: the installed `ingest` script, in a
directory of the test's own, with only the environment the test gives.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import load_settings
from services.control import cli, mesh
from services.frontend.journal import Journal

INGEST = str(Path(sys.executable).with_name("ingest"))


def run_ingest(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`ingest ARGS` in `cwd`, with no INGEST_* setting but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    return subprocess.run(
        [INGEST, *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def journal_with_a_dead_letter(data_dir: Path) -> Path:
    """A journal as the mesh leaves it, holding one dead letter."""
    path = load_settings({}, data_dir=str(data_dir)).journal_path
    Journal(path).close()  # the mesh's own schema
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO dead_letters (id, publication, content, accepted_at, attempts, "
            "error, failed_at) VALUES ('dead-1', 'Pub', 'Text.', 0, 5, 'ValueError: boom', 0)"
        )
    conn.close()
    return path


@pytest.mark.parametrize("command", [["dead-letters"], ["retry-dead"], ["retry-dead", "x"]])
def test_journal_commands_refuse_a_directory_without_a_journal(tmp_path: Path, command):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_ingest(elsewhere, *command)  # the default data_dir: ./var
    assert result.returncode != 0
    expected = elsewhere / "var" / "journal.sqlite3"
    assert f"no journal at {expected}: is the data directory right?" in result.stderr
    assert "INGEST_DATA_DIR" in result.stderr and "INGEST_CONFIG" in result.stderr
    assert "dead letter" not in result.stdout  # no "0 dead letter(s)"
    assert list(elsewhere.iterdir()) == []  # nothing created on the way
    # A data directory that exists but holds no journal is refused the same way.
    empty = tmp_path / "empty"
    empty.mkdir()
    again = run_ingest(elsewhere, *command, INGEST_DATA_DIR=str(empty))
    assert again.returncode != 0 and f"no journal at {empty / 'journal.sqlite3'}" in again.stderr
    assert list(empty.iterdir()) == []


def test_journal_commands_find_the_journal_the_settings_name(tmp_path: Path):
    data = tmp_path / "data"
    journal_with_a_dead_letter(data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = run_ingest(elsewhere, "dead-letters", INGEST_DATA_DIR=str(data))
    assert listed.returncode == 0, listed.stderr
    assert "dead-1" in listed.stdout and "1 dead letter(s)" in listed.stdout
    config = tmp_path / "ingest.toml"
    config.write_text(f'data_dir = "{data}"\n')
    retried = run_ingest(elsewhere, "retry-dead", INGEST_CONFIG=str(config))
    assert retried.returncode == 0, retried.stderr
    assert "1 dead letter(s) back in the journal" in retried.stdout
    assert list(elsewhere.iterdir()) == []


def up_output(monkeypatch, capsys, settings) -> str:
    """What `ingest up` prints, with the mesh's start and waits stubbed out."""
    monkeypatch.setattr(mesh, "start", lambda settings, daemon: None)
    monkeypatch.setattr(mesh, "wait_until_serving", lambda settings, timeout: None)
    monkeypatch.setattr(mesh, "set_state", lambda settings, command: None)
    args = argparse.Namespace(
        foreground=False,
        keep_state=False,
        timeout=1.0,
        web_workers=None,
        extractors=None,
        savers=None,
    )
    assert cli.cmd_up(settings, args) == 0
    return capsys.readouterr().out


def curl_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "curl -s -X POST" in line]
    return line.strip()


def test_up_names_the_key_file_and_never_prints_the_key(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("INGEST_API_KEYS", raising=False)
    settings = load_settings({}, data_dir=str(tmp_path / "data dir"))  # a space, quoted
    output = up_output(monkeypatch, capsys, settings)
    key = settings.api_key_path.read_text().strip()  # created by `up`
    assert key not in output
    assert str(settings.api_key_path) in output
    header = re.search(r'-H "(Authorization: Bearer [^"]+)"', curl_line(output))
    assert header is not None
    # The header, as the shell expands it from the printed command, carries the key.
    expanded = subprocess.run(
        ["bash", "-c", f'printf %s "{header.group(1)}"'], capture_output=True, text=True
    )
    assert expanded.stdout == f"Authorization: Bearer {key}"


def test_up_says_keys_come_from_the_environment_without_printing_them(
    tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setenv("INGEST_API_KEYS", "first-secret-key,second-secret-key")
    settings = load_settings(data_dir=str(tmp_path))
    output = up_output(monkeypatch, capsys, settings)
    assert "secret-key" not in output
    assert "INGEST_API_KEYS" in output
    assert 'Bearer $KEY"' in curl_line(output)
    assert not settings.api_key_path.exists()  # no key file made beside configured keys


def test_top_refuses_a_directory_without_a_store(tmp_path: Path):
    result = run_ingest(tmp_path, "top", "ABC News")
    assert result.returncode == 1
    assert f"no store at {tmp_path / 'var' / 'store.sqlite3'}" in result.stderr
    assert not (tmp_path / "var").exists()  # nothing created as a side effect


def test_keys_are_made_listed_and_revoked_without_printing_one(tmp_path: Path):
    data = {"INGEST_DATA_DIR": str(tmp_path / "data")}
    made = run_ingest(tmp_path, "keys", **data)
    other = run_ingest(tmp_path, "keys", "--name", "front2", **data)
    assert made.returncode == other.returncode == 0, made.stderr + other.stderr
    assert "INGEST_KEY_NAME=front2" in other.stdout
    keys = tmp_path / "data" / "keys"
    for secret in keys.glob("*.key_secret"):
        assert secret.read_text().split('secret-key = "')[1][:40] not in made.stdout + other.stdout
    assert run_ingest(tmp_path, "keys", "list", **data).stdout.split() == ["client", "front2"]
    assert run_ingest(tmp_path, "keys", "revoke", "front2", **data).returncode == 0
    assert run_ingest(tmp_path, "keys", "list", **data).stdout.split() == ["client"]
    missing = run_ingest(tmp_path, "keys", "revoke", "front2", **data)
    assert missing.returncode == 1 and "no authorized key named 'front2'" in missing.stderr
