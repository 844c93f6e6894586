"""Which saver gets a result: the savers the inlet has heard from, and who owns a key.

Every result of one publication goes to one saver (Firestore: one writer per document, so
that saver's pacing bounds each document's write rate). Ownership is rendezvous hashing:
each key goes to the live saver with the highest digest of (key, saver). When a saver
comes or goes, only the keys it gains or held move; the others keep their saver, and their
pacing, undisturbed.

A saver is live while it keeps saying so (SAVER_READY, every second): silent for
`ttl` seconds, or unreachable on send, it is forgotten and its keys move to the others.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable


def _score(key: bytes, saver: bytes) -> bytes:
    return hashlib.blake2b(key + b"\x00" + saver, digest_size=8).digest()


class Savers:
    """The live savers, by ZeroMQ routing id, and the owner of each routing key."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._last_heard: dict[bytes, float] = {}
        self._owners: dict[bytes, bytes] = {}  # cache, cleared when membership changes

    def __len__(self) -> int:
        return len(self._last_heard)

    def heard(self, saver: bytes) -> None:
        if saver not in self._last_heard:
            self._owners.clear()
        self._last_heard[saver] = self._clock()

    def forget(self, saver: bytes) -> None:
        if self._last_heard.pop(saver, None) is not None:
            self._owners.clear()

    def expire(self) -> list[bytes]:
        """Forget the savers silent for longer than the ttl; returns them."""
        oldest = self._clock() - self._ttl
        silent = [s for s, heard in self._last_heard.items() if heard < oldest]
        for saver in silent:
            self.forget(saver)
        return silent

    def owner(self, key: bytes) -> bytes | None:
        """The saver that takes results of `key`; None when no saver is live."""
        owner = self._owners.get(key)
        if owner is None and self._last_heard:
            owner = max(self._last_heard, key=lambda saver: _score(key, saver))
            if len(self._owners) > 100_000:  # bounded: keys are publications, a cache only
                self._owners.clear()
            self._owners[key] = owner
        return owner
