"""When the saver commits what: results gathered per group, paced, backed off per group.

A group is the unit of one commit and of its pacing:

- On Firestore, a group is one publication. Every document a commit increments belongs to
  one publication (its document and its entity documents), and the saver inlet sends every
  result of a publication to the same saver. So committing a publication at most once per
  `min_interval` (1 / firestore_document_writes_per_second) bounds the write rate of every
  document, however many savers run.
- On SQLite there is one group: every result goes into the next commit (one transaction,
  one fsync), as many times a second as the store takes.

A group is due once its oldest result has waited `gather_seconds`, or no result has joined
it for `quiet_seconds` (extractors send a batch's results back to back, then nothing for a
batch's worth of NER: waiting out `gather_seconds` after the last burst only delays its
counts), or it holds `max_articles`; and its pacing or backoff allows. A commit takes at
most `max_articles`; the rest waits for the group's next turn. A commit that fails for a
reason that may pass (contention, store away) backs off that group alone, exponentially
with jitter, so the saver keeps committing the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.messages import Extraction

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 10.0


@dataclass(slots=True)
class Group:
    """The results waiting for one commit of one group, by (article id, dispatch token):
    a re-delivery is kept beside the first, so that either token the ledger holds is acked
    (the store counts the article once)."""

    key: str
    results: dict[tuple[str, int], Extraction] = field(default_factory=dict)
    oldest: float = 0.0  # when the oldest waiting result arrived
    newest: float = 0.0  # when the newest waiting result arrived
    not_before: float = 0.0  # pacing or backoff: no commit before this
    failures: int = 0  # failed commits in a row


class CommitSchedule:
    """Gathers results into groups and says which group to commit next (module docstring)."""

    def __init__(
        self,
        *,
        per_publication: bool,
        min_interval: float,
        gather_seconds: float,
        max_articles: int,
        quiet_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """`quiet_seconds`: 0 waits out `gather_seconds` always."""
        self._per_publication = per_publication
        self._min_interval = min_interval
        self._gather = gather_seconds
        self._quiet = quiet_seconds
        self._max_articles = max_articles
        self._clock = clock
        self._jitter = jitter
        self._groups: dict[str, Group] = {}

    def add(self, result: Extraction) -> None:
        """Queue a result."""
        key = result.publication if self._per_publication else ""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(key)
        now = self._clock()
        if not group.results:
            group.oldest = now
        group.newest = now
        group.results[result.id, result.token] = result

    def waiting(self) -> int:
        return sum(len(g.results) for g in self._groups.values())

    def next_due(self) -> tuple[Group, list[Extraction]] | None:
        """The group whose commit is due first, with the results to commit; None if none."""
        now = self._clock()
        due = [g for g in self._groups.values() if g.results and self._due_at(g) <= now]
        if not due:
            return None
        best = min(due, key=self._due_at)
        return best, list(best.results.values())[: self._max_articles]

    def seconds_to_next(self) -> float | None:
        """How long until some group is due (0 if one is); None when nothing waits."""
        times = [self._due_at(g) for g in self._groups.values() if g.results]
        return max(0.0, min(times) - self._clock()) if times else None

    def committed(self, group: Group, results: list[Extraction]) -> None:
        """These results are in the store (or settled otherwise): the group's pacing starts."""
        for result in results:
            group.results.pop((result.id, result.token), None)
        group.failures = 0
        group.not_before = self._clock() + self._min_interval
        if group.results:
            group.oldest = self._clock()
        else:
            # Idle publications are forgotten once their pacing has run out (not before:
            # a publication that comes back must still wait its turn).
            self._forget_idle()

    def failed(self, group: Group) -> float:
        """A commit of the group failed but may pass later: back it off; returns the delay."""
        group.failures += 1
        base = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (group.failures - 1))
        delay = base * (0.5 + self._jitter())  # jitter spreads savers and groups apart
        group.not_before = max(group.not_before, self._clock() + delay)
        return delay

    def _due_at(self, group: Group) -> float:
        ready = group.oldest + self._gather
        if self._quiet > 0:
            ready = min(ready, group.newest + self._quiet)
        if len(group.results) >= self._max_articles:
            ready = group.oldest
        return max(ready, group.not_before)

    def _forget_idle(self) -> None:
        now = self._clock()
        for key in [k for k, g in self._groups.items() if not g.results and g.not_before <= now]:
            del self._groups[key]
