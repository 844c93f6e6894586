"""Schemathesis fuzzes the live frontend from its own OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_live_frontend_matches_its_openapi_document(running_mesh, corpus_articles):
    # Some real data first, so the read routes have something to return.
    assert running_mesh.post(corpus_articles[:30]).status_code == 202
    running_mesh.wait_drained(timeout=120)
    key = running_mesh.key
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{running_mesh.url}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--header", f"access_token: {key}",
        "--checks", "all",
        "--max-examples", "30",
        "--seed", "20261126",
        "--request-timeout", "10",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
