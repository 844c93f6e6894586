"""One commit of a group of results, with poison isolation.

A store error that retrying cannot fix (`store.poison(error)`: an invalid value, a
document too large) is about some article of the group: the group is then committed one
article at a time, so that article is set aside (a dead letter, with the error) and the
others are counted. Any other error (contention, store unreachable or locked) is raised:
the schedule backs the group off and the saver goes on with the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from common import metrics
from common.messages import Extraction
from common.store import Store

log = logging.getLogger("saver")


@dataclass(slots=True)
class Outcome:
    committed: list[Extraction] = field(default_factory=list)  # in the store now
    counted: list[str] = field(default_factory=list)  # ids newly counted by this commit
    poison: list[tuple[Extraction, str]] = field(default_factory=list)  # refused, with why

    @property
    def settled(self) -> list[Extraction]:
        """Every result this commit is done with (committed or refused for good)."""
        return self.committed + [result for result, _ in self.poison]


def commit(store: Store, results: list[Extraction]) -> Outcome:
    """Commit `results` in one store commit; raises what may pass on a later try."""
    try:
        return Outcome(results, _timed_commit(store, results))
    except Exception as error:
        if not store.poison(error):
            raise
        log.warning("a store error no retry can fix; committing one by one", exc_info=error)
    outcome = Outcome()
    for result in results:
        try:
            counted = _timed_commit(store, [result])
        except Exception as error:
            if not store.poison(error):
                raise  # those committed so far are marked: the next try skips them
            log.error("article refused by the store", extra={"article_ids": [result.id]})
            outcome.poison.append((result, f"{type(error).__name__}: {error}"[:1000]))
            continue
        outcome.committed.append(result)
        outcome.counted += counted
    return outcome


def _timed_commit(store: Store, results: list[Extraction]) -> list[str]:
    started = time.perf_counter()
    counted = store.commit(results)
    seconds = time.perf_counter() - started
    metrics.COMMIT_SECONDS.observe(seconds)
    log.debug(
        "committed", extra={"articles": len(results), "new": len(counted), "seconds": seconds}
    )
    return counted
