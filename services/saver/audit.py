"""The saver's own audit of document write rates (Firestore: about 1 write/s per document).

Every commit increments its publication's document and the entity documents of its
articles, once each. `DocumentWrites` keeps those writes for a sliding window and tells the
rate of the most written document, which the saver exports as
`ingest_store_hottest_document_writes_per_second` (the highest of all savers on the host)
and reports to the control plane. Markers are left out: each is written once, ever.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from common.messages import Extraction

WINDOW_SECONDS = 10.0


def documents_of(results: Iterable[Extraction]) -> set[str]:
    """The documents one commit of these results increments, named as the store lays them
    out: "publications/<name>" and "publications/<name>/entities/<key>"."""
    documents: set[str] = set()
    for result in results:
        publication = f"publications/{result.publication}"
        documents.add(publication)
        documents.update(f"{publication}/entities/{e.key}" for e in result.entities)
    return documents


class DocumentWrites:
    """Writes per document over the last `window` seconds."""

    def __init__(
        self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window
        self._clock = clock
        self._writes: deque[tuple[float, str]] = deque()
        self._counts: Counter[str] = Counter()

    def record(self, documents: Iterable[str]) -> None:
        now = self._clock()
        for document in documents:
            self._writes.append((now, document))
            self._counts[document] += 1
        self._expire(now)

    def hottest(self) -> tuple[str, float]:
        """The most written document of the window and its writes per second ("", 0 if none)."""
        self._expire(self._clock())
        if not self._counts:
            return "", 0.0
        document, writes = self._counts.most_common(1)[0]
        return document, writes / self._window

    def _expire(self, now: float) -> None:
        writes, counts = self._writes, self._counts
        while writes and writes[0][0] <= now - self._window:
            _, document = writes.popleft()
            counts[document] -= 1
            if not counts[document]:
                del counts[document]
