"""`ingest load` against the real mesh: a JSONL file and an "All the News"-style CSV, each
posted by the CLI in a subprocess with --wait --json, then read back through the HTTP API."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import RunningMesh, ingest, start_mesh, stop_mesh

ALL_THE_NEWS_HEADER = ",Unnamed: 0,date,year,month,day,author,title,article,url,section,publication"


@pytest.fixture(scope="module")
def load_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    running = start_mesh(tmp_path_factory.mktemp("load-mesh"))
    try:
        yield running
    finally:
        stop_mesh(running)


def load(running: RunningMesh, *args: str) -> dict:
    """Run `ingest load ... --wait --json`; its stdout is the JSON summary."""
    result = ingest(running, "load", *args, "--wait", "--json", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def stored_articles(running: RunningMesh) -> Counter[str]:
    body = running.http.get("/publications", params={"limit": 1000}).json()
    return Counter({p["name"]: p["articles"] for p in body["publications"]})


def test_jsonl_file(load_mesh: RunningMesh, corpus: list[str], tmp_path: Path) -> None:
    path = tmp_path / "lee.jsonl"
    lines = [
        json.dumps({"publication": f"JSONL {i % 2}", "content": text, "id": f"jsonl-{i}"})
        for i, text in enumerate(corpus[:60])
    ]
    lines.insert(10, json.dumps({"publication": "JSONL 0", "content": "  "}))  # skipped
    path.write_text("\n".join(lines) + "\n")

    summary = load(load_mesh, str(path), "--batch-size", "16", "--concurrency", "3")

    assert summary["accepted"] == 60
    assert summary["rejected"] == 0 and summary["unsent"] == 0
    assert summary["skipped"] == 1
    assert summary["skipped_reasons"] == {"empty or missing content": 1}
    assert summary["requests"] == 4  # 16 + 16 + 16 + 12
    assert summary["drained"] is True
    assert summary["end_to_end_articles_per_second"] > 0
    assert summary["latency_ms"]["p99"] is not None
    # Drained means committed: the store shows every article.
    stored = stored_articles(load_mesh)
    assert stored["JSONL 0"] == 30 and stored["JSONL 1"] == 30


def test_all_the_news_csv(load_mesh: RunningMesh, corpus: list[str], tmp_path: Path) -> None:
    texts = corpus[60:90]
    path = tmp_path / "all-the-news.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write(ALL_THE_NEWS_HEADER + "\n")
        writer = csv.writer(f)
        for i, text in enumerate(texts):
            writer.writerow([i, i, "2016-12-09", 2016, 12, 9, "A. Writer", f"T{i}", text, "u", "",
                             "CSV Times"])  # fmt: skip
        writer.writerow([99, 99, "2016-12-09", 2016, 12, 9, "", "empty", "", "u", "", "CSV Times"])

    summary = load(load_mesh, str(path), "--batch-size", "7", "--concurrency", "2")

    # No id column: ids are digests of publication and content, so a text the corpus
    # repeats is accepted twice and counted once.
    assert summary["accepted"] == len(texts)
    assert summary["skipped"] == 1 and summary["drained"] is True
    assert stored_articles(load_mesh)["CSV Times"] == len(set(texts))


def test_unreachable_mesh_fails_clearly(load_mesh: RunningMesh, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text('{"publication": "P", "content": "c"}\n')
    result = ingest(load_mesh, "load", str(path), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "not reachable" in result.stderr
