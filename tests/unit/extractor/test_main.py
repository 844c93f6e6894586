"""The extractor process's handling of failures (services/extractor/__main__.py)."""

from __future__ import annotations

from collections.abc import Sequence

import zmq

from common.config import Settings
from common.messages import Acked, Article, Entity, Failure, Released, decode
from common.sockets import LedgerReplies, MeshSockets
from services.extractor.__main__ import _extract, _give_back

GOOD = [Entity("k", "Paris", "GPE", 1)]


class Flaky:
    """An extractor whose texts name what they do: "value" and "memory" raise alone, and any
    batch holding one of them raises too."""

    def extract(self, texts: Sequence[str]) -> list[list[Entity]]:
        if "value" in texts:
            raise ValueError("[E088] Text of length 1000001 exceeds maximum of 1000000.")
        if "memory" in texts:
            raise MemoryError()
        if "disk" in texts:
            raise OSError(28, "No space left on device")
        return [GOOD for _ in texts]


def article(content: str) -> Article:
    return Article(id=content, publication="p", content=content, ledger="local", token=1)


def test_a_batch_without_errors_is_extracted_whole():
    assert _extract(Flaky(), [article("a"), article("b")]) == [GOOD, GOOD]


def test_only_the_article_that_fails_alone_fails_and_the_text_is_not_retried():
    batch = [article("a"), article("value"), article("b")]
    good, failure, other = _extract(Flaky(), batch)
    assert good == other == GOOD
    assert isinstance(failure, Failure)
    assert failure.id == "value"
    assert failure.error.startswith("ValueError: [E088]")
    assert failure.retryable is False  # the same text fails the same way: dead-letter now


def test_running_short_of_memory_or_disk_may_pass_on_another_try():
    results = _extract(Flaky(), [article("memory"), article("disk"), article("a")])
    assert [(r.id, r.retryable) for r in results[:2]] == [("memory", True), ("disk", True)]
    assert results[2] == GOOD


def test_a_stopping_extractor_gives_back_what_it_holds_to_each_ledger(tmp_path):
    """Over real sockets: one Released per ledger, with each article's dispatch token."""
    settings = Settings(data_dir=str(tmp_path))
    mesh = MeshSockets(settings)
    try:
        ends = {name: f"ipc://{tmp_path}/run/{name}-acks" for name in ("a", "b")}
        pulls = {name: mesh.bind(zmq.PULL, endpoint) for name, endpoint in ends.items()}
        held = [
            Article("x", "p", "t", "a", 1),
            Article("y", "p", "t", "b", 2),
            Article("z", "p", "t", "a", 3),
        ]
        _give_back(LedgerReplies(mesh, ends), held)
        got = {}
        for name, pull in pulls.items():
            assert pull.poll(2000)
            got[name] = decode(pull.recv())
        assert got == {
            "a": Released([Acked("x", 1), Acked("z", 3)]),
            "b": Released([Acked("y", 2)]),
        }
    finally:
        mesh.close()
