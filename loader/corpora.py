"""Real news text for tests, benchmarks and trial loads: the Lee corpus.

300 ABC news articles, one per line (293 unique), shipped as test data inside the gensim
wheel. We fetch that wheel from PyPI with pip (no gensim install), read the one member out
of it, and cache the file. `lee_rows` is the corpus as the load tool posts it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from loader.readers import Article

GENSIM_WHEEL = "gensim==4.4.0"
MEMBER = "gensim/test/test_data/lee_background.cor"
DEFAULT_CACHE = Path.home() / ".cache" / "ingest-mesh"
# The corpus is all ABC news; spread over three names, it exercises per-publication counts.
LEE_PUBLICATIONS = ("ABC Science", "Lee Wire", "The Daily Corpus")


def lee_corpus_path(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The cached corpus file, downloaded on first use."""
    target = cache_dir / "lee_background.cor"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                GENSIM_WHEEL,
                "-d",
                tmp,
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("gensim-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.rename(target)
    return target


def lee_articles(cache_dir: Path = DEFAULT_CACHE) -> list[str]:
    """The corpus articles, in file order, blank lines dropped."""
    text = lee_corpus_path(cache_dir).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def lee_rows(repeat: int = 1, texts: Sequence[str] | None = None) -> Iterator[Article]:
    """The Lee corpus spread over three publications, `repeat` times; every line of every
    copy has its own id, so 300 x repeat articles are counted (the corpus repeats 7 texts)."""
    texts = lee_articles() if texts is None else texts
    for copy in range(repeat):
        for i, text in enumerate(texts):
            yield Article(LEE_PUBLICATIONS[i % len(LEE_PUBLICATIONS)], text, f"lee-{copy}-{i}")
