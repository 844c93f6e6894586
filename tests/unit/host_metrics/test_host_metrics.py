"""services.host_metrics: a host's multiprocess samples served over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from common.config import load_settings
from common.lifecycle import StopFlag
from services.host_metrics.__main__ import run
from tests.conftest import free_port


def test_serves_the_samples_every_process_of_the_host_wrote(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path), metrics_port=free_port())
    settings.metrics_path.mkdir()
    # Two processes of the host write samples, as the extractors do under the mesh.
    for extracted in (3, 4):
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from common import metrics; metrics.EXTRACTED.inc({extracted})",
            ],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(settings.metrics_path)},
            cwd=Path(__file__).resolve().parents[3],
            check=True,
        )
    stop = StopFlag()
    thread = threading.Thread(target=run, args=(settings, stop))
    thread.start()
    try:
        url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        deadline = time.monotonic() + 10
        while True:
            try:
                text = httpx.get(url, timeout=2).text
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the metrics server never answered"
                time.sleep(0.1)
        assert "ingest_articles_extracted_total 7.0" in text
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
