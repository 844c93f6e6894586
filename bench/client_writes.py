"""The comparison for bench/saver_store.py: the same commits built with the official client.

store/firestore/writer.py builds each commit from raw `Write` protobufs. This subclass
builds the very same writes (same documents, preconditions and transforms) through the
official `WriteBatch` API: `create()` / `update()` / `set(merge=True)` with `Increment`, then
`batch.commit()`. It was the first implementation; the benchmark keeps it to show what the
raw protobufs buy.
"""

from __future__ import annotations

from google.cloud import firestore
from google.cloud.firestore_v1 import WriteBatch

from store.firestore.ids import ARTICLES, ENTITIES, PUBLICATIONS
from store.firestore.plan import Article, coalesce
from store.firestore.writer import Writer


class ClientBatchWriter(Writer):
    """The shipped writer, but each commit built and sent as a `WriteBatch`."""

    def build(self, pending: list[Article], token: str) -> WriteBatch:  # type: ignore[override]
        publications = self.client.collection(PUBLICATIONS)
        markers = self.client.collection(ARTICLES)
        counts = coalesce(pending)
        batch = self.client.batch()
        for pub_id, (name, articles) in counts.publications.items():
            batch.set(
                publications.document(pub_id),
                {"name": name, "articles": firestore.Increment(articles)},
                merge=True,
            )
        for doc, (pub_id, key_id, text, label, count) in counts.entities.items():
            ref = publications.document(pub_id).collection(ENTITIES).document(key_id)
            if self.knows(doc):
                batch.update(ref, {"count": firestore.Increment(count)})
            else:
                batch.create(
                    ref, {"text": text, "label": label, "count": firestore.Increment(count)}
                )
        for article in pending:
            batch.create(
                markers.document(article.marker_id),
                {
                    "publication": article.extraction.publication,
                    "entities": len(article.extraction.entities),
                    "committed_at": firestore.SERVER_TIMESTAMP,
                    "commit": token,
                },
            )
        return batch

    def send(self, batch: WriteBatch) -> None:  # type: ignore[override]
        batch.commit(retry=None, timeout=self.rpc_timeout)
