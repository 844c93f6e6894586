"""Every metric the code defines is documented in the README, and nothing documented is gone."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from common import metrics

README = Path(__file__).resolve().parents[3] / "README.md"
SCRAPE_TIME = {"ingest_pipeline_state", "ingest_processes", "ingest_control_up"}


def exposed_name(metric: MetricWrapperBase) -> str:
    return metric._name + ("_total" if isinstance(metric, Counter) else "")


def test_every_metric_is_in_the_readme_table():
    defined = {exposed_name(m) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert any(isinstance(m, Histogram) for m in vars(metrics).values())
    documented = set(re.findall(r"^\| `(ingest_[a-z_]+)", README.read_text(), re.MULTILINE))
    assert defined - documented == set()
    assert documented - defined - SCRAPE_TIME == set()
