"""Prometheus metrics over HTTP: request timing, rejections, and GET /metrics for the mesh.

GET /metrics aggregates the samples every process of the mesh wrote to the shared metrics
folder (prometheus-client multiprocess mode, see common/metrics.py) and adds, at scrape
time, what only the control server knows: the pipeline state and the live processes per
stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from common import metrics
from common.control import ControlUnavailable
from services.frontend.http.resources import MeshStatus

STATES = ("accepting", "stopped", "draining")
# Why a write was refused, from the status when the resource did not say more.
STATUS_REASONS = {
    400: "malformed",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}


class RequestMetrics:
    """Falcon middleware: latency of every request; rejected writes by reason."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        route = req.uri_template or "unmatched"
        seconds = time.perf_counter() - req.context.get("started", time.perf_counter())
        metrics.REQUEST_SECONDS.labels(route, req.method).observe(seconds)
        status = resp.status_code
        if req.method == "POST" and getattr(resource, "auth", None) and status >= 400:
            reason = req.context.get("reject_reason") or STATUS_REASONS.get(status, str(status))
            metrics.REJECTED.labels(reason).inc()


class MeshCollector(Collector):
    """The control server's view, read at scrape time."""

    def __init__(self, mesh_status: MeshStatus) -> None:
        self._mesh_status = mesh_status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("ingest_control_up", "1 if the control server answered.")
        try:
            summary = self._mesh_status()
        except ControlUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        state = GaugeMetricFamily(
            "ingest_pipeline_state", "1 for the current pipeline state.", labels=["state"]
        )
        for name in STATES:
            state.add_metric([name], 1 if summary.state == name else 0)
        yield state
        processes = GaugeMetricFamily(
            "ingest_processes",
            "Live processes per stage (frontend: gunicorn workers), from their heartbeats.",
            labels=["stage"],
        )
        for stage, count in sorted(summary.processes.items()):
            processes.add_metric([stage], count)
        yield processes


class Metrics:
    """GET /metrics: Prometheus text for the whole mesh on this host."""

    def __init__(self, metrics_dir: Path, mesh_status: MeshStatus) -> None:
        self._metrics_dir = metrics_dir
        self._mesh = MeshCollector(mesh_status)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._metrics_dir.is_dir():
            samples = CollectorRegistry()
            MultiProcessCollector(samples, path=str(self._metrics_dir))
        else:  # not under the mesh (tests): this process's own samples
            samples = REGISTRY
        mesh = CollectorRegistry()
        mesh.register(self._mesh)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(samples) + generate_latest(mesh)
