"""Commit planning: the articles of one `commit()` call, grouped into Firestore commits.

A commit holds one marker per article, plus one write per distinct publication and per
distinct entity document of its articles, whose counts are coalesced (one `Increment` per
document however many articles name it: one field transform per document per commit, far
under the 500 Firestore allows). Articles are packed greedily in order and an article's
writes never straddle two commits, so each commit carries the `create()` markers of exactly
the articles whose counts it adds: all or nothing per article.

What bounds a commit (`CommitLimits`, from settings checked against Firestore's quotas):
the request size (10 MiB), estimated from above per write; and, only if configured, a
number of writes (Firestore's old 500-writes cap was removed in 2023).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.config import Settings
from common.messages import Extraction
from store.firestore.ids import document_id, entity_path, marker_path, publication_path

# What a write costs beyond its document name and string values, at most: field names,
# protobuf tags and lengths, a precondition, one transform, the marker's 32-character
# commit token and its server timestamp. tests/unit/store/firestore/test_plan.py checks the
# estimate stays above the real size of the requests the writer sends.
WRITE_OVERHEAD_BYTES = 64
# The request's own envelope (database name, tags).
REQUEST_OVERHEAD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class CommitLimits:
    request_bytes: int = 10 * 1024 * 1024
    writes: int = 0  # 0: no cap

    @classmethod
    def of(cls, settings: Settings) -> CommitLimits:
        return cls(settings.firestore_max_request_bytes, settings.firestore_max_writes_per_commit)


@dataclass(slots=True)
class Article:
    """One extraction with the document ids its commit touches."""

    extraction: Extraction
    pub_id: str
    marker_id: str
    entity_ids: list[str]  # entity document ids, one per distinct key

    @property
    def id(self) -> str:
        return self.extraction.id

    def entity_docs(self) -> list[str]:
        """Its entity documents as "pub_id/key_id": one name per document, all publications."""
        return [f"{self.pub_id}/{e}" for e in self.entity_ids]


def articles_of(extractions: Iterable[Extraction]) -> list[Article]:
    """The articles of one `commit()` call, in order; the same id twice counts once."""
    articles: dict[str, Article] = {}
    for extraction in extractions:
        if extraction.id in articles:
            continue
        articles[extraction.id] = Article(
            extraction,
            document_id(extraction.publication),
            document_id(extraction.id),
            [document_id(e.key) for e in extraction.entities],
        )
    return list(articles.values())


def plan_commits(
    articles: Sequence[Article], limits: CommitLimits, root_bytes: int = 0
) -> list[list[Article]]:
    """Group articles in order into commits within `limits`.

    `root_bytes` is the length of the prefix of every document name ("projects/P/
    databases/D/documents/"). An article is never split; one that alone exceeds the limits
    goes alone in its commit: splitting it would give up its atomicity, which is worse. If
    Firestore refuses that commit (INVALID_ARGUMENT: over 10 MiB), the error is poison for
    the saver, which sets the article aside as a dead letter.
    """
    groups: list[list[Article]] = []
    group: list[Article] = []
    docs: set[str] = set()  # publication ids and "pub_id/key_id" of the group so far
    size = REQUEST_OVERHEAD_BYTES
    for article in articles:
        new = _new_documents(article, docs)
        grown = size + _estimated_bytes(article, new, root_bytes)
        writes = len(group) + len(docs) + 1 + len(new)
        if group and (grown > limits.request_bytes or 0 < limits.writes < writes):
            groups.append(group)
            group, docs, size = [], set(), REQUEST_OVERHEAD_BYTES
            new = _new_documents(article, docs)
            grown = size + _estimated_bytes(article, new, root_bytes)
        group.append(article)
        docs |= new
        size = grown
    if group:
        groups.append(group)
    return groups


def _new_documents(article: Article, docs: set[str]) -> set[str]:
    return {article.pub_id, *article.entity_docs()} - docs


def _estimated_bytes(article: Article, new_docs: set[str], root_bytes: int) -> int:
    """An upper bound of the bytes the writes of `article` add to a commit request:
    its marker, and the publication and entity documents not in the commit yet."""
    extraction = article.extraction
    size = root_bytes + len(marker_path(article.marker_id)) + _utf8(extraction.publication)
    if article.pub_id in new_docs:
        size += root_bytes + len(publication_path(article.pub_id)) + _utf8(extraction.publication)
    for key_id, entity in zip(article.entity_ids, extraction.entities, strict=True):
        if f"{article.pub_id}/{key_id}" in new_docs:
            size += root_bytes + len(entity_path(article.pub_id, key_id)) + _utf8(entity.text)
            size += len(entity.label) + WRITE_OVERHEAD_BYTES
    return size + 2 * WRITE_OVERHEAD_BYTES


def _utf8(text: str) -> int:
    return len(text.encode())


@dataclass(slots=True)
class Counts:
    """The coalesced counts of one commit."""

    # pub id -> [name, articles]
    publications: dict[str, list]
    # "pub_id/key_id" -> [pub_id, key_id, text, label, count]; text/label of the first article
    entities: dict[str, list]


def coalesce(group: Iterable[Article]) -> Counts:
    """One count per publication and per entity document of `group`."""
    publications: dict[str, list] = {}
    entities: dict[str, list] = {}
    for article in group:
        extraction = article.extraction
        pub = publications.get(article.pub_id)
        if pub is None:
            publications[article.pub_id] = [extraction.publication, 1]
        else:
            pub[1] += 1
        for key_id, entity in zip(article.entity_ids, extraction.entities, strict=True):
            path = f"{article.pub_id}/{key_id}"
            row = entities.get(path)
            if row is None:
                entities[path] = [article.pub_id, key_id, entity.text, entity.label, entity.count]
            else:
                row[4] += entity.count
    return Counts(publications, entities)
