"""The comparison for bench/saver_store.py: the same commits built with the official client.

store/firestore.py builds each commit from raw `Write` protobufs. This subclass builds the
very same writes (same documents, preconditions and transforms) through the official
`WriteBatch` API: `create()` / `update()` / `set(merge=True)` with `Increment`, then
`batch.commit()`. It was the first implementation; the benchmark keeps it to show what the
raw protobufs buy.
"""

from __future__ import annotations

from google.cloud import firestore
from google.cloud.firestore_v1 import WriteBatch

from store.firestore import ENTITIES, FirestoreStore, _Article, _coalesce


class ClientBatchFirestoreStore(FirestoreStore):
    def _build(self, pending: list[_Article], token: str) -> WriteBatch:  # type: ignore[override]
        counts = _coalesce(pending)
        batch = self._client.batch()
        for pub_id, (name, articles) in counts.publications.items():
            batch.set(
                self._publications.document(pub_id),
                {"name": name, "articles": firestore.Increment(articles)},
                merge=True,
            )
        for path, (pub_id, key_id, text, label, count) in counts.entities.items():
            ref = self._publications.document(pub_id).collection(ENTITIES).document(key_id)
            if path in self._known:
                batch.update(ref, {"count": firestore.Increment(count)})
            else:
                batch.create(
                    ref, {"text": text, "label": label, "count": firestore.Increment(count)}
                )
        for article in pending:
            batch.create(
                self._articles.document(article.marker_id),
                {
                    "publication": article.extraction.publication,
                    "entities": len(article.extraction.entities),
                    "committed_at": firestore.SERVER_TIMESTAMP,
                    "commit": token,
                },
            )
        return batch

    def _commit_writes(self, batch: WriteBatch) -> None:  # type: ignore[override]
        batch.commit(retry=None, timeout=self._rpc_timeout)
