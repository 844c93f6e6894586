"""Host metrics: GET /metrics on a fleet host that runs no frontend.

A frontend serves /metrics for every process of its host (services/frontend/http/
metrics.py: prometheus-client's multiprocess samples in the host's metrics folder). A
worker or store host of a fleet (extractors, savers, saver inlet, control) has no HTTP, so
this process serves the same samples there, at `bind_address` (else `http_host`) and
`metrics_port`: every host of a fleet is scraped the same way (docs/kubernetes.md gives the
Prometheus configuration). Circus starts it only on such hosts.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from common.config import Settings, load_settings
from common.lifecycle import StopFlag, configure_logging

log = logging.getLogger("host-metrics")


def run(settings: Settings, stop: StopFlag) -> None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.metrics_path))
    address = settings.bind_address or settings.http_host
    server, thread = start_http_server(settings.metrics_port, addr=address, registry=registry)
    log.info("host metrics up", extra={"address": address, "port": settings.metrics_port})
    try:
        while not stop:
            time.sleep(0.5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        log.info("host metrics stopped")


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "host-metrics")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
