"""Scaling a stage with plain circusctl while articles flow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.control import mesh


def circusctl(running, *args: str) -> str:
    command = [str(Path(sys.executable).with_name("circusctl")), "--endpoint"]
    command += [running.settings.circus_endpoint, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_incr_extractor_under_load_adds_a_worker_that_receives_articles(
    running_mesh, corpus_articles
):
    # A backlog several times the ledger's window, so work is still flowing after the incr.
    for copy in range(3):
        batch = [dict(a, publication=f"{a['publication']} #{copy}") for a in corpus_articles]
        assert running_mesh.post(batch).status_code == 202
    before = set(mesh.circus(running_mesh.settings, "list", name="extractor")["pids"])
    assert len(before) == running_mesh.settings.extractors

    circusctl(running_mesh, "incr", "extractor")

    after = set(mesh.circus(running_mesh.settings, "list", name="extractor")["pids"])
    (new_pid,) = after - before
    assert running_mesh.backlog() > 0, "the load ended before the new extractor could join"
    running_mesh.wait_drained(timeout=300)
    batches = [
        line
        for line in running_mesh.log_lines("extractor")
        if line["pid"] == new_pid and line["message"] == "batch extracted"
    ]
    assert sum(line["articles"] for line in batches) > 0
    assert circusctl(running_mesh, "numprocesses", "extractor").strip() == "3"
