"""The production store: Google Cloud Firestore (the emulator in tests and local runs).

The package, read top-down:

- `ids`: the collections and the document ids of free-text names ("~digest" when too long);
- `plan`: the articles of a `commit()` call grouped into commits within the limits of
  settings (request bytes; writes, if capped);
- `writer`: those commits as raw `Write` protobufs, create()/update() preconditions,
  conflicts settled by one read, transient errors retried with tenacity;
- `reader`: publications, top entities (cursor, label filter) and counted markers;
- here: `FirestoreStore`, which joins the writer and the reader sharing one client, and
  `open_firestore_store`, which opens it from settings.

docs/architecture.md ("Firestore store") gives the reasons behind each of these.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from google.api_core.exceptions import InvalidArgument
from google.cloud import firestore

from common.config import ConfigError, Settings
from common.messages import Extraction
from common.store import EntityPage, PublicationCount
from store.firestore.plan import CommitLimits
from store.firestore.reader import Reader
from store.firestore.writer import Writer

__all__ = ["FirestoreStore", "open_client", "open_firestore_store"]

log = logging.getLogger("store.firestore")


class FirestoreStore:
    """The Store of common.store on Firestore: `Writer` commits, `Reader` answers queries."""

    def __init__(self, client: firestore.Client, writer: Writer | None = None) -> None:
        self.client = client
        # The writer is a parameter so the benchmark can put its WriteBatch variant in.
        self.writer = writer if writer is not None else Writer(client)
        self.reader = Reader(client)

    def commit(self, extractions: Sequence[Extraction]) -> list[str]:
        return self.writer.commit(extractions)

    def publications(self, limit: int = 100) -> list[PublicationCount]:
        return self.reader.publications(limit)

    def top_entities(
        self,
        publication: str,
        limit: int = 20,
        cursor: str | None = None,
        label: str | None = None,
    ) -> EntityPage:
        return self.reader.top_entities(publication, limit, cursor, label)

    def counted(self, ids: Sequence[str]) -> set[str]:
        return self.reader.counted(ids)

    def poison(self, error: Exception) -> bool:
        # INVALID_ARGUMENT is Firestore's word for a write it refuses as such (a value out
        # of range, a document over 1 MiB, a request over 10 MiB); ValueError/TypeError are
        # the client refusing to build it. The rest (UNAVAILABLE, ABORTED, PERMISSION_DENIED,
        # ...) is about the store, not the articles.
        return isinstance(error, InvalidArgument | ValueError | TypeError)

    def close(self) -> None:
        self.client.close()


def open_client(settings: Settings) -> firestore.Client:
    """A Firestore client for the project, database and (optional) emulator of `settings`."""
    if not settings.firestore_project:
        raise ConfigError(
            "store = firestore needs a project id: set INGEST_FIRESTORE_PROJECT "
            "(any id, e.g. demo-ingest, when using the emulator)"
        )
    if settings.firestore_emulator_host:
        # The client library reads the emulator address only from this environment
        # variable (it then uses an insecure channel and no credentials). Settings are the
        # one configuration source of the mesh, so the setting feeds the variable here,
        # in the process that opens the store, rather than asking every launcher to
        # export a second, Google-specific variable.
        os.environ["FIRESTORE_EMULATOR_HOST"] = settings.firestore_emulator_host
    elif os.environ.get("FIRESTORE_EMULATOR_HOST"):
        log.warning(
            "FIRESTORE_EMULATOR_HOST is set in the environment: the Firestore client will "
            "use that emulator although INGEST_FIRESTORE_EMULATOR_HOST is empty",
            extra={"emulator": os.environ["FIRESTORE_EMULATOR_HOST"]},
        )
    return firestore.Client(
        project=settings.firestore_project, database=settings.firestore_database
    )


def open_firestore_store(settings: Settings, **options: Any) -> FirestoreStore:
    """A FirestoreStore for `settings` (see `open_client`).

    `options` go to the Writer (tests tune the retry schedule with them).
    """
    client = open_client(settings)
    options.setdefault("limits", CommitLimits.of(settings))
    return FirestoreStore(client, Writer(client, **options))
