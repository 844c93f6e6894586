"""A steady background load of real articles, recording what the mesh accepted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx


class Response:
    def __init__(self, started: float, status: int, ids: list[str], retry_after: str | None):
        self.started = started
        self.status = status
        self.ids = ids
        self.retry_after = retry_after


class SteadyLoad:
    """Posts `batch` articles every `interval` seconds from a thread until stopped.

    Each article is unique (a running number in its publication), so the accepted set is
    exactly the set of ids answered 2xx. A batch that got no answer at all (the connection
    broke: the frontend went away) may or may not have been journaled, as with any HTTP
    request whose answer is lost: its articles are kept apart in `unanswered` (a client
    would post them again, and their ids make that harmless).
    """

    def __init__(
        self,
        url: str,
        key: str,
        corpus: list[str],
        *,
        batch: int = 10,
        interval: float = 0.25,
        publication: str = "Load",
    ) -> None:
        self.url, self.key = url, key
        self.batch, self.interval = batch, interval
        self.responses: list[Response] = []
        self.articles: dict[str, dict[str, str]] = {}  # accepted id -> article
        self.unanswered: dict[str, dict[str, str]] = {}  # id -> article, fate unknown
        self._source = self._articles(corpus, publication)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _articles(corpus: list[str], publication: str) -> Iterator[dict[str, str]]:
        n = 0
        while True:
            for text in corpus:
                yield {"publication": f"{publication} {n % 3}", "content": text, "id": f"L{n}"}
                n += 1

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                batch = [next(self._source) for _ in range(self.batch)]
                started = time.monotonic()
                try:
                    answer = client.post(
                        "/articles", json=batch, headers={"Authorization": f"Bearer {self.key}"}
                    )
                except httpx.HTTPError:
                    self.unanswered.update((article["id"], article) for article in batch)
                    self.responses.append(Response(started, 0, [], None))
                else:
                    ids = answer.json().get("ids", []) if answer.status_code == 202 else []
                    for article, ident in zip(batch, ids, strict=False):
                        self.articles[ident] = article
                    self.responses.append(
                        Response(
                            started, answer.status_code, ids, answer.headers.get("Retry-After")
                        )
                    )
                self._stop.wait(self.interval)

    def accepted_after(self, moment: float) -> list[Response]:
        return [r for r in self.responses if r.started >= moment and 200 <= r.status < 300]


class RetryingLoad:
    """Posts a fixed list of articles (with client ids) in batches from a thread, at a
    steady pace, retrying a batch on 503 (after Retry-After) or a broken connection until
    it is accepted, as a well-behaved client does. Any other 5xx is recorded as an error.
    """

    def __init__(
        self, url: str, key: str, articles: list[dict], *, batch: int = 10, interval: float = 0.1
    ) -> None:
        self.url, self.key = url, key
        self.batches = [articles[i : i + batch] for i in range(0, len(articles), batch)]
        self.interval = interval
        self.accepted: dict[str, dict] = {}
        self.retries = 0
        self.server_errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RetryingLoad:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish in time"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            for batch in self.batches:
                self._post_until_accepted(client, batch)
                time.sleep(self.interval)

    def _post_until_accepted(self, client: httpx.Client, batch: list[dict]) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        while True:
            try:
                answer = client.post("/articles", json=batch, headers=headers)
            except httpx.HTTPError:
                self.retries += 1
                time.sleep(0.2)  # a frontend worker died under us: the same batch again
                continue
            if answer.status_code == 202:
                for article, ident in zip(batch, answer.json()["ids"], strict=True):
                    self.accepted[ident] = article
                return
            if answer.status_code == 503:
                self.retries += 1
                time.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            self.server_errors.append(f"{answer.status_code}: {answer.text[:200]}")
            return
